
!outbound|8001||example.unix.local
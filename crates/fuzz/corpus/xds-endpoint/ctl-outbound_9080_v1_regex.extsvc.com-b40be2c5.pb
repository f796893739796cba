
!outbound|9080|v1|regex.extsvc.com


10.1.0.1øF"
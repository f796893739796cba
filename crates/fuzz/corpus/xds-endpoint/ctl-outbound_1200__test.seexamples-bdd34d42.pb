
outbound|1200||test.seexamples


	10.12.0.1Х"
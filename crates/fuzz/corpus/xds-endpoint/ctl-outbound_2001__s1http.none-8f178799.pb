
outbound|2001||s1http.none


	10.11.0.1Ÿ7"
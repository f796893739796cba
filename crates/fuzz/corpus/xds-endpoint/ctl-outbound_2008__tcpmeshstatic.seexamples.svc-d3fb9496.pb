
+outbound|2008||tcpmeshstatic.seexamples.svc


	10.11.0.8ž7"
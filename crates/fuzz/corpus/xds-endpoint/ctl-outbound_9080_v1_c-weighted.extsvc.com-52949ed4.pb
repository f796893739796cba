
&outbound|9080|v1|c-weighted.extsvc.com


10.1.0.1øF"
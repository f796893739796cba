
.outbound|80||weighted.static.svc.cluster.localK


3.3.3.3P"


2.2.2.2P"


1.1.1.1P"
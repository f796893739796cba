
.outbound|80||details.default.svc.cluster.localN


10.1.0.1P"


10.1.0.2P"


10.1.0.3P"

2outbound|9080|v1|details.default.svc.cluster.local


10.1.0.1øF"
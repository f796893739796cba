
2outbound|9080|v2|details.default.svc.cluster.local


10.1.0.2øF"
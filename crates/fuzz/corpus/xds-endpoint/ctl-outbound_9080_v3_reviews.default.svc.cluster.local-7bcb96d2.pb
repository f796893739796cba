
2outbound|9080|v3|reviews.default.svc.cluster.local


10.1.0.3øF"
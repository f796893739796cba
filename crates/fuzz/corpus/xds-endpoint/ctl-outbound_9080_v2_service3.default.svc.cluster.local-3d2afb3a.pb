
3outbound|9080|v2|service3.default.svc.cluster.local


10.1.0.2øF"
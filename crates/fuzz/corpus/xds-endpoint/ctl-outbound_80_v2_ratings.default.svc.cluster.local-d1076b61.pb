
0outbound|80|v2|ratings.default.svc.cluster.local


10.1.0.2P"
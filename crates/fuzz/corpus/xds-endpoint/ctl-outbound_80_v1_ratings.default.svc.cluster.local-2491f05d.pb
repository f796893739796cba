
0outbound|80|v1|ratings.default.svc.cluster.local


10.1.0.1P"
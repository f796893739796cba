
0outbound|81|v2|destall.default.svc.cluster.local
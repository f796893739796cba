
.outbound|81||destall.default.svc.cluster.local


	127.0.0.2 7"
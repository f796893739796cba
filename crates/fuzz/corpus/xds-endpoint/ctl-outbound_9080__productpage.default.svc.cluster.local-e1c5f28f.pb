
4outbound|9080||productpage.default.svc.cluster.localQ


10.1.0.1øF"


10.1.0.2øF"


10.1.0.3øF"
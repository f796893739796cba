//! The fields Weft accepts but does not translate yet ([`weft_api::unsupported`]), as the
//! controller's warnings: each present one names the object and the field path. Endpoints
//! that cannot be sent (which depend on the ServiceEntry that selects them) are reported by
//! the model builder.

use weft_api::ConfigObject;

use crate::object::{ObjectKey, Warning};

/// The unsupported fields present in one object.
pub fn fields(key: &ObjectKey, object: &ConfigObject) -> Vec<Warning> {
    weft_api::unsupported::fields(object)
        .into_iter()
        .map(|found| Warning {
            object: key.clone(),
            path: found.path,
            message: found.message,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::testing::{SERVICES, model_from_yaml};

    fn paths(yaml: &str) -> Vec<String> {
        let model = model_from_yaml(&format!("{SERVICES}\n---\n{yaml}"));
        model
            .warnings
            .iter()
            .filter(|w| {
                ["not supported", "no PING is sent", "is left out"]
                    .iter()
                    .any(|m| w.message.contains(m))
            })
            .map(|w| format!("{} {}", w.object, w.path))
            .collect()
    }

    #[test]
    fn virtual_service_fields() {
        let found = paths(
            r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings]
  exportTo: ["."]
  http:
  - route: [{destination: {host: ratings}}]
    retries: {attempts: 2}
    fault: {abort: {httpStatus: 500, percentage: {value: 10}}}
    mirror: {host: details.other.svc.cluster.local}
    corsPolicy: {allowOrigins: [{exact: "https://a.example"}]}
    rewrite: {uriRegexRewrite: {match: "^/a(.*)", rewrite: "/b\\1"}}
  tcp:
  - match: [{sourceSubnet: 10.0.0.0/8}]
    route: [{destination: {host: ratings}}]
  tls:
  - match: [{sniHosts: [ratings]}]
    route: [{destination: {host: ratings}}]
"#,
        );
        for expected in [
            "VirtualService default/ratings spec.exportTo",
            "VirtualService default/ratings spec.tcp[0].match[0].sourceSubnet",
        ] {
            assert!(
                found.iter().any(|f| f == expected),
                "missing {expected} in {found:#?}"
            );
        }
        // Translated: retries, faults, mirrors, CORS, regex rewrites, TCP and TLS routes.
        assert!(
            !found
                .iter()
                .any(|f| f.ends_with("spec.tcp") || f.ends_with("spec.tls")),
            "{found:#?}"
        );
        assert!(
            !found.iter().any(|f| [
                ".retries",
                ".fault",
                ".mirror",
                ".corsPolicy",
                ".uriRegexRewrite"
            ]
            .iter()
            .any(|field| f.contains(field))),
            "{found:#?}"
        );
    }

    #[test]
    fn destination_rule_and_service_entry_fields() {
        let found = paths(
            r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings, namespace: default}
spec:
  host: ratings
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 3}
    tls: {mode: ISTIO_MUTUAL}
    connectionPool: {http: {http2MaxRequests: 10, maxRetries: 4}, tcp: {maxConnections: 5, connectTimeout: 1s, idleTimeout: 1h}}
    loadBalancer: {consistentHash: {httpHeaderName: x-user}, warmup: {duration: 10s}}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy: {loadBalancer: {simple: PASSTHROUGH}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external, namespace: default}
spec:
  hosts: [api.example.com]
  ports: [{number: 443, name: https, protocol: HTTPS}]
  resolution: DNS
"#,
        );
        for expected in [
            "DestinationRule default/ratings spec.trafficPolicy.loadBalancer.warmup",
            "DestinationRule default/ratings spec.subsets[0].trafficPolicy.loadBalancer.simple",
        ] {
            assert!(
                found.iter().any(|f| f == expected),
                "missing {expected} in {found:#?}"
            );
        }
        assert!(!found.iter().any(|f| f.contains("connectTimeout")));
        assert!(
            !found.iter().any(|f| f.contains("maxRetries")),
            "translated: {found:#?}"
        );
        // Upstream TLS is translated (xds::tls).
        assert!(!found.iter().any(|f| f.contains(".tls")), "{found:#?}");
        // DNS resolution of the hosts themselves is translated (a STRICT_DNS cluster).
        assert!(
            !found.iter().any(|f| f.contains("ServiceEntry")),
            "{found:#?}"
        );
    }

    #[test]
    fn destination_rule_fields_the_proxy_does_not_act_on() {
        let found = paths(
            r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings, namespace: default}
spec:
  host: ratings
  trafficPolicy:
    connectionPool: {http: {http2KeepAlive: {interval: 10s}}}
    outlierDetection: {consecutive5xxErrors: 3, outlierDetectionHttpErrorCodes: [500, 503]}
    loadBalancer:
      consistentHash: {httpCookie: {name: user, ttl: 0s, attributes: [{name: SameSite, value: Strict}, {name: X, value: "a\u0007b"}]}}
      zoneAwareLbSetting: {enabled: true}
    portLevelSettings:
    - port: {number: 9080}
      connectionPool: {http: {http2KeepAlive: {timeout: 2s}}}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy: {connectionPool: {http: {http2KeepAlive: {interval: 10s, timeout: 2s}}}}
"#,
        );
        for expected in [
            "spec.trafficPolicy.connectionPool.http.http2KeepAlive.timeout",
            "spec.trafficPolicy.outlierDetection.outlierDetectionHttpErrorCodes",
            "spec.trafficPolicy.loadBalancer.zoneAwareLbSetting",
            "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.attributes[1]",
            "spec.trafficPolicy.portLevelSettings[0].connectionPool.http.http2KeepAlive.interval",
        ] {
            let expected = format!("DestinationRule default/ratings {expected}");
            assert!(
                found.contains(&expected),
                "missing {expected} in {found:#?}"
            );
        }
        // Cookie attributes a header can carry are translated.
        assert!(
            !found.iter().any(|f| f.ends_with("attributes[0]")),
            "{found:#?}"
        );
        // A complete http2KeepAlive is translated.
        assert!(
            !found.iter().any(|f| f.contains("subsets[0]")),
            "{found:#?}"
        );
    }

    #[test]
    fn workload_fields() {
        let found = paths(
            r#"
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm, namespace: default}
spec: {address: 10.0.0.9, network: vm-net, labels: {app: ratings}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: vms, namespace: default}
spec:
  template: {serviceAccount: ratings}
  probe: {tcpSocket: {port: 9080}}
"#,
        );
        for expected in [
            "WorkloadEntry default/vm spec.network",
            "WorkloadGroup default/vms ",
        ] {
            assert!(
                found.iter().any(|f| f == expected),
                "missing {expected:?} in {found:#?}"
            );
        }
    }

    #[test]
    fn client_tls_fields_sidecars_cannot_use() {
        let model = model_from_yaml(&format!(
            r#"{SERVICES}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: ratings, namespace: default}}
spec:
  host: ratings
  trafficPolicy:
    tls: {{mode: SIMPLE, credentialName: ratings-ca}}
    portLevelSettings:
    - port: {{number: 9080}}
      tls: {{mode: MUTUAL, clientCertificate: /c.pem, privateKey: /k.pem, caCertificates: /ca.pem, caCrl: /crl.pem}}
  subsets:
  - name: v1
    labels: {{version: v1}}
    trafficPolicy: {{tls: {{mode: ISTIO_MUTUAL, credentialName: unused, caCrl: /unused.pem}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: external, namespace: default}}
spec:
  hosts: [api.example.com]
  ports: [{{number: 443, name: https, protocol: HTTPS}}]
  resolution: DNS
  subjectAltNames: [api.example.com]
"#
        ));
        let found: Vec<String> = model
            .warnings
            .iter()
            .filter(|w| w.path.contains("tls") || w.path.contains("subjectAltNames"))
            .map(|w| format!("{} {}: {}", w.object, w.path, w.message))
            .collect();
        let dr = "DestinationRule default/ratings spec";
        assert_eq!(
            found,
            [
                format!(
                    "{dr}.subsets[0].trafficPolicy.tls.caCrl: ignored with mode ISTIO_MUTUAL (as in Istio)"
                ),
                format!(
                    "{dr}.subsets[0].trafficPolicy.tls.credentialName: ignored with mode ISTIO_MUTUAL (as in Istio)"
                ),
                format!(
                    "{dr}.trafficPolicy.portLevelSettings[0].tls.caCrl: not supported yet; ignored (the revocation list is not checked)"
                ),
                format!(
                    "{dr}.trafficPolicy.tls.credentialName: not supported yet for sidecars (no secret is fetched); SIMPLE TLS is originated verifying the server against the system roots"
                ),
            ]
        );
    }
}

//! Services whose captured TCP traffic cannot be told apart (the capture shape's outbound
//! filter chains match on destination port and address only): each becomes a warning on the
//! service that loses, with the port's field path, once per model.
//!
//! - a port of a declared non-HTTP protocol on a service without addresses, on a port number
//!   some service declares HTTP: the HTTP chain `0.0.0.0_<port>` takes its traffic;
//! - two services with the same address (or, without addresses, none) and port: the first by
//!   host name gets the traffic.
//!
//! Computed over every service of the mesh; a proxy whose Sidecar hides one of the two does
//! not see the collision.

use std::collections::{BTreeMap, BTreeSet};

use crate::object::Warning;
use crate::service::{PortKind, Service};

/// The address a service without addresses is matched on: any.
const ANY_ADDRESS: &str = "0.0.0.0";

/// The warnings about captured TCP traffic going to another service than the one addressed.
pub(super) fn collisions(services: &BTreeMap<String, Service>) -> Vec<Warning> {
    let http_ports: BTreeMap<u32, &str> = services
        .values()
        .flat_map(|service| {
            service
                .ports
                .iter()
                .filter(|port| port.kind() == Some(PortKind::Http))
                .map(|port| (port.number, service.hostname.as_str()))
        })
        .rev()
        .collect();
    let mut owners: BTreeMap<(&str, u32), &str> = BTreeMap::new();
    let mut warnings = Vec::new();
    for service in services.values() {
        for port in &service.ports {
            let path = format!("spec.ports[{}]", port.index);
            let number = port.number;
            let addresses: BTreeSet<&str> = if service.addresses.is_empty() {
                match port.kind() {
                    Some(PortKind::Tcp) => {
                        if let Some(http) = http_ports.get(&number) {
                            warnings.push(Warning::new(
                                &service.source,
                                path,
                                format!(
                                    "port {number} of {} is not HTTP and the service has no addresses, but port {number} of {http} is HTTP: captured connections to port {number} go to the HTTP listener chain, not to this service (give the service addresses)",
                                    service.hostname
                                ),
                            ));
                            continue;
                        }
                        [ANY_ADDRESS].into()
                    }
                    // Undeclared ports without addresses get no TCP chain; UDP is not captured.
                    _ => continue,
                }
            } else {
                match port.kind() {
                    Some(PortKind::Tcp | PortKind::Undeclared) => {
                        service.addresses.iter().map(String::as_str).collect()
                    }
                    _ => continue,
                }
            };
            for address in addresses {
                match owners.get(&(address, number)) {
                    Some(first) => warnings.push(Warning::new(
                        &service.source,
                        path.clone(),
                        format!(
                            "{} port {number} is also {first}'s: captured TCP connections to {}:{number} go to {first} (the first by host name), not to {}",
                            describe(address),
                            address_text(address),
                            service.hostname
                        ),
                    )),
                    None => {
                        owners.insert((address, number), &service.hostname);
                    }
                }
            }
        }
    }
    warnings
}

fn describe(address: &str) -> String {
    if address == ANY_ADDRESS {
        "a service without addresses on".to_string()
    } else {
        format!("address {address}")
    }
}

fn address_text(address: &str) -> &str {
    if address == ANY_ADDRESS {
        "any address"
    } else {
        address
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::model_from_yaml;

    fn collisions(yaml: &str) -> Vec<String> {
        model_from_yaml(yaml)
            .warnings
            .iter()
            .filter(|w| w.message.contains("captured"))
            .map(|w| format!("{} {}: {}", w.object, w.path, w.message))
            .collect()
    }

    #[test]
    fn shadowed_tcp_ports_and_shared_addresses_are_warned_on_the_loser() {
        let found = collisions(
            r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: web, namespace: default}
spec:
  hosts: [web.example.com]
  ports: [{number: 443, name: http, protocol: HTTP}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: tls, namespace: default}
spec:
  hosts: [tls.example.com]
  ports: [{number: 80, name: other, protocol: HTTP}, {number: 443, name: tls, protocol: TLS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db, namespace: default}
spec:
  hosts: [a.db.example.com]
  addresses: [240.0.0.1]
  ports: [{number: 3306, name: mysql, protocol: MYSQL}, {number: 8080, name: web, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.1}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db2, namespace: default}
spec:
  hosts: [b.db.example.com]
  addresses: [240.0.0.1]
  ports: [{number: 3306, name: mysql}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.2}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: cache, namespace: default}
spec:
  hosts: [cache.example.com]
  ports: [{number: 6379, name: redis, protocol: REDIS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: cache2, namespace: default}
spec:
  hosts: [cache2.example.com]
  ports: [{number: 6379, name: redis, protocol: REDIS}]
  resolution: DNS
"#,
        );
        assert_eq!(
            found,
            [
                "ServiceEntry default/cache2 spec.ports[0]: a service without addresses on port 6379 is also cache.example.com's: captured TCP connections to any address:6379 go to cache.example.com (the first by host name), not to cache2.example.com",
                "ServiceEntry default/db2 spec.ports[0]: address 240.0.0.1 port 3306 is also a.db.example.com's: captured TCP connections to 240.0.0.1:3306 go to a.db.example.com (the first by host name), not to b.db.example.com",
                "ServiceEntry default/tls spec.ports[1]: port 443 of tls.example.com is not HTTP and the service has no addresses, but port 443 of web.example.com is HTTP: captured connections to port 443 go to the HTTP listener chain, not to this service (give the service addresses)",
            ]
        );
    }
}

//! `weft-proxy init` in a real pod network namespace, on both iptables backends: an app's
//! outbound TCP reaches the listener on 15001 whatever its destination, the proxy's own
//! (uid 1337) does not; inbound TCP to the pod reaches 15006 except the proxy's excluded
//! ports; a second run changes nothing; `--cleanup` removes every rule; `--dry-run` programs
//! nothing; DNS capture's rules (nat and raw conntrack zones) load too. A pod with IPv6 gets
//! the same with ip6tables, and its DNS reaches the sidecar's DNS proxy on `[::1]`.

use std::process::{Child, Stdio};
use std::time::Duration;

use weft_e2e::node::net::{Network, PodNet, http_get_in_as};
use weft_e2e::{bins, eventually};

/// `weftctl demo-app` answering as `service` on `listen`, inside the pod.
fn listener(pod: &PodNet, listen: &str, service: &str) -> KillOnDrop {
    KillOnDrop(
        pod.command(&bins().weftctl)
            .args([
                "demo-app",
                "--listen",
                listen,
                "--service",
                service,
                "--version",
                "v1",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("demo-app"),
    )
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `weft-proxy init <flags>` in the pod; its output, or why it failed.
fn init(pod: &PodNet, flags: &[&str]) -> Result<String, String> {
    let out = pod
        .command(&bins().proxy)
        .arg("init")
        .args(flags)
        .output()
        .expect("weft-proxy init");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

/// The pod's rules as `<backend>-save` prints them (counters and comments left out).
fn saved(pod: &PodNet, backend: &str) -> String {
    let out = pod
        .command(format!("iptables-{backend}-save"))
        .output()
        .expect("iptables-save");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            // Chain counters `[p:b]` change with traffic.
            l.split(" [").next().unwrap_or(l).to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// An HTTP/1.0 GET from inside the pod as `uid`: the response, or why not.
fn get_as(pod: &PodNet, uid: u32, host: &str, port: u16) -> Result<String, String> {
    http_get_in_as(&pod.netns, Some(uid), host, port, "/")
}

/// An HTTP/1.0 GET from the host (over the bridge).
fn get_from_host(host: &str, port: u16) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(
        &format!("{host}:{port}").parse().expect("address"),
        Duration::from_secs(3),
    )
    .map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut text = String::new();
    stream
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    Ok(text)
}

fn served_by(response: &str) -> Option<&str> {
    response
        .lines()
        .find_map(|l| l.strip_prefix("x-weft-service: "))
        .map(str::trim)
}

async fn capture_on(backend: &str) {
    let network = Network::create().expect("test network (needs root and iproute2)");
    let pod = network.add_pod(&format!("capture-{backend}")).expect("pod");
    let flags = ["--iptables-backend", backend, "--redirect-dns"];
    // An address on the bridge nothing answers (the pods' DNS address): only capture can
    // answer a call to it, and the call never leaves the bridge.
    let nowhere = network.dns().to_string();

    // A dry run prints the rules and programs nothing.
    let printed = init(&pod, &[&flags[..], &["--dry-run"]].concat()).expect("dry run");
    assert!(
        printed.contains("-A ISTIO_OUTPUT -j ISTIO_REDIRECT"),
        "{printed}"
    );
    assert!(!saved(&pod, backend).contains("ISTIO"));

    let out = init(&pod, &flags).expect("init");
    assert!(out.contains(&format!("({backend} backend)")), "{out}");
    let rules = saved(&pod, backend);
    for expected in [
        "-A OUTPUT -p tcp -j ISTIO_OUTPUT",
        "-A PREROUTING -p tcp -j ISTIO_INBOUND",
        "CT --zone 1",
        &format!("-d {}/32", network.dns()),
    ] {
        assert!(rules.contains(expected), "{expected} in\n{rules}");
    }
    // Idempotent: a second run leaves the same rules, not twice as many.
    init(&pod, &flags).expect("init again");
    assert_eq!(saved(&pod, backend), rules);

    let _outbound = listener(&pod, "0.0.0.0:15001", "outbound-capture");
    let _inbound = listener(&pod, "0.0.0.0:15006", "inbound-capture");
    let _health = listener(&pod, "0.0.0.0:15021", "health");

    // The app's call to any address reaches the outbound listener.
    let answer = eventually(Duration::from_secs(20), "a captured call", async || {
        get_as(&pod, 1000, &nowhere, 80).ok()
    })
    .await;
    assert_eq!(served_by(&answer), Some("outbound-capture"), "{answer}");
    // The proxy's own call (uid 1337) is not captured: nothing answers that address.
    let own = get_as(&pod, 1337, &nowhere, 80);
    assert!(own.is_err(), "uid 1337 was captured: {own:?}");

    // Inbound: a call to the app's port reaches the inbound listener; the health port is
    // excluded and reaches its own listener.
    let ip = pod.ip.to_string();
    let inbound = eventually(
        Duration::from_secs(20),
        "a captured inbound call",
        async || get_from_host(&ip, 9080).ok(),
    )
    .await;
    assert_eq!(served_by(&inbound), Some("inbound-capture"), "{inbound}");
    let health = get_from_host(&ip, 15021).expect("health port");
    assert_eq!(served_by(&health), Some("health"), "{health}");

    // Cleanup: no rule of ours is left, and the address is unreachable again.
    init(&pod, &["--iptables-backend", backend, "--cleanup"]).expect("cleanup");
    let after = saved(&pod, backend);
    assert!(!after.contains("ISTIO"), "{after}");
    let uncaptured = get_as(&pod, 1000, &nowhere, 80);
    assert!(
        uncaptured.is_err(),
        "captured after cleanup: {uncaptured:?}"
    );
}

#[tokio::test]
async fn capture_on_the_nft_backend() {
    capture_on("nft").await;
}

#[tokio::test]
async fn capture_on_the_legacy_backend() {
    capture_on("legacy").await;
}

/// `ip …` on the host, which must succeed.
fn ip(args: &[&str]) {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .expect("ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A pod with an IPv6 address (RFC 5180's benchmarking range, 2001:2::/48, the IPv6 twin of
/// 198.18.0.0/15): `weft-proxy init` finds it and programs ip6tables too. The app's IPv6
/// calls reach the outbound listener, the proxy's own do not, inbound IPv6 reaches 15006, and
/// DNS sent to an IPv6 resolver is answered by the sidecar's DNS proxy on `[::1]:15053`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_is_captured_too_and_its_dns_reaches_the_proxy_on_ipv6_loopback() {
    let network = Network::create().expect("test network (needs root and iproute2)");
    let pod = network.add_pod("capture-v6").expect("pod");
    let (n, host) = (network.index(), pod.ip.octets()[3]);
    let gateway6 = format!("2001:2:0:{n:x}::1");
    let pod6 = format!("2001:2:0:{n:x}::{host:x}");
    // Addresses nothing answers on the bridge: only capture can answer them.
    let nowhere6 = format!("2001:2:0:{n:x}::fe");
    let resolver6 = format!("2001:2:0:{n:x}::fd");
    ip(&[
        "addr",
        "add",
        &format!("{gateway6}/64"),
        "dev",
        &network.bridge(),
        "nodad",
    ]);
    ip(&[
        "-n",
        &pod.netns,
        "addr",
        "add",
        &format!("{pod6}/64"),
        "dev",
        "eth0",
        "nodad",
    ]);
    ip(&[
        "-n", &pod.netns, "-6", "route", "add", "default", "via", &gateway6,
    ]);
    pod.set_resolv_conf(&format!("nameserver {resolver6}\n"))
        .expect("resolv.conf");

    let flags = ["--iptables-backend", "nft", "--redirect-dns"];
    init(&pod, &flags).expect("init");
    let out = pod
        .command("ip6tables-nft-save")
        .output()
        .expect("ip6tables-nft-save");
    let rules6 = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "-A OUTPUT -p tcp -j ISTIO_OUTPUT",
        "-A PREROUTING -p tcp -j ISTIO_INBOUND",
        &format!("-d {resolver6}/128"),
    ] {
        assert!(rules6.contains(expected), "{expected} in\n{rules6}");
    }

    let _outbound = listener(&pod, "[::]:15001", "outbound-capture");
    let _inbound = listener(&pod, "[::]:15006", "inbound-capture");
    let answer = eventually(
        Duration::from_secs(20),
        "a captured IPv6 call",
        async || get_as(&pod, 1000, &nowhere6, 80).ok(),
    )
    .await;
    assert_eq!(served_by(&answer), Some("outbound-capture"), "{answer}");
    let own = get_as(&pod, 1337, &nowhere6, 80);
    assert!(own.is_err(), "uid 1337 was captured: {own:?}");
    let inbound = eventually(
        Duration::from_secs(20),
        "a captured inbound IPv6 call",
        async || get_from_host(&format!("[{pod6}]"), 9080).ok(),
    )
    .await;
    assert_eq!(served_by(&inbound), Some("inbound-capture"), "{inbound}");

    // DNS: the sidecar (uid 1337, DNS capture on, no control plane needed for names it
    // forwards) answers on [::1]:15053 what the app asks the IPv6 resolver, by asking its
    // own upstream: a cluster DNS on the bridge's IPv4 gateway that knows one Service.
    let mut upstream = weft_e2e::node::cluster_dns::ClusterDns::start(network.gateway())
        .await
        .expect("upstream DNS");
    let service: k8s_openapi::api::core::v1::Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"clusterIP": "198.19.0.9", "ports": [{"port": 80}]},
    }))
    .expect("service");
    upstream.update(&[service]);
    let proxy_resolv = pod.dir.join("proxy-resolv.conf");
    std::fs::write(&proxy_resolv, format!("nameserver {}\n", network.gateway())).expect("write");
    let _proxy = KillOnDrop(
        weft_e2e::node::net::command_in(&pod.netns, Some(1337))
            .arg(&bins().proxy)
            .args([
                "--dns-capture",
                "true",
                "--xds-address",
                "http://127.0.0.1:9",
            ])
            .args([
                "--instance-ip",
                "127.0.0.1",
                "--admin-port",
                "0",
                "--health-port",
                "0",
            ])
            .arg("--resolv-conf")
            .arg(&proxy_resolv)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("weft-proxy"),
    );
    eventually(
        Duration::from_secs(20),
        "web.default.svc.cluster.local through the DNS proxy on [::1]",
        async || {
            (weft_e2e::node::net::resolve_in_as(
                &pod.netns,
                Some(1000),
                "web.default.svc.cluster.local",
            ) == "198.19.0.9")
                .then_some(())
        },
    )
    .await;
}

#[test]
fn bad_flags_fail_with_the_flags_name_and_program_nothing() {
    let network = Network::create().expect("test network");
    let pod = network.add_pod("capture-bad").expect("pod");
    let err = init(&pod, &["-i", "10.0.0.0/99"]).expect_err("a bad range");
    assert!(
        err.contains("--istio-service-cidr: \"10.0.0.0/99\": prefix length must be 0-32"),
        "{err}"
    );
    assert!(!saved(&pod, "nft").contains("ISTIO"));
}

//! The test node's pod network (`weft_e2e::node::net`): pods in their own network namespaces
//! reach each other over the bridge by pod IP, resolve the names a test adds, and leave
//! nothing behind (Service chains included), also when their owner died without cleaning up.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use weft_e2e::bins;
use weft_e2e::node::net::{Network, http_get_in};
use weft_e2e::node::services;

/// `http_get_in` from inside `pod`.
fn fetch_from(pod: &weft_e2e::node::net::PodNet, host: &str, port: u16) -> Result<String, String> {
    http_get_in(&pod.netns, host, port, "/")
}

fn ip_output(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("running ip");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn pods_talk_over_the_bridge_and_leave_nothing_behind() {
    let network = Network::create().expect("creating the test network (needs root and iproute2)");
    let server = network.add_pod("reviews-v1").expect("pod a");
    let client = network.add_pod("productpage-v1").expect("pod b");
    assert_ne!(server.ip, client.ip);
    assert!(server.ip.octets()[..2] == [198, 18], "{}", server.ip);
    client.add_host("reviews", server.ip).expect("hosts entry");

    // The app listens on the pod's own address, inside its namespace.
    let listen = format!("{}:9080", server.ip);
    let mut app = server
        .command(&bins().weftctl)
        .args([
            "demo-app",
            "--listen",
            &listen,
            "--service",
            "reviews",
            "--version",
            "v1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting demo-app in the pod");

    // By pod IP, from the other pod, over the bridge.
    let deadline = Instant::now() + Duration::from_secs(20);
    let reply = loop {
        match fetch_from(&client, &server.ip.to_string(), 9080) {
            Ok(reply) if reply.contains("200 OK") => break reply,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "no answer from {listen} from the other pod: {other:?}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    assert!(reply.contains("reviews v1"), "{reply}");

    // By the name the test added to the client pod's hosts file.
    let out = client
        .command("getent")
        .args(["hosts", "reviews"])
        .output()
        .expect("getent");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with(&server.ip.to_string()),
        "reviews resolves to {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    let reply = fetch_from(&client, "reviews", 9080).expect("fetch by name");
    assert!(reply.contains("reviews v1"), "{reply}");

    // The pod's resolver points at the address nothing serves.
    let resolv = client
        .command("cat")
        .arg("/etc/resolv.conf")
        .output()
        .expect("cat");
    assert_eq!(
        String::from_utf8_lossy(&resolv.stdout),
        format!("nameserver {}\n", network.dns())
    );
    // The pod's own loopback is not the host's: nothing listens on the app port there.
    assert!(fetch_from(&client, "127.0.0.1", 9080).is_err());

    let _ = app.kill();
    let _ = app.wait();
    let (bridge, server_ns, client_ns) =
        (network.bridge(), server.netns.clone(), client.netns.clone());
    drop(server);
    assert!(!ip_output(&["netns", "list"]).contains(&format!("{server_ns} ")));
    drop(client);
    drop(network);
    let namespaces = ip_output(&["netns", "list"]);
    assert!(
        !namespaces
            .lines()
            .any(|l| l.starts_with(&format!("{client_ns} ")) || l == client_ns),
        "{namespaces}"
    );
    assert!(
        !std::path::Path::new("/sys/class/net")
            .join(&bridge)
            .exists()
    );
    assert!(!std::path::Path::new("/etc/netns").join(&client_ns).exists());
}

#[test]
fn a_network_whose_owner_died_is_removed_by_the_next_one() {
    let network = Network::create().expect("creating the test network (needs root and iproute2)");
    let pod = network.add_pod("orphan").expect("pod");
    services::install(&network).expect("the network's Service chains");
    let index = network.index();
    assert!(!services::saved_rules(index).is_empty());
    let (bridge, netns) = (network.bridge(), pod.netns.clone());
    let record = format!("/run/weft-test-net/{}", network.gateway().octets()[2]);
    // Pretend the owner was a process that has exited since: its pid is not running now.
    let mut gone = Command::new("true").spawn().expect("true");
    let dead_pid = gone.id();
    gone.wait().expect("wait");
    std::fs::write(&record, format!("{dead_pid} 1")).expect("rewrite the record");
    std::mem::forget(pod);
    std::mem::forget(network);

    let next = Network::create().expect("a new network");
    assert!(
        !std::path::Path::new("/sys/class/net")
            .join(&bridge)
            .exists()
            || next.bridge() == bridge,
        "the orphan bridge {bridge} is still there"
    );
    let namespaces = ip_output(&["netns", "list"]);
    assert!(
        !namespaces
            .lines()
            .any(|l| l.split_whitespace().next() == Some(netns.as_str())),
        "the orphan namespace {netns} is still there: {namespaces}"
    );
    assert!(!std::path::Path::new("/etc/netns").join(&netns).exists());
    // Its Service chains and jumps went with it (the next network may have taken its
    // index, but sets up no chains of its own here).
    let rules = services::saved_rules(index);
    assert!(
        rules.is_empty(),
        "the orphan's Service rules are still there:\n{rules}"
    );
}

//! The DNS server over real sockets on 127.0.0.1: local answers, forwarding to fake
//! upstream servers started here, truncation, failing upstreams, limits and bad packets.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;
use weft_dns::{DnsConfig, DnsServer, DnsStats, NameEntry, NameTable, ResolvConf};

const WAIT: Duration = Duration::from_secs(5);

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn mesh_table(extra: &[NameEntry]) -> NameTable {
    let mut entries = vec![NameEntry {
        hostname: "reviews.default.svc.cluster.local".to_owned(),
        addresses: vec![ip("10.0.0.1"), ip("fd00::1")],
        alt_names: vec!["reviews".to_owned(), "reviews.default".to_owned()],
    }];
    entries.extend_from_slice(extra);
    NameTable::new(entries).expect("valid table")
}

fn resolv(upstreams: &[SocketAddr]) -> ResolvConf {
    ResolvConf {
        nameservers: upstreams.to_vec(),
        search: vec![
            "default.svc.cluster.local".to_owned(),
            "svc.cluster.local".to_owned(),
        ],
        ndots: 5,
    }
}

fn fast_config() -> DnsConfig {
    DnsConfig {
        upstream_timeout: Duration::from_millis(300),
        forward_timeout: Duration::from_secs(3),
        shutdown_grace: Duration::from_millis(100),
        ..DnsConfig::default()
    }
}

struct Running {
    addr: SocketAddr,
    stats: DnsStats,
    table: watch::Sender<Arc<NameTable>>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

async fn start(table: NameTable, resolv: ResolvConf, config: DnsConfig) -> Running {
    let (tx, rx) = watch::channel(Arc::new(table));
    let server = DnsServer::bind("127.0.0.1:0".parse().expect("addr"), rx, &resolv, config)
        .await
        .expect("bind");
    let (addr, stats) = (server.local_addr(), server.stats());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server.run(shutdown.clone()));
    Running {
        addr,
        stats,
        table: tx,
        shutdown,
        task,
    }
}

fn query(name: &str, rtype: RecordType, id: u16) -> Vec<u8> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).expect("name"), rtype));
    message.to_vec().expect("encode")
}

async fn ask_udp(server: SocketAddr, bytes: &[u8]) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    socket.send_to(bytes, server).await.expect("send");
    let mut buf = vec![0; 65535];
    let (len, _) = timeout(WAIT, socket.recv_from(&mut buf))
        .await
        .expect("an answer in time")
        .expect("recv");
    Message::from_vec(&buf[..len]).expect("a DNS message")
}

async fn ask_tcp(server: SocketAddr, bytes: &[u8]) -> Message {
    let mut stream = TcpStream::connect(server).await.expect("connect");
    write_frame(&mut stream, bytes).await;
    let answer = timeout(WAIT, read_frame(&mut stream))
        .await
        .expect("an answer in time");
    Message::from_vec(&answer).expect("a DNS message")
}

async fn write_frame(stream: &mut TcpStream, bytes: &[u8]) {
    let len = u16::try_from(bytes.len()).expect("fits a frame");
    stream.write_all(&len.to_be_bytes()).await.expect("write");
    stream.write_all(bytes).await.expect("write");
}

async fn read_frame(stream: &mut TcpStream) -> Vec<u8> {
    let len = stream.read_u16().await.expect("frame length");
    let mut buf = vec![0; usize::from(len)];
    stream.read_exact(&mut buf).await.expect("frame");
    buf
}

fn addresses(answer: &Message) -> Vec<IpAddr> {
    answer
        .answers
        .iter()
        .filter_map(|record| match record.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
            _ => None,
        })
        .collect()
}

async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Udp,
    Tcp,
}

/// How a fake upstream behaves.
#[derive(Debug, Clone, Copy)]
enum Behaviour {
    /// Answers every A query with this address, over UDP and TCP.
    Answer(Ipv4Addr),
    /// Answers over UDP with TC set and no records; the full answer only over TCP.
    TruncateUdp(Ipv4Addr),
    /// Reads nothing and never answers.
    Silent,
}

/// A DNS server on 127.0.0.1 that reports each query it gets (transport, ID).
struct FakeUpstream {
    addr: SocketAddr,
    seen: mpsc::UnboundedReceiver<(Via, u16)>,
    _udp: Arc<UdpSocket>,
}

impl FakeUpstream {
    async fn start(behaviour: Behaviour) -> Self {
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind UDP");
            let addr = udp.local_addr().expect("addr");
            if let Ok(tcp) = TcpListener::bind(addr).await {
                break (Arc::new(udp), tcp);
            }
        };
        let addr = udp.local_addr().expect("addr");
        let (tx, seen) = mpsc::unbounded_channel();
        if !matches!(behaviour, Behaviour::Silent) {
            let (socket, udp_tx) = (udp.clone(), tx.clone());
            tokio::spawn(async move {
                let mut buf = vec![0; 65535];
                while let Ok((len, peer)) = socket.recv_from(&mut buf).await {
                    let query = Message::from_vec(&buf[..len]).expect("fake upstream: a query");
                    let _ = udp_tx.send((Via::Udp, query.metadata.id));
                    let reply = answer(&query, behaviour, Via::Udp);
                    socket.send_to(&reply, peer).await.expect("send");
                }
            });
            tokio::spawn(async move {
                while let Ok((mut stream, _)) = tcp.accept().await {
                    let query = read_frame(&mut stream).await;
                    let query = Message::from_vec(&query).expect("fake upstream: a query");
                    let _ = tx.send((Via::Tcp, query.metadata.id));
                    write_frame(&mut stream, &answer(&query, behaviour, Via::Tcp)).await;
                }
            });
        }
        Self {
            addr,
            seen,
            _udp: udp,
        }
    }

    async fn next_seen(&mut self) -> (Via, u16) {
        timeout(WAIT, self.seen.recv())
            .await
            .expect("the upstream saw a query in time")
            .expect("upstream running")
    }
}

fn answer(query: &Message, behaviour: Behaviour, via: Via) -> Vec<u8> {
    let mut reply = Message::response(query.metadata.id, OpCode::Query);
    reply.metadata.recursion_available = true;
    reply.queries = query.queries.clone();
    let name = query.queries[0].name().clone();
    match behaviour {
        Behaviour::TruncateUdp(_) if via == Via::Udp => reply.metadata.truncation = true,
        Behaviour::Answer(address) | Behaviour::TruncateUdp(address) => {
            reply.add_answer(Record::from_rdata(name, 60, RData::A(A(address))));
        }
        Behaviour::Silent => unreachable!("a silent upstream answers nothing"),
    }
    reply.to_vec().expect("encode")
}

#[tokio::test]
async fn mesh_names_are_answered_locally_over_udp_and_tcp() {
    let upstream = FakeUpstream::start(Behaviour::Answer(Ipv4Addr::new(192, 0, 2, 99))).await;
    let dns = start(mesh_table(&[]), resolv(&[upstream.addr]), fast_config()).await;

    let answer = ask_udp(dns.addr, &query("reviews.", RecordType::A, 0x1111)).await;
    assert_eq!(answer.metadata.id, 0x1111);
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert!(answer.metadata.authoritative);
    assert_eq!(addresses(&answer), vec![ip("10.0.0.1")]);

    let answer = ask_tcp(
        dns.addr,
        &query(
            "REVIEWS.default.svc.cluster.local.",
            RecordType::AAAA,
            0x2222,
        ),
    )
    .await;
    assert_eq!(answer.metadata.id, 0x2222);
    assert_eq!(addresses(&answer), vec![ip("fd00::1")]);

    // A resolver's search expansion: a CNAME to the real name, then its addresses.
    let expanded = "reviews.default.svc.cluster.local.default.svc.cluster.local.";
    let answer = ask_udp(dns.addr, &query(expanded, RecordType::A, 3)).await;
    let real = Name::from_ascii("reviews.default.svc.cluster.local.").expect("name");
    assert_eq!(answer.answers[0].data, RData::CNAME(CNAME(real.clone())));
    assert_eq!(answer.answers[1].name, real);
    assert_eq!(addresses(&answer), vec![ip("10.0.0.1")]);

    assert_eq!(dns.stats.snapshot().answered_locally, 3);
    assert_eq!(dns.stats.snapshot().forwarded, 0);
}

#[tokio::test]
async fn a_known_name_without_the_family_asked_is_nodata_not_forwarded() {
    let upstream = FakeUpstream::start(Behaviour::Answer(Ipv4Addr::new(192, 0, 2, 99))).await;
    let table = mesh_table(&[NameEntry {
        hostname: "v4only.example.com".to_owned(),
        addresses: vec![ip("10.0.0.7")],
        alt_names: vec![],
    }]);
    let dns = start(table, resolv(&[upstream.addr]), fast_config()).await;
    let answer = ask_udp(dns.addr, &query("v4only.example.com.", RecordType::AAAA, 5)).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert!(answer.answers.is_empty());
    assert_eq!(dns.stats.snapshot().forwarded, 0);
}

#[tokio::test]
async fn other_names_are_forwarded_with_the_client_id_kept() {
    let mut upstream = FakeUpstream::start(Behaviour::Answer(Ipv4Addr::new(192, 0, 2, 7))).await;
    let dns = start(mesh_table(&[]), resolv(&[upstream.addr]), fast_config()).await;

    let answer = ask_udp(dns.addr, &query("www.example.org.", RecordType::A, 0xBEEF)).await;
    assert_eq!(answer.metadata.id, 0xBEEF);
    assert_eq!(answer.metadata.message_type, MessageType::Response);
    assert_eq!(addresses(&answer), vec![ip("192.0.2.7")]);
    assert_eq!(upstream.next_seen().await.0, Via::Udp);

    // Over TCP from the client; other types of mesh names are forwarded too.
    let answer = ask_tcp(dns.addr, &query("reviews.", RecordType::TXT, 0xCAFE)).await;
    assert_eq!(answer.metadata.id, 0xCAFE);
    assert_eq!(upstream.next_seen().await.0, Via::Udp);

    let stats = dns.stats.snapshot();
    assert_eq!(
        (stats.forwarded, stats.failed, stats.answered_locally),
        (2, 0, 0)
    );
}

#[tokio::test]
async fn a_new_table_applies_to_the_next_query() {
    let upstream = FakeUpstream::start(Behaviour::Answer(Ipv4Addr::new(192, 0, 2, 7))).await;
    let dns = start(NameTable::empty(), resolv(&[upstream.addr]), fast_config()).await;
    let answer = ask_udp(dns.addr, &query("reviews.", RecordType::A, 1)).await;
    assert_eq!(
        addresses(&answer),
        vec![ip("192.0.2.7")],
        "forwarded before"
    );
    dns.table.send_replace(Arc::new(mesh_table(&[])));
    let answer = ask_udp(dns.addr, &query("reviews.", RecordType::A, 2)).await;
    assert_eq!(addresses(&answer), vec![ip("10.0.0.1")], "local after");
}

#[tokio::test]
async fn a_truncated_udp_answer_is_asked_again_over_tcp() {
    let mut upstream =
        FakeUpstream::start(Behaviour::TruncateUdp(Ipv4Addr::new(192, 0, 2, 8))).await;
    let dns = start(mesh_table(&[]), resolv(&[upstream.addr]), fast_config()).await;
    let answer = ask_udp(dns.addr, &query("big.example.org.", RecordType::A, 77)).await;
    assert_eq!(answer.metadata.id, 77);
    assert!(!answer.metadata.truncation);
    assert_eq!(addresses(&answer), vec![ip("192.0.2.8")]);
    let (first, udp_id) = upstream.next_seen().await;
    let (second, tcp_id) = upstream.next_seen().await;
    assert_eq!((first, second), (Via::Udp, Via::Tcp));
    assert_eq!(udp_id, tcp_id, "the same query, retried");
}

#[tokio::test]
async fn a_silent_upstream_is_skipped_and_all_silent_is_servfail() {
    let silent = FakeUpstream::start(Behaviour::Silent).await;
    let mut working = FakeUpstream::start(Behaviour::Answer(Ipv4Addr::new(192, 0, 2, 9))).await;
    let dns = start(
        mesh_table(&[]),
        resolv(&[silent.addr, working.addr]),
        fast_config(),
    )
    .await;
    let answer = ask_udp(dns.addr, &query("x.example.org.", RecordType::A, 10)).await;
    assert_eq!(addresses(&answer), vec![ip("192.0.2.9")]);
    assert_eq!(working.next_seen().await.0, Via::Udp);

    let other = FakeUpstream::start(Behaviour::Silent).await;
    let dns = start(
        mesh_table(&[]),
        resolv(&[silent.addr, other.addr]),
        fast_config(),
    )
    .await;
    let answer = ask_tcp(dns.addr, &query("x.example.org.", RecordType::A, 11)).await;
    assert_eq!(answer.metadata.id, 11);
    assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(answer.queries.len(), 1, "the question is echoed");
    let stats = dns.stats.snapshot();
    assert_eq!((stats.forwarded, stats.failed), (1, 1));
}

#[tokio::test]
async fn beyond_the_in_flight_limit_queries_get_servfail() {
    let silent = FakeUpstream::start(Behaviour::Silent).await;
    let config = DnsConfig {
        max_in_flight: 1,
        upstream_timeout: WAIT,
        ..fast_config()
    };
    let dns = start(mesh_table(&[]), resolv(&[silent.addr]), config).await;
    let client = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    client
        .send_to(&query("slow.example.org.", RecordType::A, 1), dns.addr)
        .await
        .expect("send");
    eventually("the first query in flight", || {
        dns.stats.snapshot().forwarded == 1
    })
    .await;
    let answer = ask_udp(dns.addr, &query("next.example.org.", RecordType::A, 2)).await;
    assert_eq!(answer.metadata.id, 2);
    assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(dns.stats.snapshot().rejected, 1);
    // Mesh names are still answered: they need no upstream.
    let answer = ask_udp(dns.addr, &query("reviews.", RecordType::A, 3)).await;
    assert_eq!(addresses(&answer), vec![ip("10.0.0.1")]);
}

#[tokio::test]
async fn malformed_packets_get_formerr_or_are_dropped() {
    let upstream = FakeUpstream::start(Behaviour::Answer(Ipv4Addr::new(192, 0, 2, 1))).await;
    let dns = start(mesh_table(&[]), resolv(&[upstream.addr]), fast_config()).await;

    // Shorter than a header: dropped.
    let client = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    client
        .send_to(&[0xde, 0xad, 0xbe], dns.addr)
        .await
        .expect("send");
    eventually("the short packet counted", || {
        dns.stats.snapshot().malformed == 1
    })
    .await;

    // A header, then a question cut short: FORMERR with the client's ID.
    let mut bytes = query("reviews.default.svc.cluster.local.", RecordType::A, 0x4242);
    bytes.truncate(20);
    let answer = ask_udp(dns.addr, &bytes).await;
    assert_eq!(answer.metadata.id, 0x4242);
    assert_eq!(answer.metadata.response_code, ResponseCode::FormErr);
    let answer = ask_tcp(dns.addr, &bytes).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::FormErr);

    // Longer than the limit: FORMERR too.
    let mut long = query("reviews.", RecordType::A, 0x4343);
    long.resize(5000, 0);
    let answer = ask_udp(dns.addr, &long).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::FormErr);

    // The server still answers.
    let answer = ask_udp(dns.addr, &query("reviews.", RecordType::A, 1)).await;
    assert_eq!(addresses(&answer), vec![ip("10.0.0.1")]);
    assert_eq!(dns.stats.snapshot().malformed, 4);
}

#[tokio::test]
async fn a_local_answer_too_long_for_udp_is_truncated_and_whole_over_tcp() {
    let upstream = FakeUpstream::start(Behaviour::Answer(Ipv4Addr::new(192, 0, 2, 1))).await;
    let many: Vec<IpAddr> = (1..=100)
        .map(|i| IpAddr::V4(Ipv4Addr::new(10, 1, 0, i)))
        .collect();
    let table = mesh_table(&[NameEntry {
        hostname: "headless.default.svc.cluster.local".to_owned(),
        addresses: many,
        alt_names: vec![],
    }]);
    let dns = start(table, resolv(&[upstream.addr]), fast_config()).await;
    let name = "headless.default.svc.cluster.local.";
    let answer = ask_udp(dns.addr, &query(name, RecordType::A, 1)).await;
    assert!(answer.metadata.truncation, "1,600+ bytes do not fit 512");
    assert!(answer.answers.is_empty());
    let answer = ask_tcp(dns.addr, &query(name, RecordType::A, 2)).await;
    assert!(!answer.metadata.truncation);
    assert_eq!(addresses(&answer).len(), 100);
}

#[tokio::test]
async fn shutdown_stops_the_server_with_a_forward_in_flight() {
    let silent = FakeUpstream::start(Behaviour::Silent).await;
    let config = DnsConfig {
        upstream_timeout: WAIT * 4,
        forward_timeout: WAIT * 4,
        ..fast_config()
    };
    let dns = start(mesh_table(&[]), resolv(&[silent.addr]), config).await;
    let client = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    client
        .send_to(&query("slow.example.org.", RecordType::A, 1), dns.addr)
        .await
        .expect("send");
    eventually("the query in flight", || {
        dns.stats.snapshot().forwarded == 1
    })
    .await;
    dns.shutdown.cancel();
    timeout(WAIT, dns.task)
        .await
        .expect("run returns within the grace period")
        .expect("no panic");
    // Nothing listens any more.
    assert!(TcpStream::connect(dns.addr).await.is_err());
}

#[tokio::test]
async fn binding_without_nameservers_is_an_error() {
    let (_tx, rx) = watch::channel(Arc::new(NameTable::empty()));
    let err = DnsServer::bind(
        "127.0.0.1:0".parse().expect("addr"),
        rx,
        &resolv(&[]),
        DnsConfig::default(),
    )
    .await
    .expect_err("no upstream");
    assert!(err.to_string().contains("no nameserver"), "{err}");
}

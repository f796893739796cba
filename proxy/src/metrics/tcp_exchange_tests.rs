use std::collections::BTreeMap;

use super::*;
use crate::metrics::WorkloadLabels;

fn me() -> WorkloadLabels {
    let labels: BTreeMap<String, String> = [("app", "reviews"), ("version", "v2")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    WorkloadLabels::from_pod("reviews-v2", "default", &labels, "Kubernetes", "reviews")
}

fn frame() -> Bytes {
    encode(
        "sidecar~10.0.0.1~reviews-v2-abc.default~default.svc.cluster.local",
        exchange::own_metadata("reviews-v2-abc", &me()),
    )
}

/// A frame around `payload`, with the magic `magic`.
fn raw(magic: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = magic.to_be_bytes().to_vec();
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

#[test]
fn a_frame_decodes_to_the_workload_that_wrote_it() {
    let frame = frame();
    assert_eq!(
        &frame[..4],
        &[0x3D, 0x23, 0x04, 0x67],
        "Istio's magic, big endian"
    );
    let length = u32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]) as usize;
    assert_eq!(length, frame.len() - HEADER_LEN);
    // Istio's layout inside: an Any of a Struct keyed by the HTTP headers' names.
    let any = Any::decode(&frame[HEADER_LEN..]).unwrap();
    assert_eq!(any.type_url, "type.googleapis.com/google.protobuf.Struct");
    let data = Struct::decode(any.value.as_slice()).unwrap();
    assert!(data.fields.contains_key("x-envoy-peer-metadata"));
    assert!(data.fields.contains_key("x-envoy-peer-metadata-id"));

    let mut bytes = frame.to_vec();
    bytes.extend_from_slice(b"app bytes");
    let Parsed::Frame { consumed, peer } = parse(&bytes) else {
        panic!("a whole frame");
    };
    assert_eq!(consumed, frame.len(), "the app's bytes are not the frame's");
    let peer = peer.unwrap();
    assert_eq!(peer.labels(), &me());
    assert_eq!(
        peer.spiffe_id("cluster.local").as_deref(),
        Some("spiffe://cluster.local/ns/default/sa/reviews")
    );
}

#[test]
fn a_truncated_frame_needs_more_bytes() {
    let frame = frame();
    for cut in [0, 3, HEADER_LEN - 1, HEADER_LEN, frame.len() - 1] {
        assert!(
            matches!(parse(&frame[..cut]), Parsed::Incomplete),
            "cut at {cut}"
        );
    }
}

#[test]
fn without_the_magic_nothing_is_consumed() {
    // The peer's app talking: Istio passes every byte on.
    let Parsed::Frame { consumed, peer } = parse(b"GET / HTTP/1.1\r\n") else {
        panic!("eight bytes are enough to tell");
    };
    assert_eq!(consumed, 0);
    assert!(matches!(peer, Err(FrameError::Magic)));
    let Parsed::Frame { consumed, .. } = parse(&raw(0x3D23_0468, b"")) else {
        panic!()
    };
    assert_eq!(consumed, 0);
}

#[test]
fn oversized_and_garbled_frames_consume_only_their_header() {
    let mut huge = MAGIC.to_be_bytes().to_vec();
    huge.extend_from_slice(&((MAX_PAYLOAD + 1) as u32).to_be_bytes());
    let Parsed::Frame { consumed, peer } = parse(&huge) else {
        panic!("refused at once, not waited for");
    };
    assert_eq!(consumed, HEADER_LEN);
    assert!(matches!(peer, Err(FrameError::TooLong(n)) if n == MAX_PAYLOAD + 1));

    // Not an Any: Istio drains the header and passes the payload on.
    let Parsed::Frame { consumed, peer } = parse(&raw(MAGIC, &[0xff, 0xff, 0xff])) else {
        panic!()
    };
    assert_eq!(consumed, HEADER_LEN);
    assert!(matches!(peer, Err(FrameError::Any(_))), "{peer:?}");

    // An Any of something else, or a Struct without the metadata: consumed, peer unknown.
    let other = Any {
        type_url: "type.googleapis.com/google.protobuf.Duration".into(),
        value: vec![],
    }
    .encode_to_vec();
    let Parsed::Frame { consumed, peer } = parse(&raw(MAGIC, &other)) else {
        panic!()
    };
    assert_eq!(consumed, HEADER_LEN + other.len());
    assert!(matches!(peer, Err(FrameError::Type(_))), "{peer:?}");
    let empty = Any {
        type_url: STRUCT_TYPE_URL.into(),
        value: Struct::default().encode_to_vec(),
    }
    .encode_to_vec();
    let Parsed::Frame { peer, .. } = parse(&raw(MAGIC, &empty)) else {
        panic!()
    };
    assert!(matches!(peer, Err(FrameError::NoMetadata)), "{peer:?}");
}

#[tokio::test]
async fn both_sides_exchange_and_keep_the_apps_bytes() {
    let (mut a, mut b) = tokio::io::duplex(64 * 1024);
    let theirs = frame();
    let peer_side = tokio::spawn(async move {
        // The peer writes its frame and its first app bytes at once.
        let mut first = theirs.to_vec();
        first.extend_from_slice(b"hello");
        b.write_all(&first).await.unwrap();
        let mut ours = vec![0u8; 5];
        b.read_exact(&mut ours).await.unwrap();
        ours
    });
    let got = exchange(&mut a, b"ours!", TIMEOUT).await;
    assert_eq!(got.peer.unwrap().labels(), &me());
    assert_eq!(
        &got.leftover[..],
        b"hello",
        "the app's bytes, kept for the app"
    );
    assert_eq!(peer_side.await.unwrap(), b"ours!");

    let mut prefixed = Prefixed::new(got.leftover, a);
    let mut read = [0u8; 5];
    prefixed.read_exact(&mut read).await.unwrap();
    assert_eq!(&read, b"hello");
}

#[tokio::test(start_paused = true)]
async fn a_silent_peer_is_unknown_after_the_deadline_and_loses_nothing() {
    let (mut a, mut b) = tokio::io::duplex(1024);
    b.write_all(b"abc").await.unwrap();
    let got = exchange(&mut a, b"ours", TIMEOUT).await;
    assert!(
        matches!(got.peer, Err(FrameError::Timeout)),
        "{:?}",
        got.peer
    );
    assert_eq!(&got.leftover[..], b"abc");

    // A peer that stops sending first: unknown, its bytes kept.
    let (mut a, mut b) = tokio::io::duplex(1024);
    b.write_all(b"xy").await.unwrap();
    b.shutdown().await.unwrap();
    let got = exchange(&mut a, b"ours", TIMEOUT).await;
    assert!(
        matches!(got.peer, Err(FrameError::Closed)),
        "{:?}",
        got.peer
    );
    assert_eq!(&got.leftover[..], b"xy");
}

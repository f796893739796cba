//! Trace context on the wire: W3C `traceparent` and Zipkin's B3 (`b3`, `x-b3-*`) read from a
//! request, and written back with this proxy's span as the parent of the next hop.
//!
//! Incoming, `traceparent` wins over `b3`, which wins over the `x-b3-*` headers; a header that
//! does not parse is ignored (a new trace starts), as Envoy does. Outgoing, `traceparent` and
//! the `x-b3-*` headers are always written (applications that forward either keep the trace),
//! `b3` only where the request had it; `tracestate` travels unchanged.

use http::{HeaderMap, HeaderName, HeaderValue};

pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub const B3: HeaderName = HeaderName::from_static("b3");
pub const B3_TRACE_ID: HeaderName = HeaderName::from_static("x-b3-traceid");
pub const B3_SPAN_ID: HeaderName = HeaderName::from_static("x-b3-spanid");
pub const B3_PARENT_SPAN_ID: HeaderName = HeaderName::from_static("x-b3-parentspanid");
pub const B3_SAMPLED: HeaderName = HeaderName::from_static("x-b3-sampled");
pub const B3_FLAGS: HeaderName = HeaderName::from_static("x-b3-flags");

pub type TraceId = [u8; 16];
pub type SpanId = [u8; 8];

/// What a request says about its trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Incoming {
    /// The caller's trace and span.
    pub parent: Option<(TraceId, SpanId)>,
    /// The caller's sampling decision, when it made one.
    pub sampled: Option<bool>,
}

/// Reads a request's trace context.
pub fn extract(headers: &HeaderMap) -> Incoming {
    if let Some(found) = headers
        .get(&TRACEPARENT)
        .and_then(|v| traceparent(v.as_bytes()))
    {
        return found;
    }
    if let Some(found) = headers.get(&B3).and_then(|v| b3_single(v.as_bytes())) {
        return found;
    }
    b3_multi(headers)
}

/// Writes the context the next hop continues: `trace`, with `span` as its parent.
pub fn inject(
    headers: &mut HeaderMap,
    trace: &TraceId,
    span: &SpanId,
    parent: Option<&SpanId>,
    sampled: bool,
) {
    let mut buf = [0u8; 55];
    buf[..3].copy_from_slice(b"00-");
    hex(trace, &mut buf[3..35]);
    buf[35] = b'-';
    hex(span, &mut buf[36..52]);
    buf[52..].copy_from_slice(if sampled { b"-01" } else { b"-00" });
    headers.insert(TRACEPARENT, value(&buf));
    let mut trace_hex = [0u8; 32];
    hex(trace, &mut trace_hex);
    let mut span_hex = [0u8; 16];
    hex(span, &mut span_hex);
    headers.insert(B3_TRACE_ID, value(&trace_hex));
    headers.insert(B3_SPAN_ID, value(&span_hex));
    match parent {
        Some(parent) => {
            let mut parent_hex = [0u8; 16];
            hex(parent, &mut parent_hex);
            headers.insert(B3_PARENT_SPAN_ID, value(&parent_hex));
        }
        None => drop(headers.remove(&B3_PARENT_SPAN_ID)),
    }
    headers.insert(
        B3_SAMPLED,
        HeaderValue::from_static(if sampled { "1" } else { "0" }),
    );
    // The debug flag was read into the decision; the next hop gets the decision.
    headers.remove(&B3_FLAGS);
    if headers.contains_key(&B3) {
        let mut single = [0u8; 51];
        single[..32].copy_from_slice(&trace_hex);
        single[32] = b'-';
        single[33..49].copy_from_slice(&span_hex);
        single[49..].copy_from_slice(if sampled { b"-1" } else { b"-0" });
        headers.insert(B3, value(&single));
    }
}

fn value(bytes: &[u8]) -> HeaderValue {
    // Hex digits and dashes only: always a valid header value.
    HeaderValue::from_bytes(bytes).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

fn hex(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
    }
}

fn unhex<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// A trace id of 16 or 32 hex digits (B3 allows 64-bit ids: left-padded with zeros).
fn trace_id(text: &[u8]) -> Option<TraceId> {
    let id = match text.len() {
        32 => unhex::<16>(text)?,
        16 => {
            let low = unhex::<8>(text)?;
            let mut id = [0u8; 16];
            id[8..].copy_from_slice(&low);
            id
        }
        _ => return None,
    };
    (id != [0; 16]).then_some(id)
}

fn span_id(text: &[u8]) -> Option<SpanId> {
    unhex::<8>(text).filter(|id| *id != [0; 8])
}

/// `version-traceid-parentid-flags` (W3C Trace Context); versions after 00 may append fields.
fn traceparent(v: &[u8]) -> Option<Incoming> {
    if v.len() < 55 || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let version = unhex::<1>(&v[..2])?[0];
    if version == 0xff || (version == 0 && v.len() != 55) || (v.len() > 55 && v[55] != b'-') {
        return None;
    }
    let trace = unhex::<16>(&v[3..35]).filter(|id| *id != [0; 16])?;
    let span = span_id(&v[36..52])?;
    let flags = unhex::<1>(&v[53..55])?[0];
    Some(Incoming {
        parent: Some((trace, span)),
        sampled: Some(flags & 1 == 1),
    })
}

fn b3_sampling(v: &[u8]) -> Option<bool> {
    match v {
        b"1" | b"d" | b"true" => Some(true),
        b"0" | b"false" => Some(false),
        _ => None,
    }
}

/// `b3: {traceid}-{spanid}[-{sampling}[-{parentspanid}]]`, or a decision alone (`0`, `1`, `d`).
fn b3_single(v: &[u8]) -> Option<Incoming> {
    let mut parts = v.split(|c| *c == b'-');
    let first = parts.next()?;
    let Some(second) = parts.next() else {
        return b3_sampling(first).map(|sampled| Incoming {
            parent: None,
            sampled: Some(sampled),
        });
    };
    let trace = trace_id(first)?;
    let span = span_id(second)?;
    let sampled = match parts.next() {
        Some(s) => Some(b3_sampling(s)?),
        None => None,
    };
    Some(Incoming {
        parent: Some((trace, span)),
        sampled,
    })
}

fn b3_multi(headers: &HeaderMap) -> Incoming {
    let get = |name: &HeaderName| headers.get(name).map(HeaderValue::as_bytes);
    let debug = get(&B3_FLAGS) == Some(b"1");
    let sampled = if debug {
        Some(true)
    } else {
        get(&B3_SAMPLED).and_then(b3_sampling)
    };
    let parent = match (get(&B3_TRACE_ID), get(&B3_SPAN_ID)) {
        (Some(t), Some(s)) => trace_id(t).zip(span_id(s)),
        _ => None,
    };
    Incoming { parent, sampled }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_static(v)))
            .collect()
    }

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const SPAN: &str = "00f067aa0ba902b7";

    fn ids() -> (TraceId, SpanId) {
        (
            unhex::<16>(TRACE.as_bytes()).expect("trace"),
            unhex::<8>(SPAN.as_bytes()).expect("span"),
        )
    }

    #[test]
    fn traceparent_is_read_with_its_sampled_flag() {
        let sampled = extract(&headers(&[(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )]));
        assert_eq!(sampled.parent, Some(ids()));
        assert_eq!(sampled.sampled, Some(true));
        let not = extract(&headers(&[(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        )]));
        assert_eq!(not.sampled, Some(false));
        // A later version may append fields.
        let future = extract(&headers(&[(
            "traceparent",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever",
        )]));
        assert_eq!(future.parent, Some(ids()));
    }

    #[test]
    fn bad_traceparents_start_a_new_trace() {
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01",
            "",
        ] {
            let h = headers(&[("traceparent", bad)]);
            assert_eq!(extract(&h), Incoming::default(), "{bad:?}");
        }
    }

    #[test]
    fn b3_single_and_multi_are_read() {
        let single = extract(&headers(&[(
            "b3",
            "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1-05e3ac9a4f6e3b90",
        )]));
        assert_eq!(single.parent, Some(ids()));
        assert_eq!(single.sampled, Some(true));
        assert_eq!(
            extract(&headers(&[("b3", "0")])),
            Incoming {
                parent: None,
                sampled: Some(false)
            }
        );
        let multi = extract(&headers(&[
            ("x-b3-traceid", "a3ce929d0e0e4736"),
            ("x-b3-spanid", SPAN),
            ("x-b3-sampled", "0"),
        ]));
        let (trace, span) = multi.parent.expect("parent");
        assert_eq!(&trace[..8], &[0; 8], "a 64-bit id is left-padded");
        assert_eq!(span, ids().1);
        assert_eq!(multi.sampled, Some(false));
        let debug = extract(&headers(&[("x-b3-flags", "1"), ("x-b3-sampled", "0")]));
        assert_eq!(debug.sampled, Some(true));
    }

    #[test]
    fn traceparent_wins_over_b3() {
        let h = headers(&[
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            ("x-b3-traceid", "11111111111111111111111111111111"),
            ("x-b3-spanid", "2222222222222222"),
        ]);
        assert_eq!(extract(&h).parent, Some(ids()));
    }

    #[test]
    fn injected_context_reads_back_in_both_formats() {
        let (trace, parent) = ids();
        let span = [7u8; 8];
        let mut h = headers(&[("b3", "1"), ("x-b3-flags", "1"), ("tracestate", "k=v")]);
        inject(&mut h, &trace, &span, Some(&parent), true);
        assert_eq!(
            h["traceparent"],
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0707070707070707-01"
        );
        assert_eq!(h["x-b3-traceid"], TRACE);
        assert_eq!(h["x-b3-spanid"], "0707070707070707");
        assert_eq!(h["x-b3-parentspanid"], SPAN);
        assert_eq!(h["x-b3-sampled"], "1");
        assert_eq!(
            h["b3"],
            "4bf92f3577b34da6a3ce929d0e0e4736-0707070707070707-1"
        );
        assert!(!h.contains_key("x-b3-flags"));
        assert_eq!(h["tracestate"], "k=v");
        let back = extract(&h);
        assert_eq!(back.parent, Some((trace, span)));
        assert_eq!(back.sampled, Some(true));

        let mut unsampled = HeaderMap::new();
        inject(&mut unsampled, &trace, &span, None, false);
        assert!(
            unsampled["traceparent"]
                .to_str()
                .expect("ascii")
                .ends_with("-00")
        );
        assert_eq!(unsampled["x-b3-sampled"], "0");
        assert!(!unsampled.contains_key("b3"));
        assert!(!unsampled.contains_key("x-b3-parentspanid"));
    }
}

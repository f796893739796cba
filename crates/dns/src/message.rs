//! DNS messages on the wire: reading a client's query, answering it from the table, the
//! error answers, checking an upstream's answer and fitting an answer to the client's size.

use std::net::IpAddr;

use hickory_proto::op::{
    Edns, Header, Message, MessageType, Metadata, OpCode, Query, ResponseCode,
};
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use crate::table::NameTable;

/// Every DNS message starts with a 12-byte header.
pub(crate) const HEADER_LEN: usize = 12;
/// What a client without EDNS accepts over UDP (RFC 1035).
pub(crate) const MIN_UDP_PAYLOAD: usize = 512;
/// The largest message 2-byte TCP framing can carry.
pub(crate) const MAX_TCP_MESSAGE: usize = u16::MAX as usize;
/// TTL of local answers: low, so that clients that cache see new addresses soon (Istio's 30 s).
const LOCAL_TTL: u32 = 30;

/// What to do with bytes a client sent.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A well-formed query with one question.
    Query(Box<Message>),
    /// Answer at once with these bytes (FORMERR, NOTIMP).
    Reply(Vec<u8>),
    /// Not even a header, or not a query: send nothing.
    Drop,
}

/// Reads a client's message of at most `max_size` bytes (a longer one is answered FORMERR).
pub(crate) fn read_query(bytes: &[u8], max_size: usize) -> Inbound {
    let Some(header) = read_header(bytes) else {
        return Inbound::Drop;
    };
    // Never answer an answer: that way lie loops and reflection.
    if header.message_type != MessageType::Query {
        return Inbound::Drop;
    }
    if header.op_code != OpCode::Query {
        return Inbound::Reply(error_reply(&header.metadata, ResponseCode::NotImp));
    }
    if bytes.len() > max_size {
        return Inbound::Reply(error_reply(&header.metadata, ResponseCode::FormErr));
    }
    match Message::from_vec(bytes) {
        Ok(message) if message.queries.len() == 1 => Inbound::Query(Box::new(message)),
        _ => Inbound::Reply(error_reply(&header.metadata, ResponseCode::FormErr)),
    }
}

/// The header of `bytes`, if it has one.
pub(crate) fn read_header(bytes: &[u8]) -> Option<Header> {
    if bytes.len() < HEADER_LEN {
        return None;
    }
    Header::read(&mut BinDecoder::new(bytes)).ok()
}

/// A header-only answer to the query whose header is `query` (no question: it may not
/// have been readable).
fn error_reply(query: &Metadata, code: ResponseCode) -> Vec<u8> {
    let mut reply = Message::error_msg(query.id, query.op_code, code);
    reply.metadata.recursion_desired = query.recursion_desired;
    reply.metadata.recursion_available = true;
    encode(&reply)
}

/// SERVFAIL for `query` (every upstream failed, or too many queries in flight).
pub(crate) fn servfail(query: &Message) -> Vec<u8> {
    let mut reply = reply_to(query);
    reply.metadata.response_code = ResponseCode::ServFail;
    encode(&reply)
}

/// The table's answer to `query`, or `None` when it is not ours to answer: only A and
/// AAAA questions of class IN for names the table knows are, as in Istio.
pub(crate) fn local_answer(
    query: &Message,
    table: &NameTable,
    search: &[String],
) -> Option<Message> {
    let question = query.queries.first()?;
    let want_v4 = match question.query_type() {
        RecordType::A => true,
        RecordType::AAAA => false,
        _ => return None,
    };
    if question.query_class() != DNSClass::IN {
        return None;
    }
    let name = question.name();
    let resolution = table.resolve(&name.to_ascii(), search)?;
    let mut addresses: Vec<IpAddr> = resolution
        .addresses
        .iter()
        .copied()
        .filter(|address| address.is_ipv4() == want_v4)
        .collect();
    let mut reply = reply_to(query);
    // We are the authority for mesh names.
    reply.metadata.authoritative = true;
    if addresses.is_empty() {
        // NODATA: NOERROR without answers, never NXDOMAIN (a client asking A and AAAA at
        // once would take NXDOMAIN for the whole name).
        return Some(reply);
    }
    // Spread clients over the addresses (kube-dns and Istio shuffle too).
    let turn = usize::from(query.metadata.id) % addresses.len();
    addresses.rotate_left(turn);
    let owner = match resolution.search_labels {
        Some(labels) => {
            let all = name.iter().count();
            let mut target =
                Name::from_labels(name.iter().take(all.saturating_sub(labels))).ok()?;
            target.set_fqdn(true);
            reply.add_answer(Record::from_rdata(
                name.clone(),
                LOCAL_TTL,
                RData::CNAME(CNAME(target.clone())),
            ));
            target
        }
        None => name.clone(),
    };
    for address in addresses {
        let rdata = match address {
            IpAddr::V4(v4) => RData::A(A(v4)),
            IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
        };
        reply.add_answer(Record::from_rdata(owner.clone(), LOCAL_TTL, rdata));
    }
    Some(reply)
}

/// An empty answer to `query`: its ID, question and flags, and an OPT record if it had one.
fn reply_to(query: &Message) -> Message {
    let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.checking_disabled = query.metadata.checking_disabled;
    reply.metadata.recursion_available = true;
    reply.queries = query.queries.clone();
    if query.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(MAX_TCP_MESSAGE as u16);
        reply.edns = Some(edns);
    }
    reply
}

/// The most a client takes over UDP: 512 bytes, or what its EDNS record offers, within
/// `max_size`.
pub(crate) fn udp_limit(query: &Message, max_size: usize) -> usize {
    let offered = query
        .edns
        .as_ref()
        .map_or(MIN_UDP_PAYLOAD, |edns| usize::from(edns.max_payload()));
    offered.clamp(MIN_UDP_PAYLOAD, max_size.max(MIN_UDP_PAYLOAD))
}

/// `reply` encoded in at most `limit` bytes: as it is when it fits, else its header and
/// question with the TC bit set, so that the client asks again over TCP.
pub(crate) fn encode_within(reply: &Message, limit: usize) -> Vec<u8> {
    let bytes = encode(reply);
    if bytes.len() <= limit {
        return bytes;
    }
    let mut truncated = Message::new(
        reply.metadata.id,
        reply.metadata.message_type,
        reply.metadata.op_code,
    );
    truncated.metadata = reply.metadata;
    truncated.metadata.truncation = true;
    truncated.queries = reply.queries.clone();
    truncated.edns = reply.edns.clone();
    encode(&truncated)
}

/// Encodes a message we built; one that cannot be encoded (a bug) becomes a bare SERVFAIL
/// header so the client still hears back.
fn encode(message: &Message) -> Vec<u8> {
    message.to_vec().unwrap_or_else(|err| {
        tracing::error!(%err, "cannot encode a DNS answer; sending SERVFAIL");
        let mut header = Message::error_msg(
            message.metadata.id,
            message.metadata.op_code,
            ResponseCode::ServFail,
        );
        header.metadata.recursion_available = true;
        header.to_vec().unwrap_or_default()
    })
}

/// An upstream's answer, checked against what was asked.
#[derive(Debug)]
pub(crate) struct UpstreamAnswer {
    /// The answer as the upstream sent it (with the ID we sent upstream).
    pub(crate) bytes: Vec<u8>,
    pub(crate) metadata: Metadata,
    pub(crate) queries: Vec<Query>,
}

/// Why bytes from an upstream are not the answer to our query.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NotOurAnswer {
    /// Too short or not decodable.
    Malformed,
    /// Another ID, not a response, or another question: a stray or forged datagram.
    Mismatch,
}

/// Checks that `bytes` answer the query sent upstream with `id` and `question`.
pub(crate) fn check_answer(
    bytes: Vec<u8>,
    id: u16,
    question: &Query,
) -> Result<UpstreamAnswer, NotOurAnswer> {
    let mut decoder = BinDecoder::new(&bytes);
    let header = Header::read(&mut decoder).map_err(|_| NotOurAnswer::Malformed)?;
    if header.id != id || header.message_type != MessageType::Response {
        return Err(NotOurAnswer::Mismatch);
    }
    let queries = Message::read_queries(&mut decoder, usize::from(header.counts.queries))
        .map_err(|_| NotOurAnswer::Malformed)?;
    let same_question = match queries.as_slice() {
        [asked] => {
            asked.name() == question.name()
                && asked.query_type() == question.query_type()
                && asked.query_class() == question.query_class()
        }
        // Error answers (FORMERR, NOTIMP, …) may leave the question out.
        [] => header.response_code != ResponseCode::NoError,
        _ => false,
    };
    if !same_question {
        return Err(NotOurAnswer::Mismatch);
    }
    Ok(UpstreamAnswer {
        bytes,
        metadata: header.metadata,
        queries,
    })
}

/// The upstream's answer for the client: its ID restored, and cut to the header and
/// question with TC set when longer than `limit`.
pub(crate) fn relay(answer: UpstreamAnswer, client: &Message, limit: usize) -> Vec<u8> {
    let mut bytes = answer.bytes;
    if bytes.len() <= limit {
        bytes[..2].copy_from_slice(&client.metadata.id.to_be_bytes());
        return bytes;
    }
    let mut truncated = reply_to(client);
    truncated.metadata = answer.metadata;
    truncated.metadata.id = client.metadata.id;
    truncated.metadata.truncation = true;
    truncated.queries = answer.queries;
    encode(&truncated)
}

/// `query` with `id` in place of its own.
pub(crate) fn with_id(query: &[u8], id: u16) -> Vec<u8> {
    let mut bytes = query.to_vec();
    if bytes.len() >= 2 {
        bytes[..2].copy_from_slice(&id.to_be_bytes());
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::NameEntry;

    fn query(name: &str, rtype: RecordType, id: u16) -> Message {
        let mut message = Message::new(id, MessageType::Query, OpCode::Query);
        message.metadata.recursion_desired = true;
        message.add_query(Query::query(Name::from_ascii(name).expect("name"), rtype));
        message
    }

    fn table() -> NameTable {
        NameTable::new([NameEntry {
            hostname: "reviews.default.svc.cluster.local".to_owned(),
            addresses: vec![
                "10.0.0.1".parse().expect("ip"),
                "10.0.0.2".parse().expect("ip"),
            ],
            alt_names: vec!["reviews".to_owned()],
        }])
        .expect("table")
    }

    fn search() -> Vec<String> {
        vec!["default.svc.cluster.local".to_owned()]
    }

    #[test]
    fn a_search_expanded_name_is_answered_with_a_cname_then_the_addresses() {
        let q = query(
            "reviews.default.svc.cluster.local.default.svc.cluster.local.",
            RecordType::A,
            7,
        );
        let reply = local_answer(&q, &table(), &search()).expect("local");
        assert_eq!(reply.metadata.id, 7);
        assert!(reply.metadata.authoritative);
        let target = Name::from_ascii("reviews.default.svc.cluster.local.").expect("name");
        assert_eq!(reply.answers[0].data, RData::CNAME(CNAME(target.clone())));
        assert_eq!(&reply.answers[0].name, q.queries[0].name());
        assert_eq!(reply.answers.len(), 3);
        assert!(reply.answers[1..].iter().all(|r| r.name == target));
    }

    #[test]
    fn nodata_for_a_known_name_and_none_for_other_types_and_classes() {
        let reply = local_answer(&query("reviews.", RecordType::AAAA, 1), &table(), &search())
            .expect("known name");
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert!(reply.answers.is_empty());
        assert!(
            local_answer(&query("reviews.", RecordType::TXT, 1), &table(), &search()).is_none()
        );
        let mut chaos = query("reviews.", RecordType::A, 1);
        chaos.queries[0].set_query_class(DNSClass::CH);
        assert!(local_answer(&chaos, &table(), &search()).is_none());
    }

    #[test]
    fn an_answer_too_long_for_the_client_is_truncated_to_its_question() {
        let q = query("reviews.", RecordType::A, 9);
        let reply = local_answer(&q, &table(), &search()).expect("local");
        let whole = encode_within(&reply, MAX_TCP_MESSAGE);
        let cut = encode_within(&reply, whole.len() - 1);
        let cut = Message::from_vec(&cut).expect("decodes");
        assert!(cut.metadata.truncation);
        assert!(cut.answers.is_empty());
        assert_eq!(cut.queries, q.queries);
    }

    #[test]
    fn upstream_answers_must_match_id_and_question() {
        let q = query("example.com.", RecordType::A, 1);
        let mut answer = reply_to(&q);
        answer.metadata.id = 42;
        let bytes = encode(&answer);
        assert!(check_answer(bytes.clone(), 42, &q.queries[0]).is_ok());
        assert_eq!(
            check_answer(bytes.clone(), 43, &q.queries[0]).map(|_| ()),
            Err(NotOurAnswer::Mismatch)
        );
        let other = Query::query(Name::from_ascii("other.com.").expect("name"), RecordType::A);
        assert_eq!(
            check_answer(bytes, 42, &other).map(|_| ()),
            Err(NotOurAnswer::Mismatch)
        );
        assert_eq!(
            check_answer(vec![0, 42, 0x80], 42, &q.queries[0]).map(|_| ()),
            Err(NotOurAnswer::Malformed)
        );
    }

    #[test]
    fn garbage_is_dropped_and_a_bad_body_behind_a_header_is_formerr() {
        assert!(matches!(read_query(&[1, 2, 3], 4096), Inbound::Drop));
        let mut bytes = encode(&query("example.com.", RecordType::A, 0x1234));
        bytes.truncate(HEADER_LEN + 3);
        let Inbound::Reply(reply) = read_query(&bytes, 4096) else {
            panic!("expected FORMERR");
        };
        let reply = Message::from_vec(&reply).expect("decodes");
        assert_eq!(reply.metadata.id, 0x1234);
        assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
        // A response sent to us is never answered.
        let mut response = bytes.clone();
        response[2] |= 0x80;
        assert!(matches!(read_query(&response, 4096), Inbound::Drop));
    }
}

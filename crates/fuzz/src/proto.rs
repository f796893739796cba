//! Field-wise mutation of protobuf messages without their schema: the wire format is parsed
//! into a tree of fields (a length-delimited field that parses as a message, such as a nested
//! message or the payload of an `Any`, is a subtree), one to three fields are changed
//! (removed, repeated, set to extremes, given strings the seeds use, swapped with the same
//! field of another seed, renumbered, or a new field added), and the tree is encoded again.
//! Sometimes the bytes are then mutated raw, for the decoder's error paths.

use prost::encoding::{WireType, decode_key, decode_varint, encode_key, encode_varint};

use crate::corpus::Seed;
use crate::raw::{self, below};
use crate::{Rng, RngExt as _};

/// The value of one field on the wire.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    /// A length-delimited field that does not parse as a message (a string, bytes, packed).
    Bytes(Vec<u8>),
    /// A length-delimited field that parses as a message.
    Message(Vec<Field>),
}

/// One field: its number and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub number: u32,
    pub value: FieldValue,
}

/// Nested messages deeper than this stay bytes.
const MAX_DEPTH: usize = 48;

/// Parses `bytes` as a message; `None` when they are not one (groups count as not).
pub fn parse(bytes: &[u8]) -> Option<Vec<Field>> {
    parse_at(bytes, 0)
}

fn parse_at(mut buf: &[u8], depth: usize) -> Option<Vec<Field>> {
    let mut fields = Vec::new();
    while !buf.is_empty() {
        let (number, wire_type) = decode_key(&mut buf).ok()?;
        let value = match wire_type {
            WireType::Varint => FieldValue::Varint(decode_varint(&mut buf).ok()?),
            WireType::SixtyFourBit => {
                let (head, rest) = buf.split_first_chunk::<8>()?;
                buf = rest;
                FieldValue::Fixed64(u64::from_le_bytes(*head))
            }
            WireType::ThirtyTwoBit => {
                let (head, rest) = buf.split_first_chunk::<4>()?;
                buf = rest;
                FieldValue::Fixed32(u32::from_le_bytes(*head))
            }
            WireType::LengthDelimited => {
                let len = usize::try_from(decode_varint(&mut buf).ok()?).ok()?;
                if len > buf.len() {
                    return None;
                }
                let (body, rest) = buf.split_at(len);
                buf = rest;
                match (depth < MAX_DEPTH && !body.is_empty())
                    .then(|| parse_at(body, depth + 1))
                    .flatten()
                {
                    Some(nested) if looks_like_message(body, &nested) => {
                        FieldValue::Message(nested)
                    }
                    _ => FieldValue::Bytes(body.to_vec()),
                }
            }
            WireType::StartGroup | WireType::EndGroup => return None,
        };
        fields.push(Field { number, value });
    }
    Some(fields)
}

/// Short printable strings often parse as messages by accident ("ab" is field 12, varint
/// 0x62); treat printable text as a string unless its fields look like a real message.
fn looks_like_message(body: &[u8], fields: &[Field]) -> bool {
    let printable = body.iter().all(|b| b.is_ascii_graphic() || *b == b' ');
    !printable || fields.iter().all(|f| f.number <= 64)
}

/// Encodes fields back to the wire format.
pub fn encode(fields: &[Field]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(fields, &mut out);
    out
}

fn encode_into(fields: &[Field], out: &mut Vec<u8>) {
    for field in fields {
        let number = field.number.clamp(1, (1 << 29) - 1);
        match &field.value {
            FieldValue::Varint(v) => {
                encode_key(number, WireType::Varint, out);
                encode_varint(*v, out);
            }
            FieldValue::Fixed64(v) => {
                encode_key(number, WireType::SixtyFourBit, out);
                out.extend_from_slice(&v.to_le_bytes());
            }
            FieldValue::Fixed32(v) => {
                encode_key(number, WireType::ThirtyTwoBit, out);
                out.extend_from_slice(&v.to_le_bytes());
            }
            FieldValue::Bytes(b) => {
                encode_key(number, WireType::LengthDelimited, out);
                encode_varint(b.len() as u64, out);
                out.extend_from_slice(b);
            }
            FieldValue::Message(m) => {
                let body = encode(m);
                encode_key(number, WireType::LengthDelimited, out);
                encode_varint(body.len() as u64, out);
                out.extend_from_slice(&body);
            }
        }
    }
}

/// Varints at the edges: enum values out of range, negative int32/int64 (ten-byte varints),
/// ports and weights past their limits.
const EXTREME_VARINTS: &[u64] = &[
    0,
    1,
    2,
    3,
    7,
    0x7f,
    0x80,
    0xff,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    i64::MAX as u64,
    u64::MAX,
    u64::MAX - 1,
    0xffff_ffff_8000_0000,
];

/// The seeds of a protobuf target, parsed once, and the strings they contain (names, type
/// URLs, addresses) for mutations.
pub struct Corpus {
    trees: Vec<Vec<Field>>,
    strings: Vec<Vec<u8>>,
}

impl Corpus {
    /// Parses every seed that is a message; collects its printable strings.
    pub fn new(seeds: &[Seed]) -> Corpus {
        let trees: Vec<Vec<Field>> = seeds.iter().filter_map(|s| parse(&s.bytes)).collect();
        let mut strings = std::collections::BTreeSet::new();
        fn walk(fields: &[Field], out: &mut std::collections::BTreeSet<Vec<u8>>) {
            for f in fields {
                match &f.value {
                    FieldValue::Bytes(b) if std::str::from_utf8(b).is_ok() => {
                        out.insert(b.clone());
                    }
                    FieldValue::Message(m) => walk(m, out),
                    _ => {}
                }
            }
        }
        for t in &trees {
            walk(t, &mut strings);
        }
        Corpus {
            trees,
            strings: strings.into_iter().take(4096).collect(),
        }
    }

    /// How many seeds parsed as messages.
    pub fn len(&self) -> usize {
        self.trees.len()
    }

    /// True when no seed parsed.
    pub fn is_empty(&self) -> bool {
        self.trees.is_empty()
    }

    /// A mutated version of a random seed: field-wise mutations, and sometimes raw ones.
    pub fn mutate(&self, rng: &mut Rng, seeds: &[Seed]) -> Vec<u8> {
        let Some(tree) = self.trees.get(below(rng, self.trees.len())) else {
            let mut bytes = seeds
                .get(below(rng, seeds.len()))
                .map(|s| s.bytes.clone())
                .unwrap_or_default();
            raw::mutate(rng, &mut bytes, seeds);
            return bytes;
        };
        let mut tree = tree.clone();
        for _ in 0..rng.random_range(1..=3) {
            self.mutate_once(rng, &mut tree);
        }
        let mut bytes = encode(&tree);
        if rng.random_bool(0.1) {
            raw::mutate(rng, &mut bytes, seeds);
        }
        bytes
    }

    fn mutate_once(&self, rng: &mut Rng, tree: &mut Vec<Field>) {
        // Pick a message (the root or a nested one), then act on it or one of its fields.
        let mut paths = Vec::new();
        message_paths(tree, &mut Vec::new(), &mut paths);
        let path = paths.swap_remove(below(rng, paths.len()));
        let Some(message) = message_at(tree, &path) else {
            return;
        };
        let op = rng.random_range(0..10);
        if message.is_empty() || op == 0 {
            let number = if rng.random_bool(0.7) {
                rng.random_range(1..=40)
            } else {
                rng.random_range(1..=1000)
            };
            let value = self.random_value(rng);
            message.push(Field { number, value });
            return;
        }
        let i = below(rng, message.len());
        match op {
            1 => {
                message.remove(i);
            }
            2 => {
                let copies = if rng.random_bool(0.9) { 1 } else { 64 };
                // Bound the growth: the input is cut to the size limit anyway.
                let size = encode(std::slice::from_ref(&message[i])).len().max(1);
                let copies = copies.min(64 * 1024 / size);
                let field = message[i].clone();
                for _ in 0..copies {
                    message.insert(i, field.clone());
                }
            }
            3 => {
                // The same field number from another seed (or another place in this one).
                let number = message[i].number;
                let mut candidates = Vec::new();
                for t in &self.trees {
                    fields_numbered(t, number, &mut candidates);
                }
                if let Some(f) = candidates.get(below(rng, candidates.len())) {
                    message[i] = (*f).clone();
                }
            }
            4 => {
                let n = message[i].number;
                message[i].number = match rng.random_range(0..3) {
                    0 => n.saturating_add(1),
                    1 => n.saturating_sub(1).max(1),
                    _ => rng.random_range(1..=64),
                };
            }
            5 if message.len() > 1 => {
                let j = below(rng, message.len());
                message.swap(i, j);
            }
            _ => self.mutate_value(rng, &mut message[i].value),
        }
    }

    fn mutate_value(&self, rng: &mut Rng, value: &mut FieldValue) {
        match value {
            FieldValue::Varint(v) => {
                *v = if rng.random_bool(0.8) {
                    EXTREME_VARINTS[below(rng, EXTREME_VARINTS.len())]
                } else {
                    v.wrapping_add(rng.random_range(1..=3))
                };
            }
            FieldValue::Fixed64(v) => {
                *v = [
                    0,
                    u64::MAX,
                    f64::NAN.to_bits(),
                    f64::INFINITY.to_bits(),
                    (-1.0f64).to_bits(),
                    1e308f64.to_bits(),
                ][below(rng, 6)];
            }
            FieldValue::Fixed32(v) => {
                *v = [
                    0,
                    u32::MAX,
                    f32::NAN.to_bits(),
                    f32::INFINITY.to_bits(),
                    (-1.0f32).to_bits(),
                ][below(rng, 5)];
            }
            FieldValue::Bytes(b) => match rng.random_range(0..4) {
                0 => *b = self.string(rng),
                1 => b.clear(),
                2 => {
                    let mut s = b.clone();
                    raw::mutate(rng, &mut s, &[]);
                    *b = s;
                }
                _ => {
                    let extra = self.string(rng);
                    b.extend_from_slice(&extra);
                }
            },
            FieldValue::Message(m) => {
                if rng.random_bool(0.5) {
                    m.clear();
                } else {
                    *value = FieldValue::Bytes(self.string(rng));
                }
            }
        }
    }

    fn random_value(&self, rng: &mut Rng) -> FieldValue {
        match rng.random_range(0..5) {
            0 | 1 => FieldValue::Varint(EXTREME_VARINTS[below(rng, EXTREME_VARINTS.len())]),
            2 => FieldValue::Bytes(self.string(rng)),
            3 => FieldValue::Message(Vec::new()),
            _ => {
                // A whole message from a seed: a plausible sub-message in an unexpected place.
                let mut all = Vec::new();
                for t in &self.trees {
                    all_messages(t, &mut all);
                }
                all.get(below(rng, all.len()))
                    .map_or(FieldValue::Fixed32(u32::MAX), |m| {
                        FieldValue::Message((*m).clone())
                    })
            }
        }
    }

    fn string(&self, rng: &mut Rng) -> Vec<u8> {
        if !self.strings.is_empty() && rng.random_bool(0.6) {
            return self.strings[below(rng, self.strings.len())].clone();
        }
        let s =
            crate::json::INTERESTING_STRINGS[below(rng, crate::json::INTERESTING_STRINGS.len())];
        s.as_bytes().to_vec()
    }
}

/// Index paths of every message in `fields` (the root is the empty path).
fn message_paths(fields: &[Field], prefix: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
    out.push(prefix.clone());
    for (i, f) in fields.iter().enumerate() {
        if let FieldValue::Message(m) = &f.value {
            prefix.push(i);
            message_paths(m, prefix, out);
            prefix.pop();
        }
    }
}

fn message_at<'a>(fields: &'a mut Vec<Field>, path: &[usize]) -> Option<&'a mut Vec<Field>> {
    let Some((first, rest)) = path.split_first() else {
        return Some(fields);
    };
    match &mut fields.get_mut(*first)?.value {
        FieldValue::Message(m) => message_at(m, rest),
        _ => None,
    }
}

fn fields_numbered<'a>(fields: &'a [Field], number: u32, out: &mut Vec<&'a Field>) {
    for f in fields {
        if f.number == number {
            out.push(f);
        }
        if let FieldValue::Message(m) = &f.value {
            fields_numbered(m, number, out);
        }
    }
}

fn all_messages<'a>(fields: &'a [Field], out: &mut Vec<&'a Vec<Field>>) {
    for f in fields {
        if let FieldValue::Message(m) = &f.value {
            out.push(m);
            all_messages(m, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng as _;

    use super::*;

    /// `{1: "outbound", 2: {1: 9080, 3: "reviews"}, 5: 7 (varint), 6: fixed32, 7: fixed64}`.
    fn sample() -> Vec<u8> {
        let inner = [
            vec![0x08],
            vec![0xf8, 0x46], // 9080
            vec![0x1a, 7],
            b"reviews".to_vec(),
        ]
        .concat();
        [
            vec![0x0a, 8],
            b"outbound".to_vec(),
            vec![0x12, inner.len() as u8],
            inner,
            vec![0x28, 7],
            vec![0x35, 1, 0, 0, 0],
            vec![0x39, 2, 0, 0, 0, 0, 0, 0, 0],
        ]
        .concat()
    }

    #[test]
    fn parse_and_encode_round_trip() {
        let fields = parse(&sample()).expect("a message");
        assert_eq!(fields.len(), 5);
        assert_eq!(fields[0].value, FieldValue::Bytes(b"outbound".to_vec()));
        let FieldValue::Message(inner) = &fields[1].value else {
            panic!("field 2 is a nested message: {:?}", fields[1]);
        };
        assert_eq!(inner[0].value, FieldValue::Varint(9080));
        assert_eq!(encode(&fields), sample());
    }

    #[test]
    fn not_a_message() {
        assert_eq!(parse(&[0x0a, 5, b'a']), None);
        assert_eq!(parse(&[0x0b]), None); // a group
    }

    #[test]
    fn mutations_keep_mostly_valid_wire_format_and_change_the_message() {
        let seeds = [Seed {
            name: "sample".into(),
            bytes: sample(),
        }];
        let corpus = Corpus::new(&seeds);
        assert_eq!(corpus.len(), 1);
        let (mut changed, mut parses) = (0, 0);
        for s in 0..300 {
            let out = corpus.mutate(&mut Rng::seed_from_u64(s), &seeds);
            changed += usize::from(out != sample());
            parses += usize::from(parse(&out).is_some());
        }
        assert!(changed > 250, "{changed} of 300 changed");
        assert!(parses > 200, "{parses} of 300 still parse");
    }
}

//! Byte-level mutations for any input: bit flips, interesting bytes and tokens, insertions,
//! deletions, duplication, truncation, splicing with another seed, numbers replaced by
//! extremes, and line edits (a duplicated line is a duplicated YAML key or HTTP header).

use crate::corpus::Seed;
use crate::{Rng, RngExt as _};

/// Numbers at the edges of the integer and float types parsers meet.
pub const EXTREME_NUMBERS: &[&str] = &[
    "0",
    "-0",
    "-1",
    "1",
    "127",
    "128",
    "255",
    "256",
    "65535",
    "65536",
    "2147483647",
    "2147483648",
    "-2147483649",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999999",
    "1e308",
    "1e309",
    "-1e309",
    "0.5",
    "1.0",
    "1e-320",
    ".nan",
    ".inf",
    "NaN",
    "0x10",
    "0o17",
    "007",
    "+1",
];

/// Bytes and short tokens that mean something to YAML, JSON, HTTP/1.1 or protobuf.
pub const TOKENS: &[&[u8]] = &[
    b"\n",
    b"\r\n",
    b"\r\n\r\n",
    b"\n---\n",
    b"\n...\n",
    b": ",
    b"- ",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b"\"",
    b"'",
    b"\\",
    b"\\u0000",
    b"&a ",
    b"*a",
    b"<<: ",
    b"!!binary ",
    b"!!str ",
    b"? ",
    b"|\n",
    b">-\n",
    b"#",
    b"%",
    b"\t",
    b"\0",
    b" ",
    b"\xff",
    b"\xc3",
    b"\xe2\x80\xae",
    b"~",
    b"null",
    b"true",
    b"Transfer-Encoding: chunked\r\n",
    b"Content-Length: 5\r\n",
    b"Host: ",
    b":authority",
    b"HTTP/1.1",
    b"0\r\n\r\n",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
];

/// Repeating mutations stop at about this many bytes (inputs are cut to the size limit
/// anyway, and the mutator itself must not use much memory).
const GROWTH_LIMIT: usize = 128 * 1024;

/// A uniform index below `n` (0 when `n` is 0).
pub fn below(rng: &mut Rng, n: usize) -> usize {
    if n == 0 { 0 } else { rng.random_range(0..n) }
}

/// Applies one to four byte-level mutations to `data`; `donors` feed splicing.
pub fn mutate(rng: &mut Rng, data: &mut Vec<u8>, donors: &[Seed]) {
    for _ in 0..rng.random_range(1..=4) {
        mutate_once(rng, data, donors);
    }
}

fn mutate_once(rng: &mut Rng, data: &mut Vec<u8>, donors: &[Seed]) {
    let len = data.len();
    if len > 4 * GROWTH_LIMIT {
        data.truncate(GROWTH_LIMIT);
        return;
    }
    match rng.random_range(0..13) {
        0 if len > 0 => {
            let i = below(rng, len);
            data[i] ^= 1 << rng.random_range(0..8);
        }
        1 if len > 0 => {
            let i = below(rng, len);
            let set = b"\0\x01\x7f\x80\xff\n\r:\"{[-#&*!|>%\\ ";
            data[i] = set[below(rng, set.len())];
        }
        2 => {
            let at = below(rng, len + 1);
            let n = rng.random_range(1..=8);
            let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
            data.splice(at..at, bytes);
        }
        3 => {
            let at = below(rng, len + 1);
            let token = TOKENS[below(rng, TOKENS.len())];
            data.splice(at..at, token.iter().copied());
        }
        4 if len > 0 => {
            let at = below(rng, len);
            let n = 1 + below(rng, (len - at).min(64));
            data.drain(at..at + n);
        }
        5 if len > 0 => {
            // Copy a chunk somewhere else (repeats structure: keys, list items, frames).
            let from = below(rng, len);
            let n = 1 + below(rng, (len - from).min(256));
            let chunk = data[from..from + n].to_vec();
            let at = below(rng, len + 1);
            data.splice(at..at, chunk);
        }
        6 if len > 0 => data.truncate(below(rng, len)),
        7 if !donors.is_empty() => {
            // Splice: a prefix of this input, then a suffix of another seed.
            let donor = &donors[below(rng, donors.len())].bytes;
            let cut = below(rng, len + 1);
            let from = below(rng, donor.len() + 1);
            data.truncate(cut);
            data.extend_from_slice(&donor[from..]);
        }
        8 => replace_number(rng, data),
        9 => line_edit(rng, data),
        10 if len > 0 => {
            // A run of one byte (long names, deep indentation, many dashes).
            let at = below(rng, len + 1);
            let byte = data[below(rng, len)];
            let n = if rng.random_bool(0.9) { 16 } else { 4096 };
            data.splice(at..at, std::iter::repeat_n(byte, n));
        }
        11 if len > 1 => {
            let (a, b) = (below(rng, len), below(rng, len));
            data.swap(a, b);
        }
        _ => {
            let at = below(rng, len + 1);
            let number = EXTREME_NUMBERS[below(rng, EXTREME_NUMBERS.len())];
            data.splice(at..at, number.bytes());
        }
    }
}

/// Replaces one run of ASCII digits with an extreme number.
fn replace_number(rng: &mut Rng, data: &mut Vec<u8>) {
    let starts: Vec<usize> = (0..data.len())
        .filter(|&i| data[i].is_ascii_digit() && (i == 0 || !data[i - 1].is_ascii_digit()))
        .collect();
    if starts.is_empty() {
        return;
    }
    let start = starts[below(rng, starts.len())];
    let end = (start..data.len())
        .find(|&i| !data[i].is_ascii_digit())
        .unwrap_or(data.len());
    let number = EXTREME_NUMBERS[below(rng, EXTREME_NUMBERS.len())];
    data.splice(start..end, number.bytes());
}

/// Duplicates, deletes or swaps whole lines.
fn line_edit(rng: &mut Rng, data: &mut Vec<u8>) {
    let mut lines: Vec<Vec<u8>> = data
        .split_inclusive(|b| *b == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    if lines.is_empty() {
        return;
    }
    let i = below(rng, lines.len());
    match rng.random_range(0..4) {
        0 | 1 => {
            let copies = if rng.random_bool(0.95) { 1 } else { 200 };
            let copies = copies.min(GROWTH_LIMIT / lines[i].len().max(1)).max(1);
            let line = lines[i].clone();
            for _ in 0..copies {
                lines.insert(i, line.clone());
            }
        }
        2 => {
            lines.remove(i);
        }
        _ => {
            let j = below(rng, lines.len());
            lines.swap(i, j);
        }
    }
    *data = lines.concat();
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng as _;

    use super::*;

    #[test]
    fn mutations_are_deterministic_for_a_seed_and_change_the_input() {
        let donors = [Seed {
            name: "d".into(),
            bytes: b"other: [1, 2]\n".to_vec(),
        }];
        let run = |seed| {
            let mut rng = Rng::seed_from_u64(seed);
            let mut data = b"key: value\nport: 9080\n".to_vec();
            mutate(&mut rng, &mut data, &donors);
            data
        };
        assert_eq!(run(7), run(7));
        let changed = (0..50)
            .filter(|s| run(*s) != b"key: value\nport: 9080\n")
            .count();
        assert!(
            changed > 40,
            "only {changed} of 50 mutations changed the input"
        );
    }

    #[test]
    fn empty_input_does_not_panic() {
        for seed in 0..500 {
            let mut rng = Rng::seed_from_u64(seed);
            let mut data = Vec::new();
            mutate(&mut rng, &mut data, &[]);
        }
    }

    #[test]
    fn numbers_become_extremes() {
        let mut seen_other = false;
        for seed in 0..20 {
            let mut rng = Rng::seed_from_u64(seed);
            let mut data = b"port: 9080".to_vec();
            replace_number(&mut rng, &mut data);
            let text = String::from_utf8(data).expect("ascii");
            assert!(text.starts_with("port: "), "{text}");
            seen_other |= text != "port: 9080";
        }
        assert!(seen_other);
    }
}

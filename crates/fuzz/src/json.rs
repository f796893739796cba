//! Structure-aware mutation of YAML/JSON documents: a seed is parsed into a
//! `serde_json::Value` tree, one to three of its nodes are changed (removed, retyped, set to
//! extremes, swapped for a subtree of another seed or for keys and strings the seeds use,
//! repeated, deeply nested), and the tree is written back as YAML or JSON, sometimes with a
//! duplicated key.

use serde_json::{Map, Number, Value};

use crate::raw::below;
use crate::{Rng, RngExt as _};

/// Strings that break naive code: empty, wildcards, dots, separators, IPs and CIDRs out of
/// range, regex traps, Envoy format strings, durations, unusual Unicode.
pub const INTERESTING_STRINGS: &[&str] = &[
    "",
    " ",
    "*",
    "*.",
    ".",
    "..",
    "a..b",
    "-",
    "_",
    "/",
    "//",
    "?",
    "#",
    "%",
    "%%",
    "%zz",
    "\0",
    "\u{202e}",
    "ü",
    "\u{1F600}",
    "\r\n",
    "\n",
    ":",
    "::",
    "[::1]",
    "0.0.0.0",
    "0.0.0.0/0",
    "127.0.0.1:99999",
    "1.2.3.4/33",
    "256.0.0.1",
    "::ffff:1.2.3.4",
    "fe80::1%eth0",
    "*.*",
    "*.example.com",
    "example.com.",
    "a*b",
    "(",
    "[",
    "(?P<",
    "a{99999}",
    "(a*)*$",
    "(?i)",
    "\\",
    "\"",
    "'",
    "${x}",
    "%DOWNSTREAM_REMOTE_ADDRESS%",
    "%REQ(:path)%",
    "%REQ(",
    "%START_TIME(%s.%9f)%",
    "-1s",
    "0s",
    "0.0000000001s",
    "1.5s",
    "99999999999s",
    "315576000001s",
    "1h",
    "1d",
    "5ms",
    "1e309s",
    "unix:///tmp/sock",
    "dns:///x",
    "UPPER",
    "true",
    "null",
    "~",
    "NaN",
    "9080",
    "-9080",
    "http",
    "HTTP2",
    "GRPC",
    "TLS",
    "ISTIO_MUTUAL",
];

/// Keys and strings seen in the seeds, used to make mutations that a real document could
/// contain (the right field name with the wrong value, or a value moved to another field).
#[derive(Debug, Clone, Default)]
pub struct Dictionary {
    pub keys: Vec<String>,
    pub strings: Vec<String>,
}

impl Dictionary {
    /// Collects every object key and string value of `values` (deduplicated, at most 4096 of
    /// each).
    pub fn from_values<'a>(values: impl IntoIterator<Item = &'a Value>) -> Dictionary {
        let mut keys = std::collections::BTreeSet::new();
        let mut strings = std::collections::BTreeSet::new();
        fn walk(
            v: &Value,
            keys: &mut std::collections::BTreeSet<String>,
            strings: &mut std::collections::BTreeSet<String>,
        ) {
            match v {
                Value::String(s) => {
                    strings.insert(s.clone());
                }
                Value::Array(items) => items.iter().for_each(|i| walk(i, keys, strings)),
                Value::Object(map) => {
                    for (k, v) in map {
                        keys.insert(k.clone());
                        walk(v, keys, strings);
                    }
                }
                _ => {}
            }
        }
        for v in values {
            walk(v, &mut keys, &mut strings);
        }
        Dictionary {
            keys: keys.into_iter().take(4096).collect(),
            strings: strings.into_iter().take(4096).collect(),
        }
    }

    fn key(&self, rng: &mut Rng) -> String {
        if self.keys.is_empty() || rng.random_bool(0.1) {
            return string(rng, self);
        }
        self.keys[below(rng, self.keys.len())].clone()
    }
}

/// A string from the dictionary or the interesting list, sometimes repeated or altered.
fn string(rng: &mut Rng, dict: &Dictionary) -> String {
    let base = if !dict.strings.is_empty() && rng.random_bool(0.5) {
        dict.strings[below(rng, dict.strings.len())].clone()
    } else {
        INTERESTING_STRINGS[below(rng, INTERESTING_STRINGS.len())].to_string()
    };
    match rng.random_range(0..10) {
        0 => {
            let times = if rng.random_bool(0.8) { 2 } else { 300 };
            base.repeat(times.min(GROWTH_LIMIT / base.len().max(1)).max(1))
        }
        1 => format!(
            "{base}{}",
            INTERESTING_STRINGS[below(rng, INTERESTING_STRINGS.len())]
        ),
        2 => base.to_uppercase(),
        3 => {
            let cut = below(rng, base.len() + 1);
            base.get(..cut).unwrap_or(&base).to_string()
        }
        _ => base,
    }
}

fn extreme_number(rng: &mut Rng) -> Value {
    match rng.random_range(0..14) {
        0 => Value::from(0),
        1 => Value::from(-1),
        2 => Value::from(1),
        3 => Value::from(i64::MAX),
        4 => Value::from(i64::MIN),
        5 => Value::from(u64::MAX),
        6 => Value::from(u64::from(u32::MAX) + 1),
        7 => Value::from(u32::MAX),
        8 => Value::from(65536),
        9 => Value::from(i64::from(i32::MIN) - 1),
        10 => Number::from_f64(1e308).map_or(Value::Null, Value::Number),
        11 => Number::from_f64(-0.5).map_or(Value::Null, Value::Number),
        12 => Number::from_f64(1e-300).map_or(Value::Null, Value::Number),
        _ => Value::from(rng.random_range(-1000..100_000)),
    }
}

fn scalar(rng: &mut Rng, dict: &Dictionary) -> Value {
    match rng.random_range(0..8) {
        0 => Value::Null,
        1 => Value::Bool(rng.random()),
        2 | 3 => extreme_number(rng),
        4 => Value::Object(Map::new()),
        5 => Value::Array(Vec::new()),
        _ => Value::String(string(rng, dict)),
    }
}

/// JSON pointers of every node of `value` (the root is `""`).
fn node_paths(value: &Value) -> Vec<String> {
    fn walk(v: &Value, path: &mut String, out: &mut Vec<String>) {
        out.push(path.clone());
        let len = path.len();
        match v {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    path.push('/');
                    path.push_str(&i.to_string());
                    walk(item, path, out);
                    path.truncate(len);
                }
            }
            Value::Object(map) => {
                for (k, item) in map {
                    path.push('/');
                    path.push_str(&k.replace('~', "~0").replace('/', "~1"));
                    walk(item, path, out);
                    path.truncate(len);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, &mut String::new(), &mut out);
    out
}

/// A random node of a random donor, cloned.
fn donor_subtree(rng: &mut Rng, donors: &[Value]) -> Option<Value> {
    let donor = donors.get(below(rng, donors.len()))?;
    let paths = node_paths(donor);
    donor.pointer(&paths[below(rng, paths.len())]).cloned()
}

/// Applies one to three structural mutations to `value`.
pub fn mutate(rng: &mut Rng, value: &mut Value, dict: &Dictionary, donors: &[Value]) {
    for _ in 0..rng.random_range(1..=3) {
        mutate_once(rng, value, dict, donors);
    }
}

/// Growing mutations (repeats, nesting, splices) stop at about this many nodes or bytes: the
/// input is cut to the size limit anyway, and the mutator itself must not use much memory.
const GROWTH_LIMIT: usize = 64 * 1024;

fn mutate_once(rng: &mut Rng, root: &mut Value, dict: &Dictionary, donors: &[Value]) {
    let paths = node_paths(root);
    let may_grow = paths.len() < GROWTH_LIMIT / 16;
    let path = &paths[below(rng, paths.len())];
    let donated = donor_subtree(rng, donors);
    let Some(node) = root.pointer_mut(path) else {
        return;
    };
    match rng.random_range(0..12) {
        0 | 1 => *node = scalar(rng, dict),
        2 => {
            if let Some(subtree) = donated.filter(|_| may_grow) {
                *node = subtree;
            }
        }
        3 => match node {
            Value::Object(map) if !map.is_empty() => {
                let key = map.keys().nth(below(rng, map.len())).cloned();
                if let Some(key) = key {
                    map.remove(&key);
                }
            }
            Value::Array(items) if !items.is_empty() => {
                items.remove(below(rng, items.len()));
            }
            _ => *node = Value::Null,
        },
        4 => {
            // A field the seeds use, in the wrong place or with the wrong value.
            let key = dict.key(rng);
            let value = match donated {
                Some(subtree) if may_grow && rng.random_bool(0.5) => subtree,
                _ => scalar(rng, dict),
            };
            match node {
                Value::Object(map) => {
                    map.insert(key, value);
                }
                Value::Array(items) => items.push(value),
                _ => *node = Value::Object(Map::from_iter([(key, value)])),
            }
        }
        5 => match node {
            Value::Array(items) if !items.is_empty() && may_grow => {
                let item = items[below(rng, items.len())].clone();
                let copies = if rng.random_bool(0.9) { 1 } else { 100 };
                let copies = copies
                    .min(GROWTH_LIMIT / 16 / node_paths(&item).len())
                    .max(1);
                for _ in 0..copies {
                    items.push(item.clone());
                }
            }
            Value::Object(map) if !map.is_empty() => {
                // Rename a key.
                let key = map.keys().nth(below(rng, map.len())).cloned();
                if let Some(key) = key
                    && let Some(v) = map.remove(&key)
                {
                    map.insert(dict.key(rng), v);
                }
            }
            _ => *node = Value::Array(vec![node.take()]),
        },
        6 => match node {
            Value::String(s) => *s = string(rng, dict),
            Value::Number(_) => *node = extreme_number(rng),
            Value::Bool(b) => *node = Value::String(b.to_string()),
            _ => *node = Value::String(string(rng, dict)),
        },
        7 => {
            // Retype: a number as a string, a string as a number, anything in a list.
            *node = match node.take() {
                Value::Number(n) => Value::String(n.to_string()),
                Value::String(s) => s
                    .parse::<i64>()
                    .map(Value::from)
                    .unwrap_or_else(|_| extreme_number(rng)),
                other => Value::Array(vec![other]),
            };
        }
        8 if may_grow && rng.random_bool(0.1) => {
            // Deep nesting (parsers' recursion limits).
            let depth = rng.random_range(100..300);
            let mut nested = node.take();
            for _ in 0..depth {
                nested = Value::Array(vec![nested]);
            }
            *node = nested;
        }
        9 => {
            if let Value::Array(items) = node
                && items.len() > 1
            {
                let (a, b) = (below(rng, items.len()), below(rng, items.len()));
                items.swap(a, b);
            } else {
                *node = extreme_number(rng);
            }
        }
        _ => *node = Value::String(string(rng, dict)),
    }
}

/// Parsed YAML/JSON seed documents and their dictionary: the usual mutator of text targets.
#[derive(Debug, Clone)]
pub struct Documents {
    /// One value per document.
    pub values: Vec<Value>,
    pub dictionary: Dictionary,
    /// Write mutated trees as JSON only (for JSON-only parsers).
    pub json_only: bool,
}

impl Documents {
    /// Documents and a dictionary of their keys and strings.
    pub fn new(values: Vec<Value>) -> Documents {
        let dictionary = Dictionary::from_values(&values);
        Documents {
            values,
            dictionary,
            json_only: false,
        }
    }

    /// The same documents, written as JSON only.
    pub fn json_only(mut self) -> Documents {
        self.json_only = true;
        self
    }

    /// An input derived from document `index`: most often its tree mutated and written out
    /// (sometimes mutated raw afterwards), else the raw text of a seed (comments, anchors,
    /// several documents) mutated byte-wise; sometimes another document follows after `---`.
    pub fn mutate(&self, rng: &mut Rng, index: usize, seeds: &[crate::Seed]) -> Vec<u8> {
        let mut out = match self.values.get(index) {
            Some(value) if seeds.is_empty() || rng.random_bool(0.75) => {
                let mut value = value.clone();
                mutate(rng, &mut value, &self.dictionary, &self.values);
                let mut out = if self.json_only {
                    render_json(rng, &value)
                } else {
                    render(rng, &value)
                };
                if rng.random_bool(0.2) {
                    crate::raw::mutate(rng, &mut out, seeds);
                }
                out
            }
            _ => {
                let mut out = seeds
                    .get(below(rng, seeds.len()))
                    .map(|s| s.bytes.clone())
                    .unwrap_or_default();
                crate::raw::mutate(rng, &mut out, seeds);
                out
            }
        };
        if !self.json_only
            && rng.random_bool(0.1)
            && let Some(other) = self.values.get(below(rng, self.values.len()))
        {
            out.extend_from_slice(b"\n---\n");
            out.extend(render(rng, other));
        }
        out
    }
}

/// Writes `value` as YAML (half the time) or JSON (which YAML parsers read too), sometimes
/// with one object key written twice.
pub fn render(rng: &mut Rng, value: &Value) -> Vec<u8> {
    match rng.random_range(0..4) {
        0 | 1 => serde_yaml::to_string(value)
            .map(String::into_bytes)
            .unwrap_or_else(|_| value.to_string().into_bytes()),
        2 => value.to_string().into_bytes(),
        _ => {
            let mut out = String::new();
            write_with_duplicate_key(rng, value, &mut out);
            out.into_bytes()
        }
    }
}

/// Writes `value` as JSON, sometimes with one object key written twice.
pub fn render_json(rng: &mut Rng, value: &Value) -> Vec<u8> {
    if rng.random_bool(0.5) {
        return value.to_string().into_bytes();
    }
    let mut out = String::new();
    write_with_duplicate_key(rng, value, &mut out);
    out.into_bytes()
}

/// JSON in which each object has a small chance to repeat one of its entries.
fn write_with_duplicate_key(rng: &mut Rng, value: &Value, out: &mut String) {
    match value {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_with_duplicate_key(rng, item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let duplicate =
                (!map.is_empty() && rng.random_bool(0.2)).then(|| below(rng, map.len()));
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let entry = |out: &mut String, rng: &mut Rng| {
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    write_with_duplicate_key(rng, v, out);
                };
                entry(out, rng);
                if duplicate == Some(i) {
                    out.push(',');
                    entry(out, rng);
                }
            }
            out.push('}');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng as _;
    use serde_json::json;

    use super::*;

    fn seed() -> Value {
        json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
               "metadata": {"name": "reviews"},
               "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews"}, "weight": 100}]}]}})
    }

    #[test]
    fn mutations_change_the_tree_and_render_as_parseable_text_mostly() {
        let dict = Dictionary::from_values([&seed()]);
        assert!(dict.keys.contains(&"destination".to_string()));
        assert!(dict.strings.contains(&"reviews".to_string()));
        let (mut changed, mut parsed) = (0, 0);
        for s in 0..200 {
            let mut rng = Rng::seed_from_u64(s);
            let mut v = seed();
            mutate(&mut rng, &mut v, &dict, &[seed()]);
            changed += usize::from(v != seed());
            let text = render(&mut rng, &v);
            parsed += usize::from(serde_yaml::from_slice::<serde_yaml::Value>(&text).is_ok());
        }
        assert!(changed > 150, "{changed} of 200 mutations changed the tree");
        assert!(parsed > 100, "{parsed} of 200 renderings parse as YAML");
    }

    #[test]
    fn duplicate_keys_are_written() {
        let v = json!({"a": 1, "b": {"c": 2}});
        let duplicated = (0..100).any(|s| {
            let mut out = String::new();
            write_with_duplicate_key(&mut Rng::seed_from_u64(s), &v, &mut out);
            out.matches("\"a\"").count() == 2 || out.matches("\"c\"").count() == 2
        });
        assert!(duplicated);
    }

    #[test]
    fn node_paths_escape_pointer_characters() {
        let v = json!({"a/b": {"c~d": [1]}});
        let paths = node_paths(&v);
        assert_eq!(paths, ["", "/a~1b", "/a~1b/c~0d", "/a~1b/c~0d/0"]);
        for p in paths {
            assert!(v.pointer(&p).is_some(), "{p}");
        }
    }
}

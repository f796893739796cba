//! Reads Prometheus' text exposition (what `/stats/prometheus` and `/metrics` serve) into
//! samples the tests can select by name and labels.

use std::collections::BTreeMap;
use std::net::SocketAddr;

/// One sample line: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Every sample of an exposition. Comment lines are skipped; a line that is not a sample
/// fails the test with the line.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| sample(line).unwrap_or_else(|| panic!("not a sample line: {line:?}")))
        .collect()
}

fn sample(line: &str) -> Option<Sample> {
    let (name, rest) = match line.find(['{', ' ']) {
        Some(i) => line.split_at(i),
        None => return None,
    };
    let mut labels = BTreeMap::new();
    let rest = if let Some(mut inner) = rest.strip_prefix('{') {
        loop {
            if let Some(after) = inner.strip_prefix('}') {
                break after;
            }
            let eq = inner.find('=')?;
            let key = inner[..eq].trim_start_matches(',').to_string();
            let mut chars = inner[eq + 1..].strip_prefix('"')?.char_indices();
            let mut value = String::new();
            let end = loop {
                match chars.next()? {
                    (_, '\\') => match chars.next()? {
                        (_, 'n') => value.push('\n'),
                        (_, c) => value.push(c),
                    },
                    (i, '"') => break i,
                    (_, c) => value.push(c),
                }
            };
            labels.insert(key, value);
            inner = &inner[eq + 1..][1 + end + 1..];
            inner = inner.strip_prefix(',').unwrap_or(inner);
        }
    } else {
        rest
    };
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// The sum of the samples named `name` whose labels include every `(key, value)` of `having`.
pub fn sum(samples: &[Sample], name: &str, having: &[(&str, &str)]) -> f64 {
    select(samples, name, having).map(|s| s.value).sum()
}

/// The samples named `name` whose labels include every `(key, value)` of `having`.
pub fn select<'a>(
    samples: &'a [Sample],
    name: &'a str,
    having: &'a [(&'a str, &'a str)],
) -> impl Iterator<Item = &'a Sample> + 'a {
    samples.iter().filter(move |s| {
        s.name == name
            && having
                .iter()
                .all(|(k, v)| s.labels.get(*k).is_some_and(|have| have == v))
    })
}

/// `GET http://<addr><path>`, parsed; `None` while it does not answer 200.
pub async fn scrape(addr: SocketAddr, path: &str) -> Option<Vec<Sample>> {
    let reply = crate::HttpClient::new()
        .request(addr, "GET", &addr.to_string(), path, &[])
        .await
        .ok()?;
    reply.status.is_success().then(|| parse(&reply.body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_with_escaped_labels_and_without_labels() {
        let text = "# HELP x y\n# TYPE x counter\n\
                    istio_requests_total{reporter=\"source\",code=\"200\",odd=\"a\\\"b,c\\\\d\"} 7\n\
                    up 1\n\
                    h_bucket{le=\"+Inf\"} 3\n";
        let samples = parse(text);
        assert_eq!(samples.len(), 3);
        assert_eq!(samples[0].labels["odd"], "a\"b,c\\d");
        assert_eq!(samples[0].labels["code"], "200");
        assert_eq!(
            sum(&samples, "istio_requests_total", &[("reporter", "source")]),
            7.0
        );
        assert_eq!(
            sum(
                &samples,
                "istio_requests_total",
                &[("reporter", "destination")]
            ),
            0.0
        );
        assert_eq!(samples[1].name, "up");
        assert_eq!(samples[2].labels["le"], "+Inf");
    }
}

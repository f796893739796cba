//! Admin `/stats`: the proxy's metrics as Envoy's admin lists them, for tools that read
//! Envoy's `/stats` rather than scrape Prometheus. One `name: value` line per series (labels
//! kept in the name, `name{k="v"}`, as Prometheus names them: the names are Istio's and
//! Envoy's Prometheus names, not Envoy's dotted stat names); `?format=json` is Envoy's
//! `{"stats": [{"name", "value"}]}`, `?format=prometheus` the same text as
//! `/stats/prometheus`; `?filter=<regex>` keeps the series whose name matches, `?usedonly`
//! those that are not zero. Histograms are listed by their `_count` and `_sum` series.

use serde_json::json;

/// One series of the Prometheus text exposition: its name with labels, and its value.
fn series(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' '))
        // Buckets are the histogram's shape, not a stat of their own.
        .filter(|(name, _)| !name.contains("_bucket{") && !name.ends_with("_bucket"))
}

/// What `/stats` asks for.
#[derive(Debug, Default)]
pub struct Query {
    pub json: bool,
    pub filter: Option<regex::Regex>,
    pub used_only: bool,
}

impl Query {
    /// Reads `format`, `filter` and `usedonly`; a bad filter is the caller's 400.
    pub fn parse(query: Option<&str>) -> Result<Self, String> {
        let mut parsed = Self::default();
        for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match key.as_ref() {
                "format" => match value.as_ref() {
                    "json" => parsed.json = true,
                    "text" | "prometheus" => {}
                    other => return Err(format!("format {other:?}: json, text or prometheus")),
                },
                "filter" => {
                    parsed.filter = Some(
                        regex::Regex::new(&value).map_err(|e| format!("filter {value:?}: {e}"))?,
                    );
                }
                "usedonly" => parsed.used_only = true,
                _ => {}
            }
        }
        Ok(parsed)
    }

    fn keeps(&self, name: &str, value: &str) -> bool {
        self.filter.as_ref().is_none_or(|f| f.is_match(name))
            && !(self.used_only && value.parse::<f64>().is_ok_and(|v| v == 0.0))
    }
}

/// `/stats` from the Prometheus text of the proxy's registry.
pub fn render(prometheus: &str, query: &Query) -> (String, &'static str) {
    let kept = series(prometheus).filter(|(name, value)| query.keeps(name, value));
    if query.json {
        let stats: Vec<_> = kept
            .map(|(name, value)| {
                let value = value
                    .parse::<u64>()
                    .map(serde_json::Value::from)
                    .or_else(|_| value.parse::<f64>().map(serde_json::Value::from))
                    .unwrap_or_else(|_| serde_json::Value::from(value));
                json!({"name": name, "value": value})
            })
            .collect();
        let body = serde_json::to_string_pretty(&json!({ "stats": stats })).unwrap_or_default();
        (body, "application/json")
    } else {
        let mut body = String::new();
        for (name, value) in kept {
            body.push_str(name);
            body.push_str(": ");
            body.push_str(value);
            body.push('\n');
        }
        (body, "text/plain; charset=utf-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP envoy_cluster_upstream_cx_active Active connections.
# TYPE envoy_cluster_upstream_cx_active gauge
envoy_cluster_upstream_cx_active{cluster_name=\"outbound|9080||reviews\"} 3
envoy_cluster_upstream_cx_active{cluster_name=\"outbound|9080||ratings\"} 0
# TYPE istio_request_duration_milliseconds histogram
istio_request_duration_milliseconds_bucket{le=\"0.5\"} 1
istio_request_duration_milliseconds_sum 12.5
istio_request_duration_milliseconds_count 4
# EOF
";

    #[test]
    fn every_series_is_a_line_and_buckets_are_left_out() {
        let (body, content_type) = render(TEXT, &Query::default());
        assert_eq!(content_type, "text/plain; charset=utf-8");
        assert_eq!(
            body,
            "envoy_cluster_upstream_cx_active{cluster_name=\"outbound|9080||reviews\"}: 3
envoy_cluster_upstream_cx_active{cluster_name=\"outbound|9080||ratings\"}: 0
istio_request_duration_milliseconds_sum: 12.5
istio_request_duration_milliseconds_count: 4
"
        );
    }

    #[test]
    fn filter_usedonly_and_json_as_envoy() {
        let query = Query::parse(Some("filter=cx_active&usedonly&format=json")).expect("parses");
        let (body, content_type) = render(TEXT, &query);
        assert_eq!(content_type, "application/json");
        let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(
            json,
            json!({"stats": [{"name": "envoy_cluster_upstream_cx_active{cluster_name=\"outbound|9080||reviews\"}", "value": 3}]})
        );
    }

    #[test]
    fn bad_queries_are_refused_by_name() {
        let err = Query::parse(Some("filter=(")).expect_err("bad regex");
        assert!(err.starts_with("filter \"(\""), "{err}");
        let err = Query::parse(Some("format=xml")).expect_err("bad format");
        assert!(err.contains("format \"xml\""), "{err}");
    }
}

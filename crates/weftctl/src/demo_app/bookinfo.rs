//! The details, reviews and ratings roles of Istio's bookinfo sample, and the environment they
//! (and productpage) read their upstreams from, so `samples/bookinfo/platform/kube/bookinfo.yaml`
//! runs with each image replaced by `weftctl demo-app --role <role> --version <v>`.
//!
//! Each role answers like Istio's app where a mesh can tell the difference (paths, status
//! codes, which upstream it calls and when, the headers it propagates) and also reports the
//! trace headers it received, so a trace can be followed through the output.

use std::time::Duration;

use anyhow::{Context, bail};
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::{
    Identity, Reply, Role, json_reply,
    upstream::{self, Upstream},
};

/// How long reviews waits for ratings (Istio's reviews v3 waits 2.5 s).
const RATINGS_TIMEOUT: Duration = Duration::from_millis(2500);

/// What reviews says about a review whose rating it could not get.
pub const RATINGS_UNAVAILABLE: &str = "Ratings service is currently unavailable";

/// The port every bookinfo service listens on, and the default of the `*_SERVICE_PORT`s.
const DEFAULT_PORT: u16 = 9080;

/// The reviews reviews serves, by reviewer (the reviewers ratings rates).
const REVIEWS: [(&str, &str); 2] = [
    (
        "Reviewer1",
        "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!",
    ),
    (
        "Reviewer2",
        "Absolutely fun and entertaining. The play lacks thematic depth when compared to other plays by Shakespeare.",
    ),
];

/// The environment of the bookinfo roles, read once at start ([`Config::from_env`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `DETAILS_HOSTNAME` (default `details`) + `.SERVICES_DOMAIN`, `DETAILS_SERVICE_PORT`.
    pub details: Upstream,
    /// `REVIEWS_HOSTNAME` (default `reviews`) + `.SERVICES_DOMAIN`, `REVIEWS_SERVICE_PORT`.
    pub reviews: Upstream,
    /// `RATINGS_HOSTNAME` (default `ratings`) + `.SERVICES_DOMAIN`, `RATINGS_SERVICE_PORT`.
    pub ratings: Upstream,
    /// `ENABLE_RATINGS`: whether reviews calls ratings; unset, every version but v1 does.
    pub enable_ratings: Option<bool>,
    /// `STAR_COLOR`: the colour reviews gives the stars; unset, red for v3, black otherwise.
    pub star_color: Option<String>,
    /// `HOSTNAME` (the pod's name in Kubernetes), or `unknown`: reviews reports it.
    pub podname: String,
    /// `CLUSTER_NAME`, or `null` as Istio's reviews reports an unset one.
    pub clustername: String,
}

impl Default for Config {
    /// The defaults: what an empty environment gives.
    fn default() -> Self {
        let upstream = |host: &str| Upstream {
            host: host.to_owned(),
            port: DEFAULT_PORT,
        };
        Self {
            details: upstream("details"),
            reviews: upstream("reviews"),
            ratings: upstream("ratings"),
            enable_ratings: None,
            star_color: None,
            podname: "unknown".to_owned(),
            clustername: "null".to_owned(),
        }
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Reads the variables `var` gives (an empty value counts as unset).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let var = |name: &str| var(name).filter(|value| !value.is_empty());
        let domain = var("SERVICES_DOMAIN");
        let upstream = |service: &str, default: Upstream| -> anyhow::Result<Upstream> {
            let host_var = format!("{service}_HOSTNAME");
            let port_var = format!("{service}_SERVICE_PORT");
            let mut host = var(&host_var).unwrap_or(default.host);
            if let Some(domain) = &domain {
                host = format!("{host}.{domain}");
            }
            let port = match var(&port_var) {
                Some(port) => port
                    .parse()
                    .ok()
                    .filter(|port| *port != 0)
                    .with_context(|| format!("{port_var}={port:?} is not a port number"))?,
                None => default.port,
            };
            Ok(Upstream { host, port })
        };
        let defaults = Self::default();
        let enable_ratings = match var("ENABLE_RATINGS") {
            None => None,
            Some(value) if value.eq_ignore_ascii_case("true") => Some(true),
            Some(value) if value.eq_ignore_ascii_case("false") => Some(false),
            Some(value) => bail!("ENABLE_RATINGS={value:?}: expected true or false"),
        };
        Ok(Self {
            details: upstream("DETAILS", defaults.details)?,
            reviews: upstream("REVIEWS", defaults.reviews)?,
            ratings: upstream("RATINGS", defaults.ratings)?,
            enable_ratings,
            star_color: var("STAR_COLOR"),
            podname: var("HOSTNAME").unwrap_or(defaults.podname),
            clustername: var("CLUSTER_NAME").unwrap_or(defaults.clustername),
        })
    }

    /// Whether reviews of `version` calls ratings: v1 does not, v2 and v3 do, as Istio's.
    pub fn ratings_enabled(&self, version: &str) -> bool {
        self.enable_ratings.unwrap_or(version != "v1")
    }

    /// The colour of the stars reviews of `version` shows: black for v2, red for v3.
    pub fn star_color(&self, version: &str) -> &str {
        match &self.star_color {
            Some(color) => color,
            None if version == "v3" => "red",
            None => "black",
        }
    }
}

/// The product id in `/<collection>/<id>`, if the path has that shape.
pub fn product_id<'a>(path: &'a str, collection: &str) -> Option<&'a str> {
    path.strip_prefix('/')?
        .strip_prefix(collection)?
        .strip_prefix('/')
        .filter(|id| !id.is_empty() && !id.contains('/'))
}

/// A product id as Istio's apps take it: a number (else they answer [`bad_id`]).
fn numeric_id(id: &str) -> Option<u64> {
    id.parse().ok()
}

fn bad_id() -> Reply {
    json_reply(
        StatusCode::BAD_REQUEST,
        &json!({"error": "please provide numeric product id"}),
    )
}

/// A role's 200: `body` plus its `version` and the `trace` headers it received.
fn answer(identity: &Identity, trace: Value, mut body: Value) -> Reply {
    body["version"] = json!(identity.version);
    body["trace"] = trace;
    json_reply(StatusCode::OK, &body)
}

/// `/health` of details, reviews and ratings: `{"status": "<Role> is healthy"}`.
pub fn health(role: Role) -> Reply {
    let name = role.name();
    let mut title = name[..1].to_ascii_uppercase();
    title.push_str(&name[1..]);
    json_reply(
        StatusCode::OK,
        &json!({"status": format!("{title} is healthy")}),
    )
}

/// details and ratings: the `body` of the product `id`, or 400 for an id that is no number.
fn product(
    identity: &Identity,
    id: &str,
    received: &HeaderMap,
    body: impl FnOnce(u64) -> Value,
) -> Reply {
    let Some(id) = numeric_id(id) else {
        return bad_id();
    };
    let trace = upstream::trace_report(&upstream::propagated(received));
    answer(identity, trace, body(id))
}

/// details: `GET /details/<id>`, the book's fixed data.
pub fn details(identity: &Identity, id: &str, received: &HeaderMap) -> Reply {
    product(identity, id, received, |id| {
        json!({
            "id": id,
            "author": "William Shakespeare",
            "year": 1595,
            "type": "paperback",
            "pages": 200,
            "publisher": "PublisherA",
            "language": "English",
            "ISBN-10": "1234567890",
            "ISBN-13": "123-1234567890",
        })
    })
}

/// ratings: `GET /ratings/<id>`, two fixed ratings.
pub fn ratings(identity: &Identity, id: &str, received: &HeaderMap) -> Reply {
    product(
        identity,
        id,
        received,
        |id| json!({"id": id, "ratings": {"Reviewer1": 5, "Reviewer2": 4}}),
    )
}

/// reviews: `GET /reviews/<id>`, two reviews; v2 and v3 add each one's rating from ratings
/// (or the error Istio's reviews shows when ratings fails), and `ratings_call` says which
/// ratings served and what it received.
pub async fn reviews(
    identity: &Identity,
    config: &Config,
    id: &str,
    received: &HeaderMap,
) -> Reply {
    let Some(id) = numeric_id(id) else {
        return bad_id();
    };
    let travels = upstream::propagated(received);
    let mut reviews: Vec<Value> = REVIEWS
        .iter()
        .map(|(reviewer, text)| json!({"reviewer": reviewer, "text": text}))
        .collect();
    let mut ratings_call = None;
    if config.ratings_enabled(&identity.version) {
        let color = config.star_color(&identity.version);
        let path = format!("/ratings/{id}");
        let ratings =
            match upstream::get_json(&config.ratings, &path, &travels, RATINGS_TIMEOUT).await {
                Ok((reply, body)) => {
                    ratings_call = Some(json!({
                        "served_by": reply.served_by,
                        "trace": body.get("trace").cloned().unwrap_or(Value::Null),
                    }));
                    body.get("ratings").cloned().unwrap_or(Value::Null)
                }
                Err(error) => {
                    tracing::warn!(error = format!("{error:#}"), "reviews: ratings failed");
                    ratings_call = Some(json!({"error": format!("{error:#}")}));
                    Value::Null
                }
            };
        for review in &mut reviews {
            let stars = review
                .get("reviewer")
                .and_then(Value::as_str)
                .and_then(|reviewer| ratings.get(reviewer))
                .and_then(Value::as_u64);
            review["rating"] = match stars {
                Some(stars) => json!({"stars": stars, "color": color}),
                None => json!({"error": RATINGS_UNAVAILABLE}),
            };
        }
    }
    let mut body = json!({
        "id": id.to_string(),
        "podname": config.podname,
        "clustername": config.clustername,
        "reviews": reviews,
    });
    if let Some(call) = ratings_call {
        body["ratings_call"] = call;
    }
    answer(identity, upstream::trace_report(&travels), body)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> anyhow::Result<Config> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_vars(|name| vars.get(name).cloned())
    }

    fn upstream(host: &str, port: u16) -> Upstream {
        Upstream {
            host: host.to_owned(),
            port,
        }
    }

    #[test]
    fn an_empty_environment_gives_istios_defaults() {
        let config = config(&[]).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.details, upstream("details", 9080));
        assert_eq!(config.reviews, upstream("reviews", 9080));
        assert_eq!(config.ratings, upstream("ratings", 9080));
        assert_eq!(config.podname, "unknown");
    }

    #[test]
    fn hostnames_ports_and_the_domain_are_read() {
        let config = config(&[
            ("SERVICES_DOMAIN", "bookinfo.svc.cluster.local"),
            ("DETAILS_HOSTNAME", "details-alt"),
            ("DETAILS_SERVICE_PORT", "9081"),
            ("RATINGS_SERVICE_PORT", "9083"),
            ("REVIEWS_HOSTNAME", ""),
            ("HOSTNAME", "reviews-v2-abc"),
            ("CLUSTER_NAME", "east"),
        ])
        .unwrap();
        assert_eq!(
            config.details,
            upstream("details-alt.bookinfo.svc.cluster.local", 9081)
        );
        assert_eq!(
            config.reviews,
            upstream("reviews.bookinfo.svc.cluster.local", 9080)
        );
        assert_eq!(
            config.ratings,
            upstream("ratings.bookinfo.svc.cluster.local", 9083)
        );
        assert_eq!(config.podname, "reviews-v2-abc");
        assert_eq!(config.clustername, "east");
    }

    #[test]
    fn bad_values_are_refused_by_name() {
        for (name, value) in [
            ("REVIEWS_SERVICE_PORT", "http"),
            ("RATINGS_SERVICE_PORT", "70000"),
            ("DETAILS_SERVICE_PORT", "0"),
            ("ENABLE_RATINGS", "maybe"),
        ] {
            let error = config(&[(name, value)]).unwrap_err().to_string();
            assert!(error.contains(name) && error.contains(value), "{error}");
        }
    }

    #[test]
    fn versions_decide_ratings_and_colour_unless_the_environment_does() {
        let plain = config(&[]).unwrap();
        assert!(!plain.ratings_enabled("v1"));
        assert!(plain.ratings_enabled("v2"));
        assert!(plain.ratings_enabled("v3"));
        assert_eq!(plain.star_color("v2"), "black");
        assert_eq!(plain.star_color("v3"), "red");

        let set = config(&[("ENABLE_RATINGS", "FALSE"), ("STAR_COLOR", "blue")]).unwrap();
        assert!(!set.ratings_enabled("v2"));
        assert_eq!(set.star_color("v3"), "blue");
        let on = config(&[("ENABLE_RATINGS", "true")]).unwrap();
        assert!(on.ratings_enabled("v1"));
    }

    #[test]
    fn product_ids_come_from_the_path() {
        assert_eq!(product_id("/details/0", "details"), Some("0"));
        assert_eq!(product_id("/details/", "details"), None);
        assert_eq!(product_id("/details/0/x", "details"), None);
        assert_eq!(product_id("/detailsx/0", "details"), None);
        assert_eq!(product_id("/reviews/7", "details"), None);
    }
}

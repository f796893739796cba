//! The productpage role of Istio's bookinfo sample: the page that calls details and reviews
//! (propagating the trace headers it received) and renders what they said, or the errors
//! Istio's productpage shows when they fail, plus who served and what each hop received.

use std::{fmt::Write as _, time::Duration};

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde_json::{Value, json};

use super::{
    Config, Identity, Reply, html_reply, json_reply, text_reply,
    upstream::{self, Fetched, Upstream},
};

/// How long productpage waits for details, reviews or ratings (Istio's productpage: 3 s).
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(3);

/// The one product: its id, title and summary.
const PRODUCT_ID: u64 = 0;
const TITLE: &str = "The Comedy of Errors";
const SUMMARY: &str = "The Comedy of Errors is one of William Shakespeare's early plays. It is his \
    shortest and one of his most farcical comedies, with a major part of the humour coming from \
    slapstick and mistaken identity, in addition to puns and word play.";

/// The details fields the page shows, with their labels.
const DETAIL_FIELDS: [(&str, &str); 8] = [
    ("Type", "type"),
    ("Pages", "pages"),
    ("Publisher", "publisher"),
    ("Language", "language"),
    ("ISBN-10", "ISBN-10"),
    ("ISBN-13", "ISBN-13"),
    ("Author", "author"),
    ("Year", "year"),
];

/// productpage's routes.
pub async fn respond(
    identity: &Identity,
    config: &Config,
    path: &str,
    received: &HeaderMap,
) -> Reply {
    let travels = upstream::propagated(received);
    match path {
        "/" => html_reply(StatusCode::OK, index()),
        "/health" => text_reply(StatusCode::OK, "Product page is healthy".to_owned()),
        "/productpage" => html_reply(
            StatusCode::OK,
            product_page(identity, config, &travels).await,
        ),
        "/api/v1/products" => json_reply(
            StatusCode::OK,
            &json!([{"id": PRODUCT_ID, "title": TITLE, "descriptionHtml": SUMMARY}]),
        ),
        _ => api(config, path, &travels).await,
    }
}

/// `/api/v1/products/<id>` (details), `…/reviews` and `…/ratings`: the upstream's JSON as is.
async fn api(config: &Config, path: &str, travels: &[(HeaderName, HeaderValue)]) -> Reply {
    let not_found = || text_reply(StatusCode::NOT_FOUND, format!("no route for {path}\n"));
    let Some(rest) = path.strip_prefix("/api/v1/products/") else {
        return not_found();
    };
    let (id, what) = rest.split_once('/').unwrap_or((rest, ""));
    let (upstream, collection, unavailable) = match what {
        "" => (&config.details, "details", "product details"),
        "reviews" => (&config.reviews, "reviews", "product reviews"),
        "ratings" => (&config.ratings, "ratings", "product ratings"),
        _ => return not_found(),
    };
    if id.is_empty() {
        return not_found();
    }
    let path = format!("/{collection}/{id}");
    let error = |status| {
        json_reply(
            status,
            &json!({"error": format!("Sorry, {unavailable} are currently unavailable for this book.")}),
        )
    };
    match upstream::get(upstream, &path, travels, UPSTREAM_TIMEOUT).await {
        Ok(fetched) if fetched.status.is_success() => {
            super::reply(fetched.status, "application/json", fetched.body)
        }
        Ok(fetched) => error(fetched.status),
        Err(e) => {
            tracing::warn!(error = format!("{e:#}"), "productpage: {collection} failed");
            error(StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

fn index() -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Simple Bookstore App</title></head>\n\
         <body><h1>Simple Bookstore App</h1>\n\
         <p>Hello! This is a simple bookstore application consisting of three services as shown below.</p>\n\
         <ul><li><a href=\"/productpage\">{TITLE}</a> (the product page)</li>\n\
         <li><a href=\"/api/v1/products\">/api/v1/products</a> (the API)</li></ul>\n</body></html>\n"
    )
}

/// `/productpage`: details and reviews fetched at once, then rendered.
async fn product_page(
    identity: &Identity,
    config: &Config,
    travels: &[(HeaderName, HeaderValue)],
) -> String {
    let fetch = |upstream: &Upstream, path: String| {
        let upstream = upstream.clone();
        async move {
            let result = upstream::get_json(&upstream, &path, travels, UPSTREAM_TIMEOUT).await;
            if let Err(e) = &result {
                tracing::warn!(error = format!("{e:#}"), "productpage: {path} failed");
            }
            result.ok()
        }
    };
    let (details, reviews) = tokio::join!(
        fetch(&config.details, format!("/details/{PRODUCT_ID}")),
        fetch(&config.reviews, format!("/reviews/{PRODUCT_ID}")),
    );
    render(identity, travels, details.as_ref(), reviews.as_ref())
}

/// Who served an upstream call: its `x-weft-*` headers, else its JSON's version.
fn served_by(role: &str, fetched: &Fetched, json: &Value) -> String {
    fetched
        .served_by
        .clone()
        .unwrap_or_else(|| match json.get("version").and_then(Value::as_str) {
            Some(version) => format!("{role}-{version}"),
            None => role.to_owned(),
        })
}

fn render(
    identity: &Identity,
    travels: &[(HeaderName, HeaderValue)],
    details: Option<&(Fetched, Value)>,
    reviews: Option<&(Fetched, Value)>,
) -> String {
    let mut page = String::new();
    let mut served = vec![format!("{}-{}", identity.service, identity.version)];
    let mut traces = vec![("productpage", upstream::trace_report(travels))];
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Simple Bookstore App</title></head>\n\
         <body>\n<h1>{}</h1>\n<p>{}</p>\n",
        escape(TITLE),
        escape(SUMMARY)
    );

    match details {
        Some((fetched, json)) => {
            served.push(served_by("details", fetched, json));
            traces.push(("details", json.get("trace").cloned().unwrap_or_default()));
            page.push_str("<h2>Book Details</h2>\n<dl class=\"details\">\n");
            for (label, field) in DETAIL_FIELDS {
                let value = match json.get(field) {
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => "-".to_owned(),
                };
                let _ = writeln!(page, "<dt>{label}:</dt><dd>{}</dd>", escape(&value));
            }
            page.push_str("</dl>\n");
        }
        None => page.push_str(
            "<h2>Error fetching product details!</h2>\n\
             <p>Sorry, product details are currently unavailable for this book.</p>\n",
        ),
    }

    match reviews {
        Some((fetched, json)) => {
            served.push(served_by("reviews", fetched, json));
            traces.push(("reviews", json.get("trace").cloned().unwrap_or_default()));
            if let Some(call) = json.get("ratings_call") {
                if let Some(by) = call.get("served_by").and_then(Value::as_str) {
                    served.push(format!("{by} (via reviews)"));
                }
                if let Some(trace) = call.get("trace") {
                    traces.push(("ratings", trace.clone()));
                }
            }
            page.push_str("<h2>Book Reviews</h2>\n");
            for review in json
                .get("reviews")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                render_review(&mut page, review);
            }
            let text = |key| json.get(key).and_then(Value::as_str).unwrap_or("unknown");
            let _ = writeln!(
                page,
                "<p class=\"reviews-pod\">Reviews served by: {} (pod {}, cluster {})</p>",
                escape(&served_by("reviews", fetched, json)),
                escape(text("podname")),
                escape(text("clustername"))
            );
        }
        None => page.push_str(
            "<h2>Error fetching product reviews!</h2>\n\
             <p>Sorry, product reviews are currently unavailable for this book.</p>\n",
        ),
    }

    page.push_str("<h4>Served by</h4>\n<ul class=\"served-by\">\n");
    for by in &served {
        let _ = writeln!(page, "<li>{}</li>", escape(by));
    }
    page.push_str("</ul>\n<h4>Trace headers each hop received</h4>\n<pre class=\"trace\">\n");
    for (hop, trace) in &traces {
        for (name, value) in trace.as_object().into_iter().flatten() {
            let value = value.as_str().unwrap_or_default();
            let _ = writeln!(page, "{hop} {}: {}", escape(name), escape(value));
        }
    }
    page.push_str("</pre>\n</body></html>\n");
    page
}

fn render_review(page: &mut String, review: &Value) {
    let text = |key| review.get(key).and_then(Value::as_str).unwrap_or_default();
    let _ = write!(
        page,
        "<blockquote class=\"review\">\n<p>{}</p>\n<small>{}</small>\n",
        escape(text("text")),
        escape(text("reviewer"))
    );
    if let Some(rating) = review.get("rating") {
        match rating.get("stars").and_then(Value::as_u64) {
            Some(stars) => {
                let full = stars.min(5) as usize;
                let color = rating
                    .get("color")
                    .and_then(Value::as_str)
                    .unwrap_or("black");
                let _ = writeln!(
                    page,
                    "<p class=\"rating\" style=\"color: {}\">{}{} ({stars}/5)</p>",
                    escape(color),
                    "★".repeat(full),
                    "☆".repeat(5 - full)
                );
            }
            None => {
                let error = rating
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("no rating");
                let _ = writeln!(page, "<p class=\"rating-error\">{}</p>", escape(error));
            }
        }
    }
    page.push_str("</blockquote>\n");
}

/// Text made safe to put in HTML, in elements and quoted attributes.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape(r#"<a href="x">Tom & 'Jerry'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn a_rating_shows_its_stars_in_its_colour() {
        let mut page = String::new();
        render_review(
            &mut page,
            &json!({"reviewer": "R", "text": "t", "rating": {"stars": 4, "color": "red"}}),
        );
        assert!(
            page.contains("<p class=\"rating\" style=\"color: red\">★★★★☆ (4/5)</p>"),
            "{page}"
        );
        let mut page = String::new();
        render_review(
            &mut page,
            &json!({"reviewer": "R", "text": "t", "rating": {"error": "down"}}),
        );
        assert!(
            page.contains("<p class=\"rating-error\">down</p>"),
            "{page}"
        );
    }
}

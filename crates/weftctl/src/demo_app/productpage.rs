//! The productpage role of Istio's bookinfo sample: the page that calls details and reviews
//! (propagating the trace headers it received) and renders what they said, or the errors
//! Istio's productpage shows when they fail, plus who served and what each hop received.
//!
//! Like Istio's productpage it has users: `POST /login` (form field `username`) sets a
//! `session` cookie naming the user, `GET /logout` clears it, and while it is set every call
//! to details, reviews and ratings carries `end-user: <user>`, the header Istio's
//! `virtual-service-reviews-jason-v2-v3.yaml` routes on. Without a session an `end-user`
//! header the request brought travels on as received (Istio's productpage drops it), so a
//! client that keeps no cookies can pick a user too.

use std::{fmt::Write as _, time::Duration};

use http::{
    HeaderMap, HeaderName, HeaderValue, Method, StatusCode,
    header::{ALLOW, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE},
    request::Parts,
};
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

/// The cookie `/login` sets. Istio's productpage keeps the user in a signed Flask session; this
/// test app stores the name itself (urlencoded, so that a cookie can hold any name)
/// and trusts it unsigned: anyone can claim any user, as anyone can with `end-user` anyway.
const SESSION_COOKIE: &str = "session";

/// The header productpage names the signed-in user in on its upstream calls.
const END_USER: &str = "end-user";

/// The longest user name `/login` accepts.
const MAX_USER_LEN: usize = 256;

/// Where `/login` and `/logout` send the browser back to.
const HOME: &str = "/productpage";

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

/// productpage's routes; `body` is the request's (only `/login` reads it).
pub async fn respond(identity: &Identity, config: &Config, request: &Parts, body: &[u8]) -> Reply {
    let (path, received) = (request.uri.path(), &request.headers);
    let travels = upstream::propagated(received);
    let user = session_user(received);
    let sent = upstream_headers(&travels, user.as_deref());
    match path {
        "/" => html_reply(StatusCode::OK, index()),
        "/health" => text_reply(StatusCode::OK, "Product page is healthy".to_owned()),
        "/login" => login(request, body),
        "/logout" => logout(&request.method),
        "/productpage" => html_reply(
            StatusCode::OK,
            product_page(identity, config, user.as_deref(), &travels, &sent).await,
        ),
        "/api/v1/products" => json_reply(
            StatusCode::OK,
            &json!([{"id": PRODUCT_ID, "title": TITLE, "descriptionHtml": SUMMARY}]),
        ),
        _ => api(config, path, &sent).await,
    }
}

/// `POST /login`: signs in the form's `username` (or the query's, as Flask's `request.values`;
/// `passwd` is not checked, as in Istio's) and goes back to the product page.
fn login(request: &Parts, body: &[u8]) -> Reply {
    if request.method != Method::POST {
        return method_not_allowed("POST");
    }
    match login_user(request, body) {
        Ok(user) => home(format!("{SESSION_COOKIE}={}; Path=/", cookie_encode(&user))),
        Err((status, reason)) => text_reply(status, format!("login: {reason}\n")),
    }
}

/// The user a login names, trimmed and checked ([`valid_user`]), or why there is none.
fn login_user(request: &Parts, body: &[u8]) -> Result<String, (StatusCode, String)> {
    let bad = |reason: String| (StatusCode::BAD_REQUEST, reason);
    let mut username = None;
    if !body.is_empty() {
        let content_type = request
            .headers
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("application/x-www-form-urlencoded");
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        if !essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            return Err((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("the form must be application/x-www-form-urlencoded, not {content_type}"),
            ));
        }
        let form =
            std::str::from_utf8(body).map_err(|_| bad("the form is not UTF-8".to_owned()))?;
        username = form_value(form, "username");
    }
    if username.is_none() {
        username = form_value(request.uri.query().unwrap_or_default(), "username");
    }
    let username = username.ok_or_else(|| bad("no username given".to_owned()))?;
    let user = username.trim();
    if !valid_user(user) {
        return Err(bad(format!(
            "username {username:?} is not 1 to {MAX_USER_LEN} printable ASCII characters"
        )));
    }
    Ok(user.to_owned())
}

/// `GET /logout`: clears the session and goes back to the product page.
fn logout(method: &Method) -> Reply {
    if method != Method::GET && method != Method::HEAD {
        return method_not_allowed("GET, HEAD");
    }
    home(format!(
        "{SESSION_COOKIE}=; Path=/; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT"
    ))
}

/// A 302 to the product page that sets `cookie`.
fn home(cookie: String) -> Reply {
    let mut reply = html_reply(
        StatusCode::FOUND,
        format!("<!DOCTYPE html>\n<p>Redirecting to <a href=\"{HOME}\">{HOME}</a>.</p>\n"),
    );
    let headers = reply.headers_mut();
    headers.insert(LOCATION, HeaderValue::from_static(HOME));
    // The cookie is printable ASCII by construction ([`cookie_encode`]).
    if let Ok(cookie) = HeaderValue::try_from(cookie) {
        headers.insert(SET_COOKIE, cookie);
    }
    reply
}

fn method_not_allowed(allow: &'static str) -> Reply {
    let mut reply = text_reply(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method not allowed: use {allow}\n"),
    );
    reply
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    reply
}

/// A user name productpage takes: 1 to [`MAX_USER_LEN`] printable ASCII characters, spaces
/// only inside, so that it is an `end-user` header value as it is.
fn valid_user(user: &str) -> bool {
    (1..=MAX_USER_LEN).contains(&user.len())
        && user.bytes().all(|b| (b' '..=b'~').contains(&b))
        && user.trim() == user
}

/// The signed-in user: the first `session` cookie's value, decoded, if it is a valid user
/// name (a malformed or empty one counts as no session).
fn session_user(received: &HeaderMap) -> Option<String> {
    let (_, value) = received
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|cookie| cookie.split_once('='))
        .find(|(name, _)| name.trim() == SESSION_COOKIE)?;
    let value = value.trim();
    let value = value
        .strip_prefix('"')
        .and_then(|quoted| quoted.strip_suffix('"'))
        .unwrap_or(value);
    Some(cookie_decode(value)).filter(|user| valid_user(user))
}

/// The headers productpage sends upstream: those it propagates, with `end-user` naming the
/// signed-in user in place of any received one when there is a session.
fn upstream_headers(
    travels: &[(HeaderName, HeaderValue)],
    user: Option<&str>,
) -> Vec<(HeaderName, HeaderValue)> {
    let Some(value) = user.and_then(|user| HeaderValue::from_str(user).ok()) else {
        return travels.to_vec();
    };
    let mut sent: Vec<_> = travels
        .iter()
        .filter(|(name, _)| name != END_USER)
        .cloned()
        .collect();
    sent.push((HeaderName::from_static(END_USER), value));
    sent
}

/// `user` as a cookie value: urlencoded (`form_urlencoded`), so that only letters, digits,
/// `*-._`, `+` and `%XX` escapes remain, all of which a cookie value may hold.
fn cookie_encode(user: &str) -> String {
    form_urlencoded::byte_serialize(user.as_bytes()).collect()
}

/// A [`cookie_encode`]d value decoded (lossily: a broken escape is kept as written).
fn cookie_decode(value: &str) -> String {
    form_value(value, "").unwrap_or_default()
}

/// The first value of `key` in the urlencoded `form` (with `key` empty: the first name).
fn form_value(form: &str, key: &str) -> Option<String> {
    form_urlencoded::parse(form.as_bytes()).find_map(|(name, value)| match key {
        "" => Some(name.into_owned()),
        _ => (name == key).then(|| value.into_owned()),
    })
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

/// `/productpage`: details and reviews fetched at once with the `sent` headers, then rendered
/// (`travels`: the propagated headers as received, which the page reports).
async fn product_page(
    identity: &Identity,
    config: &Config,
    user: Option<&str>,
    travels: &[(HeaderName, HeaderValue)],
    sent: &[(HeaderName, HeaderValue)],
) -> String {
    let fetch = |upstream: &Upstream, path: String| {
        let upstream = upstream.clone();
        async move {
            let result = upstream::get_json(&upstream, &path, sent, UPSTREAM_TIMEOUT).await;
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
    render(identity, user, travels, details.as_ref(), reviews.as_ref())
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
    user: Option<&str>,
    travels: &[(HeaderName, HeaderValue)],
    details: Option<&(Fetched, Value)>,
    reviews: Option<&(Fetched, Value)>,
) -> String {
    let mut page = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Simple Bookstore App</title></head>\n\
         <body>\n",
    );
    let mut served = vec![format!("{}-{}", identity.service, identity.version)];
    let mut traces = vec![("productpage", upstream::trace_report(travels))];
    // Istio's page: "signed in as <user>" and a sign-out link, else a sign-in form.
    match user {
        Some(user) => {
            let _ = writeln!(
                page,
                "<p class=\"user\">Signed in as {}. <a href=\"logout\">Sign out</a></p>",
                escape(user)
            );
        }
        None => page.push_str(
            "<form class=\"login\" method=\"post\" action=\"login\">\
             <input name=\"username\" placeholder=\"User Name\"> \
             <input type=\"password\" name=\"passwd\" placeholder=\"Password\"> \
             <button type=\"submit\">Sign in</button></form>\n",
        ),
    }
    let _ = write!(
        page,
        "<h1>{}</h1>\n<p>{}</p>\n",
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
    fn forms_and_cookies_decode_and_encode() {
        assert_eq!(
            form_value("a=%ZZ&username=j%61son+x&username=no", "username").as_deref(),
            Some("jason x")
        );
        assert_eq!(form_value("user=jason&passwd", "username"), None);
        for user in ["jason", "Jason O'Neil", "a;b,c\\d\"e%f=g&h"] {
            let encoded = cookie_encode(user);
            assert!(
                encoded
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"*-._+%".contains(&b)),
                "{encoded}"
            );
            assert_eq!(cookie_decode(&encoded), user);
        }
        assert_eq!(cookie_encode("jason"), "jason");
    }

    #[test]
    fn a_session_replaces_the_received_end_user() {
        let travels = vec![
            (
                HeaderName::from_static("end-user"),
                HeaderValue::from_static("mallory"),
            ),
            (
                HeaderName::from_static("x-request-id"),
                HeaderValue::from_static("r"),
            ),
        ];
        assert_eq!(upstream_headers(&travels, None), travels);
        let sent = upstream_headers(&travels, Some("jason"));
        assert_eq!(
            upstream::trace_report(&sent),
            json!({"x-request-id": "r", "end-user": "jason"})
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

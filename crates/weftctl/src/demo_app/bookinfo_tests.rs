//! The bookinfo roles end to end on loopback: ratings, details, reviews and productpage each
//! serve on an ephemeral port, wired to each other through [`Config`], and are asked over real
//! sockets what a mesh would see (pages, versions, trace headers, signed-in users, failures).

use std::time::Duration;

use http::{HeaderName, HeaderValue, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::{
    App, Config, Faults, Identity, Role,
    upstream::{self, Fetched, Upstream},
};

const TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `role` at `version` on an ephemeral loopback port, for as long as the test runs.
async fn start(role: Role, version: &str, config: Config) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = App {
        role,
        identity: Identity {
            service: role.name().to_owned(),
            version: version.to_owned(),
        },
        config,
        faults: Faults::default(),
    };
    tokio::spawn(super::serve(listener, app));
    Upstream {
        host: "127.0.0.1".to_owned(),
        port,
    }
}

/// A loopback port nothing listens on.
async fn closed_port() -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    Upstream {
        host: "127.0.0.1".to_owned(),
        port,
    }
}

/// The four apps, reviews at `reviews_version`; `details` and `ratings` replace the real ones
/// when given (e.g. with a closed port).
struct Bookinfo {
    productpage: Upstream,
    reviews: Upstream,
    details: Upstream,
    ratings: Upstream,
}

async fn bookinfo(
    reviews_version: &str,
    details: Option<Upstream>,
    ratings: Option<Upstream>,
) -> Bookinfo {
    let ratings = match ratings {
        Some(ratings) => ratings,
        None => start(Role::Ratings, "v1", Config::default()).await,
    };
    let details = match details {
        Some(details) => details,
        None => start(Role::Details, "v1", Config::default()).await,
    };
    let reviews_config = Config {
        ratings: ratings.clone(),
        podname: format!("reviews-{reviews_version}-pod"),
        ..Config::default()
    };
    let reviews = start(Role::Reviews, reviews_version, reviews_config).await;
    let productpage_config = Config {
        details: details.clone(),
        reviews: reviews.clone(),
        ratings: ratings.clone(),
        ..Config::default()
    };
    let productpage = start(Role::Productpage, "v1", productpage_config).await;
    Bookinfo {
        productpage,
        reviews,
        details,
        ratings,
    }
}

fn headers(pairs: &[(&'static str, &'static str)]) -> Vec<(HeaderName, HeaderValue)> {
    pairs
        .iter()
        .map(|&(n, v)| (HeaderName::from_static(n), HeaderValue::from_static(v)))
        .collect()
}

async fn get(at: &Upstream, path: &str, sent: &[(&'static str, &'static str)]) -> Fetched {
    upstream::get(at, path, &headers(sent), TIMEOUT)
        .await
        .unwrap()
}

/// A GET that must answer 200, as text.
async fn page(at: &Upstream, path: &str, sent: &[(&'static str, &'static str)]) -> String {
    let fetched = get(at, path, sent).await;
    let body = String::from_utf8(fetched.body.to_vec()).unwrap();
    assert_eq!(fetched.status, StatusCode::OK, "{path}: {body}");
    body
}

/// A GET that must answer 200, as JSON.
async fn json(at: &Upstream, path: &str, sent: &[(&'static str, &'static str)]) -> Value {
    serde_json::from_str(&page(at, path, sent).await).unwrap()
}

const TRACED: [(&str, &str); 3] = [
    ("x-request-id", "test-1"),
    ("x-b3-traceid", "abc"),
    ("x-not-traced", "stays-here"),
];

#[tokio::test]
async fn productpage_shows_details_and_black_stars_from_reviews_v2() {
    let app = bookinfo("v2", None, None).await;
    let html = page(&app.productpage, "/productpage", &TRACED).await;
    for field in [
        "<dt>Author:</dt><dd>William Shakespeare</dd>",
        "<dt>Year:</dt><dd>1595</dd>",
        "<dt>Type:</dt><dd>paperback</dd>",
        "<dt>Pages:</dt><dd>200</dd>",
        "<dt>Publisher:</dt><dd>PublisherA</dd>",
        "<dt>Language:</dt><dd>English</dd>",
        "<dt>ISBN-10:</dt><dd>1234567890</dd>",
        "<dt>ISBN-13:</dt><dd>123-1234567890</dd>",
    ] {
        assert!(html.contains(field), "{field} missing:\n{html}");
    }
    for served in [
        "<li>productpage-v1</li>",
        "<li>details-v1</li>",
        "<li>reviews-v2</li>",
        "<li>ratings-v1 (via reviews)</li>",
    ] {
        assert!(html.contains(served), "{served} missing:\n{html}");
    }
    assert!(html.contains("<p class=\"rating\" style=\"color: black\">★★★★★ (5/5)</p>"));
    assert!(html.contains("<p class=\"rating\" style=\"color: black\">★★★★☆ (4/5)</p>"));
    assert!(html.contains("pod reviews-v2-pod"), "{html}");
    assert!(!html.contains("Error fetching"), "{html}");
    // The trace headers reached every hop, ratings through reviews; others did not travel.
    for hop in ["productpage", "details", "reviews", "ratings"] {
        for line in [
            format!("{hop} x-request-id: test-1"),
            format!("{hop} x-b3-traceid: abc"),
        ] {
            assert!(html.contains(&line), "{line} missing:\n{html}");
        }
    }
    assert!(!html.contains("x-not-traced"), "{html}");
}

#[tokio::test]
async fn every_propagated_header_arrives_at_ratings_as_sent() {
    let app = bookinfo("v2", None, None).await;
    let sent: Vec<(&'static str, &'static str)> = upstream::PROPAGATED
        .into_iter()
        .map(|name| (name, "value-1; with=parts, and more"))
        .collect();
    let reviews = json(&app.productpage, "/api/v1/products/0/reviews", &sent).await;
    let call = &reviews["ratings_call"];
    assert_eq!(call["served_by"], "ratings-v1");
    for name in upstream::PROPAGATED {
        assert_eq!(
            call["trace"][name], "value-1; with=parts, and more",
            "{name}: {reviews}"
        );
        assert_eq!(reviews["trace"][name], "value-1; with=parts, and more");
    }
}

#[tokio::test]
async fn reviews_v2_rates_in_json_as_istio() {
    let app = bookinfo("v2", None, None).await;
    let reviews = json(&app.reviews, "/reviews/0", &TRACED).await;
    assert_eq!(reviews["id"], "0");
    assert_eq!(reviews["podname"], "reviews-v2-pod");
    assert_eq!(reviews["clustername"], "null");
    assert_eq!(reviews["reviews"][0]["reviewer"], "Reviewer1");
    assert_eq!(
        reviews["reviews"][0]["rating"],
        json!({"stars": 5, "color": "black"})
    );
    assert_eq!(
        reviews["reviews"][1]["rating"],
        json!({"stars": 4, "color": "black"})
    );
    assert_eq!(reviews["ratings_call"]["trace"]["x-request-id"], "test-1");
    assert_eq!(reviews["ratings_call"]["trace"].get("x-not-traced"), None);
}

#[tokio::test]
async fn reviews_v3_shows_red_stars() {
    let app = bookinfo("v3", None, None).await;
    let html = page(&app.productpage, "/productpage", &TRACED).await;
    assert!(html.contains("<li>reviews-v3</li>"), "{html}");
    assert!(html.contains("<p class=\"rating\" style=\"color: red\">★★★★★ (5/5)</p>"));
    assert!(!html.contains("color: black"), "{html}");
}

#[tokio::test]
async fn reviews_v1_does_not_call_ratings() {
    // ratings is down: had v1 called it, the reviews would carry the ratings error.
    let app = bookinfo("v1", None, Some(closed_port().await)).await;
    let html = page(&app.productpage, "/productpage", &TRACED).await;
    assert!(html.contains("<li>reviews-v1</li>"), "{html}");
    assert!(html.contains("Reviewer1") && html.contains("Reviewer2"));
    assert!(!html.contains("class=\"rating"), "{html}");
    assert!(!html.contains("ratings-v1"), "{html}");
    let reviews = json(&app.reviews, "/reviews/0", &[]).await;
    assert_eq!(reviews["reviews"][0].get("rating"), None, "{reviews}");
    assert_eq!(reviews.get("ratings_call"), None, "{reviews}");
}

#[tokio::test]
async fn details_down_shows_the_details_error_and_the_reviews() {
    let app = bookinfo("v2", Some(closed_port().await), None).await;
    let html = page(&app.productpage, "/productpage", &TRACED).await;
    assert!(html.contains("Error fetching product details!"), "{html}");
    assert!(!html.contains("William Shakespeare</dd>"), "{html}");
    assert!(html.contains("<li>reviews-v2</li>"), "{html}");
    assert!(html.contains("style=\"color: black\">★★★★★"), "{html}");
    let api = get(&app.productpage, "/api/v1/products/0", &[]).await;
    assert_eq!(api.status, StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn ratings_down_leaves_reviews_up_with_the_ratings_error() {
    let app = bookinfo("v2", None, Some(closed_port().await)).await;
    let html = page(&app.productpage, "/productpage", &TRACED).await;
    assert!(!html.contains("Error fetching"), "{html}");
    assert_eq!(
        html.matches("<p class=\"rating-error\">Ratings service is currently unavailable</p>")
            .count(),
        2,
        "{html}"
    );
    let reviews = json(&app.reviews, "/reviews/0", &[]).await;
    assert_eq!(
        reviews["reviews"][1]["rating"],
        json!({"error": "Ratings service is currently unavailable"})
    );
    assert!(reviews["ratings_call"]["error"].is_string(), "{reviews}");
}

#[tokio::test]
async fn reviews_down_shows_the_reviews_error() {
    let details = start(Role::Details, "v1", Config::default()).await;
    let config = Config {
        details,
        reviews: closed_port().await,
        ..Config::default()
    };
    let productpage = start(Role::Productpage, "v1", config).await;
    let html = page(&productpage, "/productpage", &[]).await;
    assert!(html.contains("Error fetching product reviews!"), "{html}");
    assert!(html.contains("<dt>Author:</dt><dd>William Shakespeare</dd>"));
}

#[tokio::test]
async fn an_upstream_error_status_counts_as_a_failure() {
    // reviews answers 404 for /details/0: productpage must not render it as details.
    let reviews = start(Role::Reviews, "v1", Config::default()).await;
    let config = Config {
        details: reviews.clone(),
        reviews,
        ..Config::default()
    };
    let productpage = start(Role::Productpage, "v1", config).await;
    let html = page(&productpage, "/productpage", &[]).await;
    assert!(html.contains("Error fetching product details!"), "{html}");
    assert!(!html.contains("Error fetching product reviews!"), "{html}");
}

#[tokio::test]
async fn every_role_is_healthy_and_names_itself() {
    let app = bookinfo("v2", None, None).await;
    let health = get(&app.productpage, "/health", &[]).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(&health.body[..], b"Product page is healthy");
    assert_eq!(health.served_by.as_deref(), Some("productpage-v1"));
    for (at, name, served_by) in [
        (&app.details, "Details", "details-v1"),
        (&app.reviews, "Reviews", "reviews-v2"),
        (&app.ratings, "Ratings", "ratings-v1"),
    ] {
        let health = get(at, "/health", &[]).await;
        assert_eq!(health.status, StatusCode::OK);
        assert_eq!(health.served_by.as_deref(), Some(served_by));
        let body: Value = serde_json::from_slice(&health.body).unwrap();
        assert_eq!(body, json!({"status": format!("{name} is healthy")}));
    }
}

#[tokio::test]
async fn details_and_ratings_answer_as_istio() {
    let app = bookinfo("v2", None, None).await;
    let details = json(&app.details, "/details/0", &TRACED).await;
    assert_eq!(
        details,
        json!({
            "id": 0, "author": "William Shakespeare", "year": 1595, "type": "paperback",
            "pages": 200, "publisher": "PublisherA", "language": "English",
            "ISBN-10": "1234567890", "ISBN-13": "123-1234567890", "version": "v1",
            "trace": {"x-request-id": "test-1", "x-b3-traceid": "abc"},
        })
    );
    let ratings = json(&app.ratings, "/ratings/7", &[]).await;
    assert_eq!(ratings["id"], 7);
    assert_eq!(ratings["ratings"], json!({"Reviewer1": 5, "Reviewer2": 4}));
    for (at, path) in [(&app.details, "/details/x"), (&app.ratings, "/ratings/x")] {
        assert_eq!(get(at, path, &[]).await.status, StatusCode::BAD_REQUEST);
    }
    assert_eq!(
        get(&app.details, "/ratings/0", &[]).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn productpage_index_and_api() {
    let app = bookinfo("v3", None, None).await;
    let index = page(&app.productpage, "/", &[]).await;
    assert!(index.contains("href=\"/productpage\""), "{index}");
    let products = json(&app.productpage, "/api/v1/products", &[]).await;
    assert_eq!(products[0]["title"], "The Comedy of Errors");
    let details = json(&app.productpage, "/api/v1/products/0", &[]).await;
    assert_eq!(details["ISBN-13"], "123-1234567890");
    let ratings = json(&app.productpage, "/api/v1/products/0/ratings", &TRACED).await;
    assert_eq!(ratings["trace"]["x-request-id"], "test-1");
    let reviews = json(&app.productpage, "/api/v1/products/0/reviews", &[]).await;
    assert_eq!(reviews["reviews"][0]["rating"]["color"], "red");
    assert_eq!(
        get(&app.productpage, "/api/v1/products/0/nope", &[])
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

/// What [`send`] got back.
struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|value| value.to_str().unwrap())
            .unwrap_or_default()
    }
}

/// Any request (the GETs of [`upstream::get`] cannot log in), with its answer's headers.
async fn send(
    at: &Upstream,
    method: &str,
    path: &str,
    sent: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let stream = tokio::net::TcpStream::connect(at.authority())
        .await
        .unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let mut request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", at.authority());
    for (name, value) in sent {
        request = request.header(*name, *value);
    }
    let request = request
        .body(http_body_util::Full::new(bytes::Bytes::copy_from_slice(
            body,
        )))
        .unwrap();
    let response = tokio::time::timeout(TIMEOUT, sender.send_request(request))
        .await
        .unwrap()
        .unwrap();
    let (parts, body) = response.into_parts();
    let body = http_body_util::BodyExt::collect(body)
        .await
        .unwrap()
        .to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

/// `POST /login` with `form`: must answer 302 to the product page; the cookie it sets.
async fn login(at: &Upstream, form: &str) -> String {
    let answer = send(at, "POST", "/login", &[FORM], form.as_bytes()).await;
    assert_eq!(answer.status, StatusCode::FOUND, "{}", answer.body);
    assert_eq!(answer.header("location"), "/productpage");
    answer.header("set-cookie").to_owned()
}

/// The product page asked with `sent`, and the reviews JSON productpage's API passes through.
async fn as_sent(app: &Bookinfo, sent: &[(&str, &str)]) -> (String, Value) {
    let page = send(&app.productpage, "GET", "/productpage", sent, b"").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let api = send(
        &app.productpage,
        "GET",
        "/api/v1/products/0/reviews",
        sent,
        b"",
    )
    .await;
    assert_eq!(api.status, StatusCode::OK, "{}", api.body);
    (page.body, serde_json::from_str(&api.body).unwrap())
}

#[tokio::test]
async fn login_sets_the_session_and_every_upstream_call_names_the_user() {
    let app = bookinfo("v2", None, None).await;
    let cookie = login(&app.productpage, "username=jason&passwd=password").await;
    assert_eq!(cookie, "session=jason; Path=/");
    let session = cookie.split(';').next().unwrap();
    let (html, reviews) = as_sent(&app, &[("cookie", session), ("x-request-id", "r-1")]).await;
    assert!(html.contains("Signed in as jason."), "{html}");
    assert!(html.contains("href=\"logout\""), "{html}");
    assert!(!html.contains("action=\"login\""), "{html}");
    // details and reviews received it, ratings too (through reviews); productpage did not.
    for hop in ["details", "reviews", "ratings"] {
        let line = format!("{hop} end-user: jason\n");
        assert!(html.contains(&line), "{line} missing:\n{html}");
    }
    assert!(!html.contains("productpage end-user"), "{html}");
    assert!(html.contains("reviews x-request-id: r-1"), "{html}");
    assert_eq!(reviews["trace"]["end-user"], "jason", "{reviews}");
    assert_eq!(reviews["ratings_call"]["trace"]["end-user"], "jason");
    // The cookie itself still travels, as Istio's productpage forwards it.
    assert_eq!(reviews["trace"]["cookie"], "session=jason");
}

#[tokio::test]
async fn logout_clears_the_session() {
    let app = bookinfo("v2", None, None).await;
    let answer = send(
        &app.productpage,
        "GET",
        "/logout",
        &[("cookie", "session=jason")],
        b"",
    )
    .await;
    assert_eq!(answer.status, StatusCode::FOUND, "{}", answer.body);
    assert_eq!(answer.header("location"), "/productpage");
    let cleared = answer.header("set-cookie");
    assert!(cleared.starts_with("session=;"), "{cleared}");
    assert!(
        cleared.contains("Max-Age=0") && cleared.contains("Path=/"),
        "{cleared}"
    );
    // What a browser then sends: no session, so no user.
    let (html, reviews) = as_sent(&app, &[("cookie", "session=")]).await;
    assert!(!html.contains("Signed in as"), "{html}");
    assert!(html.contains("action=\"login\""), "{html}");
    assert_eq!(reviews["trace"].get("end-user"), None, "{reviews}");
}

#[tokio::test]
async fn without_a_user_no_end_user_travels() {
    let app = bookinfo("v2", None, None).await;
    let (html, reviews) = as_sent(&app, &[("x-request-id", "r-1"), ("cookie", "theme=dark")]).await;
    assert!(!html.contains("end-user"), "{html}");
    assert!(!html.contains("Signed in as"), "{html}");
    assert_eq!(reviews["trace"].get("end-user"), None, "{reviews}");
    assert_eq!(reviews["trace"]["x-request-id"], "r-1");
}

#[tokio::test]
async fn a_received_end_user_travels_unless_a_session_names_another() {
    let app = bookinfo("v2", None, None).await;
    let (html, reviews) = as_sent(&app, &[("end-user", "jason")]).await;
    assert!(html.contains("reviews end-user: jason\n"), "{html}");
    assert!(html.contains("details end-user: jason\n"), "{html}");
    assert!(!html.contains("Signed in as"), "{html}");
    assert_eq!(reviews["trace"]["end-user"], "jason", "{reviews}");

    let sent = [
        ("end-user", "mallory"),
        ("cookie", "a=1; session=jason; b=2"),
    ];
    let (html, reviews) = as_sent(&app, &sent).await;
    assert!(html.contains("Signed in as jason."), "{html}");
    assert!(html.contains("reviews end-user: jason\n"), "{html}");
    // productpage reports what it received; upstream, only the session's user went.
    assert!(html.contains("productpage end-user: mallory\n"), "{html}");
    assert_eq!(html.matches("mallory").count(), 1, "{html}");
    assert_eq!(reviews["trace"]["end-user"], "jason", "{reviews}");
}

#[tokio::test]
async fn a_name_a_cookie_cannot_hold_is_encoded_and_comes_back() {
    let app = bookinfo("v2", None, None).await;
    let cookie = login(
        &app.productpage,
        "passwd=x&username=+Jason+O%27Neil%3B%22%25+",
    )
    .await;
    assert_eq!(cookie, "session=Jason+O%27Neil%3B%22%25; Path=/");
    let session = cookie.split("; ").next().unwrap();
    let (html, reviews) = as_sent(&app, &[("cookie", session)]).await;
    assert!(
        html.contains("Signed in as Jason O&#39;Neil;&quot;%."),
        "{html}"
    );
    assert_eq!(
        reviews["trace"]["end-user"], "Jason O'Neil;\"%",
        "{reviews}"
    );
    // The login in the query, as Flask's request.values takes it.
    let answer = send(&app.productpage, "POST", "/login?username=jason", &[], b"").await;
    assert_eq!(answer.header("set-cookie"), "session=jason; Path=/");
}

#[tokio::test]
async fn bad_logins_are_refused_and_bad_sessions_ignored() {
    let app = bookinfo("v2", None, None).await;
    for (form, status, reason) in [
        ("passwd=x", StatusCode::BAD_REQUEST, "no username"),
        ("username=", StatusCode::BAD_REQUEST, "printable ASCII"),
        ("username=+", StatusCode::BAD_REQUEST, "printable ASCII"),
        ("username=a%0Ab", StatusCode::BAD_REQUEST, "printable ASCII"),
        (
            "username=j%C3%A9",
            StatusCode::BAD_REQUEST,
            "printable ASCII",
        ),
        // A lone UTF-8 lead byte decodes to U+FFFD.
        ("username=%C3", StatusCode::BAD_REQUEST, "printable ASCII"),
    ] {
        let answer = send(&app.productpage, "POST", "/login", &[FORM], form.as_bytes()).await;
        assert_eq!(answer.status, status, "{form}: {}", answer.body);
        assert!(answer.body.contains(reason), "{form}: {}", answer.body);
        assert!(answer.headers.get("set-cookie").is_none(), "{form}");
    }
    let json = ("content-type", "application/json");
    let answer = send(
        &app.productpage,
        "POST",
        "/login",
        &[json],
        br#"{"username":"jason"}"#,
    )
    .await;
    assert_eq!(
        answer.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "{}",
        answer.body
    );
    let answer = send(
        &app.productpage,
        "POST",
        "/login",
        &[FORM],
        b"username=\xff",
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    assert!(answer.body.contains("not UTF-8"), "{}", answer.body);
    for (method, path, allow) in [("GET", "/login", "POST"), ("POST", "/logout", "GET, HEAD")] {
        let answer = send(&app.productpage, method, path, &[], b"").await;
        assert_eq!(
            answer.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert_eq!(answer.header("allow"), allow);
    }
    for cookie in ["session", "session=%C3", "session=a%0Ab", "=jason"] {
        let (html, reviews) = as_sent(&app, &[("cookie", cookie)]).await;
        assert!(!html.contains("Signed in as"), "{cookie}: {html}");
        assert_eq!(
            reviews["trace"].get("end-user"),
            None,
            "{cookie}: {reviews}"
        );
    }
}

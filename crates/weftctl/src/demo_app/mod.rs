//! `weftctl demo-app`: the small built-in HTTP service the demo and the end-to-end tests run.
//!
//! In its default role, `echo`, it answers every request with its service name and version
//! (body and headers), so a caller can tell which version served it. Query parameters shape
//! the answer: `delay_ms=N` waits before answering, `status=N` picks the status code.
//!
//! The roles `productpage`, `details`, `reviews` and `ratings` stand in for the apps of
//! Istio's bookinfo sample ([`bookinfo`], [`productpage`]). Every role serves HTTP/1.1 and h2c
//! on the same port and names itself in the `x-weft-service` and `x-weft-version` headers.

pub mod banner;
mod bookinfo;
#[cfg(test)]
mod bookinfo_tests;
mod productpage;
mod upstream;

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header::CONTENT_TYPE};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use tokio::net::TcpListener;

pub use bookinfo::Config;

/// An answer of the app.
type Reply = Response<Full<Bytes>>;

/// What the app says about itself.
#[derive(Clone, Debug)]
pub struct Identity {
    pub service: String,
    pub version: String,
}

/// What the app does: echo, or one of the bookinfo apps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// Answers every request with its service name and version.
    Echo,
    /// Bookinfo's front page: calls details and reviews, renders HTML.
    Productpage,
    /// Bookinfo's book details.
    Details,
    /// Bookinfo's reviews: v1 without ratings, v2 black stars, v3 red stars.
    Reviews,
    /// Bookinfo's ratings.
    Ratings,
}

impl Role {
    /// The role's name, as on the command line: the default service name of a bookinfo role.
    pub fn name(self) -> &'static str {
        match self {
            Role::Echo => "echo",
            Role::Productpage => "productpage",
            Role::Details => "details",
            Role::Reviews => "reviews",
            Role::Ratings => "ratings",
        }
    }
}

/// A configured app: its role, what it reports, and where the bookinfo roles find each other.
#[derive(Clone, Debug)]
pub struct App {
    pub role: Role,
    pub identity: Identity,
    pub config: Config,
}

/// Listens on `listen` and serves until the process ends.
pub async fn run(listen: SocketAddr, app: App) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("demo-app: cannot listen on {listen}: {e}"))?;
    tracing::info!(%listen, role = app.role.name(), service = %app.identity.service, version = %app.identity.version, "demo-app listening");
    serve(listener, app).await;
    Ok(())
}

/// Serves the connections `listener` accepts, forever.
pub async fn serve(listener: TcpListener, app: App) {
    let app = Arc::new(app);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(respond(&app, req).await) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn respond(app: &App, req: Request<Incoming>) -> Reply {
    let mut response = match app.role {
        Role::Echo => echo(&app.identity, req).await,
        role => bookinfo(app, role, req).await,
    };
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&app.identity.service) {
        headers.insert("x-weft-service", v);
    }
    if let Ok(v) = HeaderValue::from_str(&app.identity.version) {
        headers.insert("x-weft-version", v);
    }
    response
}

/// The bookinfo roles' routes.
async fn bookinfo(app: &App, role: Role, req: Request<Incoming>) -> Reply {
    let (parts, body) = req.into_parts();
    // Read the whole request body (productpage's login form; the rest ignore it), which also
    // keeps keep-alive connections usable.
    let body = body
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .unwrap_or_default();
    let (path, headers) = (parts.uri.path(), &parts.headers);
    let (identity, config) = (&app.identity, &app.config);
    if role == Role::Productpage {
        return productpage::respond(identity, config, &parts, &body).await;
    }
    if path == "/health" {
        return bookinfo::health(role);
    }
    let Some(id) = bookinfo::product_id(path, role.name()) else {
        return text_reply(StatusCode::NOT_FOUND, format!("no route for {path}\n"));
    };
    match role {
        Role::Details => bookinfo::details(identity, id, headers),
        Role::Ratings => bookinfo::ratings(identity, id, headers),
        Role::Reviews => bookinfo::reviews(identity, config, id, headers).await,
        Role::Echo | Role::Productpage => {
            text_reply(StatusCode::NOT_FOUND, format!("no route for {path}\n"))
        }
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Reply {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn json_reply(status: StatusCode, body: &serde_json::Value) -> Reply {
    reply(status, "application/json", body.to_string())
}

fn html_reply(status: StatusCode, body: String) -> Reply {
    reply(status, "text/html; charset=utf-8", body)
}

fn text_reply(status: StatusCode, body: String) -> Reply {
    reply(status, "text/plain; charset=utf-8", body)
}

async fn echo(identity: &Identity, req: Request<Incoming>) -> Reply {
    let mut status = StatusCode::OK;
    let mut delay = None;
    for (key, value) in query_pairs(req.uri().query().unwrap_or("")) {
        match key {
            "delay_ms" => delay = value.parse().ok().map(Duration::from_millis),
            "status" => {
                if let Some(code) = value
                    .parse()
                    .ok()
                    .and_then(|c| StatusCode::from_u16(c).ok())
                {
                    status = code;
                }
            }
            _ => {}
        }
    }
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("")
        .to_owned();
    let path = req.uri().path().to_owned();
    let protocol = format!("{:?}", req.version());
    // Drain the request body so keep-alive connections stay usable.
    let received = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().len())
        .unwrap_or(0);
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let body = format!(
        "{} {} host={host} path={path} protocol={protocol} received={received}\n",
        identity.service, identity.version
    );
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

fn query_pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_pairs_split() {
        let pairs: Vec<_> = query_pairs("delay_ms=5&status=503&flag").collect();
        assert_eq!(
            pairs,
            vec![("delay_ms", "5"), ("status", "503"), ("flag", "")]
        );
    }
}

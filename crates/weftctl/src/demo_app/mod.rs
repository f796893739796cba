//! `weftctl demo-app`: the small built-in HTTP service the demo and the end-to-end tests run.
//!
//! In its default role, `echo`, it answers every request with its service name and version
//! (body and headers), so a caller can tell which version served it. Query parameters shape
//! the answer, each for its request only (overriding the flags below):
//!
//! - `status=N` answers status N (and is never replaced by `--fail-status`);
//! - `delay_ms=N` waits N ms before answering (`0`: no delay);
//! - `reset=1` resets the request instead of answering (`reset=0` spares it);
//! - `hang=1` never answers, holding the request until the client goes away (`hang=0` spares
//!   it);
//! - `slow_body_ms=N` sends the body in 4 chunks N ms apart (`0`: whole).
//!
//! The roles `productpage`, `details`, `reviews` and `ratings` stand in for the apps of
//! Istio's bookinfo sample ([`bookinfo`], [`productpage`]). Every role serves HTTP/1.1 and h2c
//! on the same port and names itself in the `x-weft-service` and `x-weft-version` headers,
//! and the instance that answered in `x-weft-instance` (the listen address; see
//! [`conn::Conn::instance`]).
//!
//! Every role misbehaves on demand for a fraction of its requests, independent draws in this
//! order ([`faults`]): `--reset-ratio F` resets (HTTP/1: the connection closes with a TCP RST;
//! HTTP/2: RST_STREAM), `--hang-ratio F` never answers, `--fail-ratio F` answers
//! `--fail-status N` (503), `--delay-ratio F` waits `--delay-ms N` first, and `--slow-body-ms
//! N` dribbles every body; `--fault-seed N` repeats a run's draws. Each flag also reads the
//! variable `DEMO_<FLAG>` (`DEMO_FAIL_RATIO`, ...).
//!
//! Every role counts its requests by outcome ([`stats`]): `GET /__demo/stats` answers
//! `{"total":N,"ok":N,"failed":N,"reset":N,"hung":N,"delayed":N}`, `POST /__demo/stats/reset`
//! zeroes them; neither is counted nor ever misbehaves.

pub mod banner;
mod body;
mod bookinfo;
#[cfg(test)]
mod bookinfo_tests;
mod conn;
mod faults;
#[cfg(test)]
mod faults_tests;
mod productpage;
mod stats;
mod upstream;

use std::{net::SocketAddr, sync::Arc};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header::CONTENT_TYPE};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use tokio::net::TcpListener;

use body::AppBody;
pub use bookinfo::Config;
use conn::{Conn, Reset};
pub use faults::Faults;
use faults::{Injector, Overrides};
use stats::Stats;

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

/// A configured app: its role, what it reports, where the bookinfo roles find each other, and
/// the faults it injects.
#[derive(Clone, Debug)]
pub struct App {
    pub role: Role,
    pub identity: Identity,
    pub config: Config,
    pub faults: Faults,
}

/// What every connection of a served app shares.
struct Shared {
    app: App,
    injector: Injector,
    stats: Stats,
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
    let listen = listener.local_addr().ok();
    let shared = Arc::new(Shared {
        injector: Injector::new(app.faults.clone()),
        stats: Stats::default(),
        app,
    });
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (socket, conn) = conn::accept(stream, listen);
        let (shared, conn) = (shared.clone(), Arc::new(conn));
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let (shared, conn) = (shared.clone(), conn.clone());
                async move { respond(&shared, &conn, req).await }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(socket), service)
                .await;
        });
    }
}

/// One request: the stats endpoints, or the role's answer as the faults shape it; an `Err`
/// resets the request.
async fn respond(
    shared: &Shared,
    conn: &Conn,
    req: Request<Incoming>,
) -> Result<Response<AppBody>, Reset> {
    let mut response = match stats::admin(&shared.stats, req.method(), req.uri().path()) {
        Some(reply) => body::whole(reply),
        None => answer(shared, conn, req).await?,
    };
    let identity = &shared.app.identity;
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&identity.service) {
        headers.insert("x-weft-service", v);
    }
    if let Ok(v) = HeaderValue::from_str(&identity.version) {
        headers.insert("x-weft-version", v);
    }
    if let Some(instance) = &conn.instance {
        headers.insert("x-weft-instance", instance.clone());
    }
    Ok(response)
}

/// A counted request: reset, held or answered by the role (or with the injected failure),
/// as its [`faults::Plan`] says.
async fn answer(
    shared: &Shared,
    conn: &Conn,
    req: Request<Incoming>,
) -> Result<Response<AppBody>, Reset> {
    let Shared {
        app,
        injector,
        stats,
    } = shared;
    stats.received();
    // Only echo reads its query; the bookinfo roles' queries are theirs.
    let ask = match app.role {
        Role::Echo => Overrides::from_query(req.uri().query().unwrap_or("")),
        _ => Overrides::default(),
    };
    let plan = injector.plan(&ask);
    if plan.reset {
        stats.reset();
        return Err(conn.reset(req.version()));
    }
    if plan.hang {
        stats.hung();
        // Read the request to its end: HTTP/1 only notices a client leaving a connection
        // whose request has been read. Then wait until hyper drops this, the client gone.
        drain(req.into_body()).await;
        return std::future::pending().await;
    }
    if plan.delay.is_some() {
        stats.delayed();
    }
    let reply = match plan.fail {
        Some(status) => {
            drain(req.into_body()).await;
            let Identity { service, version } = &app.identity;
            text_reply(
                status,
                format!("{service} {version} injected failure {}\n", status.as_u16()),
            )
        }
        None => match app.role {
            Role::Echo => echo(&app.identity, ask.status, req).await,
            role => bookinfo(app, role, req).await,
        },
    };
    if let Some(delay) = plan.delay {
        tokio::time::sleep(delay).await;
    }
    stats.answered(reply.status());
    Ok(match plan.slow_body {
        Some(gap) => body::slow(reply, gap).await,
        None => body::whole(reply),
    })
}

/// Reads a request body to its end (or its error), keeping none of it.
async fn drain(mut body: Incoming) {
    while let Some(frame) = body.frame().await {
        if frame.is_err() {
            break;
        }
    }
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

/// Echo's answer, with `status` (200 by default): who answered and what it was asked.
async fn echo(identity: &Identity, status: Option<StatusCode>, req: Request<Incoming>) -> Reply {
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
    let body = format!(
        "{} {} host={host} path={path} protocol={protocol} received={received}\n",
        identity.service, identity.version
    );
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status.unwrap_or(StatusCode::OK);
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

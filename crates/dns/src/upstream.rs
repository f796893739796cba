//! Forwarding a query to the resolv.conf servers: one after the other, UDP first and TCP
//! when the UDP answer is truncated, under a per-server and a total timeout.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::Query;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant, timeout_at};

use crate::message::{HEADER_LEN, NotOurAnswer, UpstreamAnswer, check_answer, with_id};

/// The upstream servers and how long each may take.
#[derive(Debug, Clone)]
pub(crate) struct Upstreams {
    pub(crate) servers: Vec<SocketAddr>,
    /// Per server, UDP and its TCP retry together.
    pub(crate) attempt_timeout: Duration,
    /// For the whole forward, all servers together.
    pub(crate) total_timeout: Duration,
    /// The longest UDP answer read; a longer one is asked again over TCP.
    pub(crate) max_udp_answer: usize,
}

/// Why one server did not answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AttemptError {
    #[error("{server}: no answer within {timeout:?}")]
    Timeout {
        server: SocketAddr,
        timeout: Duration,
    },
    #[error("{server} over {transport}: {source}")]
    Io {
        server: SocketAddr,
        transport: &'static str,
        source: io::Error,
    },
    #[error("{server}: the TCP answer does not answer the query ({what:?})")]
    BadTcpAnswer {
        server: SocketAddr,
        what: NotOurAnswer,
    },
}

/// Every server failed, or the total timeout passed.
#[derive(Debug, thiserror::Error)]
#[error("no upstream DNS server answered{}", attempts_list(.attempts, *.out_of_time))]
pub(crate) struct ForwardError {
    pub(crate) attempts: Vec<AttemptError>,
    pub(crate) out_of_time: bool,
}

fn attempts_list(attempts: &[AttemptError], out_of_time: bool) -> String {
    let mut text: String = attempts
        .iter()
        .map(|attempt| format!("; {attempt}"))
        .collect();
    if out_of_time {
        text.push_str("; out of time for the remaining servers");
    }
    text
}

/// What a server's UDP socket gave.
enum UdpOutcome {
    Answer(UpstreamAnswer),
    /// Longer than we read: ask again over TCP.
    TooLong,
}

impl Upstreams {
    /// The first answer any server gives to `query` (the client's bytes, well-formed, with
    /// one `question`), its ID still the one we sent upstream.
    pub(crate) async fn forward(
        &self,
        query: &[u8],
        question: &Query,
    ) -> Result<UpstreamAnswer, ForwardError> {
        let deadline = Instant::now() + self.total_timeout;
        let mut attempts = Vec::new();
        for &server in &self.servers {
            let now = Instant::now();
            if now >= deadline {
                return Err(ForwardError {
                    attempts,
                    out_of_time: true,
                });
            }
            let attempt_deadline = deadline.min(now + self.attempt_timeout);
            match self
                .exchange(server, query, question, attempt_deadline)
                .await
            {
                Ok(answer) => return Ok(answer),
                Err(err) => {
                    tracing::debug!(%err, "DNS upstream failed, trying the next one");
                    attempts.push(err);
                }
            }
        }
        Err(ForwardError {
            attempts,
            out_of_time: false,
        })
    }

    /// One server: UDP, then TCP if the UDP answer was truncated. Should the TCP retry
    /// fail, the truncated answer is passed on (the client may retry over TCP itself).
    async fn exchange(
        &self,
        server: SocketAddr,
        query: &[u8],
        question: &Query,
        deadline: Instant,
    ) -> Result<UpstreamAnswer, AttemptError> {
        // A fresh ID and source port per query, so a forged answer has to guess both.
        let id: u16 = rand::random();
        let query = with_id(query, id);
        let timeout = AttemptError::Timeout {
            server,
            timeout: self.attempt_timeout,
        };
        let truncated = match timeout_at(deadline, self.udp(server, &query, id, question)).await {
            Err(_) => return Err(timeout),
            Ok(Err(source)) => {
                return Err(AttemptError::Io {
                    server,
                    transport: "UDP",
                    source,
                });
            }
            Ok(Ok(UdpOutcome::Answer(answer))) if !answer.metadata.truncation => return Ok(answer),
            Ok(Ok(UdpOutcome::Answer(answer))) => Some(answer),
            Ok(Ok(UdpOutcome::TooLong)) => None,
        };
        let tcp = match timeout_at(deadline, tcp(server, &query)).await {
            Err(_) => Err(timeout),
            Ok(Err(source)) => Err(AttemptError::Io {
                server,
                transport: "TCP",
                source,
            }),
            Ok(Ok(bytes)) => check_answer(bytes, id, question)
                .map_err(|what| AttemptError::BadTcpAnswer { server, what }),
        };
        match (tcp, truncated) {
            (Ok(answer), _) => Ok(answer),
            (Err(err), Some(truncated)) => {
                tracing::debug!(%err, "TCP retry after a truncated UDP answer failed; passing the truncated answer on");
                Ok(truncated)
            }
            (Err(err), None) => Err(err),
        }
    }

    /// Sends `query` from a new socket connected to `server` and waits for the answer to
    /// it; stray datagrams (another ID or question, undecodable) are skipped.
    async fn udp(
        &self,
        server: SocketAddr,
        query: &[u8],
        id: u16,
        question: &Query,
    ) -> io::Result<UdpOutcome> {
        let local: SocketAddr = match server {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(local).await?;
        socket.connect(server).await?;
        socket.send(query).await?;
        let mut buf = vec![0; self.max_udp_answer + 1];
        loop {
            let len = socket.recv(&mut buf).await?;
            if len > self.max_udp_answer {
                return Ok(UdpOutcome::TooLong);
            }
            match check_answer(buf[..len].to_vec(), id, question) {
                Ok(answer) => return Ok(UdpOutcome::Answer(answer)),
                Err(what) => {
                    tracing::debug!(%server, ?what, "skipping a datagram that does not answer our query")
                }
            }
        }
    }
}

/// Sends `query` over a new TCP connection to `server` and reads one framed message back.
async fn tcp(server: SocketAddr, query: &[u8]) -> io::Result<Vec<u8>> {
    let length = u16::try_from(query.len()).map_err(|_| {
        io::Error::new(io::ErrorKind::InvalidInput, "query longer than 65535 bytes")
    })?;
    let mut stream = TcpStream::connect(server).await?;
    stream.set_nodelay(true)?;
    let mut framed = Vec::with_capacity(2 + query.len());
    framed.extend_from_slice(&length.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await?;
    let length = usize::from(stream.read_u16().await?);
    if length < HEADER_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a {length}-byte answer is shorter than a DNS header"),
        ));
    }
    let mut answer = vec![0; length];
    stream.read_exact(&mut answer).await?;
    Ok(answer)
}

//! Istio's peer metadata exchange on opaque TCP over mesh mTLS (the `istio.metadata_exchange`
//! filter of Istio's proxy): when the TLS handshake chose ALPN `istio-peer-exchange`, each side
//! writes one frame with its node metadata before any byte of the app, and reads the other's.
//!
//! ```text
//!  tcp.rs, inbound (the chain has the filter)   tcp.rs, outbound (the cluster has the filter)
//!    downstream TLS chose istio-peer-exchange     upstream TLS chose istio-peer-exchange
//!      └──────────────┬──────────────────────────────────┘
//!   exchange(io): write own frame ─► read the peer's (TIMEOUT, MAX_PAYLOAD) ─► parse
//!      frame ─► Peer (its metadata, Istio's fallbacks)           │ consumed: never seen by the
//!      bad magic │ no frame by the deadline │ EOF ─► unknown      │ app, never counted
//!      bad payload │ too long ─► unknown, the 8 header bytes consumed
//!   bytes read past what was consumed ─► Prefixed: read first, as the app's own bytes
//!
//!  frame: magic 0x3D230467 (u32 BE) │ length (u32 BE) │ google.protobuf.Any {
//!           type_url: google.protobuf.Struct,
//!           value: Struct { x-envoy-peer-metadata: {NAME, NAMESPACE, WORKLOAD_NAME, LABELS, …},
//!                           x-envoy-peer-metadata-id: "<node id>" } }
//! ```
//!
//! What is passed on when the frame is wrong is Istio's choice: bytes without the magic are the
//! peer's app talking (all passed on); after the magic and length, a payload that is not an
//! `Any` is passed on without the header. Istio waits for ever for a frame; Weft waits
//! [`TIMEOUT`], then passes on what came (a peer that negotiated the exchange but waits for
//! the server to speak first).

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use envoy_types::pb::google::protobuf::{Any, Struct, Value, value::Kind};
use prost::Message as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::exchange::{self, DecodeError};
use super::labels::Peer;

/// The frame's first four bytes (big endian).
pub const MAGIC: u32 = 0x3D23_0467;
/// The magic and the payload's length.
pub const HEADER_LEN: usize = 8;
/// Payloads longer than this are refused (an Istio sidecar's metadata is a few kilobytes).
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// How long the peer has to send its frame once ours is written.
pub const TIMEOUT: Duration = Duration::from_secs(3);
/// The `Any`'s type: a `Struct`.
const STRUCT_TYPE_URL: &str = "type.googleapis.com/google.protobuf.Struct";
/// The keys of the frame's `Struct`: the metadata and the node id (the HTTP headers' names).
const METADATA_KEY: &str = "x-envoy-peer-metadata";
const ID_KEY: &str = "x-envoy-peer-metadata-id";

/// The frame that says `node_id` and `metadata` (made once per proxy).
pub fn encode(node_id: &str, metadata: Struct) -> Bytes {
    let mut fields = std::collections::HashMap::new();
    fields.insert(
        METADATA_KEY.to_string(),
        Value {
            kind: Some(Kind::StructValue(metadata)),
        },
    );
    if !node_id.is_empty() {
        fields.insert(
            ID_KEY.to_string(),
            Value {
                kind: Some(Kind::StringValue(node_id.to_string())),
            },
        );
    }
    let payload = Any {
        type_url: STRUCT_TYPE_URL.to_string(),
        value: Struct { fields }.encode_to_vec(),
    }
    .encode_to_vec();
    let mut frame = BytesMut::with_capacity(HEADER_LEN + payload.len());
    frame.extend_from_slice(&MAGIC.to_be_bytes());
    frame.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    frame.extend_from_slice(&payload);
    frame.freeze()
}

/// Why a frame did not tell who the peer is.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("no metadata exchange frame (bad magic): the peer's bytes are passed on")]
    Magic,
    #[error("frame payload of {0} bytes, more than {MAX_PAYLOAD}")]
    TooLong(usize),
    #[error("frame payload is not a protobuf Any: {0}")]
    Any(prost::DecodeError),
    #[error("frame payload is a {0}, not a google.protobuf.Struct")]
    Type(String),
    #[error("frame payload is not a protobuf Struct: {0}")]
    Struct(prost::DecodeError),
    #[error("frame has no {METADATA_KEY} struct")]
    NoMetadata,
    #[error("frame metadata: {0}")]
    Metadata(#[from] DecodeError),
    #[error("no frame within {TIMEOUT:?}")]
    Timeout,
    #[error("the connection ended before a whole frame")]
    Closed,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// What the first bytes of a connection are, as far as they go.
#[derive(Debug)]
pub enum Parsed {
    /// Not enough bytes to tell.
    Incomplete,
    /// `consumed` bytes were the exchange (never the app's); the peer, or why it is unknown.
    Frame {
        consumed: usize,
        peer: Result<Peer, FrameError>,
    },
}

/// Parses the start of `buf`.
pub fn parse(buf: &[u8]) -> Parsed {
    let Some((header, rest)) = buf.split_first_chunk::<HEADER_LEN>() else {
        return Parsed::Incomplete;
    };
    let (magic, length) = header.split_at(4);
    let magic = u32::from_be_bytes([magic[0], magic[1], magic[2], magic[3]]);
    if magic != MAGIC {
        return Parsed::Frame {
            consumed: 0,
            peer: Err(FrameError::Magic),
        };
    }
    let length = u32::from_be_bytes([length[0], length[1], length[2], length[3]]) as usize;
    let refused = |error| Parsed::Frame {
        consumed: HEADER_LEN,
        peer: Err(error),
    };
    if length > MAX_PAYLOAD {
        return refused(FrameError::TooLong(length));
    }
    let Some(payload) = rest.get(..length) else {
        return Parsed::Incomplete;
    };
    let any = match Any::decode(payload) {
        Ok(any) => any,
        Err(e) => return refused(FrameError::Any(e)),
    };
    Parsed::Frame {
        consumed: HEADER_LEN + length,
        peer: peer_of(&any),
    }
}

fn peer_of(any: &Any) -> Result<Peer, FrameError> {
    if any.type_url != STRUCT_TYPE_URL {
        return Err(FrameError::Type(any.type_url.clone()));
    }
    let data = Struct::decode(any.value.as_slice()).map_err(FrameError::Struct)?;
    match data.fields.get(METADATA_KEY).and_then(|v| v.kind.as_ref()) {
        Some(Kind::StructValue(metadata)) => Ok(exchange::decode_metadata(metadata)?),
        _ => Err(FrameError::NoMetadata),
    }
}

/// The result of an exchange: the peer (unknown when its frame was missing or wrong), and the
/// bytes read past the frame, which belong to the app.
#[derive(Debug)]
pub struct Exchanged {
    pub peer: Result<Peer, FrameError>,
    pub leftover: Bytes,
}

impl Exchanged {
    /// The peer, `unknown` when its frame did not say.
    pub fn peer(&self) -> Peer {
        self.peer
            .as_ref()
            .map_or_else(|_| Peer::unknown(), Peer::clone)
    }
}

/// Writes `own` to `io`, then reads the peer's frame for at most `timeout`.
pub async fn exchange<IO>(io: &mut IO, own: &[u8], timeout: Duration) -> Exchanged
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let written = async {
        io.write_all(own).await?;
        io.flush().await
    };
    if let Err(e) = written.await {
        return Exchanged {
            peer: Err(FrameError::Io(e)),
            leftover: Bytes::new(),
        };
    }
    let mut buf = BytesMut::with_capacity(1024);
    let read = async {
        loop {
            if let Parsed::Frame { consumed, peer } = parse(&buf) {
                return (consumed, peer);
            }
            match io.read_buf(&mut buf).await {
                Ok(0) => return (0, Err(FrameError::Closed)),
                Ok(_) => {}
                Err(e) => return (0, Err(FrameError::Io(e))),
            }
        }
    };
    let (consumed, peer) = tokio::time::timeout(timeout, read)
        .await
        .unwrap_or((0, Err(FrameError::Timeout)));
    buf.advance(consumed);
    Exchanged {
        peer,
        leftover: buf.freeze(),
    }
}

pin_project_lite::pin_project! {
    /// A connection whose reads start with bytes already read from it.
    pub struct Prefixed<IO> {
        prefix: Bytes,
        #[pin]
        io: IO,
    }
}

impl<IO> Prefixed<IO> {
    pub fn new(prefix: Bytes, io: IO) -> Self {
        Self { prefix, io }
    }
}

impl<IO: AsyncRead> AsyncRead for Prefixed<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        if this.prefix.is_empty() {
            return this.io.poll_read(cx, buf);
        }
        let n = this.prefix.len().min(buf.remaining());
        buf.put_slice(&this.prefix.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncWrite> AsyncWrite for Prefixed<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}

#[cfg(test)]
#[path = "tcp_exchange_tests.rs"]
mod tests;

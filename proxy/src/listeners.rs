//! Reconciles bound sockets with the LDS listeners: bind new, keep unchanged, rebind moved, stop removed.
//!
//! ```text
//!  LDS apply ─► prepare(addresses): bind new sockets (error = NACK, nothing changes)
//!            ─► config published ─► commit(): spawn accept loops, cancel removed ones
//!  accept loop ─► tokio::spawn(http::serve_connection)   (open connections outlive their listener)
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::ProxyConfig;

const BACKLOG: i32 = 1024;

struct Running {
    local: SocketAddr,
    stop: CancellationToken,
}

struct Staged {
    bind: Vec<(SocketAddr, std::net::TcpListener)>,
    remove: Vec<SocketAddr>,
}

/// Owns the listening sockets, keyed by the address each listener is configured with.
pub struct ListenerManager {
    rx: watch::Receiver<Arc<ProxyConfig>>,
    runtime: Option<Handle>,
    running: HashMap<SocketAddr, Running>,
    staged: Option<Staged>,
}

impl ListenerManager {
    pub fn new(rx: watch::Receiver<Arc<ProxyConfig>>) -> Self {
        Self {
            rx,
            runtime: Handle::try_current().ok(),
            running: HashMap::new(),
            staged: None,
        }
    }

    /// The actual local address of the socket for configured address `addr`.
    pub fn local_addr(&self, addr: SocketAddr) -> Option<SocketAddr> {
        self.running.get(&addr).map(|r| r.local)
    }

    /// Binds every address not yet bound. On any failure the new sockets are closed and
    /// the error (with the OS message) is returned; running sockets are untouched.
    pub fn prepare<'a>(
        &mut self,
        desired: impl Iterator<Item = (&'a str, SocketAddr)>,
    ) -> Result<(), String> {
        let mut bind = Vec::new();
        let mut wanted = Vec::new();
        for (name, addr) in desired {
            wanted.push(addr);
            if self.running.contains_key(&addr) {
                continue;
            }
            // On error `bind` is dropped here, closing the sockets bound so far.
            let socket = bind_socket(addr)
                .map_err(|e| format!("listener {name:?}: cannot bind {addr}: {e}"))?;
            bind.push((addr, socket));
        }
        let remove = self
            .running
            .keys()
            .filter(|a| !wanted.contains(a))
            .copied()
            .collect();
        self.staged = Some(Staged { bind, remove });
        Ok(())
    }

    /// Starts accepting on the prepared sockets and stops the removed ones.
    pub fn commit(&mut self) {
        let Some(staged) = self.staged.take() else {
            return;
        };
        for addr in staged.remove {
            if let Some(r) = self.running.remove(&addr) {
                tracing::info!(%addr, "listener removed: no longer accepting; open connections drain");
                r.stop.cancel();
            }
        }
        let Some(runtime) = self.runtime.clone() else {
            tracing::error!("no Tokio runtime: cannot start listeners");
            return;
        };
        let _enter = runtime.enter();
        for (addr, socket) in staged.bind {
            let local = socket.local_addr().unwrap_or(addr);
            let listener = match tokio::net::TcpListener::from_std(socket) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(%addr, error = %e, "cannot register listener socket");
                    continue;
                }
            };
            let stop = CancellationToken::new();
            tracing::info!(%addr, %local, "listening");
            runtime.spawn(accept_loop(listener, addr, self.rx.clone(), stop.clone()));
            self.running.insert(addr, Running { local, stop });
        }
    }
}

impl Drop for ListenerManager {
    fn drop(&mut self) {
        for r in self.running.values() {
            r.stop.cancel();
        }
    }
}

fn bind_socket(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    rx: watch::Receiver<Arc<ProxyConfig>>,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(crate::http::serve_connection(
                    stream,
                    peer,
                    addr,
                    rx.clone(),
                ));
            }
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(%addr, error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

//! A server-first TCP protocol for tests of protocol detection: the server speaks first (a
//! greeting line naming the service and version, as MySQL, SMTP or Redis-sentinel servers
//! greet), then echoes each line the client sends.

use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpListener;

use super::Identity;

/// Binds the banner listener.
pub async fn bind(listen: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("demo-app: cannot listen on {listen} (banner): {e}"))
}

/// Greets and echoes on every connection `listener` accepts, forever.
pub async fn serve(listener: TcpListener, identity: Identity) {
    let greeting = format!("{} {} ready\n", identity.service, identity.version);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let greeting = greeting.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            if write.write_all(greeting.as_bytes()).await.is_err() {
                return;
            }
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if write
                    .write_all(format!("{line}\n").as_bytes())
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt as _;

    #[tokio::test]
    async fn greets_before_the_client_speaks_then_echoes() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(
            listener,
            Identity {
                service: "db".into(),
                version: "v1".into(),
            },
        ));
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut greeting = [0u8; 12];
        client.read_exact(&mut greeting).await.unwrap();
        assert_eq!(&greeting, b"db v1 ready\n");
        client.write_all(b"ping\n").await.unwrap();
        let mut echo = [0u8; 5];
        client.read_exact(&mut echo).await.unwrap();
        assert_eq!(&echo, b"ping\n");
    }
}

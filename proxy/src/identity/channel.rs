//! gRPC channels to the control plane over TLS (the CA and ADS on 15012): the control plane
//! is verified against the trust bundle under its fixed name (`--xds-server-name`), and the
//! workload certificate is presented when there is one.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use rustls::sign::SingleCertAndKey;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint, Uri};
use weft_identity::{TrustBundle, WorkloadCert};

/// Why a channel could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("{address:?} is not host:port or https://host:port")]
    Address { address: String },
    #[error("{name:?} is not a valid TLS server name")]
    ServerName { name: String },
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot connect to {address}: {reason}")]
    Connect { address: String, reason: String },
}

/// `https://host:port` or `host:port` → `host:port`.
pub fn authority(address: &str) -> Result<String, ChannelError> {
    let rest = address
        .strip_prefix("https://")
        .unwrap_or(address)
        .trim_end_matches('/');
    let uri: Uri = format!("http://{rest}")
        .parse()
        .map_err(|_| ChannelError::Address {
            address: address.to_string(),
        })?;
    match (uri.host(), uri.port_u16()) {
        (Some(_), Some(_)) if uri.path() == "/" => Ok(rest.to_string()),
        _ => Err(ChannelError::Address {
            address: address.to_string(),
        }),
    }
}

/// A TLS 1.3 client configuration for the control plane.
pub fn client_config(
    bundle: &TrustBundle,
    cert: Option<&WorkloadCert>,
) -> Result<ClientConfig, ChannelError> {
    let builder = ClientConfig::builder_with_provider(weft_identity::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(bundle.root_store());
    let mut config = match cert {
        Some(cert) => builder
            .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(cert.certified_key()))),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Opens a gRPC channel to `address` over TLS.
pub async fn connect(
    address: &str,
    server_name: &str,
    config: ClientConfig,
) -> Result<Channel, ChannelError> {
    let authority = authority(address)?;
    let name =
        ServerName::try_from(server_name.to_string()).map_err(|_| ChannelError::ServerName {
            name: server_name.to_string(),
        })?;
    let connector = TlsConnector::from(Arc::new(config));
    let target = authority.clone();
    let endpoint = Endpoint::from_shared(format!("http://{authority}"))
        .map_err(|_| ChannelError::Address {
            address: address.to_string(),
        })?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    endpoint
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let connector = connector.clone();
            let name = name.clone();
            let target = target.clone();
            async move {
                let tcp = TcpStream::connect(&target).await?;
                let _ = tcp.set_nodelay(true);
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        }))
        .await
        .map_err(|err| ChannelError::Connect {
            address: address.to_string(),
            reason: weft_xds::error_chain(&err),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities() {
        assert_eq!(
            authority("https://127.0.0.1:15012").expect("ok"),
            "127.0.0.1:15012"
        );
        assert_eq!(
            authority("istiod.istio-system.svc:15012").expect("ok"),
            "istiod.istio-system.svc:15012"
        );
        for bad in [
            "https://host",
            "https://host:15012/path",
            "",
            "https://:15012x",
        ] {
            assert!(authority(bad).is_err(), "{bad}");
        }
    }
}

//! Admin `/config_dump` in Envoy's `envoy.admin.v3.ConfigDump` shape, so tools that read
//! Envoy's dump (istioctl, scripts, dashboards) read Weft's.
//!
//! ```text
//!  XdsState (each resource's accepted Any, version, time, last rejection) ─┐
//!  identity (certificate, roots) ─► Secret protos ─────────────────────────┼─► admin.v3 protos
//!  the bootstrap the proxy was started with (node, ADS, admin address) ────┘   (ConfigDump{configs: [Any]})
//!     ─► DynamicMessage over envoy-types' descriptors ─► proto3 JSON (field names as in the
//!        protos, Any as {"@type", ...}) ─► ?resource= ?mask= (on the JSON)
//! ```
//!
//! The resource bodies are the protos the proxy accepted, byte for byte. The descriptors are
//! `envoy_descriptors.bin`: from envoy-types' `types.bin`, only the files of the types a dump
//! renders and their imports, without comments (243 KB of its 3.4 MB; regenerate it when
//! envoy-types is upgraded: `regenerate_envoy_descriptors` in the tests), plus the one file of
//! Istio's `MetadataExchange` written here; read on the first dump and kept. Private keys are
//! never shown (`[redacted]`, as Envoy).

use std::net::SocketAddr;
use std::time::SystemTime;

use envoy_types::pb::envoy::admin::v3 as dump;
use envoy_types::pb::envoy::config::bootstrap::v3 as bootstrap;
use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3 as tls;
use envoy_types::pb::google::protobuf::{Any, Timestamp};
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use serde_json::Value;
use weft_xds::type_url;

use crate::config::ProxyConfig;
use crate::config::xds_state::{Failure, TypeRecord, XdsState};
use crate::identity::IdentityState;

/// The descriptors envoy-types 0.7.7 was generated from (its `src/generated/types.bin`).
pub(super) const DESCRIPTORS: &[u8] = include_bytes!("envoy_descriptors.bin");

/// Why a dump could not be made: a 400 (bad query) or a 500.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("name_regex {0:?}: {1}")]
    NameRegex(String, regex::Error),
    #[error("resource {0:?}: no config in the dump has such a repeated field")]
    Resource(String),
    #[error("cannot read Envoy's descriptors: {0}")]
    Descriptors(String),
    #[error("cannot render the dump as JSON: {0}")]
    Render(String),
}

impl DumpError {
    /// Whether the request asked for something wrong (400), not the proxy failing (500).
    pub fn is_bad_request(&self) -> bool {
        matches!(self, DumpError::NameRegex(..) | DumpError::Resource(_))
    }
}

/// `/config_dump`'s query parameters (Envoy's).
#[derive(Debug, Default, Clone)]
pub struct Query {
    /// Only this repeated field's elements (e.g. `dynamic_active_clusters`), each its own config.
    pub resource: Option<String>,
    /// Field paths to keep (a FieldMask, comma separated), in each config or resource.
    pub mask: Option<String>,
    /// Only resources whose name matches.
    pub name_regex: Option<String>,
    /// Adds the endpoints (EDS) config.
    pub include_eds: bool,
}

impl Query {
    pub fn parse(query: Option<&str>) -> Query {
        let mut q = Query::default();
        for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            let value = Some(value.into_owned()).filter(|v| !v.is_empty());
            match &*key {
                "resource" => q.resource = value,
                "mask" => q.mask = value,
                "name_regex" => q.name_regex = value,
                "include_eds" => q.include_eds = true,
                _ => {}
            }
        }
        q
    }
}

/// What a dump is made of.
#[derive(Debug, Clone, Copy)]
pub struct Sources<'a> {
    pub config: &'a ProxyConfig,
    pub xds: &'a XdsState,
    pub identity: Option<&'a IdentityState>,
    pub bootstrap: Option<&'a dump::BootstrapConfigDump>,
}

/// The bootstrap a proxy started with `node` runs: ADS for every type, its admin address.
pub fn bootstrap(node: core::Node, admin: SocketAddr) -> dump::BootstrapConfigDump {
    let ads = || core::ConfigSource {
        config_source_specifier: Some(core::config_source::ConfigSourceSpecifier::Ads(
            core::AggregatedConfigSource::default(),
        )),
        resource_api_version: core::ApiVersion::V3 as i32,
        ..Default::default()
    };
    let grpc = core::GrpcService {
        target_specifier: Some(core::grpc_service::TargetSpecifier::EnvoyGrpc(
            core::grpc_service::EnvoyGrpc {
                cluster_name: "xds-grpc".into(),
                ..Default::default()
            },
        )),
        ..Default::default()
    };
    let boot = bootstrap::Bootstrap {
        node: Some(node),
        dynamic_resources: Some(bootstrap::bootstrap::DynamicResources {
            lds_config: Some(ads()),
            cds_config: Some(ads()),
            ads_config: Some(core::ApiConfigSource {
                api_type: core::api_config_source::ApiType::Grpc as i32,
                transport_api_version: core::ApiVersion::V3 as i32,
                grpc_services: vec![grpc],
                ..Default::default()
            }),
            ..Default::default()
        }),
        admin: Some(bootstrap::Admin {
            address: Some(socket_address(admin)),
            ..Default::default()
        }),
        ..Default::default()
    };
    dump::BootstrapConfigDump {
        bootstrap: Some(boot),
        last_updated: Some(timestamp(SystemTime::now())),
    }
}

fn socket_address(addr: SocketAddr) -> core::Address {
    core::Address {
        address: Some(core::address::Address::SocketAddress(core::SocketAddress {
            address: addr.ip().to_string(),
            port_specifier: Some(core::socket_address::PortSpecifier::PortValue(u32::from(
                addr.port(),
            ))),
            ..Default::default()
        })),
    }
}

fn timestamp(t: SystemTime) -> Timestamp {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

fn pack<M: prost::Message + prost::Name>(message: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: message.encode_to_vec(),
    }
}

fn failure_state(f: &Failure) -> dump::UpdateFailureState {
    dump::UpdateFailureState {
        failed_configuration: f.resource.as_deref().cloned(),
        last_update_attempt: Some(timestamp(f.at)),
        details: f.details.clone(),
        version_info: f.version.clone(),
    }
}

/// The record of one type (empty before its first response).
fn records(xds: &XdsState, type_url: &str) -> TypeRecord {
    xds.type_record(type_url).unwrap_or_default()
}

/// The `ConfigDump` message: bootstrap, clusters, listeners, routes, secrets (and endpoints).
pub fn config_dump(sources: Sources<'_>, query: &Query) -> Result<dump::ConfigDump, DumpError> {
    let regex = query
        .name_regex
        .as_deref()
        .map(|r| regex::Regex::new(r).map_err(|e| DumpError::NameRegex(r.to_string(), e)))
        .transpose()?;
    let wanted = |name: &str| regex.as_ref().is_none_or(|r| r.is_match(name));
    let mut configs = Vec::new();
    if let Some(boot) = sources.bootstrap {
        configs.push(pack(boot));
    }

    let cds = records(sources.xds, type_url::CLUSTER);
    let mut clusters = dump::ClustersConfigDump {
        version_info: cds.version.clone().unwrap_or_default(),
        ..Default::default()
    };
    for (name, r) in cds.resources.iter().filter(|(n, _)| wanted(n)) {
        let entry = dump::clusters_config_dump::DynamicCluster {
            version_info: r
                .active
                .as_ref()
                .map(|a| a.version.clone())
                .unwrap_or_default(),
            cluster: r.active.as_ref().map(|a| (*a.resource).clone()),
            last_updated: r.active.as_ref().map(|a| timestamp(a.last_updated)),
            error_state: r.error.as_ref().map(failure_state),
            client_status: 0,
        };
        let warm = sources
            .config
            .clusters
            .get(name)
            .is_none_or(|c| c.is_ready());
        if warm {
            clusters.dynamic_active_clusters.push(entry);
        } else {
            clusters.dynamic_warming_clusters.push(entry);
        }
    }
    configs.push(pack(&clusters));

    let lds = records(sources.xds, type_url::LISTENER);
    let mut listeners = dump::ListenersConfigDump {
        version_info: lds.version.clone().unwrap_or_default(),
        ..Default::default()
    };
    for (name, r) in lds.resources.iter().filter(|(n, _)| wanted(n)) {
        listeners
            .dynamic_listeners
            .push(dump::listeners_config_dump::DynamicListener {
                name: name.clone(),
                active_state: r.active.as_ref().map(|a| {
                    dump::listeners_config_dump::DynamicListenerState {
                        version_info: a.version.clone(),
                        listener: Some((*a.resource).clone()),
                        last_updated: Some(timestamp(a.last_updated)),
                    }
                }),
                error_state: r.error.as_ref().map(failure_state),
                ..Default::default()
            });
    }
    configs.push(pack(&listeners));

    let rds = records(sources.xds, type_url::ROUTE);
    let mut routes = dump::RoutesConfigDump::default();
    for (_, r) in rds.resources.iter().filter(|(n, _)| wanted(n)) {
        routes
            .dynamic_route_configs
            .push(dump::routes_config_dump::DynamicRouteConfig {
                version_info: r
                    .active
                    .as_ref()
                    .map(|a| a.version.clone())
                    .unwrap_or_default(),
                route_config: r.active.as_ref().map(|a| (*a.resource).clone()),
                last_updated: r.active.as_ref().map(|a| timestamp(a.last_updated)),
                error_state: r.error.as_ref().map(failure_state),
                client_status: 0,
            });
    }
    configs.push(pack(&routes));

    let mut secrets = dump::SecretsConfigDump::default();
    if let Some(identity) = sources.identity {
        secrets.dynamic_active_secrets = identity_secrets(identity)
            .into_iter()
            .filter(|s| wanted(&s.name))
            .collect();
    }
    configs.push(pack(&secrets));

    if query.include_eds {
        let eds = records(sources.xds, type_url::ENDPOINT);
        let mut endpoints = dump::EndpointsConfigDump::default();
        for (_, r) in eds.resources.iter().filter(|(n, _)| wanted(n)) {
            endpoints.dynamic_endpoint_configs.push(
                dump::endpoints_config_dump::DynamicEndpointConfig {
                    version_info: r
                        .active
                        .as_ref()
                        .map(|a| a.version.clone())
                        .unwrap_or_default(),
                    endpoint_config: r.active.as_ref().map(|a| (*a.resource).clone()),
                    last_updated: r.active.as_ref().map(|a| timestamp(a.last_updated)),
                    error_state: r.error.as_ref().map(failure_state),
                    client_status: 0,
                },
            );
        }
        configs.push(pack(&endpoints));
    }
    Ok(dump::ConfigDump { configs })
}

/// The workload certificate (`default`) and the trust roots (`ROOTCA`), as Istio's SDS names
/// them; the private key redacted.
fn identity_secrets(identity: &IdentityState) -> Vec<dump::secrets_config_dump::DynamicSecret> {
    let bytes = |pem: String| core::DataSource {
        specifier: Some(core::data_source::Specifier::InlineBytes(pem.into_bytes())),
        ..Default::default()
    };
    let mut out = Vec::new();
    if let Some(cert) = &identity.cert {
        let secret = tls::Secret {
            name: "default".into(),
            r#type: Some(tls::secret::Type::TlsCertificate(tls::TlsCertificate {
                certificate_chain: Some(bytes(weft_identity::cert::to_pem(&cert.chain))),
                private_key: Some(core::DataSource {
                    specifier: Some(core::data_source::Specifier::InlineString(
                        "[redacted]".into(),
                    )),
                    ..Default::default()
                }),
                ..Default::default()
            })),
        };
        out.push(dynamic_secret(
            &secret,
            &cert.info.serial,
            cert.info.not_before,
        ));
    }
    if let Some(bundle) = &identity.bundle {
        let secret = tls::Secret {
            name: "ROOTCA".into(),
            r#type: Some(tls::secret::Type::ValidationContext(
                tls::CertificateValidationContext {
                    trusted_ca: Some(bytes(bundle.to_pem())),
                    ..Default::default()
                },
            )),
        };
        let serials: Vec<&str> = bundle.infos().iter().map(|i| i.serial.as_str()).collect();
        let since = bundle
            .infos()
            .iter()
            .map(|i| i.not_before)
            .max()
            .unwrap_or(SystemTime::UNIX_EPOCH);
        out.push(dynamic_secret(&secret, &serials.join(","), since));
    }
    out
}

fn dynamic_secret(
    secret: &tls::Secret,
    version: &str,
    since: SystemTime,
) -> dump::secrets_config_dump::DynamicSecret {
    dump::secrets_config_dump::DynamicSecret {
        name: secret.name.clone(),
        version_info: version.to_string(),
        last_updated: Some(timestamp(since)),
        secret: Some(pack(secret)),
        ..Default::default()
    }
}

/// The descriptor pool, read on the first dump and kept: about 8 MB more resident memory once
/// a dump was asked for (a bookinfo client sidecar: 24 → 32 MB, flat over 60 dumps), where
/// reading it for every dump kept up to 15 MB in the allocator's per-thread arenas and took
/// 12 ms a dump instead of 2.
fn descriptors() -> Result<&'static DescriptorPool, DumpError> {
    static POOL: std::sync::OnceLock<Result<DescriptorPool, String>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let mut pool = DescriptorPool::decode(DESCRIPTORS).map_err(|e| e.to_string())?;
        pool.add_file_descriptor_proto(super::istio_descriptors::stats_file())
            .map_err(|e| e.to_string())?;
        pool.add_file_descriptor_proto(super::istio_descriptors::metadata_exchange_file())
            .map_err(|e| e.to_string())?;
        Ok(pool)
    })
    .as_ref()
    .map_err(|e| DumpError::Descriptors(e.clone()))
}

/// The dump as Envoy's proto3 JSON, with `?resource=` and `?mask=` applied.
pub fn render(sources: Sources<'_>, query: &Query) -> Result<Value, DumpError> {
    let message = config_dump(sources, query)?;
    let pool = descriptors()?;
    let mut configs = Vec::with_capacity(message.configs.len());
    for any in &message.configs {
        configs.push(any_json(pool, any)?);
    }
    if let Some(field) = &query.resource {
        configs = select_resource(pool, &message.configs, configs, field)?;
    }
    if let Some(mask) = &query.mask {
        let paths: Vec<Vec<&str>> = mask
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| p.split('.').collect())
            .collect();
        for config in &mut configs {
            apply_mask(config, &paths);
        }
    }
    Ok(serde_json::json!({ "configs": configs }))
}

/// One `Any` as proto3 JSON (`{"@type": …, fields}`, proto field names). A resource that
/// cannot be rendered (it packs a type the descriptors lack) is shown by its type and the
/// reason instead of failing the whole dump.
fn any_json(pool: &DescriptorPool, any: &Any) -> Result<Value, DumpError> {
    let descriptor = pool
        .get_message_by_name("google.protobuf.Any")
        .ok_or_else(|| DumpError::Descriptors("no google.protobuf.Any".into()))?;
    let message = DynamicMessage::decode(descriptor, any.encode_to_vec().as_slice())
        .map_err(|e| DumpError::Render(e.to_string()))?;
    let options = SerializeOptions::new().use_proto_field_name(true);
    match message.serialize_with_options(serde_json::value::Serializer, &options) {
        Ok(value) => Ok(value),
        Err(first) => {
            // Field by field: only what cannot be rendered loses its body.
            let Some(inner) = any
                .type_url
                .rsplit('/')
                .next()
                .and_then(|name| pool.get_message_by_name(name))
                .and_then(|d| DynamicMessage::decode(d, any.value.as_slice()).ok())
            else {
                return Err(DumpError::Render(first.to_string()));
            };
            let mut value = lenient(&inner, &options, 4);
            if let Value::Object(map) = &mut value {
                map.insert("@type".into(), Value::String(any.type_url.clone()));
            }
            Ok(value)
        }
    }
}

/// `message` as proto3 JSON; when that fails (an `Any` of a type the descriptors lack), its
/// fields one by one, `depth` levels down, with `weft_unrenderable` saying why at each level
/// that failed (an `Any` that fails shows its `type_url` and base64 `value`).
fn lenient(message: &DynamicMessage, options: &SerializeOptions, depth: u32) -> Value {
    let error = match message.serialize_with_options(serde_json::value::Serializer, options) {
        Ok(value) => return value,
        Err(e) => e.to_string(),
    };
    let mut out = serde_json::Map::new();
    if depth > 0 {
        for (field, value) in message.fields() {
            let rendered = match value {
                prost_reflect::Value::Message(m) => lenient(m, options, depth - 1),
                prost_reflect::Value::List(items) => Value::Array(
                    items
                        .iter()
                        .map(|item| match item.as_message() {
                            Some(m) => lenient(m, options, depth - 1),
                            None => Value::Null,
                        })
                        .collect(),
                ),
                other => scalar_json(other, &field),
            };
            out.insert(field.name().to_string(), rendered);
        }
    }
    out.insert("weft_unrenderable".into(), Value::String(error));
    Value::Object(out)
}

/// A scalar field's proto3 JSON (64-bit integers as strings, bytes as base64, enums by name).
fn scalar_json(value: &prost_reflect::Value, field: &prost_reflect::FieldDescriptor) -> Value {
    use base64::Engine as _;
    use prost_reflect::Value as V;
    match value {
        V::Bool(b) => Value::Bool(*b),
        V::I32(n) => Value::from(*n),
        V::U32(n) => Value::from(*n),
        V::I64(n) => Value::String(n.to_string()),
        V::U64(n) => Value::String(n.to_string()),
        V::F32(n) => Value::from(f64::from(*n)),
        V::F64(n) => Value::from(*n),
        V::String(s) => Value::String(s.clone()),
        V::Bytes(b) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
        V::EnumNumber(n) => field
            .kind()
            .as_enum()
            .and_then(|e| e.get_value(*n))
            .map_or_else(|| Value::from(*n), |v| Value::String(v.name().to_string())),
        V::Message(_) | V::List(_) | V::Map(_) => Value::Null,
    }
}

/// `?resource=<field>`: the elements of that repeated field of whichever config has it, each
/// with the `@type` of its message (Envoy's).
fn select_resource(
    pool: &DescriptorPool,
    anys: &[Any],
    configs: Vec<Value>,
    field: &str,
) -> Result<Vec<Value>, DumpError> {
    for (any, mut config) in anys.iter().zip(configs) {
        let Some(element) = any
            .type_url
            .rsplit('/')
            .next()
            .and_then(|name| pool.get_message_by_name(name))
            .and_then(|m| m.get_field_by_name(field))
            .filter(|f| f.is_list())
            .and_then(|f| f.kind().as_message().map(|m| m.full_name().to_string()))
        else {
            continue;
        };
        let items = match config.get_mut(field).map(Value::take) {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        };
        return Ok(items
            .into_iter()
            .map(|mut item| {
                if let Value::Object(map) = &mut item {
                    map.insert(
                        "@type".into(),
                        Value::String(format!("type.googleapis.com/{element}")),
                    );
                }
                item
            })
            .collect());
    }
    Err(DumpError::Resource(field.to_string()))
}

/// Keeps only the masked paths (and `@type`); a path through a list applies to each element.
fn apply_mask(value: &mut Value, paths: &[Vec<&str>]) {
    match value {
        Value::Array(items) => items.iter_mut().for_each(|v| apply_mask(v, paths)),
        Value::Object(map) => {
            map.retain(|key, _| key == "@type" || paths.iter().any(|p| p.first() == Some(&&**key)));
            for (key, child) in map.iter_mut() {
                let rest: Vec<Vec<&str>> = paths
                    .iter()
                    .filter(|p| p.first() == Some(&key.as_str()))
                    .map(|p| p[1..].to_vec())
                    .collect();
                if rest.iter().any(Vec::is_empty) {
                    continue;
                }
                apply_mask(child, &rest);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
#[path = "config_dump_tests.rs"]
mod tests;

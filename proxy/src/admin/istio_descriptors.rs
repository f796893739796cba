//! Descriptors of Istio's own config messages that chains and clusters carry in an `Any`
//! (`stats.PluginConfig`, the `istio.stats` filter's; `MetadataExchange`, the
//! `istio.metadata_exchange` filter's), which envoy-types' descriptor set lacks: added to
//! `/config_dump`'s pool so that a dump renders them as Envoy's does.
//!
//! Written out by hand, field for field as weft-xds's `stats` and `metadata_exchange` modules
//! (their prost messages), which have no descriptors of their own; tests check that they
//! encode alike.

use prost_reflect::prost_types::field_descriptor_proto::{Label, Type};
use prost_reflect::prost_types::{
    DescriptorProto, EnumDescriptorProto, EnumValueDescriptorProto, FieldDescriptorProto,
    FileDescriptorProto, MessageOptions,
};

/// A field; its JSON name is left for the pool to derive (protoc's rule: `tagsToRemove`).
fn field(
    name: &str,
    number: i32,
    kind: Type,
    label: Label,
    type_name: Option<&str>,
) -> FieldDescriptorProto {
    FieldDescriptorProto {
        name: Some(name.to_string()),
        number: Some(number),
        label: Some(label as i32),
        r#type: Some(kind as i32),
        type_name: type_name.map(str::to_string),
        ..Default::default()
    }
}

fn enumeration(name: &str, values: &[(&str, i32)]) -> EnumDescriptorProto {
    EnumDescriptorProto {
        name: Some(name.to_string()),
        value: values
            .iter()
            .map(|(n, v)| EnumValueDescriptorProto {
                name: Some(n.to_string()),
                number: Some(*v),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// istio/proxy's `source/extensions/filters/http/istio_stats/config.proto` (package `stats`).
pub fn stats_file() -> FileDescriptorProto {
    use Label::{Optional, Repeated};
    let duration = Some(".google.protobuf.Duration");
    let metric_config = DescriptorProto {
        name: Some("MetricConfig".into()),
        field: vec![
            field(
                "dimensions",
                1,
                Type::Message,
                Repeated,
                Some(".stats.MetricConfig.DimensionsEntry"),
            ),
            field("name", 2, Type::String, Optional, None),
            field("tags_to_remove", 3, Type::String, Repeated, None),
            field("match", 4, Type::String, Optional, None),
            field("drop", 5, Type::Bool, Optional, None),
        ],
        nested_type: vec![DescriptorProto {
            name: Some("DimensionsEntry".into()),
            field: vec![
                field("key", 1, Type::String, Optional, None),
                field("value", 2, Type::String, Optional, None),
            ],
            options: Some(MessageOptions {
                map_entry: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    let definition = DescriptorProto {
        name: Some("MetricDefinition".into()),
        field: vec![
            field("name", 1, Type::String, Optional, None),
            field("value", 2, Type::String, Optional, None),
            field("type", 3, Type::Enum, Optional, Some(".stats.MetricType")),
        ],
        ..Default::default()
    };
    let plugin = DescriptorProto {
        name: Some("PluginConfig".into()),
        field: vec![
            field(
                "disable_host_header_fallback",
                6,
                Type::Bool,
                Optional,
                None,
            ),
            field(
                "tcp_reporting_duration",
                7,
                Type::Message,
                Optional,
                duration,
            ),
            field(
                "metrics",
                8,
                Type::Message,
                Repeated,
                Some(".stats.MetricConfig"),
            ),
            field(
                "definitions",
                9,
                Type::Message,
                Repeated,
                Some(".stats.MetricDefinition"),
            ),
            field(
                "reporter",
                10,
                Type::Enum,
                Optional,
                Some(".stats.Reporter"),
            ),
            field("rotation_interval", 11, Type::Message, Optional, duration),
            field(
                "graceful_deletion_interval",
                12,
                Type::Message,
                Optional,
                duration,
            ),
        ],
        ..Default::default()
    };
    FileDescriptorProto {
        name: Some("source/extensions/filters/http/istio_stats/config.proto".into()),
        package: Some("stats".into()),
        dependency: vec!["google/protobuf/duration.proto".into()],
        message_type: vec![metric_config, definition, plugin],
        enum_type: vec![
            enumeration(
                "MetricType",
                &[("COUNTER", 0), ("GAUGE", 1), ("HISTOGRAM", 2)],
            ),
            enumeration("Reporter", &[("UNSPECIFIED", 0), ("SERVER_GATEWAY", 1)]),
        ],
        syntax: Some("proto3".into()),
        ..Default::default()
    }
}

/// The `MetadataExchange` config of Istio's `istio.metadata_exchange` filter (listener and
/// cluster; `weft_xds::metadata_exchange`).
pub fn metadata_exchange_file() -> FileDescriptorProto {
    use Label::Optional;
    FileDescriptorProto {
        name: Some(
            "source/extensions/filters/network/metadata_exchange/config/metadata_exchange.proto"
                .into(),
        ),
        package: Some("envoy.tcp.metadataexchange.config".into()),
        message_type: vec![DescriptorProto {
            name: Some("MetadataExchange".into()),
            field: vec![
                field("protocol", 1, Type::String, Optional, None),
                field("enable_discovery", 2, Type::Bool, Optional, None),
            ],
            ..Default::default()
        }],
        syntax: Some("proto3".into()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;
    use prost_reflect::{DescriptorPool, DynamicMessage};
    use weft_xds::stats::{MetricConfig, PluginConfig};

    #[test]
    fn the_descriptor_reads_what_weft_xds_writes() {
        let mut pool = DescriptorPool::decode(super::super::config_dump::DESCRIPTORS).unwrap();
        pool.add_file_descriptor_proto(super::stats_file()).unwrap();
        let config = PluginConfig {
            disable_host_header_fallback: true,
            tcp_reporting_duration: Some(envoy_types::pb::google::protobuf::Duration {
                seconds: 5,
                nanos: 0,
            }),
            metrics: vec![MetricConfig {
                name: "requests_total".into(),
                dimensions: [("m".to_string(), "request.method".to_string())].into(),
                tags_to_remove: vec!["response_code".into()],
                drop: true,
                ..Default::default()
            }],
            reporter: 1,
            ..Default::default()
        };
        let bytes = config.encode_to_vec();
        let descriptor = pool.get_message_by_name("stats.PluginConfig").unwrap();
        let message = DynamicMessage::decode(descriptor, bytes.as_slice()).unwrap();
        assert_eq!(message.encode_to_vec(), bytes, "every field known");
        let json = serde_json::to_value(&message).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "disableHostHeaderFallback": true,
                "tcpReportingDuration": "5s",
                "metrics": [{
                    "dimensions": {"m": "request.method"},
                    "name": "requests_total",
                    "tagsToRemove": ["response_code"],
                    "drop": true
                }],
                "reporter": "SERVER_GATEWAY"
            })
        );
    }
}

//! OpenAPI v3 schemas of the specs, in the *structural* form Kubernetes requires of a CRD:
//! everything inlined (no `$ref`), a `type` on every node, no `anyOf`/`oneOf`, no
//! `additionalProperties: false`, no defaults (so the API server never rewrites objects).
//!
//! Generated with `schemars` from the Rust types, then rewritten by [`structural`].

use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use crate::object::Kind;
use crate::{networking, ratelimit, security, telemetry};

/// The generated `spec` schema of `kind`, structural.
pub fn spec_schema(kind: Kind) -> Value {
    match kind {
        Kind::VirtualService => schema_for::<networking::VirtualService>(),
        Kind::DestinationRule => schema_for::<networking::DestinationRule>(),
        Kind::ServiceEntry => schema_for::<networking::ServiceEntry>(),
        Kind::WorkloadEntry => schema_for::<networking::WorkloadEntry>(),
        Kind::WorkloadGroup => schema_for::<networking::WorkloadGroup>(),
        Kind::Gateway => schema_for::<networking::Gateway>(),
        Kind::Sidecar => schema_for::<networking::Sidecar>(),
        Kind::PeerAuthentication => schema_for::<security::PeerAuthentication>(),
        Kind::AuthorizationPolicy => schema_for::<security::AuthorizationPolicy>(),
        Kind::RequestAuthentication => schema_for::<security::RequestAuthentication>(),
        Kind::Telemetry => schema_for::<telemetry::Telemetry>(),
        Kind::LocalRateLimit => schema_for::<ratelimit::LocalRateLimit>(),
    }
}

/// The structural schema of any `JsonSchema` type, everything inlined.
pub fn schema_for<T: JsonSchema>() -> Value {
    let settings = SchemaSettings::draft07().with(|s| {
        s.inline_subschemas = true;
        s.meta_schema = None;
    });
    let mut v = settings
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value();
    structural(&mut v);
    v
}

/// Formats Kubernetes knows (others are dropped: the API server would ignore them anyway).
const KEPT_FORMATS: &[&str] = &["int32", "int64", "uint32", "double", "float", "byte"];

fn is_null_schema(v: &Value) -> bool {
    v.get("type") == Some(&json!("null"))
        || v.get("const") == Some(&Value::Null)
        || v.get("enum") == Some(&json!([null]))
}

/// Rewrites a schemars schema in place into a Kubernetes structural schema.
///
/// Panics on a shape it cannot express structurally (a union of differently-shaped
/// alternatives): such a type needs a hand-written `JsonSchema` impl.
pub fn structural(v: &mut Value) {
    let Some(obj) = v.as_object_mut() else {
        return;
    };
    for key in [
        "$schema",
        "$id",
        "title",
        "default",
        "examples",
        "$defs",
        "definitions",
        "readOnly",
        "writeOnly",
        "deprecated",
        "propertyNames",
        "uniqueItems",
        "nullable",
    ] {
        obj.remove(key);
    }
    if let Some(Value::Object(props)) = obj.get_mut("properties") {
        for p in props.values_mut() {
            structural(p);
        }
    }
    if let Some(items) = obj.get_mut("items") {
        structural(items);
    }
    // Maps with non-string keys (`BTreeMap<u32, T>`): Kubernetes has no patternProperties.
    if let Some(Value::Object(pp)) = obj.remove("patternProperties")
        && let Some((_, value)) = pp.into_iter().next()
    {
        obj.insert("additionalProperties".into(), value);
    }
    match obj.get("additionalProperties") {
        Some(Value::Bool(false)) => {
            obj.remove("additionalProperties");
        }
        Some(Value::Bool(true)) => {
            obj.remove("additionalProperties");
            obj.insert("x-kubernetes-preserve-unknown-fields".into(), json!(true));
        }
        _ => {}
    }
    if let Some(ap) = obj.get_mut("additionalProperties") {
        structural(ap);
    }
    if let Some(c) = obj.remove("const") {
        obj.insert("enum".into(), json!([c]));
    }
    if let Some(Value::Array(types)) = obj.get("type").cloned() {
        let types: Vec<Value> = types.into_iter().filter(|t| t != "null").collect();
        let t = if types.len() == 1 {
            types[0].clone()
        } else {
            Value::Array(types)
        };
        obj.insert("type".into(), t);
    }
    if let Some(Value::Array(e)) = obj.get_mut("enum") {
        e.retain(|x| !x.is_null());
    }
    for union in ["anyOf", "oneOf"] {
        let Some(Value::Array(mut alts)) = obj.remove(union) else {
            continue;
        };
        for a in alts.iter_mut() {
            structural(a);
        }
        alts.retain(|a| !is_null_schema(a));
        if alts.len() == 1 {
            let Some(Value::Object(only)) = alts.pop() else {
                continue;
            };
            for (k, val) in only {
                obj.entry(k).or_insert(val);
            }
        } else if !alts.is_empty() && alts.iter().all(|a| a.get("enum").is_some()) {
            let mut values = Vec::new();
            for a in &alts {
                if let Some(Value::Array(e)) = a.get("enum") {
                    values.extend(e.iter().cloned());
                }
            }
            obj.insert("type".into(), json!("string"));
            obj.insert("enum".into(), Value::Array(values));
        } else if !alts.is_empty() {
            panic!("cannot make {union} structural: {}", Value::Array(alts));
        }
    }
    if let Some(Value::String(f)) = obj.get("format")
        && !KEPT_FORMATS.contains(&f.as_str())
    {
        obj.remove("format");
    }
    // A uint32 is bounded as Istio's schemas bound it (and as the API server can check it).
    if obj.get("format") == Some(&json!("uint32")) {
        obj.entry("minimum").or_insert(json!(0));
        obj.entry("maximum").or_insert(json!(u32::MAX));
    }
    if !obj.contains_key("type") && obj.contains_key("enum") {
        obj.insert("type".into(), json!("string"));
    }
}

/// The node at `path` (a list of object keys) below `v`, e.g. `["properties", "http", "items"]`.
pub(crate) fn node_mut<'a>(v: &'a mut Value, path: &[&str]) -> &'a mut Map<String, Value> {
    let mut cur = v;
    for p in path {
        cur = cur
            .get_mut(*p)
            .unwrap_or_else(|| panic!("schema has no {p:?} along {path:?}"));
    }
    cur.as_object_mut().expect("schema node is an object")
}

//! Evaluates the CRDs' CEL rules in local mode, with `self` bound to a value as the API
//! server binds it, so a rule's verdict (including `has()` of an empty list) is the API
//! server's. Two of Istio's rules use Kubernetes' own CEL library (`duration()` with Go's
//! duration syntax, `url().getScheme()`), which the `cel` crate lacks: those are evaluated
//! natively, by rule text.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use serde_json::Value;

use super::cel::{DURATION_RULE, cel_rules};
use crate::duration::Duration;
use crate::object::Kind;

/// Istio's URL scheme rule (RequestAuthentication `jwksUri`).
const URL_SCHEME_RULE: &str = r#"url(self).getScheme() in ["http", "https"]"#;

fn env() -> Arc<cel::Env> {
    static ENV: OnceLock<Arc<cel::Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = cel::Env::stdlib();
        // `substring` (Istio's unix-socket rules) is in the strings extension, as in
        // Kubernetes' CEL library.
        env.add_extension(cel::extensions::strings)
            .expect("the strings extension declares no conflicting overloads");
        Arc::new(env)
    })
    .clone()
}

/// Every rule of the CRDs, compiled once: the schema stage runs on every object the loader,
/// the webhook and the Kubernetes watch read.
fn programs() -> &'static BTreeMap<&'static str, cel::Program> {
    static PROGRAMS: OnceLock<BTreeMap<&'static str, cel::Program>> = OnceLock::new();
    PROGRAMS.get_or_init(|| {
        let env = env();
        Kind::ALL
            .into_iter()
            .flat_map(cel_rules)
            .filter_map(|r| env.compile(r.rule).ok().map(|p| (r.rule, p)))
            .collect()
    })
}

/// JSON as the API server hands it to CEL: whole numbers are `int`.
fn cel_value(v: &Value) -> Value {
    match v {
        Value::Number(n) if n.is_u64() => n
            .as_u64()
            .and_then(|u| i64::try_from(u).ok())
            .map_or_else(|| v.clone(), Value::from),
        Value::Array(items) => Value::Array(items.iter().map(cel_value).collect()),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), cel_value(v))).collect())
        }
        other => other.clone(),
    }
}

/// `None` when `rule` holds for `value` (`self`); otherwise what more there is to say than
/// the rule's message (why a duration does not parse), possibly nothing. A rule that cannot
/// be compiled or evaluated does not hold, as in the API server.
pub(crate) fn why_not(rule: &str, value: &Value) -> Option<String> {
    if rule == DURATION_RULE.0 {
        return match value.as_str().map(Duration::parse) {
            Some(Ok(d)) if std::time::Duration::from(d) >= std::time::Duration::from_millis(1) => {
                None
            }
            Some(Err(e)) => Some(e.to_string()),
            _ => Some(String::new()),
        };
    }
    (!evaluates_true(rule, value)).then(String::new)
}

fn evaluates_true(rule: &str, value: &Value) -> bool {
    if rule == URL_SCHEME_RULE {
        return value
            .as_str()
            .and_then(|s| s.split_once("://"))
            .is_some_and(|(scheme, _)| scheme == "http" || scheme == "https");
    }
    let compiled;
    let program = match programs().get(rule) {
        Some(program) => program,
        None => match env().compile(rule) {
            Ok(program) => {
                compiled = program;
                &compiled
            }
            Err(_) => return false,
        },
    };
    let mut context = cel::Context::with_env(env());
    if context.add_variable("self", cel_value(value)).is_err() {
        return false;
    }
    matches!(program.execute(&context), Ok(cel::Value::Bool(true)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::Kind;

    fn holds(rule: &str, value: &Value) -> bool {
        why_not(rule, value).is_none()
    }
    use crate::crd::cel_rules;

    fn rule(kind: Kind, message: &str) -> &'static str {
        cel_rules(kind)
            .into_iter()
            .find(|r| r.message == message)
            .map(|r| r.rule)
            .unwrap_or_else(|| panic!("{kind} has no rule {message:?}"))
    }

    #[test]
    fn istios_rules_evaluate_as_the_api_server_does() {
        let none = rule(Kind::ServiceEntry, "NONE mode cannot set endpoints");
        assert!(holds(none, &json!({"hosts": ["a"]})));
        // has() of an explicitly empty list is true.
        assert!(!holds(none, &json!({"hosts": ["a"], "endpoints": []})));
        assert!(holds(
            none,
            &json!({"resolution": "STATIC", "endpoints": []})
        ));
        let ports = rule(Kind::ServiceEntry, "port number cannot be duplicated");
        assert!(holds(ports, &json!([{"number": 80}, {"number": 81}])));
        assert!(!holds(ports, &json!([{"number": 80}, {"number": 80}])));
        let range = "0 < self && self <= 65535";
        assert!(holds(range, &json!(80)));
        assert!(!holds(range, &json!(0)));
        assert!(!holds(range, &json!(70000)));
        let uds = rule(
            Kind::WorkloadEntry,
            "UDS must be an absolute path or abstract socket",
        );
        assert!(holds(uds, &json!("unix:///var/run/a.sock")));
        assert!(holds(uds, &json!("unix://@abstract")));
        assert!(!holds(uds, &json!("unix://relative")));
        assert!(holds(uds, &json!("10.0.0.1")));
        let names = rule(Kind::WorkloadEntry, "port name must be valid");
        assert!(holds(names, &json!({"http": 80, "grpc-web": 81})));
        assert!(!holds(names, &json!({"-bad": 80})));
        let pa = rule(Kind::PeerAuthentication, "port must be between 1-65535");
        assert!(holds(pa, &json!({"8080": {}})));
        assert!(!holds(pa, &json!({"0": {}})));
        let keys = rule(Kind::Telemetry, "wildcard not allowed in label key match");
        assert!(!holds(keys, &json!({"a*": "b"})));
        let source = rule(
            Kind::AuthorizationPolicy,
            "Cannot set serviceAccounts with namespaces or principals",
        );
        assert!(holds(source, &json!({"serviceAccounts": ["ns/sa"]})));
        assert!(!holds(
            source,
            &json!({"serviceAccounts": ["ns/sa"], "namespaces": ["ns"]})
        ));
        let upsert = rule(
            Kind::Telemetry,
            "value must be set when operation is UPSERT",
        );
        assert!(!holds(upsert, &json!({"operation": "UPSERT", "value": ""})));
        assert!(holds(upsert, &json!({"operation": "UPSERT", "value": "x"})));
    }

    #[test]
    fn the_native_rules() {
        assert!(holds(DURATION_RULE.0, &json!("1ms")));
        assert!(holds(DURATION_RULE.0, &json!("1h30m")));
        assert!(!holds(DURATION_RULE.0, &json!("0.5ms")));
        assert!(!holds(DURATION_RULE.0, &json!("5")));
        assert!(holds(URL_SCHEME_RULE, &json!("https://example.com/jwks")));
        assert!(!holds(URL_SCHEME_RULE, &json!("ftp://example.com/jwks")));
    }
}

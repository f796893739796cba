//! A route's `typed_per_filter_config`: the fault filter's `HTTPFault` and the CORS filter's
//! `CorsPolicy`; any other key is rejected naming it.
//!
//! ```text
//!  typed_per_filter_config["envoy.filters.http.fault"] ─► Fault (fault.rs; empty = none)
//!  typed_per_filter_config["envoy.filters.http.cors"]  ─► Cors (cors.rs; filter_enabled 0 % = none)
//! ```

use std::collections::HashMap;

use envoy_types::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy;
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::HttpFault;
use envoy_types::pb::google::protobuf::Any;
use weft_xds::contract::{
    CORS as CORS_FILTER, CORS_POLICY_TYPE_URL as CORS_POLICY_TYPE, FAULT as FAULT_FILTER,
    FAULT_TYPE_URL as FAULT_TYPE,
};

use super::cors::{Cors, cors_policy};
use super::fault::Fault;
use super::{Reason, invalid};

/// A route's per-filter configs: its faults and its CORS policy.
pub(super) type FilterConfigs = (Option<Box<Fault>>, Option<Box<Cors>>);

/// The route's fault and CORS configs (`typed_per_filter_config` holds nothing else the proxy
/// applies).
pub(super) fn route_filter_configs(
    per_filter: &mut HashMap<String, Any>,
) -> Result<FilterConfigs, Reason> {
    let fault = per_filter.remove(FAULT_FILTER);
    let cors = per_filter.remove(CORS_FILTER);
    if let Some(other) = per_filter.keys().next() {
        return Err(Reason::Unsupported(format!(
            "typed_per_filter_config[{other:?}]"
        )));
    }
    let cors = match cors {
        None => None,
        Some(any) => {
            let field = format!("typed_per_filter_config[{CORS_FILTER:?}]");
            if any.type_url != CORS_POLICY_TYPE {
                return Err(invalid(
                    field,
                    format!("type {:?} is not {CORS_POLICY_TYPE}", any.type_url),
                ));
            }
            let config =
                <CorsPolicy as prost::Message>::decode(any.value.as_slice()).map_err(|e| {
                    Reason::Decode {
                        type_url: any.type_url.clone(),
                        error: e.to_string(),
                    }
                })?;
            cors_policy(config)
                .map_err(|r| r.within(&field))?
                .map(Box::new)
        }
    };
    Ok((route_fault(fault)?, cors))
}

/// The route's fault config.
fn route_fault(any: Option<Any>) -> Result<Option<Box<Fault>>, Reason> {
    let Some(any) = any else {
        return Ok(None);
    };
    if any.type_url != FAULT_TYPE {
        return Err(invalid(
            format!("typed_per_filter_config[{FAULT_FILTER:?}]"),
            format!("type {:?} is not {FAULT_TYPE}", any.type_url),
        ));
    }
    let config = <HttpFault as prost::Message>::decode(any.value.as_slice()).map_err(|e| {
        Reason::Decode {
            type_url: any.type_url.clone(),
            error: e.to_string(),
        }
    })?;
    let fault = Fault::try_from(config)
        .map_err(|r| r.within(&format!("typed_per_filter_config[{FAULT_FILTER:?}]")))?;
    Ok((!fault.is_empty()).then(|| Box::new(fault)))
}

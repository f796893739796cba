//! A route's non-forwarding actions: `redirect` → `Redirect`, `direct_response` →
//! `DirectResponse`, rejecting what the proxy cannot answer.

use bytes::Bytes;
use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::config::route::v3 as rt;
use http::StatusCode;

use super::route::{DirectResponse, Redirect};
use super::{Reason, invalid};

pub(super) fn convert_redirect(mut a: rt::RedirectAction) -> Result<Redirect, Reason> {
    use rt::redirect_action::{
        PathRewriteSpecifier as P, RedirectResponseCode as C, SchemeRewriteSpecifier as S,
    };
    let scheme = match a.scheme_rewrite_specifier.take() {
        Some(S::HttpsRedirect(true)) => Some("https".to_string()),
        Some(S::SchemeRedirect(s)) if !s.is_empty() => Some(s.to_ascii_lowercase()),
        _ => None,
    };
    let (path, prefix_rewrite) = match a.path_rewrite_specifier.take() {
        Some(P::PathRedirect(p)) => (Some(p).filter(|p| !p.is_empty()), None),
        Some(P::PrefixRewrite(p)) => (None, Some(p)),
        Some(P::RegexRewrite(_)) => {
            return Err(Reason::Unsupported("redirect.regex_rewrite".into()));
        }
        Some(P::PathRewrite(_)) => return Err(Reason::Unsupported("redirect.path_rewrite".into())),
        None => (None, None),
    };
    let status = match C::try_from(a.response_code) {
        Ok(C::MovedPermanently) => StatusCode::MOVED_PERMANENTLY,
        Ok(C::Found) => StatusCode::FOUND,
        Ok(C::SeeOther) => StatusCode::SEE_OTHER,
        Ok(C::TemporaryRedirect) => StatusCode::TEMPORARY_REDIRECT,
        Ok(C::PermanentRedirect) => StatusCode::PERMANENT_REDIRECT,
        Err(_) => {
            return Err(invalid(
                "redirect.response_code",
                format!("unknown value {}", a.response_code),
            ));
        }
    };
    let port = match a.port_redirect {
        0 => None,
        p => Some(
            u16::try_from(p)
                .map_err(|_| invalid("redirect.port_redirect", format!("{p} is out of range")))?,
        ),
    };
    let host = Some(a.host_redirect).filter(|h| !h.is_empty());
    Ok(Redirect {
        scheme,
        host,
        port,
        path,
        prefix_rewrite,
        status,
        strip_query: a.strip_query,
    })
}

pub(super) fn convert_direct(a: rt::DirectResponseAction) -> Result<DirectResponse, Reason> {
    use core::data_source::Specifier;
    let status = u16::try_from(a.status)
        .ok()
        .filter(|s| (200..600).contains(s))
        .and_then(|s| StatusCode::from_u16(s).ok())
        .ok_or_else(|| {
            invalid(
                "direct_response.status",
                format!("{} is not in [200, 600)", a.status),
            )
        })?;
    if a.body_format.is_some() {
        return Err(Reason::Unsupported("direct_response.body_format".into()));
    }
    let body = match a.body.and_then(|b| b.specifier) {
        None => None,
        Some(Specifier::InlineString(s)) => Some(Bytes::from(s)),
        Some(Specifier::InlineBytes(b)) => Some(Bytes::from(b)),
        Some(Specifier::Filename(_)) => {
            return Err(Reason::Unsupported("direct_response.body.filename".into()));
        }
        Some(Specifier::EnvironmentVariable(_)) => {
            return Err(Reason::Unsupported(
                "direct_response.body.environment_variable".into(),
            ));
        }
    };
    Ok(DirectResponse { status, body })
}

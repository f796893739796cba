//! `JwtAuthentication` → `JwtAuthn`: providers (issuer, audiences, inline JWKS, token locations,
//! outputs) and rules (`match.prefix` → requirement), rejecting what the filter cannot honour.
//!
//! ```text
//!  providers { name ─► JwtProvider } ─► [Provider] by name
//!    local_jwks.inline_string ─► keys (verify.rs; an unusable JWKS leaves no key: its tokens fail)
//!    from_headers/params/cookies ─► [Location] (none: Authorization "Bearer " and access_token)
//!    normalize_payload_in_metadata.space_delimited_claims ─► split in the metadata (check.rs)
//!  rules [{ match.prefix, requires }] ─► [Rule]; requires ─► Requirement
//!    requires_any { provider_name.., allow_missing } ─► Any { children, bypass over their locations }
//! ```

use std::mem::take;
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::config::route::v3 as rt;
use envoy_types::pb::envoy::extensions::filters::http::jwt_authn::v3 as jwt;
use http::HeaderName;

use super::extract::Location;
use super::verify::Keys;
use crate::config::{Reason, invalid, reject_leftover, reject_set};

/// Envoy's default `clock_skew_seconds`.
const DEFAULT_CLOCK_SKEW: u64 = 60;

/// One `jwt_authn` filter, converted.
#[derive(Debug)]
pub struct JwtAuthn {
    pub(super) providers: Vec<Provider>,
    pub(super) rules: Vec<Rule>,
    pub(super) bypass_cors_preflight: bool,
    /// Every provider's output headers: removed from requests before verification.
    pub(super) output_headers: Vec<HeaderName>,
}

#[derive(Debug)]
pub(super) struct Provider {
    pub name: String,
    /// Empty: any issuer.
    pub issuer: String,
    /// Normalised (Envoy: no `http(s)://` scheme, no trailing `/`); empty: any audience.
    pub audiences: Vec<String>,
    pub keys: Keys,
    pub locations: Vec<Arc<Location>>,
    pub forward: bool,
    pub forward_payload_header: Option<HeaderName>,
    /// Header and the claim path (`a.b` walks into nested claims).
    pub claim_to_headers: Vec<(HeaderName, Vec<String>)>,
    pub clock_skew: u64,
    /// `normalize_payload_in_metadata.space_delimited_claims`: these claims' string values
    /// are split at whitespace in the metadata authorization policies match on.
    pub space_delimited_claims: Vec<String>,
}

#[derive(Debug)]
pub(super) struct Rule {
    pub prefix: String,
    pub requires: Requirement,
}

#[derive(Debug)]
pub(super) enum Requirement {
    /// A token of this provider must be present and valid (with `audiences`, instead of the
    /// provider's).
    Provider {
        index: usize,
        audiences: Option<Vec<String>>,
    },
    /// One child must pass; with a bypass, a request without token at the children's
    /// locations passes too (and, allow_missing_or_failed, one whose tokens fail).
    Any {
        children: Vec<Requirement>,
        bypass: Option<Bypass>,
    },
    All(Vec<Requirement>),
    /// No requirement (or allow_missing outside requires_any, which has no locations).
    Pass,
}

#[derive(Debug)]
pub(super) struct Bypass {
    pub allow_failed: bool,
    /// The locations of the sibling providers, each with the providers that read it.
    pub locations: Vec<(Arc<Location>, Vec<usize>)>,
}

impl TryFrom<jwt::JwtAuthentication> for JwtAuthn {
    type Error = Reason;

    fn try_from(mut c: jwt::JwtAuthentication) -> Result<Self, Reason> {
        c.stat_prefix.clear();
        let bypass_cors_preflight = take(&mut c.bypass_cors_preflight);
        reject_set!(
            c,
            filter_state_rules,
            requirement_map,
            strip_failure_response
        );
        let mut named: Vec<(String, jwt::JwtProvider)> =
            take(&mut c.providers).into_iter().collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let mut providers = Vec::with_capacity(named.len());
        for (name, p) in named {
            let path = format!("providers[{name:?}]");
            providers.push(provider(name, p).map_err(|r| r.within(&path))?);
        }
        let rules = take(&mut c.rules)
            .into_iter()
            .enumerate()
            .map(|(i, r)| rule(r, &providers).map_err(|e| e.within(&format!("rules[{i}]"))))
            .collect::<Result<Vec<_>, _>>()?;
        reject_leftover(&c, "JwtAuthentication")?;
        let mut output_headers: Vec<HeaderName> = providers
            .iter()
            .flat_map(|p| {
                p.forward_payload_header
                    .iter()
                    .chain(p.claim_to_headers.iter().map(|(h, _)| h))
                    .cloned()
            })
            .collect();
        output_headers.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        output_headers.dedup();
        Ok(Self {
            providers,
            rules,
            bypass_cors_preflight,
            output_headers,
        })
    }
}

fn provider(name: String, mut p: jwt::JwtProvider) -> Result<Provider, Reason> {
    use jwt::jwt_provider::JwksSourceSpecifier as J;
    let keys = match p.jwks_source_specifier.take() {
        Some(J::LocalJwks(source)) => Keys::parse(&name, &inline_jwks(source)?),
        Some(J::RemoteJwks(_)) => {
            return Err(Reason::Unsupported(
                "remote_jwks (the controller inlines JWKS as local_jwks.inline_string)".into(),
            ));
        }
        None => return Err(Reason::Missing("local_jwks")),
    };
    let mut locations = Vec::new();
    for (i, h) in take(&mut p.from_headers).into_iter().enumerate() {
        locations.push(Arc::new(Location::Header {
            name: header_name(&format!("from_headers[{i}].name"), &h.name)?,
            prefix: h.value_prefix,
        }));
    }
    for (i, param) in take(&mut p.from_params).into_iter().enumerate() {
        if param.is_empty() {
            return Err(invalid(format!("from_params[{i}]"), "must not be empty"));
        }
        locations.push(Arc::new(Location::Param(param)));
    }
    for (i, cookie) in take(&mut p.from_cookies).into_iter().enumerate() {
        if cookie.is_empty() {
            return Err(invalid(format!("from_cookies[{i}]"), "must not be empty"));
        }
        locations.push(Arc::new(Location::Cookie(cookie)));
    }
    if locations.is_empty() {
        locations = Location::defaults();
    }
    let forward_payload_header = match take(&mut p.forward_payload_header) {
        h if h.is_empty() => None,
        h => Some(header_name("forward_payload_header", &h)?),
    };
    let mut claim_to_headers = Vec::new();
    for (i, c) in take(&mut p.claim_to_headers).into_iter().enumerate() {
        let field = format!("claim_to_headers[{i}]");
        let header = header_name(&format!("{field}.header_name"), &c.header_name)?;
        let path: Vec<String> = if !c.claim_path.is_empty() {
            c.claim_path.into_iter().map(|s| s.key).collect()
        } else {
            c.claim_name.split('.').map(str::to_string).collect()
        };
        if path.iter().any(String::is_empty) {
            return Err(invalid(
                format!("{field}.claim_name"),
                "must name a claim (nested claims as a.b)",
            ));
        }
        claim_to_headers.push((header, path));
    }
    let clock_skew = match take(&mut p.clock_skew_seconds) {
        0 => DEFAULT_CLOCK_SKEW,
        s => u64::from(s),
    };
    let issuer = take(&mut p.issuer);
    let audiences = take(&mut p.audiences)
        .iter()
        .map(|a| normalize_audience(a).to_string())
        .collect();
    let forward = take(&mut p.forward);
    // Where the payload goes in metadata: the proxy always keeps it (AuthnResult).
    p.payload_in_metadata.clear();
    // A cache of verified tokens (performance only); route caches: filters run before routing.
    p.jwt_cache_config = None;
    p.clear_route_cache = false;
    let space_delimited_claims = p
        .normalize_payload_in_metadata
        .take()
        .map(|n| n.space_delimited_claims)
        .unwrap_or_default();
    if let Some(i) = space_delimited_claims.iter().position(String::is_empty) {
        return Err(invalid(
            format!("normalize_payload_in_metadata.space_delimited_claims[{i}]"),
            "must name a claim",
        ));
    }
    reject_set!(
        p,
        subjects,
        require_expiration,
        max_lifetime,
        pad_forward_payload_header,
        header_in_metadata,
        failed_status_in_metadata
    );
    reject_leftover(&p, "JwtProvider")?;
    Ok(Provider {
        name,
        issuer,
        audiences,
        keys,
        locations,
        forward,
        forward_payload_header,
        claim_to_headers,
        clock_skew,
        space_delimited_claims,
    })
}

fn inline_jwks(mut source: core::DataSource) -> Result<String, Reason> {
    use core::data_source::Specifier as S;
    if source.watched_directory.take().is_some() {
        return Err(Reason::Unsupported("local_jwks.watched_directory".into()));
    }
    match source.specifier {
        Some(S::InlineString(s)) => Ok(s),
        Some(S::InlineBytes(b)) => {
            String::from_utf8(b).map_err(|_| invalid("local_jwks.inline_bytes", "is not UTF-8"))
        }
        Some(S::Filename(_)) => Err(Reason::Unsupported(
            "local_jwks.filename (only inline_string)".into(),
        )),
        Some(S::EnvironmentVariable(_)) => Err(Reason::Unsupported(
            "local_jwks.environment_variable (only inline_string)".into(),
        )),
        None => Err(Reason::Missing("local_jwks.inline_string")),
    }
}

fn header_name(field: &str, name: &str) -> Result<HeaderName, Reason> {
    HeaderName::try_from(name.to_ascii_lowercase())
        .map_err(|e| invalid(field, format!("{name:?}: {e}")))
}

/// Envoy compares audiences without an `http://`/`https://` scheme and a trailing `/`.
pub(super) fn normalize_audience(a: &str) -> &str {
    let a = a
        .strip_prefix("http://")
        .or_else(|| a.strip_prefix("https://"))
        .unwrap_or(a);
    a.strip_suffix('/').unwrap_or(a)
}

fn rule(mut r: jwt::RequirementRule, providers: &[Provider]) -> Result<Rule, Reason> {
    use jwt::requirement_rule::RequirementType as T;
    let prefix = route_prefix(r.r#match.take())?;
    let requires = match r.requirement_type.take() {
        Some(T::Requires(req)) => requirement("requires", req, providers)?,
        Some(T::RequirementName(_)) => {
            return Err(Reason::Unsupported("requirement_name".into()));
        }
        None => Requirement::Pass,
    };
    Ok(Rule { prefix, requires })
}

fn route_prefix(m: Option<rt::RouteMatch>) -> Result<String, Reason> {
    use rt::route_match::PathSpecifier as P;
    let Some(mut m) = m else {
        return Err(Reason::Missing("match"));
    };
    let prefix = match m.path_specifier.take() {
        Some(P::Prefix(p)) => p,
        Some(_) => return Err(Reason::Unsupported("match: only prefix".into())),
        None => return Err(Reason::Missing("match.prefix")),
    };
    if m.case_sensitive.take().is_some_and(|c| !c.value) {
        return Err(Reason::Unsupported("match.case_sensitive false".into()));
    }
    reject_set!(
        m,
        headers,
        query_parameters,
        grpc,
        runtime_fraction,
        tls_context,
        dynamic_metadata,
        filter_state
    );
    reject_leftover(&m, "match")?;
    Ok(prefix)
}

fn requirement(
    field: &str,
    r: jwt::JwtRequirement,
    providers: &[Provider],
) -> Result<Requirement, Reason> {
    use jwt::jwt_requirement::RequiresType as T;
    let index = |name: &str, at: String| {
        providers
            .iter()
            .position(|p| p.name == name)
            .ok_or_else(|| invalid(at, format!("provider {name:?} is not configured")))
    };
    Ok(match r.requires_type {
        None => Requirement::Pass,
        Some(T::ProviderName(name)) => Requirement::Provider {
            index: index(&name, format!("{field}.provider_name"))?,
            audiences: None,
        },
        Some(T::ProviderAndAudiences(pa)) => Requirement::Provider {
            index: index(
                &pa.provider_name,
                format!("{field}.provider_and_audiences.provider_name"),
            )?,
            audiences: Some(
                pa.audiences
                    .iter()
                    .map(|a| normalize_audience(a).to_string())
                    .collect(),
            ),
        },
        // Outside requires_any there are no sibling providers to read tokens for: Envoy passes.
        Some(T::AllowMissing(_) | T::AllowMissingOrFailed(_)) => Requirement::Pass,
        Some(T::RequiresAll(all)) => Requirement::All(
            all.requirements
                .into_iter()
                .enumerate()
                .map(|(i, r)| {
                    requirement(
                        &format!("{field}.requires_all.requirements[{i}]"),
                        r,
                        providers,
                    )
                })
                .collect::<Result<_, _>>()?,
        ),
        Some(T::RequiresAny(any)) => {
            let mut children = Vec::new();
            let mut used = Vec::new();
            let mut allow_missing = false;
            let mut allow_failed = false;
            for (i, r) in any.requirements.into_iter().enumerate() {
                let at = format!("{field}.requires_any.requirements[{i}]");
                match r.requires_type {
                    Some(T::AllowMissing(_)) => allow_missing = true,
                    Some(T::AllowMissingOrFailed(_)) => allow_failed = true,
                    _ => {
                        let child = requirement(&at, r, providers)?;
                        if let Requirement::Provider { index, .. } = child {
                            used.push(index);
                        }
                        children.push(child);
                    }
                }
            }
            let bypass = (allow_missing || allow_failed).then(|| Bypass {
                allow_failed,
                locations: union_locations(providers, &used),
            });
            Requirement::Any { children, bypass }
        }
        Some(T::ExtractOnlyWithoutValidation(_)) => {
            return Err(Reason::Unsupported(format!(
                "{field}.extract_only_without_validation"
            )));
        }
    })
}

/// The distinct locations of `used` providers, each with the providers that read it.
fn union_locations(providers: &[Provider], used: &[usize]) -> Vec<(Arc<Location>, Vec<usize>)> {
    let mut out: Vec<(Arc<Location>, Vec<usize>)> = Vec::new();
    for &i in used {
        for loc in &providers[i].locations {
            match out.iter_mut().find(|(l, _)| l == loc) {
                Some((_, readers)) if !readers.contains(&i) => readers.push(i),
                Some(_) => {}
                None => out.push((loc.clone(), vec![i])),
            }
        }
    }
    out
}

//! JWTs for the table: validated results as the `istio_authn` metadata holds them, and real
//! tokens signed with the proxy's test keys (`proxy/tests/data/jwt/`) with their JWKS.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use weft_proxy::authn::AuthnResult;

/// The issuer of every token.
pub const ISSUER: &str = "https://issuer.example";
/// The key id of the signing key in [`jwks`].
const KID: &str = "ec";

fn ec_key() -> EncodingKey {
    EncodingKey::from_ec_pem(include_bytes!("../../../proxy/tests/data/jwt/ec256.pem"))
        .expect("the EC test key")
}

/// A key the JWKS does not have.
fn rsa_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(include_bytes!("../../../proxy/tests/data/jwt/rsa.pem"))
        .expect("the RSA test key")
}

/// The public JWKS of the EC test key, as a RequestAuthentication's inline `jwks`.
pub fn jwks() -> String {
    let mut jwk = Jwk::from_encoding_key(&ec_key(), Algorithm::ES256).expect("a JWK");
    jwk.common.key_id = Some(KID.to_string());
    serde_json::to_string(&JwkSet { keys: vec![jwk] }).expect("JWKS JSON")
}

fn now() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970");
    i64::try_from(since.as_secs()).expect("seconds fit")
}

/// The claims of a token of [`ISSUER`] for `sub`: audience `bookstore`, presenter `web`,
/// groups `[dev, admins]`, a nested `realm`, valid for an hour.
pub fn claims(sub: &str) -> Value {
    json!({
        "iss": ISSUER,
        "sub": sub,
        "aud": ["bookstore", "admin-api"],
        "azp": "web",
        "iat": now(),
        "exp": now() + 3600,
        "groups": ["dev", "admins"],
        "tier": "gold",
        "realm": {"name": "eu", "level": "3"},
    })
}

/// `claims` as the JWT filter reports them once the token is verified (Istio's
/// `request.auth.*` attributes).
pub fn verified(claims: Value) -> AuthnResult {
    let text = |key: &str| claims.get(key).and_then(Value::as_str).map(str::to_string);
    let audiences = match claims.get("aud") {
        Some(Value::String(aud)) => vec![aud.clone()],
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    };
    AuthnResult {
        principal: text("iss")
            .zip(text("sub"))
            .map(|(iss, sub)| format!("{iss}/{sub}")),
        audiences,
        presenter: text("azp"),
        claims,
    }
}

/// An ES256 token with `claims`, signed with the key of [`jwks`].
pub fn token(claims: &Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(KID.to_string());
    jsonwebtoken::encode(&header, claims, &ec_key()).expect("a signed token")
}

/// A token for `sub` signed with a key the JWKS does not have.
pub fn foreign_token(sub: &str) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa".to_string());
    jsonwebtoken::encode(&header, &claims(sub), &rsa_key()).expect("a signed token")
}

/// A token for `sub` that expired an hour ago (beyond the default 60 s clock skew).
pub fn expired_token(sub: &str) -> String {
    let mut claims = claims(sub);
    claims["iat"] = json!(now() - 7200);
    claims["exp"] = json!(now() - 3600);
    token(&claims)
}

//! The hand-written wire types of Istio's CA API match Istio's proto
//! (`../shared/corpus/istio/api/security/v1alpha1/ca.proto`, read at test time).

use std::path::PathBuf;

use prost::Message as _;
use weft_identity::ca_api::{
    CREATE_CERTIFICATE, IstioCertificateRequest, IstioCertificateResponse,
};

fn proto() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/corpus/istio/api/security/v1alpha1/ca.proto");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("Istio's ca.proto is needed at {}: {err}", path.display()))
}

/// The (type, name, number) of every field of `message` in the proto text.
fn fields(proto: &str, message: &str) -> Vec<(String, String, u32)> {
    let start = proto
        .find(&format!("message {message} {{"))
        .unwrap_or_else(|| panic!("message {message} not in ca.proto"));
    let body = &proto[start..];
    let body = &body[..body.find("\n}").expect("end of message")];
    body.lines()
        .map(|line| line.split("//").next().unwrap_or("").trim())
        .filter(|line| line.ends_with(';') && line.contains('='))
        .map(|line| {
            let (decl, number) = line.trim_end_matches(';').split_once('=').expect("=");
            let words: Vec<&str> = decl.split_whitespace().collect();
            let (ty, name) = match words.as_slice() {
                ["repeated", ty, name] => (format!("repeated {ty}"), name.to_string()),
                [ty, name] => (ty.to_string(), name.to_string()),
                other => panic!("unexpected field {other:?}"),
            };
            (ty, name, number.trim().parse().expect("field number"))
        })
        .collect()
}

#[test]
fn messages_match_istios_proto() {
    let proto = proto();
    assert!(proto.contains("package istio.v1.auth;"));
    assert!(proto.contains(
        "rpc CreateCertificate(IstioCertificateRequest) returns (IstioCertificateResponse)"
    ));
    assert!(proto.contains("service IstioCertificateService"));
    assert_eq!(
        CREATE_CERTIFICATE,
        "/istio.v1.auth.IstioCertificateService/CreateCertificate"
    );
    assert_eq!(
        fields(&proto, "IstioCertificateRequest"),
        [
            ("string".to_string(), "csr".to_string(), 1),
            ("int64".to_string(), "validity_duration".to_string(), 3),
            (
                "google.protobuf.Struct".to_string(),
                "metadata".to_string(),
                4
            ),
        ]
    );
    assert_eq!(
        fields(&proto, "IstioCertificateResponse"),
        [("repeated string".to_string(), "cert_chain".to_string(), 1)]
    );
    // Our encoding uses those numbers: csr = field 1 (tag 0x0a), validity = field 3 (0x18).
    let request = IstioCertificateRequest {
        csr: "x".into(),
        validity_duration: 7,
        metadata: None,
    };
    assert_eq!(request.encode_to_vec(), [0x0a, 1, b'x', 0x18, 7]);
    let response = IstioCertificateResponse {
        cert_chain: vec!["a".into(), "b".into()],
    };
    assert_eq!(response.encode_to_vec(), [0x0a, 1, b'a', 0x0a, 1, b'b']);
}

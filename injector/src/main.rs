//! weft-injector: the mutating admission webhook that adds the sidecar to pods.
//!
//! The mutation itself is this crate's library (`inject.rs`, also behind `weftctl
//! kube-inject`); the HTTPS AdmissionReview server around it is not built yet, so this binary
//! refuses to start rather than pretend to inject.

fn main() -> std::process::ExitCode {
    eprintln!(
        "weft-injector: the admission webhook server is not implemented yet; \
         use `weftctl kube-inject` (see docs/ARCHITECTURE.md)"
    );
    std::process::ExitCode::FAILURE
}

//! weft-injector: the mutating admission webhook that adds the sidecar to pods.
//!
//! Not built yet: sidecar injection lands with traffic interception. Until then
//! this binary refuses to start rather than pretend to inject.

fn main() -> std::process::ExitCode {
    eprintln!("weft-injector: sidecar injection is not implemented yet (see docs/ARCHITECTURE.md)");
    std::process::ExitCode::FAILURE
}

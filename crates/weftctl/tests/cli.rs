//! The `weftctl` binary's command line: help works, bad arguments fail with a clear message.
//! (Having an integration test also makes `cargo test --workspace` build the binary the
//! end-to-end tests run.)

use std::process::Command;

#[test]
fn help_lists_the_demo() {
    let out = Command::new(env!("CARGO_BIN_EXE_weftctl"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("demo"), "{help}");
    assert!(help.contains("demo-app"), "{help}");
}

#[test]
fn demo_app_rejects_a_bad_listen_address() {
    let out = Command::new(env!("CARGO_BIN_EXE_weftctl"))
        .args([
            "demo-app",
            "--listen",
            "nowhere",
            "--service",
            "s",
            "--version",
            "v1",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--listen") && err.contains("nowhere"), "{err}");
}

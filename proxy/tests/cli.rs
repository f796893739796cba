//! Runs the real `weft-proxy` binary.

use std::process::Command;

#[test]
fn help_exits_zero() {
    let out = Command::new(env!("CARGO_BIN_EXE_weft-proxy"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("--xds-address") && stdout.contains("--labels"),
        "{stdout}"
    );
}

#[test]
fn malformed_labels_fail_naming_the_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_weft-proxy"))
        .args(["--labels", "app"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--labels"), "{stderr}");
    assert!(stderr.contains("key=value"), "{stderr}");
}

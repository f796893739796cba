//! The `weft-controller` binary: help and a clear error for a missing config directory.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_weft-controller");

#[test]
fn help_exits_zero() {
    let output = Command::new(BIN).arg("--help").output().expect("runs");
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--config-dir",
        "--xds-address",
        "--debug-address",
        "--domain",
        "--debounce",
        "--log",
    ] {
        assert!(text.contains(flag), "{flag} missing from help:\n{text}");
    }
}

#[test]
fn missing_config_dir_fails_naming_the_path() {
    let output = Command::new(BIN)
        .args([
            "--config-dir",
            "/no/such/weft/config",
            "--xds-address",
            "127.0.0.1:0",
            "--debug-address",
            "127.0.0.1:0",
        ])
        .env_remove("WEFT_CONFIG_DIR")
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains("/no/such/weft/config"), "{text}");
    assert!(text.contains("does not exist"), "{text}");
}

#[test]
fn config_dir_is_required() {
    let output = Command::new(BIN)
        .env_remove("WEFT_CONFIG_DIR")
        .output()
        .expect("runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--config-dir"));
}

//! The `weft-controller` binary: help, a clear error for a missing config directory, and
//! a clear error in Kubernetes mode without any Kubernetes configuration.

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
        "--dns-refresh-rate",
        "--log",
        "--kubeconfig",
        "--watch-namespace",
        "--webhook-address",
        "--webhook-cert",
        "--webhook-key",
        "--webhook-cert-from-ca",
        "--injector-webhook-config",
        "--validator-webhook-config",
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
fn without_config_dir_it_needs_a_kubernetes_config() {
    let home = tempfile::tempdir().expect("tempdir");
    let output = Command::new(BIN)
        .args([
            "--xds-address",
            "127.0.0.1:0",
            "--debug-address",
            "127.0.0.1:0",
        ])
        .env_remove("WEFT_CONFIG_DIR")
        .env_remove("WEFT_KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .env("KUBECONFIG", home.path().join("no-such-kubeconfig"))
        .env("HOME", home.path())
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains("Kubernetes mode"), "{text}");
}

#[test]
fn a_missing_kubeconfig_file_is_named() {
    let output = Command::new(BIN)
        .args([
            "--kubeconfig",
            "/no/such/weft/kubeconfig",
            "--xds-address",
            "127.0.0.1:0",
            "--debug-address",
            "127.0.0.1:0",
        ])
        .env_remove("WEFT_CONFIG_DIR")
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(text.contains("/no/such/weft/kubeconfig"), "{text}");
}

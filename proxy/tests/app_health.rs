//! The real `weft-proxy` binary refuses app probes it cannot use, before it binds anything.

use std::process::Command;

#[test]
fn invalid_app_probers_stop_the_proxy_with_a_clear_error() {
    for (value, reason) in [
        ("{", "ISTIO_KUBE_APP_PROBERS is not valid JSON"),
        (
            r#"{"/app-health/web/readyz": {"httpGet": {"port": "http"}}}"#,
            r#"ISTIO_KUBE_APP_PROBERS["/app-health/web/readyz"].httpGet.port: "http" is a port name"#,
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_weft-proxy"))
            .env("ISTIO_KUBE_APP_PROBERS", value)
            // Nothing is bound when the check fails; were it ever, only on a test address.
            .args(["--instance-ip", "127.0.0.1", "--status-port", "0"])
            .args(["--admin-port", "0", "--health-port", "0"])
            .output()
            .expect("run weft-proxy");
        assert!(!out.status.success(), "{value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--app-probers: "), "{stderr}");
        assert!(stderr.contains(reason), "{stderr}");
    }
}

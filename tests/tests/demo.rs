//! The README's first command, `weftctl demo`, runs to completion and reports success.

use std::process::Command;

#[test]
fn demo_runs_and_exits_zero() {
    let bins = weft_e2e::bins();
    let dir = bins.weftctl.parent().unwrap();
    let out = Command::new(&bins.weftctl)
        .args(["demo", "--bin-dir"])
        .arg(dir)
        .output()
        .expect("running weftctl demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "demo failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("weft demo: OK"), "{stdout}");
    assert!(stdout.contains("routing moved"), "{stdout}");
}

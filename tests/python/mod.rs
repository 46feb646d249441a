//! The Python package (python/, `import glstream`): its pytest suite, python/tests, run against
//! this build's binary with the package as installed in `<repo>/.venv` (`.ci/run` installs it,
//! non-editable, with `pip install "./python[all]" pytest`). A missing venv, package or pytest
//! fails the test saying what to install; pytest's own output is printed on failure.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// The whole suite; each of its waits has its own bound (120 s) well inside this.
const SUITE_TIMEOUT: Duration = Duration::from_secs(900);

#[test]
fn the_python_package_passes_its_tests_against_the_real_binary() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = repo.join(".venv/bin/python");
    let how = "create it: python3 -m venv .venv && .venv/bin/pip install \"./python[all]\" pytest \
               (.ci/run does this)";
    let ready = Command::new(&python)
        .args([
            "-c",
            "import glstream, pytest, zmq, iceoryx2, zstandard, lz4, qoi, PIL",
        ])
        .output();
    match ready {
        Ok(output) if output.status.success() => {}
        Ok(output) => panic!(
            "{} cannot import the package and its test tools ({}): {how}",
            python.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ),
        Err(e) => panic!("{} cannot run ({e}): {how}", python.display()),
    }
    let child = Command::new(&python)
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "python/tests",
        ])
        .current_dir(repo)
        .env("GLSTREAM_BIN", env!("CARGO_BIN_EXE_glstream"))
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pytest");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(SUITE_TIMEOUT) {
        Ok(output) => output.expect("pytest's output"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("pytest python/tests did not finish in {SUITE_TIMEOUT:?}");
        }
    };
    assert!(
        output.status.success(),
        "pytest python/tests failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

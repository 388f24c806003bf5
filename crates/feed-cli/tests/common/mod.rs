//! Running the `feed` binary from the integration tests.
#![allow(dead_code)] // each test binary uses its own part

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// `feed --store STORE ARGS…`, with `stdin` fed to it when given.
pub fn feed(store: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    feed_env(store, args, stdin, &[])
}

/// [`feed`] with extra environment variables.
pub fn feed_env(store: &Path, args: &[&str], stdin: Option<&[u8]>, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_feed"));
    cmd.arg("--store").arg(store).args(args);
    cmd.envs(env.iter().copied());
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("feed runs");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write stdin");
    }
    child.wait_with_output().expect("feed finishes")
}

/// `feed gen ARGS --out DATA`, which must succeed.
pub fn gen(store: &Path, data: &Path, args: &[&str]) {
    let mut all = vec!["gen"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--out", data.to_str().expect("path")]);
    let g = feed(store, &all, None);
    assert!(
        g.status.success(),
        "gen: {}",
        String::from_utf8_lossy(&g.stderr)
    );
}

/// Standard output as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("UTF-8 output")
}

/// Standard output's lines.
pub fn lines(o: &Output) -> Vec<String> {
    stdout(o).lines().map(str::to_owned).collect()
}

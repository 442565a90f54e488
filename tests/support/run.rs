//! The built `persodesk` binary as a child process: from the repository root, with an extra
//! environment, `RUST_LOG` removed so log lines do not mix into the output.
//!
//! Part of `support` (`support::run`, re-exported); `support/live_token.rs` declares it alone.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::process::{Command, Output, Stdio};

/// The `persodesk` binary as a command from the repository root with `args` and the extra
/// environment `envs`: `RUST_LOG` removed, stdin empty, both outputs piped.
pub fn persodesk_command<V: AsRef<OsStr>>(args: &[&str], envs: &[(&str, V)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_persodesk"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd
}

/// Runs [`persodesk_command`] with `input` on its stdin (a key ceremony's typed components) and
/// returns both outputs.
pub fn persodesk_input<V: AsRef<OsStr>>(args: &[&str], envs: &[(&str, V)], input: &str) -> Output {
    use std::io::Write;
    let mut child = persodesk_command(args, envs)
        .stdin(Stdio::piped())
        .spawn()
        .expect("persodesk runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("output")
}

//! OCI hooks: programs run at fixed points of the lifecycle with the container's state JSON on
//! stdin. prestart, createRuntime, poststart and poststop run in the runtime's namespaces (by
//! the runtime); createContainer and startContainer in the container's (by its process).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use oci_spec::runtime::{Hook, Hooks};

use crate::sys;

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("hooks.{phase}[{index}] {path}: {message}")]
    Invalid { phase: &'static str, index: usize, path: String, message: String },
    #[error("hooks.{phase}[{index}] {path}: {message}")]
    Failed { phase: &'static str, index: usize, path: String, message: String },
}

/// The phases, with the spec's JSON names.
#[derive(Clone, Copy, Debug)]
pub enum Phase {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Prestart => "prestart",
            Phase::CreateRuntime => "createRuntime",
            Phase::CreateContainer => "createContainer",
            Phase::StartContainer => "startContainer",
            Phase::Poststart => "poststart",
            Phase::Poststop => "poststop",
        }
    }

    pub fn of(self, hooks: &Hooks) -> &[Hook] {
        let list = match self {
            Phase::Prestart => hooks.prestart(),
            Phase::CreateRuntime => hooks.create_runtime(),
            Phase::CreateContainer => hooks.create_container(),
            Phase::StartContainer => hooks.start_container(),
            Phase::Poststart => hooks.poststart(),
            Phase::Poststop => hooks.poststop(),
        };
        list.as_deref().unwrap_or_default()
    }
}

/// Hook paths must be absolute; those resolved in the runtime's namespaces (all but
/// startContainer, which resolves in the container) must exist and be executable.
pub fn validate(hooks: &Hooks) -> Result<(), HookError> {
    use Phase::*;
    for phase in [Prestart, CreateRuntime, CreateContainer, StartContainer, Poststart, Poststop] {
        for (index, h) in phase.of(hooks).iter().enumerate() {
            let invalid = |message: String| HookError::Invalid {
                phase: phase.name(),
                index,
                path: h.path().display().to_string(),
                message,
            };
            if !h.path().is_absolute() {
                return Err(invalid("path must be absolute".into()));
            }
            if h.timeout().is_some_and(|t| t <= 0) {
                return Err(invalid("timeout must be a positive number of seconds".into()));
            }
            if matches!(phase, StartContainer) {
                continue;
            }
            let md = std::fs::metadata(h.path()).map_err(|e| invalid(e.to_string()))?;
            if !md.is_file() || md.permissions().mode() & 0o111 == 0 {
                return Err(invalid("is not an executable file".into()));
            }
        }
    }
    Ok(())
}

/// The state document hooks read on stdin.
pub fn state_json(
    id: &str,
    status: &str,
    pid: Option<i32>,
    bundle: &Path,
    annotations: &HashMap<String, String>,
) -> Vec<u8> {
    let mut v = serde_json::json!({
        "ociVersion": crate::OCI_VERSION,
        "id": id,
        "status": status,
        "bundle": bundle,
    });
    if let Some(pid) = pid {
        v["pid"] = pid.into();
    }
    if !annotations.is_empty() {
        v["annotations"] = serde_json::to_value(annotations).expect("annotations serialize");
    }
    serde_json::to_vec(&v).expect("state serializes")
}

/// Runs every hook of `phase` in order; the first failure stops the rest and is returned.
pub fn run_all(phase: Phase, hooks: Option<&Hooks>, state: &[u8]) -> Result<(), HookError> {
    for (index, h) in hooks.map(|h| phase.of(h)).unwrap_or_default().iter().enumerate() {
        run_one(h, state).map_err(|message| HookError::Failed {
            phase: phase.name(),
            index,
            path: h.path().display().to_string(),
            message,
        })?;
    }
    Ok(())
}

/// Runs every hook of `phase`, reporting each failure as a warning (poststart, poststop).
pub fn run_all_warn(phase: Phase, hooks: Option<&Hooks>, state: &[u8]) {
    for (index, h) in hooks.map(|h| phase.of(h)).unwrap_or_default().iter().enumerate() {
        if let Err(message) = run_one(h, state) {
            tracing::warn!("hooks.{}[{index}] {}: {message}", phase.name(), h.path().display());
        }
    }
}

fn run_one(h: &Hook, state: &[u8]) -> Result<(), String> {
    let mut cmd = Command::new(h.path());
    if let Some(args) = h.args().as_ref().filter(|a| !a.is_empty()) {
        cmd.arg0(&args[0]).args(&args[1..]);
    }
    cmd.env_clear();
    for kv in h.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    // stdout is not read (a chatty hook must not fill a pipe and hang); stderr's last line
    // explains a failure.
    cmd.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("start: {e}"))?;
    // A hook that never reads its stdin must not block us: the state is small enough for the
    // pipe buffer, and a broken pipe just means the hook did not want it.
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(state);
    }
    let timeout = h.timeout().map(|t| Duration::from_secs(t as u64));
    if let Some(limit) = timeout {
        if !wait_exit(child.id() as i32, limit) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("timed out after {}s and was killed", limit.as_secs()));
        }
    }
    let mut output = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut output);
    }
    let status = child.wait().map_err(|e| format!("wait: {e}"))?;
    if status.success() {
        return Ok(());
    }
    let tail = output.trim().lines().last().unwrap_or("").to_string();
    let what = match status.code() {
        Some(c) => format!("exited with status {c}"),
        None => "was killed by a signal".to_string(),
    };
    Err(if tail.is_empty() { what } else { format!("{what}: {tail}") })
}

/// Waits up to `limit` for the process to exit (without reaping it). False on timeout.
fn wait_exit(pid: i32, limit: Duration) -> bool {
    let Ok(pidfd) = sys::pidfd_open(pid) else { return true };
    let mut pfd = libc::pollfd { fd: pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    let ms = limit.as_millis().min(i32::MAX as u128) as i32;
    loop {
        // SAFETY: one valid pollfd; a pidfd polls readable once the process has exited.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        return rc > 0;
    }
}

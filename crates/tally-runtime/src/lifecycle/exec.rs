//! `exec`: start another process in a created or running container. The process is either a
//! whole process.json (`--process`, as containerd and Podman send it) or the container's own
//! process with the command line's changes (runc's flags). It joins every namespace and the
//! cgroup of the container and gets the container's security; without `--detach` its exit
//! status is returned and signals are forwarded to it.

use std::path::PathBuf;

use oci_spec::runtime::{Capability, Process, Spec};

use super::create::write_pid_file;
use super::foreground::{block_forwarded, wait_forwarding};
use super::terminal::{proxy, LocalConsole};
use super::LifecycleError;
use crate::bundle;
use crate::cgroups::Cgroup;
use crate::spawn::{self, ExecRequest};
use crate::state::{ContainerDir, Lock, StateError, StateRoot, Status};

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("{source_name}: {source}")]
    Read { source_name: String, source: std::io::Error },
    #[error("{source_name}: {field}: {message}")]
    Parse { source_name: String, field: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// What the command line asked for.
#[derive(Default)]
pub struct ExecOptions {
    /// `--process FILE` (`-` reads stdin): the whole process; the flags below that describe the
    /// process are then not used.
    pub process_file: Option<PathBuf>,
    /// The command and its arguments (the CLI form).
    pub args: Vec<String>,
    pub tty: bool,
    pub console_socket: Option<PathBuf>,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub cwd: Option<PathBuf>,
    pub env: Vec<String>,
    /// `uid[:gid]`, numeric as runc takes it.
    pub user: Option<String>,
    pub additional_gids: Vec<u32>,
    pub caps: Vec<String>,
    pub no_new_privs: bool,
    pub preserved: crate::process::Preserved,
    pub ignore_paused: bool,
    pub cgroup: Option<String>,
    /// `--apparmor PROFILE`: the process's AppArmor profile instead of the container's.
    pub apparmor: Option<String>,
    /// `--process-label LABEL`: its SELinux label instead of the container's.
    pub process_label: Option<String>,
}

/// Runs the process; returns its exit status, or 0 with `--detach` once it runs.
pub fn exec(root: &StateRoot, id: &str, opts: &ExecOptions) -> Result<i32, LifecycleError> {
    let dir = ContainerDir::open(root, id, Lock::Shared)?;
    let state = dir.load()?.ok_or_else(|| LifecycleError::Creating(id.into()))?;
    let status = dir.status(Some(&state));
    match status {
        Status::Created | Status::Running => {}
        Status::Paused if opts.ignore_paused => {}
        Status::Paused => {
            return Err(LifecycleError::WrongStatus {
                id: id.into(),
                status,
                message: "cannot exec in a paused container (resume it, or use --ignore-paused)",
            })
        }
        _ => return Err(LifecycleError::WrongStatus { id: id.into(), status, message: "cannot exec in it" }),
    }
    let spec = match dir.config() {
        Ok(spec) => spec,
        // A container created before tally kept a copy: its bundle's config, as it is now.
        Err(StateError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            bundle::Bundle::load(&state.bundle)?.spec
        }
        Err(e) => return Err(e.into()),
    };
    let process = build_process(&spec, opts)?;
    crate::security::lsm::Labels::of(&process).validate(&crate::security::lsm::Host::detect())?;
    let linux = spec.linux().as_ref();
    let seccomp_cfg = linux.and_then(|l| l.seccomp().as_ref());
    let filter = match seccomp_cfg {
        Some(cfg) => Some(crate::security::seccomp::compile_cached(cfg, &root.path().join(".seccomp-cache"))?),
        None => None,
    };
    let frozen = status == Status::Paused;
    if frozen
        && process.no_new_privileges().unwrap_or(false)
        && seccomp_cfg.is_some_and(crate::security::seccomp::uses_notify)
    {
        // Its listener fd would be handed over after the freeze, with no runtime left to take it.
        return Err(ExecError::Invalid(
            "--ignore-paused: a process with a seccomp notify filter and noNewPrivileges cannot start in a paused container"
                .into(),
        )
        .into());
    }
    let cgroup = Cgroup::of(&state)?;

    // A person's `exec -t` without a console socket: tally holds the pty itself.
    let local = match (process.terminal().unwrap_or(false), &opts.console_socket, opts.detach) {
        (true, None, false) => Some(
            LocalConsole::listen().map_err(|e| ExecError::Invalid(format!("--tty: a console of tally's own: {e}")))?,
        ),
        _ => None,
    };
    let console_socket = opts.console_socket.clone().or_else(|| local.as_ref().map(|l| l.path()));
    let set = (!opts.detach).then(block_forwarded);
    let pid = spawn::spawn_exec(&ExecRequest {
        id,
        bundle: &state.bundle,
        annotations: &state.annotations,
        init_pid: state.pid,
        init_start_time: state.pid_start_time,
        process: &process,
        seccomp: seccomp_cfg.zip(filter.as_ref()),
        personality: linux.and_then(|l| l.personality().as_ref()),
        console_socket: console_socket.as_deref(),
        preserved: &opts.preserved,
        cgroup: &cgroup,
        sub_cgroup: opts.cgroup.as_deref(),
        frozen,
        timeout: spawn::SETUP_TIMEOUT,
    })
    .map_err(|source| {
        let stopped = crate::proc_info::liveness(state.pid, state.pid_start_time) == crate::proc_info::Liveness::Gone;
        LifecycleError::ExecInto { id: id.to_string(), source, stopped }
    })?;
    if let Some(p) = &opts.pid_file {
        if let Err(e) = write_pid_file(p, pid) {
            spawn::kill_and_wait(pid);
            return Err(e);
        }
    }
    // The container's lock is not held while the process runs: kill, state, even delete
    // --force must work meanwhile.
    drop(dir);
    match (set, local) {
        (Some(set), Some(local)) => match local.master() {
            Ok(master) => Ok(proxy(&master, pid, &set)),
            Err(e) => {
                spawn::kill_and_wait(pid);
                Err(ExecError::Invalid(format!("--tty: the pty master: {e}")).into())
            }
        },
        (Some(set), None) => Ok(wait_forwarding(pid, &set)),
        (None, _) => Ok(0),
    }
}

/// The process to run: process.json as given, or the container's process with the flags'
/// changes (runc's rules: the env is extended, the capabilities are added to).
fn build_process(spec: &Spec, opts: &ExecOptions) -> Result<Process, ExecError> {
    let mut p = match &opts.process_file {
        Some(path) => {
            let source_name = format!("--process {}", path.display());
            let data = super::read_input(path)
                .map_err(|source| ExecError::Read { source_name: source_name.clone(), source })?;
            let p: Process = bundle::parse_json(&data).map_err(|(field, message)| ExecError::Parse {
                source_name: source_name.clone(),
                field,
                message,
            })?;
            check_process(&p, &source_name)?;
            return Ok(p);
        }
        None => {
            spec.process().clone().ok_or_else(|| ExecError::Invalid("the container's config has no process".into()))?
        }
    };
    if opts.args.is_empty() || opts.args[0].is_empty() {
        return Err(ExecError::Invalid("exec: no command given (tally exec ID COMMAND [ARG...])".into()));
    }
    p.set_args(Some(opts.args.clone()));
    p.set_terminal(Some(opts.tty));
    p.set_console_size(None);
    let mut env = p.env().clone().unwrap_or_default();
    for e in &opts.env {
        let key = e.split('=').next().unwrap_or(e);
        env.retain(|old| old.split('=').next() != Some(key));
        env.push(e.clone());
    }
    p.set_env(Some(env));
    if let Some(cwd) = &opts.cwd {
        p.set_cwd(cwd.clone());
    }
    let mut user = p.user().clone();
    if let Some(u) = &opts.user {
        let (uid, gid) = parse_user(u)?;
        user.set_uid(uid);
        if let Some(gid) = gid {
            user.set_gid(gid);
        }
    }
    if !opts.additional_gids.is_empty() {
        let mut gids = user.additional_gids().clone().unwrap_or_default();
        gids.extend(&opts.additional_gids);
        user.set_additional_gids(Some(gids));
    }
    p.set_user(user);
    if !opts.caps.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        for name in &opts.caps {
            let cap = parse_cap(name)?;
            let add = |s: &Option<oci_spec::runtime::Capabilities>| {
                let mut s = s.clone().unwrap_or_default();
                s.insert(cap);
                Some(s)
            };
            caps.set_bounding(add(caps.bounding()));
            caps.set_effective(add(caps.effective()));
            caps.set_permitted(add(caps.permitted()));
        }
        p.set_capabilities(Some(caps));
    }
    if opts.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if let Some(profile) = &opts.apparmor {
        p.set_apparmor_profile(Some(profile.clone()));
    }
    if let Some(label) = &opts.process_label {
        p.set_selinux_label(Some(label.clone()));
    }
    check_process(&p, "exec")?;
    Ok(p)
}

fn check_process(p: &Process, source: &str) -> Result<(), ExecError> {
    match p.args() {
        Some(a) if !a.is_empty() && !a[0].is_empty() => {}
        _ => return Err(ExecError::Invalid(format!("{source}: args: must name the program to run"))),
    }
    if !p.cwd().is_absolute() {
        return Err(ExecError::Invalid(format!("{source}: cwd: {:?} is not an absolute path", p.cwd())));
    }
    crate::security::rlimits::validate(p.rlimits().as_deref().unwrap_or_default())
        .map_err(|e| ExecError::Invalid(format!("{source}: rlimits: {e}")))
}

fn parse_user(u: &str) -> Result<(u32, Option<u32>), ExecError> {
    let bad = || ExecError::Invalid(format!("--user {u:?}: must be uid[:gid], numeric"));
    let (uid, gid) = match u.split_once(':') {
        Some((a, b)) => (a, Some(b)),
        None => (u, None),
    };
    let uid = uid.parse().map_err(|_| bad())?;
    let gid = gid.map(|g| g.parse().map_err(|_| bad())).transpose()?;
    Ok((uid, gid))
}

fn parse_cap(name: &str) -> Result<Capability, ExecError> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") { upper } else { format!("CAP_{upper}") };
    serde_json::from_value(serde_json::Value::String(full))
        .map_err(|_| ExecError::Invalid(format!("--cap {name:?}: unknown capability")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_and_capabilities_parse_as_runc_takes_them() {
        assert_eq!(parse_user("1000").unwrap(), (1000, None));
        assert_eq!(parse_user("1000:100").unwrap(), (1000, Some(100)));
        assert!(parse_user("alice").is_err());
        assert_eq!(parse_cap("CAP_KILL").unwrap(), Capability::Kill);
        assert_eq!(parse_cap("net_admin").unwrap(), Capability::NetAdmin);
        assert!(parse_cap("CAP_FLY").is_err());
    }
}

//! The process pipeline of `exec`: a new process joins a running container. The runtime forks
//! a child that enters the container's namespaces through a pidfd of the init (one setns for
//! all of them) after joining the container's cgroup itself (or, paused or with `--cgroup`,
//! waits until the runtime has put it there by PID: cgroups::entry), then forks the
//! exec'd process with CLONE_PARENT, so the runtime, not the short-lived child, is its parent
//! and can wait for its exit status. The process takes on the container's security (rlimits,
//! capabilities, user, no_new_privs, seccomp) and reports `Ready` just before execve; the
//! close-on-exec channel reads as closed once the program runs.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::{LinuxPersonality, Process};

use super::init::hand_over;
use super::{kill_and_wait, send_to_listener, SpawnError};
use crate::cgroups::Cgroup;
use crate::channel::{Channel, ChannelError, Message};
use crate::console::{self, ConsoleError};
use crate::namespaces;
use crate::proc_info::{self, Liveness};
use crate::security::seccomp::Filter;
use crate::sys::{self, Forked};
use crate::{process, security};

/// A process to start in a running container.
pub struct ExecRequest<'a> {
    pub id: &'a str,
    pub bundle: &'a Path,
    pub annotations: &'a std::collections::HashMap<String, String>,
    pub init_pid: i32,
    pub init_start_time: u64,
    pub process: &'a Process,
    pub seccomp: Option<(&'a oci_spec::runtime::LinuxSeccomp, &'a Filter)>,
    pub personality: Option<&'a LinuxPersonality>,
    pub console_socket: Option<&'a Path>,
    pub preserved: &'a crate::process::Preserved,
    pub cgroup: &'a Cgroup,
    /// `exec --cgroup`: a sub-cgroup of the container's to put the process in.
    pub sub_cgroup: Option<&'a str>,
    /// The container is paused (`--ignore-paused`): the process joins the frozen cgroup only
    /// after its setup, and freezes there until `resume`, before its program runs.
    pub frozen: bool,
    pub timeout: std::time::Duration,
}

/// Starts the process; returns its host PID once it has exec'd its program.
pub fn spawn_exec(req: &ExecRequest) -> Result<i32, SpawnError> {
    let pidfd = sys::pidfd_open(req.init_pid)
        .map_err(|e| SpawnError::Exec(format!("the container's init (pid {}): {e}", req.init_pid)))?;
    if proc_info::liveness(req.init_pid, req.init_start_time) == Liveness::Gone {
        return Err(SpawnError::Exec(format!("the container's init (pid {}) is gone", req.init_pid)));
    }
    let flags =
        namespaces::differing(req.init_pid).map_err(|e| SpawnError::Init(format!("container namespaces: {e}")))?;
    let console_socket = if req.process.terminal().unwrap_or(false) {
        Some(console::connect(req.console_socket.ok_or(ConsoleError::NoSocket)?)?)
    } else {
        None
    };
    let (ours, theirs) = Channel::pair(req.timeout).map_err(ChannelError::Io)?;

    // Straight into the container's cgroup as `create`'s init goes (cgroups::entry), unless the
    // process must wait outside a frozen cgroup or goes to a sub-cgroup.
    let entry = match (req.frozen, req.sub_cgroup) {
        (false, None) => req.cgroup.prepare_entry()?,
        _ => None,
    };
    let (forked, in_v2) =
        sys::clone_process_into(0, entry.as_ref().and_then(|e| e.v2_fd())).map_err(SpawnError::Clone)?;
    let child = match forked {
        Forked::Child => {
            drop(ours);
            let code = match join(req, &theirs, &pidfd, flags, console_socket.as_ref(), entry.as_ref()) {
                Ok(never) => match never {},
                Err(msg) => {
                    let _ = theirs.send(&Message::Failed(msg));
                    1
                }
            };
            // SAFETY: _exit ends the forked process without running the runtime's destructors.
            unsafe { libc::_exit(code) }
        }
        Forked::Parent(pid) => pid,
    };
    drop(theirs);
    drop(console_socket);

    let mut process_pid = None;
    // Once reaped, the child's PID may belong to anyone: never signal it after that.
    let mut child_reaped = false;
    let result = (|| -> Result<i32, SpawnError> {
        // The container's cgroup in every hierarchy first, then `--cgroup`'s sub-cgroup where it
        // exists: a hierarchy without it must not leave the process outside the container (the
        // device cgroup above all).
        let join = |pid: i32| {
            req.cgroup.add_task(pid)?;
            match req.sub_cgroup {
                Some(sub) => req.cgroup.add_task_to_sub(pid, sub),
                None => Ok(()),
            }
        };
        match &entry {
            Some(e) => req.cgroup.complete_entry(Some(e), child, in_v2)?,
            None if !req.frozen => join(child)?,
            None => {}
        }
        drop(entry);
        ours.send(&Message::Proceed)?;
        let mut ready = false;
        loop {
            let (msg, fd) = match ours.recv_with_fd() {
                Ok((m, fd)) => (Ok(m), fd),
                Err(e) => (Err(e), None),
            };
            match msg {
                Ok(Message::InitPid(pid)) => {
                    process_pid = Some(pid);
                    // SAFETY: waitpid on our own child (the joining process, which exits now).
                    unsafe { libc::waitpid(child, std::ptr::null_mut(), 0) };
                    child_reaped = true;
                }
                Ok(Message::SeccompFd) => {
                    let (Some(fd), Some((cfg, _)), Some(pid)) = (fd, req.seccomp, process_pid) else {
                        return Err(SpawnError::Unexpected(Message::SeccompFd));
                    };
                    send_to_listener(req.id, req.bundle, req.annotations, cfg, ("running", req.init_pid), pid, &fd)?;
                    ours.send(&Message::Proceed)?;
                }
                Ok(Message::Ready) if req.frozen => {
                    // Its execve comes after `resume`: that it runs cannot be waited for here.
                    let pid = process_pid
                        .ok_or(SpawnError::Exec("the process reported ready before its pid was known".into()))?;
                    join(pid)?;
                    // It waits for this before its execve, and it is frozen now: it reads it, and
                    // runs its program, after `resume`.
                    ours.send(&Message::Proceed)?;
                    return Ok(pid);
                }
                Ok(Message::Ready) => ready = true,
                Ok(Message::Failed(msg)) => return Err(SpawnError::Init(msg)),
                Ok(other) => return Err(SpawnError::Unexpected(other)),
                // The channel is close-on-exec: closed after `Ready` means the program runs.
                Err(ChannelError::Closed) if ready => {
                    return process_pid.ok_or(SpawnError::Exec("the process ran before its pid was known".into()))
                }
                Err(ChannelError::Closed) => {
                    return Err(SpawnError::Exec("the process joining the container exited during its setup".into()))
                }
                Err(e) => return Err(e.into()),
            }
        }
    })();
    if result.is_err() {
        if let Some(pid) = process_pid {
            kill_and_wait(pid);
        }
        if !child_reaped {
            kill_and_wait(child);
        }
    }
    result
}

/// In the forked child: enter the container, wait for the cgroup, fork the process.
fn join(
    req: &ExecRequest,
    channel: &Channel,
    pidfd: &OwnedFd,
    flags: i32,
    console_socket: Option<&OwnedFd>,
    cgroup: Option<&crate::cgroups::Entry>,
) -> Result<std::convert::Infallible, String> {
    // Before any namespace is joined, while this is the only thread (cgroups::entry).
    if let Some(entry) = cgroup {
        entry.join_self()?;
    }
    // Until exec, this process's exe is the host's tally binary: keep /proc/<pid> of it closed
    // to the container's processes and to ptrace.
    // SAFETY: prctl with PR_SET_DUMPABLE takes plain integers.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    let mut keep = vec![channel.raw_fd(), pidfd.as_raw_fd()];
    keep.extend(console_socket.map(|s| s.as_raw_fd()));
    sys::close_fds_except(req.preserved.end(), &keep).map_err(|e| format!("close inherited fds: {e}"))?;
    if flags & libc::CLONE_NEWNS == 0 {
        // The container shares this mount namespace (it has none of its own): its `/` is the
        // init's chroot, reached through /proc before any other namespace is joined.
        let init_root = format!("/proc/{}/root", req.init_pid);
        nix::unistd::chroot(init_root.as_str()).map_err(|e| format!("chroot {init_root}: {e}"))?;
        nix::unistd::chdir("/").map_err(|e| format!("chdir / in {init_root}: {e}"))?;
    }
    namespaces::join_process(pidfd, flags).map_err(|e| e.to_string())?;
    match channel.recv() {
        Ok(Message::Proceed) => {}
        Ok(other) => return Err(format!("sync channel: expected proceed, got {other:?}")),
        Err(e) => return Err(e.to_string()),
    }
    // A joined PID (and time) namespace applies to children only. CLONE_PARENT makes the
    // runtime the parent of the process, so it can wait for its status. Both processes hold
    // the channel: the new one waits (on a pipe the intermediate closes by exiting) until its
    // PID has gone first, so the runtime always knows whom a later message comes from.
    let (gate_r, gate_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    match sys::clone_process(libc::CLONE_PARENT).map_err(|e| format!("fork into the container: {e}"))? {
        Forked::Parent(pid) => {
            let _ = channel.send(&Message::InitPid(pid));
            // SAFETY: this intermediate process ends here without running destructors.
            unsafe { libc::_exit(0) }
        }
        Forked::Child => {}
    }
    drop(gate_w);
    let mut byte = [0u8; 1];
    // EOF once the intermediate has exited, after its message.
    let _ = nix::unistd::read(gate_r.as_raw_fd(), &mut byte);
    drop(gate_r);
    let program = prepare(req, channel, console_socket)?;
    channel.send(&Message::Ready).map_err(|e| e.to_string())?;
    if req.frozen {
        // The runtime moves this process into the frozen cgroup now; going on without waiting
        // for it would let the program run before the freeze takes hold.
        match channel.recv() {
            Ok(Message::Proceed) => {}
            Ok(other) => return Err(format!("sync channel: expected proceed, got {other:?}")),
            Err(e) => return Err(e.to_string()),
        }
    }
    // With no_new_privs the filter goes on last, so it constrains the program and nothing of
    // the setup; the runtime still takes a listener fd after `Ready`.
    if let (Some((_, filter)), true) = (req.seccomp, req.process.no_new_privileges().unwrap_or(false)) {
        hand_over(channel, filter.load().map_err(|e| e.to_string())?)?;
    }
    let err = program.exec();
    Err(err.to_string())
}

/// The container's security for this process, in the order `init` applies it.
fn prepare(req: &ExecRequest, channel: &Channel, console_socket: Option<&OwnedFd>) -> Result<process::Program, String> {
    let s = |e: &dyn std::fmt::Display| e.to_string();
    let p = req.process;
    let user = p.user();
    match console_socket {
        Some(sock) => {
            let slave = console::allocate_joined(sock, user.uid(), user.gid()).map_err(|e| s(&e))?;
            console::attach(&slave).map_err(|e| s(&e))?;
        }
        None => console::new_session().map_err(|e| s(&e))?,
    }
    process::chdir(p.cwd()).map_err(|e| s(&e))?;
    let program = process::prepare(p).map_err(|e| s(&e))?;
    security::rlimits::apply(p.rlimits().as_deref().unwrap_or_default()).map_err(|e| s(&e))?;
    let labels = security::lsm::Labels::of(p);
    let proc = match p.oom_score_adj().is_some() || !labels.is_empty() {
        true => Some(crate::procfs::ProcFs::open().map_err(|e| s(&e))?),
        false => None,
    };
    if let Some(proc) = &proc {
        security::set_oom_score_adj(proc, p.oom_score_adj()).map_err(|e| s(&e))?;
    }
    security::set_personality(req.personality).map_err(|e| s(&e))?;
    // Before no_new_privs and any seccomp filter, as for the init (see security::lsm).
    if let Some(proc) = proc.as_ref().filter(|_| !labels.is_empty()) {
        labels.apply(proc).map_err(|e| s(&e))?;
    }
    let nnp = p.no_new_privileges().unwrap_or(false);
    let filter = req.seccomp.map(|(_, f)| f);
    // Before any filter, which may deny what marking fds close-on-exec takes.
    process::limit_inherited_fds(req.preserved).map_err(|e| s(&e))?;
    if let (Some(filter), false) = (filter, nnp) {
        hand_over(channel, filter.load().map_err(|e| s(&e))?)?;
    }
    super::switch_user(p.capabilities().as_ref(), user)?;
    security::set_no_new_privs(nnp).map_err(|e| s(&e))?;
    process::reset_signals();
    Ok(program)
}

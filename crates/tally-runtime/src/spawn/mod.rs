//! The process pipeline of `create`, runtime side. tally is never re-executed: the runtime
//! clones the container process straight into its new namespaces, puts it in its cgroup,
//! writes its id maps, and waits on the sync channel until the process reports that the
//! container is set up and blocked on its start fifo (see `init`).

mod exec;
mod init;

pub use exec::{spawn_exec, ExecRequest};

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType};

use crate::bundle::Bundle;
use crate::cgroups::{Cgroup, CgroupError};
use crate::channel::{Channel, ChannelError, Message};
use crate::console::{self, ConsoleError};
use crate::hooks::{self, Phase};
use crate::namespaces::{self, NamespaceError, Plan};
use crate::proc_info;
use crate::rootless;
use crate::sys::{self, Forked};

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    #[error(transparent)]
    Console(#[from] ConsoleError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error("{0}")]
    Channel(#[from] ChannelError),
    #[error("start fifo {path}: {source}")]
    Fifo { path: PathBuf, source: io::Error },
    #[error("linux.timeOffsets: {0}")]
    TimeOffsets(io::Error),
    #[error("clone the container process: {0}")]
    Clone(io::Error),
    #[error("write {file} of the container process: {source}")]
    IdMap { file: &'static str, source: io::Error },
    /// The container process reported this failure.
    #[error("{0}")]
    Init(String),
    #[error("the container process exited during setup ({0})")]
    Died(String),
    /// `exec`: the process joining the container could not be started.
    #[error("exec: {0}")]
    Exec(String),
    #[error("sync channel: unexpected message {0:?}")]
    Unexpected(Message),
    #[error(transparent)]
    Hook(#[from] crate::hooks::HookError),
    #[error("linux.seccomp.listenerPath {path}: {source}")]
    Listener { path: PathBuf, source: io::Error },
    #[error("start error file {path}: {source}")]
    StartError { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Rootless(#[from] crate::rootless::RootlessError),
}

/// How long the runtime waits for any one step of a container process it starts.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// How `create` was asked to start the container.
pub struct Request<'a> {
    pub id: &'a str,
    pub bundle: &'a Bundle,
    pub fifo: &'a Path,
    /// Where the container process writes why it failed after `start` released it.
    pub start_error: &'a Path,
    pub seccomp: Option<&'a crate::security::seccomp::Filter>,
    pub console_socket: Option<&'a Path>,
    pub no_pivot: bool,
    pub preserved: &'a crate::process::Preserved,
    pub cgroup: &'a Cgroup,
    pub timeout: Duration,
}

/// A container process that is set up and waits for `commit`.
pub struct Spawned {
    pub pid: i32,
    pub start_time: u64,
    channel: Channel,
}

impl Spawned {
    /// Tells the process its state is saved: it now waits for `start` on its own.
    pub fn commit(self) -> Result<(), SpawnError> {
        self.channel.send(&Message::Committed)?;
        Ok(())
    }
}

/// Sends SIGKILL and waits (bounded) until the process is gone, reaping it if it is ours.
pub fn kill_and_wait(pid: i32) {
    kill_and_wait_checked(pid, None)
}

/// `kill_and_wait` for a recorded init: with its start time, the pidfd is checked to pin that
/// very process before the signal, so a reused PID is never killed.
pub fn kill_and_wait_checked(pid: i32, start_time: Option<u64>) {
    if let Ok(pidfd) = sys::pidfd_open(pid) {
        if start_time.is_some_and(|t| proc_info::liveness(pid, t) == proc_info::Liveness::Gone) {
            return;
        }
        let _ = sys::pidfd_send_signal(pidfd.as_raw_fd(), libc::SIGKILL);
        let mut pfd = libc::pollfd { fd: pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd; a pidfd polls readable once the process has exited.
        unsafe { libc::poll(&mut pfd, 1, 10_000) };
    }
    // SAFETY: WNOHANG never blocks; ECHILD (not our child) is fine.
    unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
}

pub fn spawn(req: &Request) -> Result<Spawned, SpawnError> {
    let spec = &req.bundle.spec;
    let linux = spec.linux().as_ref().expect("validated by bundle");
    let process = spec.process().as_ref().expect("validated by bundle");
    let plan = Plan::from_spec(linux)?;

    let console_socket = if process.terminal().unwrap_or(false) {
        Some(console::connect(req.console_socket.ok_or(ConsoleError::NoSocket)?)?)
    } else {
        None
    };
    let fifo = make_fifo(req.fifo)?;
    let start_error = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(req.start_error)
        .map_err(|source| SpawnError::StartError { path: req.start_error.into(), source })?;
    let (ours, theirs) = Channel::pair(req.timeout).map_err(ChannelError::Io)?;

    if plan.creates(LinuxNamespaceType::Time) {
        // Only the children of the caller enter a new time namespace, and its offsets must be
        // written before the first child exists.
        namespaces::unshare(namespaces::CLONE_NEWTIME)?;
        write_time_offsets(linux).map_err(SpawnError::TimeOffsets)?;
    }

    // Made before the clone: the init joins v1 hierarchies itself and starts in its v2
    // cgroup, without the grace period a move by PID waits for (cgroups::entry).
    let entry = req.cgroup.prepare_entry()?;
    let (forked, in_v2) = sys::clone_process_into(plan.clone_flags(), entry.as_ref().and_then(|e| e.v2_fd()))
        .map_err(SpawnError::Clone)?;
    let child = match forked {
        Forked::Child => {
            drop(ours);
            let code = init::run(init::Context {
                id: req.id,
                bundle: req.bundle,
                plan: &plan,
                channel: &theirs,
                fifo: &fifo,
                start_error: &start_error,
                seccomp: req.seccomp,
                console_socket: console_socket.as_ref(),
                no_pivot: req.no_pivot,
                preserved: req.preserved,
                cgroup: entry.as_ref(),
            });
            // SAFETY: _exit ends the cloned process without running the runtime's destructors
            // or atexit handlers, which belong to the parent.
            unsafe { libc::_exit(code) }
        }
        Forked::Parent(pid) => pid,
    };
    drop(theirs);
    drop(fifo);
    drop(start_error);
    drop(console_socket);

    let mut init_pid = child;
    let result = (|| -> Result<(), SpawnError> {
        req.cgroup.complete_entry(entry.as_ref(), child, in_v2)?;
        drop(entry);
        if let Some(resources) = linux.resources() {
            req.cgroup.apply(resources)?;
        }
        loop {
            let (msg, fd) = match ours.recv_with_fd() {
                Ok((m, fd)) => (Ok(m), fd),
                Err(e) => (Err(e), None),
            };
            match msg {
                Ok(Message::SeccompFd) => {
                    let fd = fd.ok_or(SpawnError::Unexpected(Message::SeccompFd))?;
                    let seccomp = linux.seccomp().as_ref().ok_or(SpawnError::Unexpected(Message::SeccompFd))?;
                    let annotations = spec.annotations().clone().unwrap_or_default();
                    send_to_listener(
                        req.id,
                        &req.bundle.dir,
                        &annotations,
                        seccomp,
                        ("creating", init_pid),
                        init_pid,
                        &fd,
                    )?;
                    ours.send(&Message::Proceed)?;
                }
                Ok(Message::UserNamespaceReady) => {
                    if plan.creates(LinuxNamespaceType::User) {
                        write_id_maps(child, linux.uid_mappings(), linux.gid_mappings())?;
                    }
                    ours.send(&Message::Proceed)?;
                }
                Ok(Message::InitPid(pid)) => {
                    init_pid = pid;
                    // The intermediate process exits right after sending this.
                    // SAFETY: waitpid on our own child with a null status pointer.
                    unsafe { libc::waitpid(child, std::ptr::null_mut(), 0) };
                }
                Ok(Message::RuntimeHooks) => {
                    let annotations = spec.annotations().clone().unwrap_or_default();
                    // state.md: `creating` until the create operation has finished (runc too).
                    let state = hooks::state_json(req.id, "creating", Some(init_pid), &req.bundle.dir, &annotations);
                    hooks::run_all(Phase::Prestart, spec.hooks().as_ref(), &state)?;
                    hooks::run_all(Phase::CreateRuntime, spec.hooks().as_ref(), &state)?;
                    ours.send(&Message::InitPid(init_pid))?;
                }
                Ok(Message::Ready) => return Ok(()),
                Ok(Message::Failed(msg)) => return Err(SpawnError::Init(msg)),
                Ok(other) => return Err(SpawnError::Unexpected(other)),
                Err(ChannelError::Closed) => return Err(SpawnError::Died(exit_reason(child))),
                Err(e) => return Err(e.into()),
            }
        }
    })();
    if let Err(e) = result {
        // When the init came from a second fork, the first child was reaped on `InitPid`: its
        // PID may already be someone else's, so only the init is killed.
        kill_and_wait(init_pid);
        return Err(e);
    }
    let start_time = match proc_info::start_time(init_pid) {
        Some((t, false)) => t,
        _ => return Err(SpawnError::Died("gone before its state was saved".into())),
    };
    Ok(Spawned { pid: init_pid, start_time, channel: ours })
}

/// The container process's switch to its user, with the capabilities kept across it (both
/// `create`'s init and `exec`'s process).
fn switch_user(
    caps: Option<&oci_spec::runtime::LinuxCapabilities>,
    user: &oci_spec::runtime::User,
) -> Result<(), String> {
    let s = |e: &dyn std::fmt::Display| e.to_string();
    let caps = crate::security::capabilities::Plan::new(caps);
    if let Some(caps) = &caps {
        caps.before_user_switch().map_err(|e| s(&e))?;
    }
    crate::process::set_identity(user).map_err(|e| s(&e))?;
    // A change of credentials resets dumpable to fs.suid_dumpable: set it again, since this is
    // still the host's tally until execve.
    // SAFETY: prctl with PR_SET_DUMPABLE takes plain integers.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if let Some(caps) = &caps {
        caps.after_user_switch().map_err(|e| s(&e))?;
    }
    Ok(())
}

/// Passes the seccomp notify fd to `linux.seccomp.listenerPath` with the container's state
/// (its status and init's PID) and the filtered process's PID, in the shape runc sends (so
/// existing seccomp agents read it).
fn send_to_listener(
    id: &str,
    bundle: &Path,
    annotations: &std::collections::HashMap<String, String>,
    seccomp: &oci_spec::runtime::LinuxSeccomp,
    container: (&str, i32),
    pid: i32,
    fd: &std::os::fd::OwnedFd,
) -> Result<(), SpawnError> {
    let (status, init_pid) = container;
    let path = seccomp.listener_path().clone().unwrap_or_default();
    let err = |e: io::Error| SpawnError::Listener { path: path.clone(), source: e };
    let state: serde_json::Value =
        serde_json::from_slice(&hooks::state_json(id, status, Some(init_pid), bundle, annotations))
            .expect("state is JSON");
    let doc = serde_json::json!({
        "ociVersion": crate::OCI_VERSION,
        "fds": ["seccompFd"],
        "pid": pid,
        "metadata": seccomp.listener_metadata().clone().unwrap_or_default(),
        "state": state,
    });
    let sock = std::os::unix::net::UnixStream::connect(&path).map_err(err)?;
    let payload = serde_json::to_vec(&doc).expect("document serializes");
    let fds = [fd.as_raw_fd()];
    let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
    let iov = [std::io::IoSlice::new(&payload)];
    nix::sys::socket::sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, nix::sys::socket::MsgFlags::empty(), None)
        .map_err(|e| err(e.into()))?;
    Ok(())
}

fn exit_reason(pid: i32) -> String {
    let mut status = 0;
    // SAFETY: waitpid writes the status into a live local.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    if r != pid {
        "status unknown".into()
    } else if libc::WIFEXITED(status) {
        format!("exit status {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else {
        "status unknown".into()
    }
}

/// The start fifo, opened read-write so the open never blocks and so that, as long as the
/// container process holds it, `start`'s non-blocking open for writing finds a reader.
fn make_fifo(path: &Path) -> Result<File, SpawnError> {
    let err = |source| SpawnError::Fifo { path: path.into(), source };
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).map_err(|e| err(e.into()))?;
    OpenOptions::new().read(true).write(true).custom_flags(libc::O_CLOEXEC).open(path).map_err(err)
}

fn write_id_maps(
    pid: i32,
    uids: &Option<Vec<LinuxIdMapping>>,
    gids: &Option<Vec<LinuxIdMapping>>,
) -> Result<(), SpawnError> {
    let render = |maps: &Option<Vec<LinuxIdMapping>>| {
        maps.iter()
            .flatten()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect::<String>()
    };
    let (uid_list, gid_list) = (uids.as_deref().unwrap_or_default(), gids.as_deref().unwrap_or_default());
    let euid = nix::unistd::geteuid().as_raw();
    let egid = nix::unistd::getegid().as_raw();
    let deny_setgroups = match rootless::map_writer(rootless::can_map_any_ids(), euid, egid, uid_list, gid_list) {
        rootless::MapWriter::Direct { deny_setgroups } => deny_setgroups,
        rootless::MapWriter::Helpers => {
            rootless::run_helper(pid, "uidMappings", uid_list)?;
            rootless::run_helper(pid, "gidMappings", gid_list)?;
            return Ok(());
        }
    };
    let proc = crate::procfs::ProcFs::open()
        .map_err(|e| SpawnError::IdMap { file: "uid_map", source: io::Error::other(e) })?;
    // Without CAP_SETGID over the parent namespace, the kernel takes a gid_map only once
    // setgroups is denied for the namespace (so a dropped group cannot be regained).
    if deny_setgroups {
        proc.write(format!("{pid}/setgroups"), b"deny")
            .map_err(|e| SpawnError::IdMap { file: "setgroups", source: io::Error::other(e) })?;
    }
    for (file, maps) in [("uid_map", uids), ("gid_map", gids)] {
        proc.write(format!("{pid}/{file}"), render(maps).as_bytes())
            .map_err(|e| SpawnError::IdMap { file, source: io::Error::other(e) })?;
    }
    Ok(())
}

fn write_time_offsets(linux: &oci_spec::runtime::Linux) -> io::Result<()> {
    let Some(offsets) = linux.time_offsets() else { return Ok(()) };
    let mut text = String::new();
    for (clock, off) in offsets {
        text.push_str(&format!("{clock} {} {}\n", off.secs().unwrap_or(0), off.nanosecs().unwrap_or(0)));
    }
    if text.is_empty() {
        return Ok(());
    }
    crate::procfs::ProcFs::open()
        .and_then(|proc| proc.write("self/timens_offsets", text.as_bytes()))
        .map_err(io::Error::other)
}

//! The container process, from clone to exec: joins and creates namespaces, builds the root
//! filesystem, switches to the container's user, reports `Ready`, then blocks on the start
//! fifo until `tally start` writes to it, and execs the container's program.
//!
//! It runs in a cloned copy of the runtime and never returns into the runtime's code: every
//! path ends in exec or `_exit`.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};

use oci_spec::runtime::LinuxNamespaceType;

use crate::bundle::Bundle;
use crate::channel::{Channel, Message};
use crate::hooks::{self, Phase};
use crate::namespaces::{self, Plan, CLONE_NEWTIME};
use crate::sys::{self, Forked};
use crate::{console, process, rootfs, security};

pub struct Context<'a> {
    pub id: &'a str,
    pub bundle: &'a Bundle,
    pub plan: &'a Plan,
    pub channel: &'a Channel,
    pub fifo: &'a File,
    pub start_error: &'a File,
    pub seccomp: Option<&'a security::seccomp::Filter>,
    pub console_socket: Option<&'a OwnedFd>,
    pub no_pivot: bool,
    pub preserved: &'a crate::process::Preserved,
    /// The v1 hierarchies' `tasks` files this process writes itself into, first thing.
    pub cgroup: Option<&'a crate::cgroups::Entry>,
}

/// Runs the container process; the value returned is its exit status on failure.
pub fn run(ctx: Context) -> i32 {
    match setup(&ctx) {
        Ok(program) => {
            let err = program.exec();
            // The runtime is gone by now: `start` reads the reason from the start error file;
            // stderr (the caller's) gets it too, where runc writes it.
            let _ = (&*ctx.start_error).write_all(err.to_string().as_bytes());
            eprintln!("tally: container process: {err}");
            127
        }
        Err(msg) => {
            // Before `Ready` the runtime reads this from the channel; after it (the steps
            // between start and exec) only the start error file reaches `start`.
            let _ = (&*ctx.start_error).write_all(msg.as_bytes());
            let _ = ctx.channel.send(&Message::Failed(msg));
            1
        }
    }
}

fn setup(ctx: &Context) -> Result<process::Program, String> {
    let spec = &ctx.bundle.spec;
    let linux = spec.linux().as_ref().expect("validated by bundle");
    let proc_cfg = spec.process().as_ref().expect("validated by bundle");
    let plan = ctx.plan;
    let s = |e: &dyn std::fmt::Display| e.to_string();

    // Before any namespace is joined (a joined mount namespace has its own /sys/fs/cgroup),
    // and while this is the only thread. The fds go with the others just below.
    if let Some(entry) = ctx.cgroup {
        entry.join_self()?;
    }

    // Whatever the runtime had open (the state directory's lock among them) must not stay
    // open here: the lock would outlive `create` and block every later command.
    let mut keep: Vec<i32> = vec![ctx.channel.raw_fd(), ctx.fifo.as_raw_fd(), ctx.start_error.as_raw_fd()];
    keep.extend(ctx.console_socket.map(|s| s.as_raw_fd()));
    keep.extend(plan.joins.iter().map(|j| j.fd.as_raw_fd()));
    sys::close_fds_except(ctx.preserved.end(), &keep).map_err(|e| format!("close inherited fds: {e}"))?;

    // Until exec, /proc/<pid> of this process (its exe is the host's tally binary) is closed
    // to the container's other processes and to ptrace.
    // SAFETY: prctl with PR_SET_DUMPABLE takes plain integers.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };

    namespaces::join_all(&plan.joins).map_err(|e| s(&e))?;
    let via_clone = plan.joins.is_empty();
    if !via_clone && plan.creates(LinuxNamespaceType::User) {
        namespaces::unshare(libc::CLONE_NEWUSER).map_err(|e| s(&e))?;
    }
    // A non-dumpable process's /proc/PID files belong to the root of its user namespace,
    // which has no mapping yet: the host's root. An unprivileged runtime (or newuidmap, which
    // checks the target's owner) could then not write the id maps. Dumpable just for that.
    let new_userns = plan.creates(LinuxNamespaceType::User);
    if new_userns {
        // SAFETY: prctl with PR_SET_DUMPABLE takes plain integers.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) };
    }
    ctx.channel.send(&Message::UserNamespaceReady).map_err(|e| s(&e))?;
    let reply = ctx.channel.recv();
    if new_userns {
        // SAFETY: as above.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    }
    match reply {
        Ok(Message::Proceed) => {}
        Ok(other) => return Err(format!("sync channel: expected proceed, got {other:?}")),
        Err(e) => return Err(s(&e)),
    }
    if plan.creates(LinuxNamespaceType::User) {
        become_root().map_err(|e| format!("user namespace: become root (is uid 0 mapped?): {e}"))?;
    }
    let own_cgroups = rootfs::own_cgroups();
    let mut rest = plan.new & !CLONE_NEWTIME;
    rest &= if via_clone { libc::CLONE_NEWCGROUP } else { !libc::CLONE_NEWUSER };
    namespaces::unshare(rest).map_err(|e| s(&e))?;
    if plan.needs_second_fork() {
        match sys::clone_process(0).map_err(|e| format!("fork into the pid namespace: {e}"))? {
            Forked::Parent(pid) => {
                let _ = ctx.channel.send(&Message::InitPid(pid));
                // SAFETY: the intermediate process ends here without running destructors.
                unsafe { libc::_exit(0) }
            }
            Forked::Child => {}
        }
    }

    // Opened in the container's pid namespace, before any mount the config asks for exists.
    let labels = security::lsm::Labels::of(proc_cfg);
    let proc = match linux.sysctl().is_some() || proc_cfg.oom_score_adj().is_some() || !labels.is_empty() {
        true => Some(crate::procfs::ProcFs::open().map_err(|e| s(&e))?),
        false => None,
    };
    if let Some(h) = spec.hostname().as_ref().filter(|h| !h.is_empty()) {
        nix::unistd::sethostname(h).map_err(|e| format!("hostname {h:?}: {e}"))?;
    }
    if let Some(d) = spec.domainname().as_ref().filter(|d| !d.is_empty()) {
        // SAFETY: pointer and length describe the live bytes of `d`.
        if unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) } != 0 {
            return Err(format!("domainname {d:?}: {}", std::io::Error::last_os_error()));
        }
    }

    // Also when tally itself runs in a user namespace (rootless Podman runs the runtime as root
    // of one it made, and gives the container no new one): device nodes cannot be made there
    // either, as runc knows too.
    let in_userns = plan.creates(LinuxNamespaceType::User)
        || plan.joins(LinuxNamespaceType::User)
        || crate::rootless::in_user_namespace();
    let setup = rootfs::Setup {
        spec,
        bundle: &ctx.bundle.dir,
        rootfs: &ctx.bundle.rootfs,
        in_userns,
        new_netns: plan.creates(LinuxNamespaceType::Network),
        new_cgroupns: plan.creates(LinuxNamespaceType::Cgroup),
        own_cgroups: &own_cgroups,
    };
    let own_mounts = rootfs::has_mount_namespace(spec);
    let root = match own_mounts {
        true => rootfs::prepare(&setup).map_err(|e| s(&e))?,
        // Sysctls and the console's pty then go through the caller's /proc and /dev.
        false => rootfs::Root::open(std::path::Path::new("/")).map_err(|e| format!("open /: {e}"))?,
    };
    // Before readonlyPaths makes /proc/sys read-only.
    if let Some(sysctl) = linux.sysctl() {
        security::sysctl::apply(proc.as_ref().expect("opened for sysctls"), sysctl).map_err(|e| s(&e))?;
    }
    if own_mounts {
        rootfs::protect(&setup, &root).map_err(|e| s(&e))?;
    }

    // The hooks that need the container's namespaces but the runtime's filesystem view.
    let hooks = spec.hooks().as_ref();
    let any_hooks = hooks.is_some_and(|h| {
        [Phase::Prestart, Phase::CreateRuntime, Phase::CreateContainer, Phase::StartContainer]
            .iter()
            .any(|p| !p.of(h).is_empty())
    });
    let mut hook_state = Vec::new();
    if any_hooks {
        ctx.channel.send(&Message::RuntimeHooks).map_err(|e| s(&e))?;
        let host_pid = match ctx.channel.recv() {
            Ok(Message::InitPid(pid)) => pid,
            Ok(other) => return Err(format!("sync channel: expected the init pid, got {other:?}")),
            Err(e) => return Err(s(&e)),
        };
        let annotations = spec.annotations().clone().unwrap_or_default();
        // createContainer runs inside `create` (`creating`); startContainer after it has
        // finished and before the program runs (`created`), as state.md defines them.
        let creating = hooks::state_json(ctx.id, "creating", Some(host_pid), &ctx.bundle.dir, &annotations);
        hooks::run_all(Phase::CreateContainer, hooks, &creating).map_err(|e| s(&e))?;
        hook_state = hooks::state_json(ctx.id, "created", Some(host_pid), &ctx.bundle.dir, &annotations);
    }
    let user = proc_cfg.user();
    let slave = match ctx.console_socket {
        Some(sock) => Some(console::allocate(&root, sock, user.uid(), user.gid()).map_err(|e| s(&e))?),
        None => None,
    };
    if own_mounts {
        rootfs::enter(&root, &ctx.bundle.rootfs, ctx.no_pivot).map_err(|e| s(&e))?;
        drop(root);
        rootfs::finalize(spec).map_err(|e| s(&e))?;
    } else {
        drop(root);
        rootfs::chroot_into(&ctx.bundle.rootfs).map_err(|e| s(&e))?;
    }
    match &slave {
        Some(slave) => console::attach(slave).map_err(|e| s(&e))?,
        None => console::new_session().map_err(|e| s(&e))?,
    }
    drop(slave);

    process::chdir(proc_cfg.cwd()).map_err(|e| s(&e))?;
    let program = process::prepare(proc_cfg).map_err(|e| s(&e))?;
    // While the process still has every capability: limits that may need raising.
    security::rlimits::apply(proc_cfg.rlimits().as_deref().unwrap_or_default()).map_err(|e| s(&e))?;
    if let Some(proc) = &proc {
        security::set_oom_score_adj(proc, proc_cfg.oom_score_adj()).map_err(|e| s(&e))?;
    }
    security::set_personality(linux.personality().as_ref()).map_err(|e| s(&e))?;
    // Before no_new_privs and any seccomp filter, with every capability: see security::lsm.
    if let Some(proc) = proc.as_ref().filter(|_| !labels.is_empty()) {
        labels.apply(proc).map_err(|e| s(&e))?;
    }
    let nnp = proc_cfg.no_new_privileges().unwrap_or(false);
    // Before any filter: a profile may deny close_range, fcntl or the /proc/self/fd walk. Every
    // fd opened from here to exec is close-on-exec (Rust's std, the seccomp listener).
    process::limit_inherited_fds(ctx.preserved).map_err(|e| s(&e))?;
    // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it while we have it.
    if let (Some(filter), false) = (ctx.seccomp, nnp) {
        let listener = filter.load().map_err(|e| s(&e))?;
        hand_over_listener(ctx, listener)?;
    }
    super::switch_user(proc_cfg.capabilities().as_ref(), user)?;
    // A notify filter must be loaded while the runtime is still here to take its listener fd:
    // now, rather than right before exec.
    if let (Some(filter), true) = (ctx.seccomp, nnp) {
        if filter.notify() {
            security::set_no_new_privs(true).map_err(|e| s(&e))?;
            let listener = filter.load().map_err(|e| s(&e))?;
            hand_over_listener(ctx, listener)?;
        }
    }

    // As the init of a new PID namespace this process ignores every signal it has no handler
    // for, even from the host: `kill ID TERM` on a created container would do nothing. Until
    // exec (which resets them) the usual termination signals end it; installed before `Ready`,
    // so no `kill` after `create` returns can fall in a gap.
    terminate_on_signals();
    ctx.channel.send(&Message::Ready).map_err(|e| s(&e))?;
    match ctx.channel.recv() {
        Ok(Message::Committed) => {}
        // The runtime failed to save the state or died: this container must not outlive it.
        _ => {
            // SAFETY: ends the process without unwinding into the runtime's code.
            unsafe { libc::_exit(1) }
        }
    }

    // `tally start` writes one byte to the fifo. Anything else means no start will come.
    let mut byte = [0u8; 1];
    match (&*ctx.fifo).read(&mut byte) {
        Ok(1) => {}
        _ => {
            // SAFETY: as above.
            unsafe { libc::_exit(1) }
        }
    }
    // startContainer hooks run here, after start, in the container; a failure is written where
    // `start` reads it, and the process ends without running the program.
    if let Err(e) = hooks::run_all(Phase::StartContainer, hooks, &hook_state) {
        let _ = (&*ctx.start_error).write_all(e.to_string().as_bytes());
        // SAFETY: ends the process without unwinding into the runtime's code.
        unsafe { libc::_exit(1) }
    }
    security::set_no_new_privs(nnp).map_err(|e| s(&e))?;
    process::reset_signals();
    // With no_new_privs the filter goes on last, so it constrains the program and nothing of
    // the setup.
    if let (Some(filter), true) = (ctx.seccomp, nnp) {
        if !filter.notify() {
            filter.load().map_err(|e| s(&e))?;
        }
    }
    Ok(program)
}

extern "C" fn exit_on_signal(sig: libc::c_int) {
    // SAFETY: _exit is async-signal-safe and ends the process without running any other code.
    unsafe { libc::_exit(128 + sig) }
}

fn terminate_on_signals() {
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT, libc::SIGUSR1, libc::SIGUSR2] {
        // SAFETY: the handler only calls _exit; `signal` installs it for one valid signal number.
        unsafe { libc::signal(sig, exit_on_signal as *const () as libc::sighandler_t) };
    }
}

fn become_root() -> std::io::Result<()> {
    // SAFETY: setresgid/setresuid take plain ids.
    unsafe {
        if libc::setresgid(0, 0, 0) != 0 || libc::setresuid(0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Sends the seccomp listener fd to the runtime, which passes it to `listenerPath`, and waits
/// until it has.
fn hand_over_listener(ctx: &Context, listener: Option<OwnedFd>) -> Result<(), String> {
    hand_over(ctx.channel, listener)
}

/// Sends a seccomp listener fd to the runtime and waits until it has passed it on (`create`'s
/// init and `exec`'s process alike).
pub(super) fn hand_over(channel: &Channel, listener: Option<OwnedFd>) -> Result<(), String> {
    let Some(fd) = listener else { return Ok(()) };
    channel.send_with_fd(&Message::SeccompFd, fd.as_raw_fd()).map_err(|e| e.to_string())?;
    drop(fd);
    match channel.recv() {
        Ok(Message::Proceed) => Ok(()),
        Ok(other) => Err(format!("sync channel: expected proceed, got {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

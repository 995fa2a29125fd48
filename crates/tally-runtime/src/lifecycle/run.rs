//! `run`: create and start in one call, then (unless detached) wait for the container's init
//! while forwarding the signals this process receives, and delete the container afterwards.

use super::create::create_container;
use super::delete::delete_with;
use super::{delete, start, CreateOptions, LifecycleError};
use crate::state::StateRoot;

/// Signals a foreground `run` passes on to the container (SIGCHLD is its own business).
const FORWARDED: &[i32] = &[
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGTERM,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGPIPE,
    libc::SIGALRM,
    libc::SIGCONT,
    libc::SIGWINCH,
    libc::SIGTSTP,
    libc::SIGTTIN,
    libc::SIGTTOU,
];

pub struct RunOptions {
    pub detach: bool,
    pub keep: bool,
}

/// Returns the container's exit status (128+signal when killed), or 0 when detached.
pub fn run(root: &StateRoot, id: &str, opts: &CreateOptions, run: &RunOptions) -> Result<i32, LifecycleError> {
    if !run.detach {
        // If the init is not our direct child (joined PID namespace), it is reparented to us
        // rather than to the system's init, so we can still wait for it.
        // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes plain integers.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    }
    let created = create_container(root, id, opts)?;
    let pid = created.pid;
    // Blocked before start, so the init's exit cannot be missed; the container process
    // already exists with the normal mask.
    let set = signal_set();
    // SAFETY: set is an initialised sigset_t; the old mask is not needed.
    unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if let Err(e) = start(root, id) {
        let _ = delete(root, id, true);
        return Err(e);
    }
    if run.detach {
        return Ok(0);
    }
    let code = wait_forwarding(pid, &set);
    if !run.keep {
        delete_with(root, id, true, Some(created.cgroup))?;
    }
    Ok(code)
}

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the zeroed set; sigaddset only adds valid numbers.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        for s in FORWARDED {
            libc::sigaddset(&mut set, *s);
        }
        set
    }
}

fn wait_forwarding(init: i32, set: &libc::sigset_t) -> i32 {
    loop {
        if let Some(code) = reap(init) {
            return code;
        }
        // SAFETY: set is initialised; a null siginfo pointer is allowed.
        let sig = unsafe { libc::sigwaitinfo(set, std::ptr::null_mut()) };
        if sig > 0 && sig != libc::SIGCHLD {
            // SAFETY: kill takes a pid and a signal number.
            unsafe { libc::kill(init, sig) };
        }
    }
}

/// Reaps every exited child; returns the init's status once it is among them.
fn reap(init: i32) -> Option<i32> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes the status into a live local.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return None;
        }
        if pid == init {
            return Some(if libc::WIFSIGNALED(status) {
                128 + libc::WTERMSIG(status)
            } else {
                libc::WEXITSTATUS(status)
            });
        }
    }
}

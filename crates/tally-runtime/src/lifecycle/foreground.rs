//! A foreground process (`run`, `exec` without `--detach`): the signals this process gets are
//! passed on to it, and its exit status becomes ours.

/// Signals a foreground `run` or `exec` passes on to the container (SIGCHLD is its own business).
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

/// Blocks the forwarded signals (and SIGCHLD) so none is lost before the wait; the container's
/// processes reset their mask before exec.
pub fn block_forwarded() -> libc::sigset_t {
    let set = signal_set();
    // SAFETY: set is an initialised sigset_t; the old mask is not needed.
    unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    set
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

/// Waits for `pid` (a child of this process), forwarding signals; returns its exit status
/// (128+signal when killed).
pub fn wait_forwarding(init: i32, set: &libc::sigset_t) -> i32 {
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
pub(super) fn reap(init: i32) -> Option<i32> {
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

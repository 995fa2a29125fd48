//! `kill`: a signal to the container's init (through a pidfd, so a reused PID is never hit),
//! or with `--all` to every process in its cgroup.

use std::os::fd::AsRawFd;

use super::LifecycleError;
use crate::cgroups::Cgroup;
use crate::proc_info::{self, Liveness};
use crate::state::{ContainerDir, Lock, StateRoot, Status};
use crate::sys;

pub fn kill(root: &StateRoot, id: &str, signal: i32, all: bool) -> Result<(), LifecycleError> {
    let dir = ContainerDir::open(root, id, Lock::Exclusive)?;
    let state = dir.load()?.ok_or_else(|| LifecycleError::Creating(id.into()))?;
    let status = dir.status(Some(&state));
    if status == Status::Stopped {
        return Err(LifecycleError::WrongStatus { id: id.into(), status, message: "container not running" });
    }
    let sig_err = |source| LifecycleError::Signal { id: id.into(), signal, source };
    if all {
        let cg = Cgroup::of(&state)?;
        for pid in cg.processes(state.pid)? {
            // Processes may exit between the listing and the signal; ESRCH is not an error.
            // SAFETY: kill takes a pid and a signal number.
            unsafe { libc::kill(pid, signal) };
        }
        thaw_if_killed(&state, status, signal, Some(cg));
        return Ok(());
    }
    signal_init(state.pid, state.pid_start_time, signal).map_err(sig_err)?;
    thaw_if_killed(&state, status, signal, None);
    Ok(())
}

/// A frozen process acts on SIGKILL only once thawed (cgroup v1); runc thaws too. The state
/// keeps `paused`, which the dead init turns into `stopped`.
fn thaw_if_killed(state: &crate::state::ContainerState, status: Status, signal: i32, cg: Option<Cgroup>) {
    if status != Status::Paused || signal != libc::SIGKILL {
        return;
    }
    let cg = cg.or_else(|| Cgroup::of(state).ok());
    if let Some(cg) = cg {
        let _ = cg.freeze(false);
    }
}

/// Signals the init only if it is still the process that was started: the pidfd pins the
/// process, then the start time proves it is ours.
pub fn signal_init(pid: i32, start_time: u64, signal: i32) -> std::io::Result<()> {
    let pidfd = sys::pidfd_open(pid)?;
    if proc_info::liveness(pid, start_time) == Liveness::Gone {
        return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
    }
    sys::pidfd_send_signal(pidfd.as_raw_fd(), signal)
}

//! `start`: one write to the fifo the waiting container process holds. O(1): no process is
//! spawned and nothing is re-read from the bundle.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;

use std::os::fd::AsRawFd;
use std::time::Duration;

use super::LifecycleError;
use crate::hooks::{self, Phase};
use crate::state::{ContainerDir, Lock, StateRoot, Status};

/// How long `start` waits for startContainer hooks and the exec.
const EXEC_TIMEOUT: Duration = Duration::from_secs(120);

pub fn start(root: &StateRoot, id: &str) -> Result<(), LifecycleError> {
    let dir = ContainerDir::open(root, id, Lock::Exclusive)?;
    let state = dir.load()?;
    match dir.status(state.as_ref()) {
        Status::Created => {}
        Status::Creating => return Err(LifecycleError::Creating(id.into())),
        status => {
            return Err(LifecycleError::WrongStatus {
                id: id.into(),
                status,
                message: "cannot start a container that is not created",
            })
        }
    }
    let state = state.expect("a created container has a state");
    let fifo = dir.fifo_path();
    let err = |source| LifecycleError::Start { id: id.into(), source };
    // Non-blocking: with no reader (the process died since the status check) this fails with
    // ENXIO instead of hanging.
    let mut f =
        OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC).open(&fifo).map_err(|e| {
            if e.raw_os_error() == Some(libc::ENXIO) {
                err(io::Error::other("the container process is not running"))
            } else {
                err(e)
            }
        })?;
    f.write_all(&[0]).map_err(err)?;
    fs::remove_file(&fifo).map_err(err)?;
    // The container process holds the fifo until exec closes it (close-on-exec) or it exits:
    // with no reader left, poll reports POLLERR. Then the start error file tells whether it
    // failed first, so a failing startContainer hook or exec is this command's error, not a
    // silent dead container.
    let mut pfd = libc::pollfd { fd: f.as_raw_fd(), events: 0, revents: 0 };
    let ms = EXEC_TIMEOUT.as_millis() as i32;
    // SAFETY: one valid pollfd; events 0 still reports POLLERR and POLLHUP.
    let ready = unsafe { libc::poll(&mut pfd, 1, ms) };
    if ready == 0 {
        return Err(err(io::Error::other(format!("the container process did not exec within {EXEC_TIMEOUT:?}"))));
    }
    // The process writes there only when a startContainer hook or the exec failed; a program
    // that ran and already exited (e.g. /bin/true) leaves it empty.
    let why = fs::read_to_string(dir.start_error_path()).unwrap_or_default();
    if !why.is_empty() {
        return Err(err(io::Error::other(why)));
    }
    let _ = fs::remove_file(dir.start_error_path());
    let state_doc = hooks::state_json(id, "running", Some(state.pid), &state.bundle, &state.annotations);
    hooks::run_all_warn(Phase::Poststart, state.hooks.as_ref(), &state_doc);
    Ok(())
}

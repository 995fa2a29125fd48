//! `start`: one write to the fifo the waiting container process holds. O(1): no process is
//! spawned and nothing is re-read from the bundle.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;

use super::LifecycleError;
use crate::state::{ContainerDir, Lock, StateRoot, Status};

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
    Ok(())
}

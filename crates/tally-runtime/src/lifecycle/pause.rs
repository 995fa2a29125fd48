//! `pause` and `resume`: the cgroup freezer (v1 `freezer.state`, v2 `cgroup.freeze`) over every
//! process of the container; the `paused` status is remembered in the state.

use super::LifecycleError;
use crate::cgroups::Cgroup;
use crate::state::{ContainerDir, Lock, StateRoot, Status};

pub fn pause(root: &StateRoot, id: &str) -> Result<(), LifecycleError> {
    set_frozen(root, id, true)
}

pub fn resume(root: &StateRoot, id: &str) -> Result<(), LifecycleError> {
    set_frozen(root, id, false)
}

fn set_frozen(root: &StateRoot, id: &str, frozen: bool) -> Result<(), LifecycleError> {
    let dir = ContainerDir::open(root, id, Lock::Exclusive)?;
    let mut state = dir.load()?.ok_or_else(|| LifecycleError::Creating(id.into()))?;
    let status = dir.status(Some(&state));
    match (frozen, status) {
        (true, Status::Running | Status::Created) | (false, Status::Paused) => {}
        (true, _) => {
            return Err(LifecycleError::WrongStatus {
                id: id.into(),
                status,
                message: "only a running or created container can be paused",
            })
        }
        (false, _) => return Err(LifecycleError::WrongStatus { id: id.into(), status, message: "it is not paused" }),
    }
    let cgroup = Cgroup::of(&state)?;
    cgroup.freeze(frozen)?;
    state.paused = frozen;
    if let Err(e) = dir.save(&state) {
        // The state must say what the freezer holds: undo rather than leave them apart.
        let _ = cgroup.freeze(!frozen);
        return Err(e.into());
    }
    Ok(())
}

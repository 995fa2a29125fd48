//! `delete`: remove a stopped (or created) container's cgroup and state; with `--force`, kill
//! a running one first, and clean up whatever is left of a broken one.

use super::LifecycleError;
use crate::cgroups::{self, Cgroup};
use crate::hooks::{self, Phase};
use crate::spawn::kill_and_wait_checked;
use crate::state::{ContainerDir, Lock, StateError, StateRoot, Status};

pub fn delete(root: &StateRoot, id: &str, force: bool) -> Result<(), LifecycleError> {
    delete_with(root, id, force, None)
}

/// `delete`, reusing the cgroup handle of a caller that already has one (run), which saves
/// reading the host's cgroup mounts again.
pub(super) fn delete_with(
    root: &StateRoot,
    id: &str,
    force: bool,
    cgroup: Option<Cgroup>,
) -> Result<(), LifecycleError> {
    let dir = match ContainerDir::open(root, id, Lock::Exclusive) {
        Ok(d) => d,
        // Nothing left to clean: what runc does for `delete --force`.
        Err(StateError::NotFound(_)) if force => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let state = match dir.load() {
        Ok(Some(s)) => s,
        Ok(None) | Err(StateError::Corrupt { .. }) if force => {
            // A create that died half-way: its cgroup is the only other thing it made, at the
            // config's cgroupsPath (the copy create writes first) or the default.
            let spec_path = dir.config().ok().and_then(|c| c.linux().as_ref()?.cgroups_path().clone());
            if let Ok(path) = cgroups::container_path(spec_path.as_deref(), id) {
                if let Ok(cg) = Cgroup::open(&path, false, id) {
                    // An init that got as far as the cgroup ends itself once its channel to the
                    // dead create closes; it may not have yet.
                    for pid in cg.pids().unwrap_or_default() {
                        // SAFETY: kill takes a pid and a signal number.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                    let _ = cg.remove();
                }
            }
            crate::disk_quota::release(root, &dir)?;
            dir.remove()?;
            return Ok(());
        }
        Ok(None) => return Err(LifecycleError::Creating(id.into())),
        Err(e) => return Err(e.into()),
    };
    let status = dir.status(Some(&state));
    let cgroup = match cgroup {
        Some(c) if c.path() == state.cgroup_path => c,
        _ => Cgroup::of(&state)?,
    };
    if matches!(status, Status::Running | Status::Paused) && !force {
        return Err(LifecycleError::WrongStatus {
            id: id.into(),
            status,
            message: "cannot delete a container that is not stopped (use --force)",
        });
    }
    // The final beancounters outlive the container in the ledger: taken before a running
    // container is killed, while its processes still hold what they held; failcnts and peaks
    // stay in the cgroup until it is removed.
    let last = super::beancounters::read(&dir, &state, false);
    match status {
        // containerd deletes a created task without --force; runc and crun allow it, so does
        // tally (the spec says otherwise; callers win, see docs/compatibility.md).
        Status::Created => kill_and_wait_checked(state.pid, Some(state.pid_start_time)),
        Status::Running | Status::Paused => {
            for pid in cgroup.processes(state.pid)? {
                // SAFETY: kill takes a pid and a signal number.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            // A v1 freezer holds even SIGKILLed tasks until thawed.
            if status == Status::Paused {
                let _ = cgroup.freeze(false);
            }
            kill_and_wait_checked(state.pid, Some(state.pid_start_time));
        }
        Status::Stopped | Status::Creating => {}
    }
    cgroup.remove()?;
    crate::disk_quota::release(root, &dir)?;
    // Once the container is surely gone, so a retried delete never appends it twice.
    if let Err(e) = tally_beancounters::ledger::append(root.path(), &last) {
        tracing::warn!("beancounter ledger in {}: {e}", root.path().display());
    }
    dir.remove()?;
    let doc = hooks::state_json(id, "stopped", None, &state.bundle, &state.annotations);
    hooks::run_all_warn(Phase::Poststop, state.hooks.as_ref(), &doc);
    Ok(())
}

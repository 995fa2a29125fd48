//! `beancounters`: each container's OpenVZ-style resource accounting, read from its cgroup and
//! sampled from /proc (tally_beancounters), with sampled high-water marks kept in the state
//! directory; and the snapshot `delete` appends to the ledger.

use std::path::PathBuf;

use tally_beancounters::{collect, Beancounters, MaxHeld, Target};

use super::LifecycleError;
use crate::state::{ContainerDir, ContainerState, Lock, StateRoot, Status};

const MAXHELD_FILE: &str = "beancounters.maxheld.json";

/// The beancounters of `ids`, or of every container when `ids` is empty.
pub fn beancounters(root: &StateRoot, ids: &[String]) -> Result<Vec<Beancounters>, LifecycleError> {
    let listing_all = ids.is_empty();
    let ids = if listing_all { root.ids()? } else { ids.to_vec() };
    let mut out = Vec::new();
    for id in &ids {
        let dir = match ContainerDir::open(root, id, Lock::Shared) {
            Ok(d) => d,
            // A container deleted while everything is listed is simply not listed.
            Err(_) if listing_all => continue,
            Err(e) => return Err(e.into()),
        };
        let Some(state) = dir.load()? else {
            if listing_all {
                continue;
            }
            return Err(LifecycleError::Creating(id.clone()));
        };
        out.push(read(&dir, &state, true));
    }
    Ok(out)
}

/// One container's beancounters now. With `persist`, the sampled maxheld is saved in the
/// state directory: only by commands holding the container's lock, since `delete` removes it.
pub(super) fn read(dir: &ContainerDir, state: &ContainerState, persist: bool) -> Beancounters {
    let alive = dir.status(Some(state)) != Status::Stopped;
    let path: PathBuf = dir.path().join(MAXHELD_FILE);
    let mut maxheld = MaxHeld::load(&path);
    let cgroup_path = crate::cgroups::hierarchy_path(&state.cgroup_path, state.systemd_cgroup);
    let target = Target {
        id: &state.id,
        cgroup_path: &cgroup_path,
        init_pid: alive.then_some(state.pid),
        shmall: configured_shmall(dir),
    };
    let bc = collect(&target, &mut maxheld);
    if persist {
        // Losing a high-water mark costs accuracy, not correctness: not an error.
        let _ = maxheld.save(&path);
    }
    bc
}

/// `kernel.shmall` from the config `create` kept: the container's IPC namespace is the only
/// place the kernel shows it.
fn configured_shmall(dir: &ContainerDir) -> Option<u64> {
    let config = dir.config().ok()?;
    config.linux().as_ref()?.sysctl().as_ref()?.get("kernel.shmall")?.trim().parse().ok()
}

/// The ledger's entries, oldest first.
pub fn ledger(root: &StateRoot) -> Result<Vec<serde_json::Value>, LifecycleError> {
    tally_beancounters::ledger::read(root.path()).map_err(|source| {
        LifecycleError::State(crate::state::StateError::Root {
            path: root.path().join(tally_beancounters::ledger::FILE_NAME),
            source,
        })
    })
}

//! `beancounters`: each container's OpenVZ-style resource accounting, read from its cgroup and
//! sampled from /proc (tally_beancounters), with sampled high-water marks kept in the state
//! directory; and the snapshot `delete` appends to the ledger.

use std::path::PathBuf;

use tally_beancounters::{collect, Beancounters, MaxHeld, Target, Wanted};

use super::LifecycleError;
use crate::state::{ContainerDir, ContainerState, Lock, StateRoot, Status};

const MAXHELD_FILE: &str = "beancounters.maxheld.json";

/// The beancounters of `ids`, or of every container when `ids` is empty; only the `wanted`
/// resources when given. Containers are read in parallel, one thread per CPU: each read is
/// many small /proc and cgroup reads, system time that scales with the cores.
pub fn beancounters(
    root: &StateRoot,
    ids: &[String],
    wanted: Option<&Wanted>,
) -> Result<Vec<Beancounters>, LifecycleError> {
    let listing_all = ids.is_empty();
    let ids = if listing_all { root.ids()? } else { ids.to_vec() };
    // A thread per 16 containers at most; std's CPU count reads the cgroup quota files (about
    // 20 system calls), not worth asking for the one thread a short list gets anyway.
    let threads = match ids.len().div_ceil(16) {
        0 | 1 => 1,
        most => std::thread::available_parallelism().map_or(1, |n| n.get()).min(most),
    };
    let chunk = ids.len().div_ceil(threads).max(1);
    let read_part = |part: &[String]| -> Result<Vec<Beancounters>, LifecycleError> {
        part.iter().filter_map(|id| one(root, id, listing_all, wanted).transpose()).collect()
    };
    if threads == 1 {
        return read_part(&ids);
    }
    let results: Vec<Result<Vec<Beancounters>, LifecycleError>> = std::thread::scope(|scope| {
        let workers: Vec<_> = ids.chunks(chunk).map(|part| scope.spawn(move || read_part(part))).collect();
        workers.into_iter().map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    });
    let mut out = Vec::with_capacity(ids.len());
    for r in results {
        out.extend(r?);
    }
    Ok(out)
}

/// One container of a listing: `None` when listing everything and it went away meanwhile.
fn one(
    root: &StateRoot,
    id: &str,
    listing_all: bool,
    wanted: Option<&Wanted>,
) -> Result<Option<Beancounters>, LifecycleError> {
    let dir = match ContainerDir::open(root, id, Lock::Shared) {
        Ok(d) => d,
        // A container deleted while everything is listed is simply not listed.
        Err(_) if listing_all => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let Some(state) = dir.load()? else {
        if listing_all {
            return Ok(None);
        }
        return Err(LifecycleError::Creating(id.to_string()));
    };
    Ok(Some(read_some(&dir, &state, true, wanted)))
}

/// One container's beancounters now. With `persist`, the sampled maxheld is saved in the
/// state directory: only by commands holding the container's lock, since `delete` removes it.
pub(super) fn read(dir: &ContainerDir, state: &ContainerState, persist: bool) -> Beancounters {
    read_some(dir, state, persist, None)
}

fn read_some(dir: &ContainerDir, state: &ContainerState, persist: bool, wanted: Option<&Wanted>) -> Beancounters {
    let alive = dir.status(Some(state)) != Status::Stopped;
    let path: PathBuf = dir.path().join(MAXHELD_FILE);
    let mut maxheld = MaxHeld::load(&path);
    let before = maxheld.clone();
    let cgroup_path = crate::cgroups::hierarchy_path(&state.cgroup_path, state.systemd_cgroup);
    let quota = crate::disk_quota::record(dir);
    let target = Target {
        id: &state.id,
        cgroup_path: state.no_cgroup.is_none().then_some(cgroup_path.as_path()),
        processes: (state.no_cgroup.is_some() && alive).then(|| crate::proc_info::pid_namespace_members(state.pid)),
        init_pid: alive.then_some(state.pid),
        // The config is parsed only when its one value is asked for.
        shmall: if wanted.is_none_or(|w| w.wants("shmpages")) { configured_shmall(dir) } else { None },
        wanted,
        disk: quota.as_ref().map(|q| (q.rootfs.as_path(), q.project)),
    };
    let bc = collect(&target, &mut maxheld);
    if persist && maxheld != before {
        // Losing a high-water mark costs accuracy, not correctness: not an error.
        let _ = maxheld.save(&path);
    }
    bc
}

/// A restored container goes on from the checkpointed one's high-water marks (the rows of
/// the checkpoint record): its own samples only raise them.
pub(super) fn continue_from(dir: &ContainerDir, rows: &serde_json::Value) {
    let mut maxheld = tally_beancounters::MaxHeld::default();
    for r in rows["resources"].as_array().into_iter().flatten() {
        if let (Some(name), Some(v)) = (r["resource"].as_str(), r["maxheld"].as_u64()) {
            maxheld.0.insert(name.to_string(), v);
        }
    }
    // Losing them costs accuracy, not correctness (as for every maxheld save).
    let _ = maxheld.save(&dir.path().join(MAXHELD_FILE));
}

/// `kernel.shmall` from the config `create` kept: the container's IPC namespace is the only
/// place the kernel shows it. Most configs do not set it: those are not parsed at all.
fn configured_shmall(dir: &ContainerDir) -> Option<u64> {
    let raw = tally_beancounters::kfile::read_bytes(&dir.config_path()).ok()?;
    const KEY: &[u8] = b"kernel.shmall";
    if !raw.windows(KEY.len()).any(|w| w == KEY) {
        return None;
    }
    let config: serde_json::Value = serde_json::from_slice(&raw).ok()?;
    config["linux"]["sysctl"]["kernel.shmall"].as_str()?.trim().parse().ok()
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

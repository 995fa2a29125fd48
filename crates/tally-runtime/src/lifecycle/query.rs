//! `state` and `list`: read-only views of the state directory.

use std::path::PathBuf;

use super::LifecycleError;
use crate::state::{ContainerDir, Lock, StateReport, StateRoot, Status};

/// runc's `state` document as JSON text.
pub fn state(root: &StateRoot, id: &str) -> Result<String, LifecycleError> {
    let dir = ContainerDir::open(root, id, Lock::Shared)?;
    let state = dir.load()?.ok_or_else(|| LifecycleError::Creating(id.into()))?;
    let status = dir.status(Some(&state));
    let report = StateReport {
        oci_version: &state.oci_version,
        id: &state.id,
        pid: if status == Status::Stopped { 0 } else { state.pid },
        status,
        bundle: &state.bundle,
        rootfs: &state.rootfs,
        created: &state.created,
        annotations: &state.annotations,
        owner: dir.owner(),
    };
    Ok(serde_json::to_string_pretty(&report).expect("state serializes"))
}

/// One row of `list`.
#[derive(Debug, serde::Serialize)]
pub struct ListEntry {
    pub id: String,
    pub pid: i32,
    pub status: Status,
    pub bundle: PathBuf,
    pub created: String,
    pub owner: String,
}

pub fn list(root: &StateRoot) -> Result<Vec<ListEntry>, LifecycleError> {
    let mut out = Vec::new();
    for id in root.ids()? {
        // A container deleted while we list is simply not listed.
        let Ok(dir) = ContainerDir::open(root, &id, Lock::None) else { continue };
        let Ok(state) = dir.load() else { continue };
        let status = dir.status(state.as_ref());
        let (pid, bundle, created) = match &state {
            Some(s) => (if status == Status::Stopped { 0 } else { s.pid }, s.bundle.clone(), s.created.clone()),
            None => (0, PathBuf::new(), String::new()),
        };
        out.push(ListEntry { id, pid, status, bundle, created, owner: dir.owner() });
    }
    Ok(out)
}

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

/// One row of `list`, with the fields runc's `list --format json` has (go-runc decodes them).
#[derive(Debug, serde::Serialize)]
pub struct ListEntry {
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    pub status: Status,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    #[serde(skip_serializing_if = "std::collections::HashMap::is_empty")]
    pub annotations: std::collections::HashMap<String, String>,
    pub owner: String,
}

pub fn list(root: &StateRoot) -> Result<Vec<ListEntry>, LifecycleError> {
    let mut out = Vec::new();
    for id in root.ids()? {
        // A container deleted while we list is simply not listed.
        let Ok(dir) = ContainerDir::open(root, &id, Lock::None) else { continue };
        let Ok(state) = dir.load() else { continue };
        let status = dir.status(state.as_ref());
        let owner = dir.owner();
        out.push(match state {
            Some(s) => ListEntry {
                oci_version: s.oci_version,
                pid: if status == Status::Stopped { 0 } else { s.pid },
                status,
                bundle: s.bundle,
                rootfs: s.rootfs,
                created: s.created,
                annotations: s.annotations,
                owner,
                id,
            },
            None => ListEntry {
                oci_version: String::new(),
                id,
                pid: 0,
                status,
                bundle: PathBuf::new(),
                rootfs: PathBuf::new(),
                created: String::new(),
                annotations: Default::default(),
                owner,
            },
        });
    }
    Ok(out)
}

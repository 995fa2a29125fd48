//! A container's disk quota (docs/beancounters.md, "Disk quota"): at create a project id is
//! allocated for it, its rootfs tree is tagged with that id and the project gets the limits of
//! the `diskspace` / `diskinodes` annotations; `beancounters` reads the project's usage;
//! `delete` removes the limits and frees the id (the files are left as they are).
//!
//! Project ids are allocated in the state root's `.projects/` directory, one file per id in
//! use (made with O_EXCL, so two creates never take the same id), starting from a hash of the
//! container id; an id the filesystem already charges or limits (the files of an earlier
//! container still carry it, or an administrator's project) is skipped, so an id is never
//! shared while it is in use.

use std::fs;
use std::path::{Path, PathBuf};

use tally_beancounters::diskquota::{self, Limits, QuotaError};

use crate::state::{ContainerDir, StateRoot};

const REGISTRY: &str = ".projects";
const RECORD: &str = "disk-quota.json";
/// Ids below this are left to the administrator's /etc/projid.
const FIRST_ID: u32 = 1 << 20;
const PROBES: u32 = 64;

/// What create set up, kept in the container's state directory.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Record {
    pub project: u32,
    pub rootfs: PathBuf,
    pub limits: Limits,
}

#[derive(Debug, thiserror::Error)]
pub enum DiskQuotaError {
    #[error("annotations[\"{}\"]: {}", .0.annotation, .0.message)]
    Annotation(#[from] tally_beancounters::annotations::AnnotationError),
    #[error("annotations[\"org.tally.beancounter.{annotation}\"]: {source}")]
    Quota { annotation: &'static str, source: QuotaError },
    #[error("disk quota: {path}: {source}")]
    Registry { path: PathBuf, source: std::io::Error },
    #[error("disk quota for the rootfs {rootfs}: no free project id among {PROBES} candidates from {first}")]
    NoFreeId { rootfs: PathBuf, first: u32 },
}

fn annotation(l: &Limits) -> &'static str {
    if l.blocks_hard.is_some() || l.blocks_soft.is_some() {
        diskquota::DISKSPACE
    } else {
        diskquota::DISKINODES
    }
}

/// The first candidate id for `id` (FNV-1a of the container id, in [FIRST_ID, 2^31)).
fn first_candidate(id: &str) -> u32 {
    let h = id.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ b as u32).wrapping_mul(0x0100_0193));
    FIRST_ID + h % ((1 << 31) - FIRST_ID)
}

/// The limits the config's annotations ask for, if any.
pub fn requested(spec: &oci_spec::runtime::Spec) -> Result<Option<Limits>, DiskQuotaError> {
    let Some(annotations) = spec.annotations() else { return Ok(None) };
    Ok(diskquota::requested_by(|key| annotations.get(key).map(String::as_str))?)
}

/// Sets the quota up for container `id`: on any error nothing of it is left.
pub fn setup(
    root: &StateRoot,
    dir: &ContainerDir,
    id: &str,
    rootfs: &Path,
    limits: Limits,
) -> Result<Record, DiskQuotaError> {
    let named = |source| DiskQuotaError::Quota { annotation: annotation(&limits), source };
    diskquota::check_support(rootfs).map_err(named)?;
    let registry = root.path().join(REGISTRY);
    fs::create_dir_all(&registry).map_err(|source| DiskQuotaError::Registry { path: registry.clone(), source })?;
    let first = first_candidate(id);
    let mut project = None;
    for n in 0..PROBES {
        let candidate = FIRST_ID + (first - FIRST_ID + n) % ((1 << 31) - FIRST_ID);
        let entry = registry.join(candidate.to_string());
        match fs::OpenOptions::new().write(true).create_new(true).open(&entry) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(source) => return Err(DiskQuotaError::Registry { path: entry, source }),
        }
        match diskquota::usage(rootfs, candidate) {
            Ok(u) if !u.in_use() => {
                project = Some(candidate);
                break;
            }
            Ok(_) => {
                let _ = fs::remove_file(&entry);
            }
            Err(e) => {
                let _ = fs::remove_file(&entry);
                return Err(named(e));
            }
        }
    }
    let project = project.ok_or_else(|| DiskQuotaError::NoFreeId { rootfs: rootfs.into(), first })?;
    let record = Record { project, rootfs: rootfs.into(), limits };
    let done = (|| {
        // The record first: a create killed from here on is cleaned up by `delete --force`.
        let path = dir.path().join(RECORD);
        fs::write(&path, serde_json::to_vec(&record).expect("record serializes"))
            .map_err(|source| DiskQuotaError::Registry { path, source })?;
        diskquota::tag_tree(rootfs, project).map_err(named)?;
        diskquota::set_limits(rootfs, project, &limits).map_err(named)
    })();
    match done {
        Ok(()) => Ok(record),
        Err(e) => {
            let _ = release_record(root, &record);
            let _ = fs::remove_file(dir.path().join(RECORD));
            Err(e)
        }
    }
}

/// The quota create set up for the container, if any.
pub fn record(dir: &ContainerDir) -> Option<Record> {
    fs::read(dir.path().join(RECORD)).ok().and_then(|d| serde_json::from_slice(&d).ok())
}

/// Removes the container's project limits and frees its id (no-op without a quota).
pub fn release(root: &StateRoot, dir: &ContainerDir) -> Result<(), DiskQuotaError> {
    match record(dir) {
        Some(r) => release_record(root, &r),
        None => Ok(()),
    }
}

fn release_record(root: &StateRoot, r: &Record) -> Result<(), DiskQuotaError> {
    let named = |source| DiskQuotaError::Quota { annotation: annotation(&r.limits), source };
    // A rootfs removed already (the engine cleaned the bundle first) leaves no filesystem to
    // ask; its limits went with it only if the filesystem did, so a missing path is not fatal.
    if r.rootfs.exists() {
        diskquota::set_limits(&r.rootfs, r.project, &Limits::default()).map_err(named)?;
    }
    let entry = root.path().join(REGISTRY).join(r.project.to_string());
    match fs::remove_file(&entry) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(DiskQuotaError::Registry { path: entry, source: e }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_above_the_administrators_range_and_stable() {
        for id in ["a", "web-1", "0123456789abcdef0123456789abcdef"] {
            let c = first_candidate(id);
            assert!((FIRST_ID..1 << 31).contains(&c), "{id}: {c}");
            assert_eq!(c, first_candidate(id));
        }
        assert_ne!(first_candidate("a"), first_candidate("b"));
    }
}

//! The state directory: `<root>/<id>/` holds `state.json` (written atomically), the `exec.fifo`
//! that `start` writes to, and is the object of a per-container lock (flock on the directory)
//! so two commands on one container never interleave.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::proc_info::{self, Liveness};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("container {0} does not exist")]
    NotFound(String),
    #[error("container with id {0} already exists")]
    AlreadyExists(String),
    #[error("state root {path}: {source}")]
    Root { path: PathBuf, source: io::Error },
    #[error("state of container {id} ({path}): {source}")]
    Io { id: String, path: PathBuf, source: io::Error },
    #[error("state of container {id} ({path}) is corrupt: {source}")]
    Corrupt { id: String, path: PathBuf, source: serde_json::Error },
}

/// A container's status as the OCI spec names it (plus runc's `paused`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        };
        f.write_str(s)
    }
}

/// What tally remembers about a container between commands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerState {
    pub id: String,
    pub oci_version: String,
    /// Host PID of the container's init.
    pub pid: i32,
    /// Start time of `pid` (clock ticks since boot), so a reused PID is never mistaken for it.
    pub pid_start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    /// The cgroup as the cgroup manager understands it (`linux.cgroupsPath` or the default).
    pub cgroup_path: PathBuf,
    pub systemd_cgroup: bool,
    /// Created by a rootless tally (rootless::Mode).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rootless: bool,
    /// Set when the container has no cgroup (rootless without delegation): why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_cgroup: Option<String>,
    /// The config's hooks: poststart and poststop run in later commands.
    #[serde(default)]
    pub hooks: Option<oci_spec::runtime::Hooks>,
    /// Set by `pause`, cleared by `resume`.
    #[serde(default)]
    pub paused: bool,
    /// `linux.resources` as last applied (create, then each `update`).
    #[serde(default)]
    pub resources: Option<oci_spec::runtime::LinuxResources>,
}

/// The runc-shaped document `tally state` prints.
#[derive(Debug, Serialize)]
pub struct StateReport<'a> {
    #[serde(rename = "ociVersion")]
    pub oci_version: &'a str,
    pub id: &'a str,
    pub pid: i32,
    pub status: Status,
    pub bundle: &'a Path,
    pub rootfs: &'a Path,
    pub created: &'a str,
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub annotations: &'a HashMap<String, String>,
    pub owner: String,
}

const STATE_FILE: &str = "state.json";
const FIFO_FILE: &str = "exec.fifo";

/// The state root, e.g. `/run/tally`.
#[derive(Debug, Clone)]
pub struct StateRoot {
    path: PathBuf,
}

impl StateRoot {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A root that is a symlink to a directory is followed (`/var/run/...` is one on most
    /// hosts); one whose target is missing is an error that says so.
    pub fn ensure(&self) -> Result<(), StateError> {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.path).map_err(|source| {
            let dangling = fs::symlink_metadata(&self.path).is_ok_and(|m| m.file_type().is_symlink());
            let source = match (dangling, fs::read_link(&self.path)) {
                (true, Ok(target)) => io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("a symlink to {}, which is not a directory", target.display()),
                ),
                _ => source,
            };
            StateError::Root { path: self.path.clone(), source }
        })
    }

    /// IDs of every container directory under the root, sorted.
    pub fn ids(&self) -> Result<Vec<String>, StateError> {
        let entries = match fs::read_dir(&self.path) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(StateError::Root { path: self.path.clone(), source }),
        };
        let mut ids: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .filter_map(|e| e.file_name().into_string().ok())
            // Dot-names are tally's own (the seccomp cache), never containers.
            .filter(|id| !id.starts_with('.') && crate::id::validate(id).is_ok())
            .collect();
        ids.sort();
        Ok(ids)
    }
}

/// An open, locked container directory. The lock (held by `_lock`) is released on drop.
#[derive(Debug)]
pub struct ContainerDir {
    id: String,
    path: PathBuf,
    _lock: File,
}

#[derive(Clone, Copy)]
pub enum Lock {
    /// For readers that must not wait behind a long `create` (list).
    None,
    Shared,
    Exclusive,
}

impl ContainerDir {
    /// Makes the directory for a new container; fails if the ID is taken.
    pub fn create(root: &StateRoot, id: &str) -> Result<Self, StateError> {
        root.ensure()?;
        let path = root.path.join(id);
        match fs::DirBuilder::new().mode(0o711).create(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(StateError::AlreadyExists(id.to_string()))
            }
            Err(source) => return Err(StateError::Io { id: id.into(), path, source }),
        }
        Self::lock_dir(id, path, Lock::Exclusive)
    }

    /// Opens an existing container's directory under the given lock.
    pub fn open(root: &StateRoot, id: &str, lock: Lock) -> Result<Self, StateError> {
        crate::id::validate(id).map_err(|_| StateError::NotFound(id.to_string()))?;
        let path = root.path.join(id);
        Self::lock_dir(id, path, lock)
    }

    fn lock_dir(id: &str, path: PathBuf, lock: Lock) -> Result<Self, StateError> {
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StateError::NotFound(id.to_string())),
            Err(source) => return Err(StateError::Io { id: id.into(), path, source }),
        };
        let op = match lock {
            Lock::None => 0,
            Lock::Shared => libc::LOCK_SH,
            Lock::Exclusive => libc::LOCK_EX,
        };
        // SAFETY: flock only takes an fd we own and an operation constant.
        if op != 0 && unsafe { libc::flock(file.as_raw_fd(), op) } != 0 {
            let source = io::Error::last_os_error();
            return Err(StateError::Io { id: id.into(), path, source });
        }
        // A `delete` that held the lock before us may have removed the directory, and a
        // `create` may even have made a new one with the same name: the lock only counts if
        // the path still names the directory we locked.
        let locked = file.metadata().map(|m| (m.dev(), m.ino()));
        let current = fs::metadata(&path).map(|m| (m.dev(), m.ino()));
        match (locked, current) {
            (Ok(a), Ok(b)) if a == b => {}
            _ => return Err(StateError::NotFound(id.to_string())),
        }
        Ok(Self { id: id.to_string(), path, _lock: file })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fifo_path(&self) -> PathBuf {
        self.path.join(FIFO_FILE)
    }

    /// The container's config.json as `create` used it: `exec` takes the process defaults and
    /// the seccomp profile from here, since the bundle may have changed or gone.
    pub fn config_path(&self) -> PathBuf {
        self.path.join("config.json")
    }

    /// The config at `config_path`, parsed.
    pub fn config(&self) -> Result<oci_spec::runtime::Spec, StateError> {
        let path = self.config_path();
        let data =
            fs::read(&path).map_err(|source| StateError::Io { id: self.id.clone(), path: path.clone(), source })?;
        serde_json::from_slice(&data).map_err(|source| StateError::Corrupt { id: self.id.clone(), path, source })
    }

    /// Where the container process explains a failure after `start` released it.
    pub fn start_error_path(&self) -> PathBuf {
        self.path.join("start.err")
    }

    fn io_err(&self, path: PathBuf) -> impl FnOnce(io::Error) -> StateError + '_ {
        move |source| StateError::Io { id: self.id.clone(), path, source }
    }

    /// Writes state.json atomically: a temporary file, fsync, then rename over the old one, so
    /// a reader sees the old state or the new one, never half of one.
    pub fn save(&self, state: &ContainerState) -> Result<(), StateError> {
        let tmp = self.path.join(".state.json.tmp");
        let json = serde_json::to_vec(state).expect("state serializes");
        let mut f = File::create(&tmp).map_err(self.io_err(tmp.clone()))?;
        f.write_all(&json).map_err(self.io_err(tmp.clone()))?;
        f.sync_all().map_err(self.io_err(tmp.clone()))?;
        let dest = self.path.join(STATE_FILE);
        fs::rename(&tmp, &dest).map_err(self.io_err(dest))
    }

    /// The saved state, or None while the container is still being created.
    pub fn load(&self) -> Result<Option<ContainerState>, StateError> {
        let path = self.path.join(STATE_FILE);
        let data = match tally_beancounters::kfile::read_bytes(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StateError::Io { id: self.id.clone(), path, source }),
        };
        serde_json::from_slice(&data).map(Some).map_err(|source| StateError::Corrupt {
            id: self.id.clone(),
            path,
            source,
        })
    }

    /// The status, derived from the init process and the fifo rather than stored, so it can
    /// never go stale: a live init still holding the fifo is `created`, a live init whose fifo
    /// was consumed by `start` is `running`, anything else is `stopped`.
    pub fn status(&self, state: Option<&ContainerState>) -> Status {
        let Some(state) = state else { return Status::Creating };
        if proc_info::liveness(state.pid, state.pid_start_time) == Liveness::Gone {
            return Status::Stopped;
        }
        // A frozen container is `paused` whether or not it was started (runc's view); after
        // `resume` it is `created` or `running` again.
        if state.paused {
            Status::Paused
        } else if self.fifo_path().exists() {
            Status::Created
        } else {
            Status::Running
        }
    }

    /// The user who owns the state directory, as `state` reports it.
    pub fn owner(&self) -> String {
        let uid = fs::metadata(&self.path).map(|m| m.uid()).unwrap_or(0);
        user_name(uid).unwrap_or_else(|| uid.to_string())
    }

    /// Removes the directory and everything in it. The lock fd stays valid until drop.
    pub fn remove(self) -> Result<(), StateError> {
        match fs::remove_dir_all(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StateError::Io { id: self.id.clone(), path: self.path.clone(), source }),
        }
    }
}

fn user_name(uid: u32) -> Option<String> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut f = line.split(':');
        let name = f.next()?;
        let id: u32 = f.nth(1)?.parse().ok()?;
        (id == uid).then(|| name.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(id: &str) -> ContainerState {
        ContainerState {
            id: id.into(),
            oci_version: "1.3.0".into(),
            pid: std::process::id() as i32,
            pid_start_time: proc_info::start_time(std::process::id() as i32).unwrap().0,
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: "2026-01-01T00:00:00.000000000Z".into(),
            annotations: HashMap::new(),
            cgroup_path: "/x".into(),
            systemd_cgroup: false,
            rootless: false,
            no_cgroup: None,
            hooks: None,
            paused: false,
            resources: None,
        }
    }

    fn tmp_root(name: &str) -> StateRoot {
        let p = std::env::temp_dir().join(format!("tally-state-test-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        StateRoot::new(p)
    }

    #[test]
    fn create_save_load_remove() {
        let root = tmp_root("cycle");
        let dir = ContainerDir::create(&root, "c1").unwrap();
        assert_eq!(dir.status(None), Status::Creating);
        dir.save(&sample("c1")).unwrap();
        let loaded = dir.load().unwrap().unwrap();
        assert_eq!(loaded.id, "c1");
        assert_eq!(dir.status(Some(&loaded)), Status::Running, "live pid and no fifo");
        assert_eq!(root.ids().unwrap(), vec!["c1".to_string()]);
        assert!(matches!(ContainerDir::create(&root, "c1"), Err(StateError::AlreadyExists(_))));
        dir.remove().unwrap();
        assert!(matches!(ContainerDir::open(&root, "c1", Lock::Shared), Err(StateError::NotFound(_))));
        fs::remove_dir_all(root.path()).unwrap();
    }

    #[test]
    fn a_reused_pid_reads_as_stopped() {
        let root = tmp_root("reuse");
        let dir = ContainerDir::create(&root, "c2").unwrap();
        let mut st = sample("c2");
        st.pid_start_time += 1;
        assert_eq!(dir.status(Some(&st)), Status::Stopped);
        dir.remove().unwrap();
        fs::remove_dir_all(root.path()).unwrap();
    }

    #[test]
    fn missing_container_says_does_not_exist() {
        let root = tmp_root("missing");
        let err = ContainerDir::open(&root, "nope", Lock::Shared).unwrap_err();
        assert_eq!(err.to_string(), "container nope does not exist");
    }
}

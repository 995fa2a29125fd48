//! How a new container init gets into its cgroup without a migration by PID.
//!
//! Moving a process by writing its PID to `cgroup.procs` (or a TID to `tasks`) makes the kernel
//! take the global `cgroup_threadgroup_rwsem` for writing, and a percpu rwsem's writer waits
//! for an RCU grace period: 4-20 ms on the development host (kernel 6.18), most of what a
//! `create` costs, and its spread. Two ways in skip that lock:
//! - cgroup v1: a single-threaded process writing "0" (itself) to a hierarchy's `tasks`. The
//!   kernel (6.18 here) takes the global lock only for a PID or a whole thread group, since a
//!   thread moving itself cannot exit or exec under the move (under `perf trace`: 0.04 ms
//!   against 4-21 ms for its PID). So the init moves itself, through `tasks` files the runtime
//!   opened before the clone; on a kernel without the shortcut this costs what a PID did.
//! - cgroup v2: clone3's `CLONE_INTO_CGROUP` (Linux 5.7) starts the child in the cgroup; the
//!   fork path holds that lock only for reading. A kernel or seccomp profile without clone3
//!   gets the PID written after the clone instead.
//!
//! The systemd driver and rootless containers keep the migration by PID (systemd moves the
//! process itself; a delegated subtree's permissions are the manager's to judge).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{pure_v2, CgroupMount};

/// The container's cgroup, made and opened in the runtime before the clone.
pub struct Entry {
    /// `tasks` of the container's directory in every v1 hierarchy, for the init to write "0".
    tasks: Vec<(PathBuf, File)>,
    /// The container's directory in the v2 hierarchy (pure v2, or a hybrid host's unified
    /// one), for `CLONE_INTO_CGROUP`.
    v2: Option<(PathBuf, File)>,
}

impl Entry {
    /// Makes the container's directory (`relative` to each hierarchy's root) in every
    /// hierarchy the container belongs to (`joined`) and opens what the init needs to join
    /// them. On v2 the controllers the root offers are enabled down to the parent, as
    /// libcgroups' manager does for a cgroup it makes.
    pub fn prepare(relative: &Path) -> io::Result<Self> {
        let relative = relative.strip_prefix("/").unwrap_or(relative);
        let mut entry = Entry { tasks: Vec::new(), v2: None };
        let mountinfo = Path::new("/proc/self/mountinfo");
        let info = fs::read_to_string(mountinfo).map_err(|e| at(mountinfo, e))?;
        let pure_v2 = pure_v2();
        for m in CgroupMount::parse(&info).into_iter().filter(|m| joined(m, pure_v2)) {
            let dir = m.dir.join(relative);
            if m.v2 {
                // A hybrid host's unified tree carries no controller of the container's: it is
                // joined as it is, and nothing is enabled in it (that would be the host's).
                make_v2(&m.dir, relative, pure_v2)?;
                let handle = File::open(&dir).map_err(|e| at(&dir, e))?;
                entry.v2 = Some((dir, handle));
            } else {
                fs::DirBuilder::new().recursive(true).mode(0o755).create(&dir).map_err(|e| at(&dir, e))?;
                if m.has_option("cpuset") {
                    // A v1 cpuset takes no task until it has CPUs and memory nodes; a new one
                    // starts with neither, so each new level inherits its parent's.
                    inherit_cpuset(&m.dir, relative)?;
                }
                let path = dir.join("tasks");
                let file = OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_CLOEXEC)
                    .open(&path)
                    .map_err(|e| at(&path, e))?;
                entry.tasks.push((path, file));
            }
        }
        if entry.tasks.is_empty() && entry.v2.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "no cgroup hierarchy is mounted (/proc/self/mountinfo)",
            ));
        }
        Ok(entry)
    }

    /// The v2 directory's fd, for clone3's `cgroup` field.
    pub fn v2_fd(&self) -> Option<RawFd> {
        self.v2.as_ref().map(|(_, f)| f.as_raw_fd())
    }

    /// After a clone that could not start the child in its v2 cgroup: the runtime moves it by PID.
    pub fn add_to_v2(&self, pid: i32) -> io::Result<()> {
        let Some((dir, _)) = &self.v2 else { return Ok(()) };
        let procs = dir.join("cgroup.procs");
        fs::write(&procs, pid.to_string()).map_err(|e| at(&procs, e))
    }

    /// In the cloned init, single-threaded, before anything else: moves this process into its
    /// directory of every v1 hierarchy.
    pub fn join_self(&self) -> Result<(), String> {
        for (path, file) in &self.tasks {
            (&*file).write_all(b"0").map_err(|e| format!("join cgroup {}: {e}", path.display()))?;
        }
        Ok(())
    }
}

/// Whether the container's init belongs in hierarchy `m`: the set `Cgroup::remove` removes.
/// On a pure v2 host the v2 tree at /sys/fs/cgroup (libcgroups' v2 manager's); otherwise every
/// mount of a controller libcgroups' v1 manager handles, and the unmanaged hierarchies.
fn joined(m: &CgroupMount, pure_v2: bool) -> bool {
    if pure_v2 {
        return m.v2 && m.dir == Path::new("/sys/fs/cgroup");
    }
    m.managed_v1() || m.unmanaged()
}

fn at(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Makes each missing level of `relative` below the v2 `root`, with `controllers` enabling in
/// the root and in every level but the last the controllers the root offers (the last is where
/// the init goes, and v2 lets no process into a cgroup that hands controllers down).
fn make_v2(root: &Path, relative: &Path, controllers: bool) -> io::Result<()> {
    if root.join(relative).is_dir() {
        // An existing cgroup (`exec`, a path made beforehand) is taken as it is, as
        // libcgroups' manager takes it.
        return Ok(());
    }
    let offered = match controllers {
        true => fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default(),
        false => String::new(),
    };
    let enable = |dir: &Path| {
        for c in offered.split_whitespace() {
            // One at a time and best effort: a controller this level cannot hand down (a
            // threaded subtree, a delegation) fails alone, and a limit needing it fails later
            // with its own error.
            let _ = fs::write(dir.join("cgroup.subtree_control"), format!("+{c}"));
        }
    };
    let parts: Vec<_> = relative.components().collect();
    let mut dir = root.to_path_buf();
    if !parts.is_empty() {
        enable(&dir);
    }
    for (i, part) in parts.iter().enumerate() {
        dir.push(part);
        match fs::DirBuilder::new().mode(0o755).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(at(&dir, e)),
        }
        if i + 1 < parts.len() {
            enable(&dir);
        }
    }
    Ok(())
}

fn inherit_cpuset(root: &Path, relative: &Path) -> io::Result<()> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let mut dir = root.to_path_buf();
        let mut value = fs::read_to_string(dir.join(file)).map_err(|e| at(&dir.join(file), e))?;
        for part in relative.components() {
            dir.push(part);
            let path = dir.join(file);
            let own = fs::read_to_string(&path).map_err(|e| at(&path, e))?;
            if own.trim().is_empty() {
                fs::write(&path, value.trim()).map_err(|e| at(&path, e))?;
            } else {
                value = own;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_init_joins_what_libcgroups_and_the_unmanaged_list_join() {
        let m = |dir: &str, v2: bool, options: &str| CgroupMount { dir: dir.into(), v2, options: options.into() };
        // Hybrid: the v1 controllers' hierarchies (also mounted elsewhere: libcgroups finds
        // them there), and under /sys/fs/cgroup the named ones and the unified one.
        assert!(joined(&m("/sys/fs/cgroup/unified", true, "rw"), false));
        assert!(joined(&m("/sys/fs/cgroup/systemd", false, "rw,name=systemd"), false));
        assert!(joined(&m("/sys/fs/cgroup/cpu,cpuacct", false, "rw,cpu,cpuacct"), false));
        assert!(joined(&m("/cgroup/pids", false, "rw,pids"), false));
        assert!(!joined(&m("/mnt/named", false, "rw,name=other"), false));
        assert!(!joined(&m("/mnt/v2", true, "rw"), false));
        // Pure v2: the tree at /sys/fs/cgroup only.
        assert!(joined(&m("/sys/fs/cgroup", true, "rw,nsdelegate"), true));
        assert!(!joined(&m("/sys/fs/cgroup/systemd", false, "rw,name=systemd"), true));
        assert!(!joined(&m("/mnt/v2", true, "rw"), true));
    }

    #[test]
    fn cpuset_levels_inherit_their_parents_values() {
        let root = std::env::temp_dir().join(format!("tally-cpuset-{}", std::process::id()));
        let r = root.as_path();
        fs::create_dir_all(r.join("a/b")).unwrap();
        fs::write(r.join("cpuset.cpus"), "0-1\n").unwrap();
        fs::write(r.join("cpuset.mems"), "0\n").unwrap();
        fs::write(r.join("a/cpuset.cpus"), "1\n").unwrap();
        fs::write(r.join("a/cpuset.mems"), "\n").unwrap();
        fs::write(r.join("a/b/cpuset.cpus"), "").unwrap();
        fs::write(r.join("a/b/cpuset.mems"), "").unwrap();
        inherit_cpuset(r, Path::new("a/b")).unwrap();
        assert_eq!(fs::read_to_string(r.join("a/cpuset.cpus")).unwrap(), "1\n");
        assert_eq!(fs::read_to_string(r.join("a/b/cpuset.cpus")).unwrap(), "1");
        assert_eq!(fs::read_to_string(r.join("a/cpuset.mems")).unwrap(), "0");
        assert_eq!(fs::read_to_string(r.join("a/b/cpuset.mems")).unwrap(), "0");
        fs::remove_dir_all(r).unwrap();
    }
}

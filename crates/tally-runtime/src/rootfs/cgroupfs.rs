//! The `cgroup` mount type: what the container sees at /sys/fs/cgroup. On a cgroup v2 host
//! that is a cgroup2 mount (rooted at the container's cgroup by its cgroup namespace); on a v1
//! or hybrid host, a tmpfs holding each host hierarchy's view of the container's own cgroup,
//! bind-mounted, which is what runc gives containers there.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};

use super::mounts::{remount_bind, Context};
use super::options::MountOptions;
use super::resolve::{fd_path, Kind, Root};

pub fn mount_cgroups(ctx: &Context, dest: &Path, target: &OwnedFd, opts: &MountOptions) -> io::Result<()> {
    let flags = opts.flags & (MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RELATIME);
    let hierarchies = host_hierarchies();
    let own = ctx.own_cgroups;
    if hierarchies.len() == 1 && hierarchies[0].fstype == "cgroup2" {
        let res = if ctx.new_cgroupns {
            mount(
                Some("cgroup2"),
                &fd_path(target),
                Some("cgroup2"),
                flags | (opts.flags & MsFlags::MS_RDONLY),
                None::<&str>,
            )
            .map_err(io::Error::from)
        } else {
            Err(io::Error::from_raw_os_error(libc::EPERM))
        };
        if res.is_err() {
            // Without a cgroup namespace, a cgroup2 mount would show the whole host tree.
            let src = hierarchies[0].mountpoint.join(rel(own.get("").map(String::as_str).unwrap_or("/")));
            mount(Some(&src), &fd_path(target), None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)?;
            // `target` names the directory under the new bind mount: remount through a fresh lookup.
            remount_bind(&ctx.root.open_path(dest)?, opts.bind_remount_flags())?;
        }
        return Ok(());
    }

    let data = crate::security::lsm::with_mount_label(Some("mode=755"), ctx.mount_label);
    mount(Some("tmpfs"), &fd_path(target), Some("tmpfs"), flags, data.as_deref())?;
    // `target` still names the directory under the new tmpfs; a fresh lookup lands on it.
    let tmpfs = Root::from_fd(ctx.root.open_path(dest)?);
    for h in &hierarchies {
        let Some(name) = h.mountpoint.file_name() else { continue };
        let key = h.options_key.clone();
        // The controller-less unified hierarchy of a hybrid host is not shown, as runc does
        // not show it (the container is in a cgroup of its own there too).
        if h.fstype == "cgroup2" {
            continue;
        }
        let Some(path) = own.get(&key) else { continue };
        let src = h.mountpoint.join(rel(path));
        if !src.is_dir() {
            continue;
        }
        let dir = tmpfs.ensure(Path::new(name), Kind::Dir)?;
        mount(Some(&src), &fd_path(&dir), None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)?;
        let top = tmpfs.open_path(Path::new(name))?;
        remount_bind(&top, opts.bind_remount_flags() | flags)?;
    }
    if opts.flags.contains(MsFlags::MS_RDONLY) {
        remount_bind(&tmpfs.open_path(Path::new("."))?, MsFlags::MS_RDONLY | flags).or_else(|_| {
            mount(
                None::<&str>,
                &fd_path(target),
                None::<&str>,
                MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | flags,
                Some("mode=755"),
            )
            .map_err(io::Error::from)
        })?;
    }
    Ok(())
}

fn rel(p: &str) -> PathBuf {
    PathBuf::from(p.trim_start_matches('/'))
}

struct Hierarchy {
    mountpoint: PathBuf,
    fstype: String,
    /// The controller list as /proc/self/cgroup spells it (e.g. `cpu,cpuacct`, `name=systemd`).
    options_key: String,
}

/// cgroup filesystems under /sys/fs/cgroup as this process's mount table shows them.
fn host_hierarchies() -> Vec<Hierarchy> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    // The v1 controllers a container is placed in (libcgroups' and, by tally itself, rdma and
    // misc), plus named hierarchies.
    let known = [
        "cpu",
        "cpuacct",
        "cpuset",
        "memory",
        "devices",
        "freezer",
        "net_cls",
        "blkio",
        "perf_event",
        "net_prio",
        "hugetlb",
        "pids",
        "rdma",
        "misc",
    ];
    info.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mut r = right.split_whitespace();
            let fstype = r.next()?;
            if fstype != "cgroup" && fstype != "cgroup2" {
                return None;
            }
            let super_opts = r.nth(1).unwrap_or("");
            let mountpoint = PathBuf::from(left.split_whitespace().nth(4)?);
            if !mountpoint.starts_with("/sys/fs/cgroup") {
                return None;
            }
            let mut keys: Vec<&str> =
                super_opts.split(',').filter(|o| known.contains(o) || o.starts_with("name=")).collect();
            keys.sort();
            Some(Hierarchy { mountpoint, fstype: fstype.to_string(), options_key: keys.join(",") })
        })
        .collect()
}

/// This process's cgroup in each hierarchy, keyed like `Hierarchy::options_key` ("" for v2).
/// Read before the cgroup namespace is entered: inside it every path reads as `/`.
pub fn own_cgroups() -> HashMap<String, String> {
    let data = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    data.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let _id = parts.next()?;
            let ctrls = parts.next()?;
            let path = parts.next()?;
            let mut keys: Vec<&str> = ctrls.split(',').filter(|s| !s.is_empty()).collect();
            keys.sort();
            Some((keys.join(","), path.to_string()))
        })
        .collect()
}

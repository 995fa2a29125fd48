//! The container's root filesystem: mounts in config order, devices, masked and read-only
//! paths, all resolved inside the rootfs; then pivot_root and the final touches on `/`.

mod cgroupfs;
mod copyup;
mod devices;
mod mounts;
pub mod options;
mod paths;
mod pivot;
pub mod resolve;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use oci_spec::runtime::Spec;

pub use cgroupfs::own_cgroups;
pub use mounts::ensure_mount_points;
pub use resolve::Root;

/// A `linux.devices` entry checked as the container's init would make it.
pub fn device_node(d: &oci_spec::runtime::LinuxDevice) -> Result<(), RootfsError> {
    devices::from_spec(d).map(drop).map_err(RootfsError::from)
}

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error(transparent)]
    Mount(#[from] mounts::MountError),
    #[error(transparent)]
    Device(#[from] devices::DeviceError),
    #[error(transparent)]
    Paths(#[from] paths::PathsError),
    #[error(transparent)]
    Pivot(#[from] pivot::PivotError),
    #[error("linux.rootfsPropagation: {0:?} is not one of shared, slave, private, unbindable (or their r-forms)")]
    BadPropagation(String),
    #[error("root filesystem {path}: {op}: {source}")]
    Io { path: String, op: &'static str, source: io::Error },
}

/// What `prepare` needs beyond the spec.
pub struct Setup<'a> {
    pub spec: &'a Spec,
    pub bundle: &'a Path,
    pub rootfs: &'a Path,
    pub in_userns: bool,
    pub new_netns: bool,
    pub new_cgroupns: bool,
    pub own_cgroups: &'a HashMap<String, String>,
}

fn propagation(name: &str) -> Option<MsFlags> {
    Some(match name {
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

/// The mount point of the mount `path` is on, from /proc/self/mountinfo (the longest mount
/// point that contains it); `/` when none is found.
fn mount_point_of(path: &Path) -> PathBuf {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape_mountinfo(m)))
        .filter(|m| path.starts_with(m))
        .max_by_key(|m| m.components().count())
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// mountinfo writes space, tab, newline and backslash in a mount point as octal escapes.
fn unescape_mountinfo(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether the container has a mount namespace of its own (new or joined). Without one
/// nothing is mounted: a mount would land in the caller's namespace and outlive the
/// container (runc makes them there and leaves them behind).
pub fn has_mount_namespace(spec: &Spec) -> bool {
    let ns = spec.linux().as_ref().and_then(|l| l.namespaces().as_ref());
    ns.into_iter().flatten().any(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Mount)
}

/// The parts of a config that need a mount namespace and are set: what a container without
/// one does not get.
pub fn skipped_without_mount_namespace(spec: &Spec) -> Vec<&'static str> {
    if has_mount_namespace(spec) {
        return Vec::new();
    }
    let linux = spec.linux().as_ref();
    let set = |v: Option<bool>| v.unwrap_or(false);
    [
        ("mounts", spec.mounts().as_ref().is_some_and(|m| !m.is_empty())),
        ("linux.devices (and the default /dev nodes)", true),
        ("linux.maskedPaths", set(linux.map(|l| l.masked_paths().as_ref().is_some_and(|m| !m.is_empty())))),
        ("linux.readonlyPaths", set(linux.map(|l| l.readonly_paths().as_ref().is_some_and(|m| !m.is_empty())))),
        ("linux.rootfsPropagation", set(linux.map(|l| l.rootfs_propagation().is_some()))),
        ("root.readonly", spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false)),
    ]
    .into_iter()
    .filter_map(|(name, present)| present.then_some(name))
    .collect()
}

/// Without a mount namespace: `/` becomes the rootfs by chroot alone, as runc's process ends up.
pub fn chroot_into(rootfs: &Path) -> Result<(), RootfsError> {
    nix::unistd::chroot(rootfs).map_err(io_err(rootfs, "chroot"))?;
    nix::unistd::chdir("/").map_err(io_err(rootfs, "chdir"))
}

/// Checks `linux.rootfsPropagation` before any process exists.
pub fn check_propagation(spec: &Spec) -> Result<(), RootfsError> {
    if let Some(p) = spec.linux().as_ref().and_then(|l| l.rootfs_propagation().as_ref()) {
        propagation(p).ok_or_else(|| RootfsError::BadPropagation(p.clone()))?;
    }
    Ok(())
}

fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(nix::errno::Errno) -> RootfsError + 'a {
    move |e| RootfsError::Io { path: path.display().to_string(), op, source: e.into() }
}

/// Builds the container's filesystem tree under `rootfs` (in the container's mount namespace)
/// and returns a handle on it, ready for `enter`.
pub fn prepare(s: &Setup) -> Result<Root, RootfsError> {
    // `/` gets linux.rootfsPropagation as runc applies it (default rslave: nothing the host
    // mounts later is lost, nothing made here goes back). With `shared` (what Podman sends for
    // an `rshared` volume) the host's shared mounts stay peers of the host's, so a volume
    // bound from one propagates both ways.
    let base = match s.spec.linux().as_ref().and_then(|l| l.rootfs_propagation().as_deref()) {
        Some(p) => propagation(p).ok_or_else(|| RootfsError::BadPropagation(p.to_string()))?,
        None => MsFlags::MS_SLAVE | MsFlags::MS_REC,
    };
    mount(None::<&str>, "/", None::<&str>, base, None::<&str>).map_err(io_err(Path::new("/"), "set propagation"))?;
    // The mount the rootfs sits on is made private: the rootfs bound from it is then private
    // too, so the mounts made inside it (proc, dev, the config's) never reach the host even
    // when `/` is shared, and pivot_root accepts it (it refuses a shared parent).
    let parent = mount_point_of(s.rootfs);
    mount(None::<&str>, &parent, None::<&str>, MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(io_err(&parent, "make the rootfs's parent mount private"))?;
    // pivot_root needs the new root to be a mount point.
    mount(Some(s.rootfs), s.rootfs, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .map_err(io_err(s.rootfs, "bind onto itself"))?;
    let root = Root::open(s.rootfs).map_err(|e| RootfsError::Io {
        path: s.rootfs.display().to_string(),
        op: "open",
        source: e,
    })?;

    let ctx = mounts::Context {
        root: &root,
        bundle: s.bundle,
        in_userns: s.in_userns,
        new_netns: s.new_netns,
        new_cgroupns: s.new_cgroupns,
        own_cgroups: s.own_cgroups,
        mount_label: s.spec.linux().as_ref().and_then(|l| l.mount_label().as_deref()),
    };
    for (i, m) in s.spec.mounts().iter().flatten().enumerate() {
        mounts::perform(&ctx, i, m)?;
    }

    let linux = s.spec.linux().as_ref();
    let configured: Vec<devices::Node> = linux
        .and_then(|l| l.devices().as_ref())
        .into_iter()
        .flatten()
        .map(devices::from_spec)
        .collect::<Result<_, _>>()?;
    for node in devices::defaults().iter().filter(|d| !configured.iter().any(|c| c.path == d.path)) {
        devices::create(&root, node, s.in_userns)?;
    }
    for node in &configured {
        devices::create(&root, node, s.in_userns)?;
    }
    devices::symlinks(&root)?;
    Ok(root)
}

/// After `prepare` (and whatever must still write through the container's /proc, such as
/// sysctls): masked and read-only paths.
pub fn protect(s: &Setup, root: &Root) -> Result<(), RootfsError> {
    let linux = s.spec.linux().as_ref();
    let label = linux.and_then(|l| l.mount_label().as_deref());
    for p in linux.and_then(|l| l.masked_paths().as_ref()).into_iter().flatten() {
        paths::mask(root, Path::new(p), label)?;
    }
    for p in linux.and_then(|l| l.readonly_paths().as_ref()).into_iter().flatten() {
        paths::make_readonly(root, Path::new(p))?;
    }
    Ok(())
}

/// Makes the prepared rootfs `/`.
pub fn enter(root: &Root, rootfs: &Path, no_pivot: bool) -> Result<(), RootfsError> {
    if no_pivot {
        pivot::move_and_chroot(rootfs)?;
    } else {
        pivot::pivot(root, rootfs)?;
    }
    Ok(())
}

/// After `enter`: the requested propagation of `/`, then `root.readonly`.
pub fn finalize(spec: &Spec) -> Result<(), RootfsError> {
    if let Some(p) = spec.linux().as_ref().and_then(|l| l.rootfs_propagation().as_ref()) {
        let flags = propagation(p).ok_or_else(|| RootfsError::BadPropagation(p.clone()))?;
        mount(None::<&str>, "/", None::<&str>, flags, None::<&str>)
            .map_err(io_err(Path::new("/"), "set rootfsPropagation"))?;
    }
    if spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false) {
        mounts::remount_bind_at(Path::new("/"), MsFlags::MS_RDONLY).map_err(|e| RootfsError::Io {
            path: "/".into(),
            op: "remount read-only",
            source: e,
        })?;
    }
    Ok(())
}

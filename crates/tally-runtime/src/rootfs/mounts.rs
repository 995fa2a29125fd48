//! One `mounts[]` entry of config.json, performed inside the rootfs: bind and rbind (with the
//! remount bind needs for flags), proc, sysfs, tmpfs, devpts, mqueue, cgroup, and anything
//! else the kernel knows, then propagation and recursive attributes.

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use oci_spec::runtime::Mount;

use super::options::{self, MountOptions};
use super::resolve::{fd_path, Kind, Root};
use crate::sys;

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("mounts[{index}] {destination}: {message}")]
    Invalid { index: usize, destination: PathBuf, message: String },
    #[error("mounts[{index}] {destination}: {op}: {source}")]
    Io { index: usize, destination: PathBuf, op: String, source: io::Error },
}

/// Everything a mount needs to know about the container being built.
pub struct Context<'a> {
    pub root: &'a Root,
    pub bundle: &'a Path,
    pub in_userns: bool,
    pub new_netns: bool,
    pub new_cgroupns: bool,
    /// The container's cgroups as the host names them (see `cgroupfs::own_cgroups`).
    pub own_cgroups: &'a std::collections::HashMap<String, String>,
    /// `linux.mountLabel`, for the filesystems that take it (see `security::lsm`).
    pub mount_label: Option<&'a str>,
}

pub fn perform(ctx: &Context, index: usize, m: &Mount) -> Result<(), MountError> {
    let dest = m.destination();
    let invalid = |message: String| MountError::Invalid { index, destination: dest.clone(), message };
    let io_err =
        |op: &str, source: io::Error| MountError::Io { index, destination: dest.clone(), op: op.to_string(), source };
    let opts = options::parse(m.options().as_deref().unwrap_or_default()).map_err(|e| invalid(e.to_string()))?;
    let typ = m.typ().as_deref().unwrap_or("");
    let is_bind = opts.is_bind() || typ == "bind";
    if opts.copy_up && (is_bind || typ != "tmpfs") {
        return Err(invalid(format!("tmpcopyup applies to tmpfs mounts only, not to type {typ:?}")));
    }

    let target = if is_bind {
        let source = bind_source(ctx.bundle, m).map_err(&invalid)?;
        let kind = bind_kind(&source);
        let target = ctx.root.ensure(dest, kind).map_err(|e| io_err("create destination", e))?;
        check_proc_destination(ctx.root, &target, is_procfs(&source)).map_err(&invalid)?;
        let rec = opts.flags & MsFlags::MS_REC;
        mount(Some(&source), &fd_path(&target), None::<&str>, MsFlags::MS_BIND | rec, None::<&str>)
            .map_err(|e| io_err(&format!("bind {}", source.display()), e.into()))?;
        let top = reopen(ctx.root, dest).map_err(|e| io_err("reopen", e))?;
        let extra = opts.bind_remount_flags();
        if !extra.is_empty() {
            remount_bind(&top, extra).map_err(|e| io_err("remount bind", e))?;
        }
        top
    } else if typ == "cgroup" || typ == "cgroup2" {
        let target = ctx.root.ensure(dest, Kind::Dir).map_err(|e| io_err("create destination", e))?;
        check_proc_destination(ctx.root, &target, false).map_err(&invalid)?;
        super::cgroupfs::mount_cgroups(ctx, dest, &target, &opts).map_err(|e| io_err("mount cgroup", e))?;
        reopen(ctx.root, dest).map_err(|e| io_err("reopen", e))?
    } else {
        if typ.is_empty() {
            return Err(invalid("type is required for a mount that is not a bind mount".into()));
        }
        let target = ctx.root.ensure(dest, Kind::Dir).map_err(|e| io_err("create destination", e))?;
        check_proc_destination(ctx.root, &target, typ == "proc").map_err(&invalid)?;
        // Opened before the mount, this fd keeps naming the image's directory underneath.
        let underneath = match opts.copy_up {
            true => Some(open_dir(&target).map_err(|e| io_err("open for tmpcopyup", e))?),
            false => None,
        };
        let source = m.source().as_ref().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| typ.to_string());
        let data = match crate::security::lsm::takes_mount_label(typ) {
            true => crate::security::lsm::with_mount_label(opts.data_string().as_deref(), ctx.mount_label),
            false => opts.data_string(),
        };
        let mut flags = opts.flags & !MsFlags::MS_REMOUNT;
        if underneath.is_some() {
            // A read-only tmpfs is filled first, then made read-only.
            flags &= !MsFlags::MS_RDONLY;
        }
        let res = mount(Some(source.as_str()), &fd_path(&target), Some(typ), flags, data.as_deref());
        if let (Ok(()), Some(from)) = (&res, &underneath) {
            let top = reopen(ctx.root, dest).map_err(|e| io_err("reopen", e))?;
            let to = open_dir(&top).map_err(|e| io_err("open tmpfs", e))?;
            super::copyup::copy_tree(from.as_fd(), to.as_fd()).map_err(|e| io_err("tmpcopyup", e))?;
            if opts.flags.contains(MsFlags::MS_RDONLY) {
                let flags = flags | MsFlags::MS_RDONLY | MsFlags::MS_REMOUNT;
                mount(None::<&str>, &fd_path(&top), None::<&str>, flags, data.as_deref())
                    .map_err(|e| io_err("remount read-only", e.into()))?;
            }
        }
        match res {
            Ok(()) => {}
            // Without its own network namespace a user-namespaced container may not mount
            // sysfs; what runc does, and what the container can see anyway, is the host's /sys.
            Err(nix::errno::Errno::EPERM) if typ == "sysfs" && (ctx.in_userns || !ctx.new_netns) => {
                mount(Some("/sys"), &fd_path(&target), None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
                    .map_err(|e| io_err("bind /sys", e.into()))?;
                let top = reopen(ctx.root, dest).map_err(|e| io_err("reopen", e))?;
                remount_bind(&top, opts.bind_remount_flags()).map_err(|e| io_err("remount bind", e))?;
            }
            Err(e) => return Err(io_err(&format!("mount {typ}"), e.into())),
        }
        reopen(ctx.root, dest).map_err(|e| io_err("reopen", e))?
    };

    for prop in &opts.propagation {
        mount(None::<&str>, &fd_path(&target), None::<&str>, *prop, None::<&str>)
            .map_err(|e| io_err("set propagation", e.into()))?;
    }
    if opts.has_recursive {
        apply_recursive(&target, &opts).map_err(|e| io_err("mount_setattr", e))?;
    }
    Ok(())
}

/// The files under /proc that lxcfs-style bind mounts may cover (runc's list); nothing else
/// below /proc may be a mount point.
const PROC_MOUNTS_ALLOWED: &[&str] = &[
    "cpuinfo",
    "diskstats",
    "meminfo",
    "stat",
    "swaps",
    "uptime",
    "loadavg",
    "slabinfo",
    "net/dev",
    "sys/kernel/ns_last_pid",
];

/// runc's rule for the container's /proc, applied to where the destination resolved to (a
/// symlink planted or swapped in by a racing container cannot get round it): /proc itself
/// takes only a procfs, and below it only the files lxcfs emulates. A mount over /proc/sys or
/// /proc/self/attr would let the container redirect what is written there, or unmask it.
fn check_proc_destination(root: &Root, target: &OwnedFd, procfs: bool) -> Result<(), String> {
    let (Ok(root_path), Ok(at)) = (fs::read_link(fd_path(&root.raw())), fs::read_link(fd_path(target))) else {
        return Err("cannot tell where the destination resolved to".into());
    };
    let Ok(inside) = at.strip_prefix(&root_path) else { return Ok(()) };
    let Ok(rest) = inside.strip_prefix("proc") else { return Ok(()) };
    if rest.as_os_str().is_empty() {
        return match procfs {
            true => Ok(()),
            false => Err(format!(
                "{} cannot be mounted because it is not of type proc",
                Path::new("/").join(inside).display()
            )),
        };
    }
    match PROC_MOUNTS_ALLOWED.iter().any(|a| rest == Path::new(a)) {
        true => Ok(()),
        false => Err(format!("{} cannot be mounted because it is inside /proc", Path::new("/").join(inside).display())),
    }
}

/// A bind of a file needs a file to mount on, anything else a directory.
fn bind_kind(source: &Path) -> Kind {
    if fs::metadata(source).map(|md| md.is_dir()).unwrap_or(true) {
        Kind::Dir
    } else {
        Kind::File
    }
}

/// Makes the mount points of `mounts` that are missing in the rootfs, without mounting
/// anything: what a CRIU restore needs, since CRIU mounts onto the points but does not make
/// them, and a fresh rootfs (Podman's `restore --import`, a migration's copy) lacks those
/// create made (`/etc/hosts` bound from Podman's run directory, say). Points beneath a tmpfs
/// mount are left alone: CRIU restores the tmpfs with its content, points included.
pub fn ensure_mount_points(root: &Root, bundle: &Path, mounts: &[Mount]) -> Result<(), MountError> {
    let tmpfs: Vec<&Path> =
        mounts.iter().filter(|m| m.typ().as_deref() == Some("tmpfs")).map(|m| m.destination().as_path()).collect();
    for (index, m) in mounts.iter().enumerate() {
        let dest = m.destination();
        if tmpfs.iter().any(|t| dest != t && dest.starts_with(t)) {
            continue;
        }
        let opts = options::parse(m.options().as_deref().unwrap_or_default()).map_err(|e| MountError::Invalid {
            index,
            destination: dest.clone(),
            message: e.to_string(),
        })?;
        let kind = if opts.is_bind() || m.typ().as_deref() == Some("bind") {
            let source = bind_source(bundle, m).map_err(|message| MountError::Invalid {
                index,
                destination: dest.clone(),
                message,
            })?;
            bind_kind(&source)
        } else {
            Kind::Dir
        };
        root.ensure(dest, kind).map_err(|source| MountError::Io {
            index,
            destination: dest.clone(),
            op: "create mount point".into(),
            source,
        })?;
    }
    Ok(())
}

fn is_procfs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|fs| fs.filesystem_type().0 == libc::PROC_SUPER_MAGIC)
}

/// A bind source relative to the bundle is taken from the bundle, as runc does (it runs with
/// the bundle as its working directory).
fn bind_source(bundle: &Path, m: &Mount) -> Result<PathBuf, String> {
    let src = m.source().as_ref().ok_or("a bind mount needs a source")?;
    let full = if src.is_absolute() { src.clone() } else { bundle.join(src) };
    fs::symlink_metadata(&full).map_err(|e| format!("source {}: {e}", full.display()))?;
    Ok(full)
}

/// An fd on the mount now stacked at `dest`: an fd opened before the mount still names the
/// directory underneath, and remounting through it would change the wrong mount.
fn reopen(root: &Root, dest: &Path) -> io::Result<OwnedFd> {
    root.open_path(dest)
}

/// A directory fd (readable, unlike the O_PATH fds of the walk) on what `fd` names.
fn open_dir(fd: &OwnedFd) -> io::Result<OwnedFd> {
    use nix::fcntl::{openat, OFlag};
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let raw = openat(Some(fd.as_raw_fd()), ".", flags, nix::sys::stat::Mode::empty())?;
    // SAFETY: openat just returned this fd and nothing else owns it.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) })
}

/// Bind mounts ignore most flags on the first call; a remount applies them. Flags the kernel
/// has locked on the source (nosuid, nodev, noexec in a user namespace) are kept, or the
/// remount is refused.
pub fn remount_bind(target: &OwnedFd, flags: MsFlags) -> io::Result<()> {
    remount_bind_at(&fd_path(target), flags)
}

/// `remount_bind` by path, for `/` after pivot_root (where /proc may not be mounted).
pub fn remount_bind_at(path: &Path, flags: MsFlags) -> io::Result<()> {
    if flags.is_empty() {
        return Ok(());
    }
    let locked = locked_flags(path);
    mount(None::<&str>, path, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags | locked, None::<&str>)
        .map_err(io::Error::from)
}

fn locked_flags(path: &Path) -> MsFlags {
    use nix::sys::statvfs::FsFlags;
    let Ok(st) = nix::sys::statvfs::statvfs(path) else { return MsFlags::empty() };
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (fs_flag, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
    ] {
        if f.contains(fs_flag) {
            out |= ms;
        }
    }
    out
}

fn apply_recursive(target: &OwnedFd, opts: &MountOptions) -> io::Result<()> {
    // mount_setattr accepts an O_PATH fd: it acts on the mount the fd refers to.
    sys::mount_setattr_recursive(target.as_raw_fd(), &opts.recursive)
}

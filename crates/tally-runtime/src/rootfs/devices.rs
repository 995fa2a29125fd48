//! Device nodes in the container's /dev: the defaults every container gets, the
//! `linux.devices` of the config, and the standard /dev symlinks.

use std::ffi::CString;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::resolve::{fd_path, Kind, Root};

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("linux.devices: {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("device {path}: {op}: {source}")]
    Io { path: PathBuf, op: &'static str, source: io::Error },
}

/// A device node to make.
pub struct Node {
    pub path: PathBuf,
    pub kind: libc::mode_t,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The devices the runtime spec requires in every container.
pub fn defaults() -> Vec<Node> {
    [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)]
        .into_iter()
        .map(|(name, major, minor)| Node {
            path: Path::new("/dev").join(name),
            kind: libc::S_IFCHR,
            major,
            minor,
            mode: 0o666,
            uid: 0,
            gid: 0,
        })
        .collect()
}

pub fn from_spec(d: &LinuxDevice) -> Result<Node, DeviceError> {
    let invalid = |m: &str| DeviceError::Invalid { path: d.path().clone(), message: m.to_string() };
    if !d.path().is_absolute() {
        return Err(invalid("path must be absolute"));
    }
    let kind = match d.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => libc::S_IFCHR,
        LinuxDeviceType::B => libc::S_IFBLK,
        LinuxDeviceType::P => libc::S_IFIFO,
        LinuxDeviceType::A => return Err(invalid("type \"a\" is only valid in cgroup device rules")),
    };
    Ok(Node {
        path: d.path().clone(),
        kind,
        major: d.major() as u64,
        minor: d.minor() as u64,
        mode: d.file_mode().unwrap_or(0o666) & 0o7777,
        uid: d.uid().unwrap_or(0),
        gid: d.gid().unwrap_or(0),
    })
}

/// Makes the node inside the root. In a user namespace mknod is refused, so the host's node
/// is bind-mounted instead (the same device, with the host's permissions).
pub fn create(root: &Root, node: &Node, in_userns: bool) -> Result<(), DeviceError> {
    let io_err = |op, source| DeviceError::Io { path: node.path.clone(), op, source };
    if in_userns {
        let target = root.ensure(&node.path, Kind::File).map_err(|e| io_err("create", e))?;
        return nix::mount::mount(Some(&node.path), &fd_path(&target), None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(|e| io_err("bind mount from the host", e.into()));
    }
    let parent = node.path.parent().unwrap_or(Path::new("/"));
    let dir = root.ensure(parent, Kind::Dir).map_err(|e| io_err("create parent", e))?;
    let name = node.path.file_name().ok_or_else(|| io_err("name", io::ErrorKind::InvalidInput.into()))?;
    let cname =
        CString::new(name.as_encoded_bytes()).map_err(|_| io_err("name", io::ErrorKind::InvalidInput.into()))?;
    let dev = libc::makedev(node.major as u32, node.minor as u32);
    // SAFETY: cname is a valid C string and dir an open directory fd. Any existing entry
    // (e.g. a file the image shipped) is removed first, without following symlinks.
    unsafe {
        libc::unlinkat(dir.as_raw_fd(), cname.as_ptr(), 0);
        if libc::mknodat(dir.as_raw_fd(), cname.as_ptr(), node.kind | node.mode, dev) != 0 {
            return Err(io_err("mknod", io::Error::last_os_error()));
        }
    }
    // mknod applies the umask; set the exact mode and owner the config asked for.
    // SAFETY: as above; AT_SYMLINK_NOFOLLOW keeps the calls on the node itself.
    unsafe {
        if libc::fchmodat(dir.as_raw_fd(), cname.as_ptr(), node.mode, 0) != 0 {
            return Err(io_err("chmod", io::Error::last_os_error()));
        }
        if libc::fchownat(dir.as_raw_fd(), cname.as_ptr(), node.uid, node.gid, libc::AT_SYMLINK_NOFOLLOW) != 0 {
            return Err(io_err("chown", io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// /dev/fd, stdin, stdout, stderr, ptmx and, where the host has it, core.
pub fn symlinks(root: &Root) -> Result<(), DeviceError> {
    let mut links = vec![
        ("/proc/self/fd", "/dev/fd"),
        ("/proc/self/fd/0", "/dev/stdin"),
        ("/proc/self/fd/1", "/dev/stdout"),
        ("/proc/self/fd/2", "/dev/stderr"),
        ("pts/ptmx", "/dev/ptmx"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "/dev/core"));
    }
    let dev = root.ensure(Path::new("/dev"), Kind::Dir).map_err(|source| DeviceError::Io {
        path: "/dev".into(),
        op: "create",
        source,
    })?;
    for (target, link) in links {
        let name = CString::new(&link["/dev/".len()..]).expect("static name");
        let target_c = CString::new(target).expect("static target");
        // SAFETY: both are valid C strings and dev an open directory fd. An existing entry is
        // replaced, as runc does for images that ship their own /dev.
        unsafe {
            libc::unlinkat(dev.as_raw_fd(), name.as_ptr(), 0);
            if libc::symlinkat(target_c.as_ptr(), dev.as_raw_fd(), name.as_ptr()) != 0 {
                return Err(DeviceError::Io { path: link.into(), op: "symlink", source: io::Error::last_os_error() });
            }
        }
    }
    Ok(())
}

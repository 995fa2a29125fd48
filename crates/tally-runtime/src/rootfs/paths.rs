//! `linux.maskedPaths` and `linux.readonlyPaths`: what the container must not read, and what it
//! must not write, even as root.

use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};

use super::mounts::remount_bind;
use super::resolve::{fd_path, Root};

#[derive(Debug, thiserror::Error)]
pub enum PathsError {
    #[error("linux.{field} {path}: {source}")]
    Io { field: &'static str, path: PathBuf, source: io::Error },
}

/// A directory is hidden under an empty read-only tmpfs with no options (what runc mounts:
/// the container sees `ro` and the kernel's defaults); anything else under /dev/null.
/// Paths that do not exist in this rootfs are skipped, as the spec intends them as a
/// deny-list over whatever the image has. The tmpfs carries the mount label, as runc's does.
pub fn mask(root: &Root, path: &Path, mount_label: Option<&str>) -> Result<(), PathsError> {
    let err = |source| PathsError::Io { field: "maskedPaths", path: path.into(), source };
    let target = match root.open_path(path) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(err(e)),
    };
    let is_dir = nix::sys::stat::fstat(std::os::fd::AsRawFd::as_raw_fd(&target))
        .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
        .map_err(|e| err(e.into()))?;
    let res = if is_dir {
        let data = crate::security::lsm::with_mount_label(None, mount_label);
        mount(Some("tmpfs"), &fd_path(&target), Some("tmpfs"), MsFlags::MS_RDONLY, data.as_deref())
    } else {
        let null = host_null().map_err(err)?;
        mount(Some(&fd_path(&null)), &fd_path(&target), None::<&str>, MsFlags::MS_BIND, None::<&str>)
    };
    res.map_err(|e| err(e.into()))
}

/// The host's /dev/null (this runs before pivot_root, in a copy of the host's mounts), checked
/// to be the null device. The container's /dev/null is never used as the mask: an image or a
/// racing process can make it a link to a file the bind would then expose or cover (the
/// CVE-2025-31133 class).
fn host_null() -> io::Result<std::os::fd::OwnedFd> {
    use nix::fcntl::OFlag;
    let fd = nix::fcntl::open(
        "/dev/null",
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    // SAFETY: the kernel has just returned this fd and nothing else owns it.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let st = nix::sys::stat::fstat(std::os::fd::AsRawFd::as_raw_fd(&fd))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR || st.st_rdev != libc::makedev(1, 3) {
        return Err(io::Error::other("the host's /dev/null is not the null device (char 1:3)"));
    }
    Ok(fd)
}

/// Bind-mounts the path onto itself and remounts it read-only.
pub fn make_readonly(root: &Root, path: &Path) -> Result<(), PathsError> {
    let err = |source| PathsError::Io { field: "readonlyPaths", path: path.into(), source };
    let target = match root.open_path(path) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(err(e)),
    };
    let p = fd_path(&target);
    mount(Some(&p), &p, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>).map_err(|e| err(e.into()))?;
    let top = root.open_path(path).map_err(err)?;
    remount_bind(&top, MsFlags::MS_RDONLY).map_err(err)
}

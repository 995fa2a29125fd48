//! Making the rootfs the container's `/`: pivot_root, or MS_MOVE + chroot for `--no-pivot`
//! (for hosts whose root is a ramfs, where pivot_root is refused).

use std::io;
use std::path::Path;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::Mode;
use nix::unistd::{chdir, chroot, fchdir, pivot_root};

use super::resolve::Root;

#[derive(Debug, thiserror::Error)]
pub enum PivotError {
    #[error("{op} {path}: {source}")]
    Io { op: &'static str, path: String, source: io::Error },
}

fn err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(nix::errno::Errno) -> PivotError + 'a {
    move |e| PivotError::Io { op, path: path.display().to_string(), source: e.into() }
}

/// pivot_root(".", ".") stacks the old root on top of the new one at "/"; unmounting it then
/// drops it without needing a directory for it inside the rootfs. The old root is made a
/// slave first so the unmount does not propagate back to the host. Both steps go through an
/// fd of the old root opened before the pivot: "." after the pivot may name the new root,
/// and a recursive MS_SLAVE there would turn the container's own shared mounts (an `rshared`
/// volume) into slaves.
pub fn pivot(root: &Root, rootfs: &Path) -> Result<(), PivotError> {
    let old_root = nix::fcntl::open("/", OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(err("open", Path::new("/")))?;
    // SAFETY: open just returned this fd and nothing else owns it.
    let old_root = unsafe { OwnedFd::from_raw_fd(old_root) };
    fchdir(root.raw()).map_err(err("chdir", rootfs))?;
    pivot_root(".", ".").map_err(err("pivot_root", rootfs))?;
    fchdir(old_root.as_raw_fd()).map_err(err("chdir to the old root", rootfs))?;
    mount(None::<&str>, ".", None::<&str>, MsFlags::MS_SLAVE | MsFlags::MS_REC, None::<&str>)
        .map_err(err("make old root a slave", rootfs))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(err("unmount old root", rootfs))?;
    drop(old_root);
    chdir("/").map_err(err("chdir", Path::new("/")))
}

pub fn move_and_chroot(rootfs: &Path) -> Result<(), PivotError> {
    chdir(rootfs).map_err(err("chdir", rootfs))?;
    mount(Some(rootfs), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>).map_err(err("move mount to /", rootfs))?;
    chroot(".").map_err(err("chroot", rootfs))?;
    chdir("/").map_err(err("chdir", Path::new("/")))
}

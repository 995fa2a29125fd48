//! Verified handles on procfs for every write tally makes to /proc (sysctls, oom_score_adj,
//! id maps, time offsets). A path such as `/proc/self/oom_score_adj` is only as good as the
//! mounts on the way to it: a config mount, or another container racing on a shared volume,
//! can put a bind mount of some other file over it, and the write lands there instead (the
//! CVE-2025-52881 class). So tally writes through a private procfs instance (fsopen/fsmount:
//! a detached mount nobody else can see or mount over) and resolves each path beneath it with
//! RESOLVE_NO_XDEV, which refuses to cross any mount on the way.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};

#[derive(Debug, thiserror::Error)]
pub enum ProcfsError {
    #[error("procfs: open a private instance or /proc: {0}")]
    Open(io::Error),
    #[error("procfs: {0} is not the root of a procfs mount (something is mounted over it)")]
    NotProcfs(PathBuf),
    #[error("/proc/{path}: {source}")]
    File { path: PathBuf, source: io::Error },
}

/// procfs's root directory inode number (PROC_ROOT_INO).
const PROC_ROOT_INO: u64 = 1;

/// A handle on the root of a procfs whose pid namespace is the caller's.
pub struct ProcFs {
    fd: OwnedFd,
}

/// A new procfs instance for the caller's pid namespace, as a detached mount.
fn private_instance() -> io::Result<OwnedFd> {
    crate::sys::detached_mount(c"proc", &[], 0)
}

fn is_procfs(fd: &OwnedFd) -> io::Result<bool> {
    let fs = nix::sys::statfs::fstatfs(fd)?;
    Ok(fs.filesystem_type().0 == libc::PROC_SUPER_MAGIC)
}

impl ProcFs {
    /// A private procfs instance; where the kernel refuses one (a user namespace whose /proc
    /// is partly masked, a seccomp filter on fsopen), `/proc`, checked to be the root of a
    /// procfs mount.
    pub fn open() -> Result<Self, ProcfsError> {
        match private_instance() {
            Ok(fd) => Ok(Self { fd }),
            Err(_) => Self::mounted_at(Path::new("/proc")),
        }
    }

    /// The procfs mounted at `path`, which must be the root of a procfs mount.
    pub fn mounted_at(path: &Path) -> Result<Self, ProcfsError> {
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let fd =
            nix::fcntl::open(path, flags, nix::sys::stat::Mode::empty()).map_err(|e| ProcfsError::Open(e.into()))?;
        // SAFETY: the kernel has just returned this fd and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(|e| ProcfsError::Open(e.into()))?;
        if !is_procfs(&fd).map_err(ProcfsError::Open)? || st.st_ino != PROC_ROOT_INO {
            return Err(ProcfsError::NotProcfs(path.to_path_buf()));
        }
        Ok(Self { fd })
    }

    /// Opens `rel` (e.g. `self/oom_score_adj`, `sys/net/ipv4/ip_forward`, `1234/uid_map`)
    /// beneath the procfs root without crossing a mount or following a magic link, and checks
    /// the result is a procfs file.
    pub fn open_file(&self, rel: &Path, flags: OFlag) -> Result<OwnedFd, ProcfsError> {
        let err = |source| ProcfsError::File { path: rel.to_path_buf(), source };
        let how = OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC | OFlag::O_NOCTTY)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_XDEV | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        // EAGAIN: a rename somewhere raced the lookup (RESOLVE_BENEATH cannot then vouch for
        // it); retried a bounded number of times, as rootfs::resolve does.
        let mut tries = 0;
        let fd = loop {
            match openat2(self.fd.as_raw_fd(), rel, how) {
                Err(nix::errno::Errno::EAGAIN) if tries < 64 => tries += 1,
                Err(nix::errno::Errno::EXDEV) => {
                    return Err(err(io::Error::other("a mount covers this path; refusing to write through it")))
                }
                r => break r.map_err(|e| err(e.into()))?,
            }
        };
        // SAFETY: the kernel has just returned this fd and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        if !is_procfs(&fd).map_err(err)? {
            return Err(err(io::Error::other("not a procfs file")));
        }
        Ok(fd)
    }

    /// Writes `data` to `rel` in one write(2), as procfs files expect.
    pub fn write(&self, rel: impl AsRef<Path>, data: &[u8]) -> Result<(), ProcfsError> {
        let rel = rel.as_ref();
        let fd = self.open_file(rel, OFlag::O_WRONLY)?;
        std::fs::File::from(fd).write_all(data).map_err(|source| ProcfsError::File { path: rel.to_path_buf(), source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_inside_procfs_only() {
        let proc = ProcFs::open().unwrap();
        let fd = proc.open_file(Path::new("self/status"), OFlag::O_RDONLY).unwrap();
        let status = std::fs::read_to_string(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
        assert!(status.contains(&format!("Pid:\t{}", std::process::id())), "{status}");
        // Out of procfs by `..` or an absolute path: refused by RESOLVE_BENEATH.
        assert!(proc.open_file(Path::new("../etc/passwd"), OFlag::O_RDONLY).is_err());
        assert!(proc.open_file(Path::new("/etc/passwd"), OFlag::O_RDONLY).is_err());
        // A magic link (self/exe) is never followed.
        assert!(proc.open_file(Path::new("self/exe"), OFlag::O_RDONLY).is_err());
    }

    /// A file bound over a procfs file (what a racing container aims for) is refused through
    /// the mounted /proc, and never seen by a private instance.
    #[test]
    fn a_mount_over_a_proc_file_is_never_written_through() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let decoy = std::env::temp_dir().join(format!("tally-procfs-decoy-{}", std::process::id()));
        std::fs::write(&decoy, "decoy").unwrap();
        // SAFETY: the child makes only syscalls and exits with _exit.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let code = (|| -> Result<(), String> {
                    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).map_err(|e| e.to_string())?;
                    let none = None::<&str>;
                    let private = nix::mount::MsFlags::MS_PRIVATE | nix::mount::MsFlags::MS_REC;
                    nix::mount::mount(none, "/", none, private, none).map_err(|e| e.to_string())?;
                    let target = "/proc/sys/kernel/hostname";
                    let bind = nix::mount::MsFlags::MS_BIND;
                    nix::mount::mount(Some(&decoy), target, none, bind, none).map_err(|e| e.to_string())?;
                    let e = ProcFs::mounted_at(Path::new("/proc")).unwrap().write("sys/kernel/hostname", b"x");
                    if !e.is_err_and(|e| e.to_string().contains("a mount covers this path")) {
                        return Err("write through the covered file".into());
                    }
                    let fd = private_instance().map_err(|e| e.to_string())?;
                    let proc = ProcFs { fd };
                    proc.open_file(Path::new("sys/kernel/hostname"), OFlag::O_RDONLY).map_err(|e| e.to_string())?;
                    Ok(())
                })();
                // SAFETY: ends the forked child without running the parent's destructors.
                unsafe { libc::_exit(if code.is_ok() { 0 } else { 1 }) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
            }
        }
        assert_eq!(std::fs::read_to_string(&decoy).unwrap(), "decoy");
        std::fs::remove_file(&decoy).unwrap();
    }
}

//! Paths inside the container's root filesystem, resolved by the kernel as if the rootfs were
//! `/` (openat2 RESOLVE_IN_ROOT): a symlink planted in the rootfs, absolute or full of `..`,
//! can never lead a mount or a device node outside it. Mounts then target the resolved fd
//! through /proc/self/fd, so no path is looked up twice.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

/// An O_PATH handle on a directory that acts as `/` for lookups.
pub struct Root {
    fd: OwnedFd,
}

/// What to create at a destination that does not exist yet.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
}

fn how(flags: OFlag) -> OpenHow {
    OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS)
}

fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: every caller passes an fd the kernel has just returned and nobody else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// openat2 with RESOLVE_IN_ROOT fails with EAGAIN when a mount or rename anywhere on the
/// host raced with a lookup that went through `..` (the kernel cannot then prove the walk
/// stayed inside the root); other containers being set up make that common, so it is retried.
fn openat2_retrying(dirfd: RawFd, path: &Path, flags: OFlag) -> nix::Result<RawFd> {
    let mut tries = 0;
    loop {
        match openat2(dirfd, path, how(flags)) {
            Err(nix::errno::Errno::EAGAIN) if tries < 64 => tries += 1,
            r => return r,
        }
    }
}

/// The path relative to the root, without leading `/` (openat2 wants a relative path).
fn relative(path: &Path) -> PathBuf {
    path.components().filter(|c| !matches!(c, Component::RootDir)).collect()
}

impl Root {
    pub fn open(path: &Path) -> io::Result<Self> {
        let fd = nix::fcntl::open(path, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
        Ok(Self { fd: owned(fd) })
    }

    /// A root at an fd from `open_path`: lookups start on whatever is mounted there.
    pub fn from_fd(fd: OwnedFd) -> Self {
        Self { fd }
    }

    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// An O_PATH fd on `path` inside the root, or the lookup's error.
    pub fn open_path(&self, path: &Path) -> io::Result<OwnedFd> {
        let rel = relative(path);
        let rel = if rel.as_os_str().is_empty() { PathBuf::from(".") } else { rel };
        let fd = openat2_retrying(self.fd.as_raw_fd(), &rel, OFlag::O_PATH)?;
        Ok(owned(fd))
    }

    /// Like `open_path`, with other open flags (e.g. to read or write the file).
    pub fn open_with(&self, path: &Path, flags: OFlag) -> io::Result<OwnedFd> {
        let fd = openat2_retrying(self.fd.as_raw_fd(), &relative(path), flags)?;
        Ok(owned(fd))
    }

    /// Makes sure `path` exists inside the root, creating missing directories (mode 0755) and,
    /// for `Kind::File`, an empty file, and returns an O_PATH fd on it.
    ///
    /// The missing part is walked one component at a time, as the kernel would inside the
    /// root. A symlink on the way is followed by hand: its target is spliced into the rest of
    /// the path, so a link that dangles inside the rootfs (an image's `/var/run -> /run`
    /// without `/run`, or an absolute link to a host path) gets its directories made where it
    /// points inside the rootfs, as runc does, instead of failing. Every directory is created
    /// through an fd opened with RESOLVE_IN_ROOT, so nothing can be made outside the root.
    pub fn ensure(&self, path: &Path, kind: Kind) -> io::Result<OwnedFd> {
        match self.open_path(path) {
            Ok(fd) => return Ok(fd),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
        // Components still to walk, the next one last; `real` is the walked part, free of
        // symlinks and relative to the root.
        let mut todo = steps(&relative(path));
        let mut real = PathBuf::new();
        let mut links = 0;
        while let Some(step) = todo.pop() {
            let name = match step {
                Step::Root => {
                    real.clear();
                    continue;
                }
                Step::Up => {
                    real.pop();
                    continue;
                }
                Step::Name(name) => name,
            };
            let parent = self.open_path(&real)?;
            match nix::fcntl::readlinkat(Some(parent.as_raw_fd()), name.as_os_str()) {
                Ok(target) => {
                    // MAXSYMLINKS, as the kernel counts them.
                    links += 1;
                    if links > 40 {
                        return Err(io::Error::from_raw_os_error(libc::ELOOP));
                    }
                    todo.extend(steps(Path::new(&target)));
                    continue;
                }
                // Not a symlink: an existing file or directory.
                Err(nix::errno::Errno::EINVAL) => {}
                Err(nix::errno::Errno::ENOENT) => {
                    create_at(parent.as_raw_fd(), name.as_bytes(), todo.is_empty() && kind == Kind::File)?;
                }
                Err(e) => return Err(e.into()),
            }
            real.push(name);
        }
        self.open_path(&real)
    }
}

/// One component of a path being walked by `Root::ensure`.
enum Step {
    Root,
    Up,
    Name(std::ffi::OsString),
}

/// The components of `path` in reverse order, so that `pop` yields the first.
fn steps(path: &Path) -> Vec<Step> {
    path.components()
        .rev()
        .filter_map(|c| match c {
            Component::RootDir => Some(Step::Root),
            Component::ParentDir => Some(Step::Up),
            Component::Normal(n) => Some(Step::Name(n.to_owned())),
            Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

/// Creates `name` in the directory `dirfd` without following a symlink there: a dangling
/// symlink at `name` makes this fail (EEXIST) rather than create its target outside the root.
fn create_at(dirfd: RawFd, name: &[u8], file: bool) -> io::Result<()> {
    let c = CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
    // SAFETY: c is a valid C string and dirfd an open directory fd; neither call keeps them.
    let rc = unsafe {
        if file {
            let fd = libc::openat(
                dirfd,
                c.as_ptr(),
                libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_WRONLY,
                0o644,
            );
            if fd >= 0 {
                libc::close(fd);
                0
            } else {
                fd
            }
        } else {
            libc::mkdirat(dirfd, c.as_ptr(), 0o755)
        }
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        // Another mount or a concurrent step made it: fine, the caller reopens it.
        if e.raw_os_error() == Some(libc::EEXIST) && !file {
            return Ok(());
        }
        return Err(e);
    }
    Ok(())
}

/// The /proc/self/fd path that names an open fd, for calls that only take paths (mount(2)).
pub fn fd_path(fd: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let base = std::env::temp_dir().join(format!("tally-resolve-{}", std::process::id()));
        let outside = base.join("outside");
        let root_dir = base.join("root");
        fs::create_dir_all(&outside).unwrap();
        fs::create_dir_all(&root_dir).unwrap();
        symlink(&outside, root_dir.join("abs")).unwrap();
        symlink("../../../../outside", root_dir.join("dots")).unwrap();

        let root = Root::open(&root_dir).unwrap();
        root.ensure(Path::new("/abs/x"), Kind::Dir).unwrap();
        root.ensure(Path::new("/dots/y"), Kind::File).unwrap();
        assert!(fs::read_dir(&outside).unwrap().next().is_none(), "nothing created outside the root");
        assert!(root_dir.join(outside.strip_prefix("/").unwrap()).join("x").is_dir());
        assert!(root_dir.join("outside/y").is_file());

        // Links inside links, with ".." after a link: resolved as the kernel would.
        fs::create_dir_all(root_dir.join("real/a")).unwrap();
        symlink("/real/a", root_dir.join("to-a")).unwrap();
        symlink("../b/c", root_dir.join("real/a/up")).unwrap();
        root.ensure(Path::new("/to-a/up/d"), Kind::Dir).unwrap();
        assert!(root_dir.join("real/b/c/d").is_dir());
        symlink("loop", root_dir.join("loop")).unwrap();
        assert_eq!(root.ensure(Path::new("/loop/x"), Kind::Dir).unwrap_err().raw_os_error(), Some(libc::ELOOP));
        assert!(fs::read_dir(&outside).unwrap().next().is_none(), "nothing created outside the root");
        fs::remove_dir_all(&base).unwrap();
    }
}

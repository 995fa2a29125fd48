//! `tmpcopyup`: what the image holds at a tmpfs mount's destination is copied into the new
//! tmpfs (Podman's `--read-only`, `--tmpfs`, `--mount type=tmpfs` ask for it), with owner, mode,
//! timestamps and the extended attributes the tmpfs accepts.
//!
//! The source is the directory the tmpfs now covers, reached through an fd opened before the
//! mount. Every step is relative to a directory fd and never follows a symlink, so a link in
//! the image cannot make the copy read or write outside the container's root.

use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use nix::dir::Dir;
use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fchmod, fstat, fstatat, mkdirat, mknodat, utimensat, FileStat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, symlinkat, Gid, Uid};

/// A deeper tree is refused rather than exhausting the stack or the fd table.
const MAX_DEPTH: usize = 128;

/// Copies the content of directory `src` into directory `dst` (an empty tmpfs), and gives `dst`
/// the owner, mode, timestamps and xattrs of `src`.
pub fn copy_tree(src: BorrowedFd, dst: BorrowedFd) -> io::Result<()> {
    copy_dir(src, dst, 0)?;
    let st = fstat(src.as_raw_fd())?;
    copy_xattrs(src, dst);
    copy_meta_fd(dst, &st)
}

fn copy_dir(src: BorrowedFd, dst: BorrowedFd, depth: usize) -> io::Result<()> {
    if depth > MAX_DEPTH {
        return Err(io::Error::other(format!("directories nested deeper than {MAX_DEPTH}")));
    }
    // Dir takes ownership of the fd it reads: give it its own.
    let mut dir = Dir::from_fd(src.try_clone_to_owned()?.into_raw_fd())?;
    let names: Vec<CString> = dir
        .iter()
        .filter_map(Result::ok)
        .filter(|e| !matches!(e.file_name().to_bytes(), b"." | b".."))
        .map(|e| e.file_name().to_owned())
        .collect();
    for name in names {
        copy_entry(src, dst, &name, depth).map_err(|e| {
            io::Error::new(e.kind(), format!("{}: {e}", OsStr::from_bytes(name.to_bytes()).to_string_lossy()))
        })?;
    }
    Ok(())
}

fn copy_entry(src: BorrowedFd, dst: BorrowedFd, name: &CStr, depth: usize) -> io::Result<()> {
    let st = fstatat(Some(src.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
    let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
    let perm = Mode::from_bits_truncate(st.st_mode & 0o7777);
    match kind {
        SFlag::S_IFDIR => {
            let from = open_checked(src, name, OFlag::O_DIRECTORY, SFlag::S_IFDIR)?;
            mkdirat(Some(dst.as_raw_fd()), name, Mode::S_IRWXU)?;
            let to = own(openat(
                Some(dst.as_raw_fd()),
                name,
                OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?);
            copy_dir(from.as_fd(), to.as_fd(), depth + 1)?;
            copy_xattrs(from.as_fd(), to.as_fd());
            copy_meta_fd(to.as_fd(), &st)
        }
        SFlag::S_IFREG => {
            let from = open_checked(src, name, OFlag::O_RDONLY, SFlag::S_IFREG)?;
            let to = own(openat(
                Some(dst.as_raw_fd()),
                name,
                OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::S_IRUSR | Mode::S_IWUSR,
            )?);
            io::copy(&mut File::from(from.try_clone()?), &mut File::from(to.try_clone()?))?;
            copy_xattrs(from.as_fd(), to.as_fd());
            copy_meta_fd(to.as_fd(), &st)
        }
        SFlag::S_IFLNK => {
            let target = readlinkat(Some(src.as_raw_fd()), name)?;
            symlinkat(target.as_os_str(), Some(dst.as_raw_fd()), name)?;
            copy_meta_at(dst, name, &st)
        }
        SFlag::S_IFIFO | SFlag::S_IFCHR | SFlag::S_IFBLK | SFlag::S_IFSOCK => {
            mknodat(Some(dst.as_raw_fd()), name, kind, perm, st.st_rdev)?;
            copy_meta_at(dst, name, &st)
        }
        _ => Ok(()),
    }
}

/// Opens `name` without following a link or blocking (a FIFO swapped in after the stat), and
/// checks it is still of the type the stat saw.
fn open_checked(dir: BorrowedFd, name: &CStr, flags: OFlag, want: SFlag) -> io::Result<OwnedFd> {
    let fd = own(openat(
        Some(dir.as_raw_fd()),
        name,
        flags | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?);
    let st = fstat(fd.as_raw_fd())?;
    if st.st_mode & SFlag::S_IFMT.bits() != want.bits() {
        return Err(io::Error::other("changed while being copied"));
    }
    Ok(fd)
}

/// Owner first: chown clears the set-id bits the mode then puts back.
fn copy_meta_fd(fd: BorrowedFd, st: &FileStat) -> io::Result<()> {
    nix::unistd::fchown(fd.as_raw_fd(), Some(Uid::from_raw(st.st_uid)), Some(Gid::from_raw(st.st_gid)))?;
    fchmod(fd.as_raw_fd(), Mode::from_bits_truncate(st.st_mode & 0o7777))?;
    let (atime, mtime) = times(st);
    nix::sys::stat::futimens(fd.as_raw_fd(), &atime, &mtime)?;
    Ok(())
}

/// For symlinks and device nodes, which are not opened: by name, never following.
fn copy_meta_at(dir: BorrowedFd, name: &CStr, st: &FileStat) -> io::Result<()> {
    fchownat(
        Some(dir.as_raw_fd()),
        name,
        Some(Uid::from_raw(st.st_uid)),
        Some(Gid::from_raw(st.st_gid)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )?;
    let (atime, mtime) = times(st);
    utimensat(Some(dir.as_raw_fd()), name, &atime, &mtime, UtimensatFlags::NoFollowSymlink)?;
    Ok(())
}

fn times(st: &FileStat) -> (TimeSpec, TimeSpec) {
    (TimeSpec::new(st.st_atime, st.st_atime_nsec), TimeSpec::new(st.st_mtime, st.st_mtime_nsec))
}

/// Extended attributes are copied where the tmpfs takes them: `user.*` needs Linux 6.6 on
/// tmpfs, and `security.*` may be the LSM's to set. One that is refused is left out, as a
/// copy with `cp -a` leaves it out.
fn copy_xattrs(from: BorrowedFd, to: BorrowedFd) {
    let Ok(names) = list_xattrs(from) else { return };
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let Ok(name) = CString::new(name) else { continue };
        if let Ok(value) = get_xattr(from, &name) {
            // SAFETY: a valid fd, a NUL-terminated name and a buffer of value.len() bytes.
            unsafe { libc::fsetxattr(to.as_raw_fd(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
        }
    }
}

fn list_xattrs(fd: BorrowedFd) -> io::Result<Vec<u8>> {
    // SAFETY: a null buffer of size 0 asks for the size only.
    let size = unsafe { libc::flistxattr(fd.as_raw_fd(), std::ptr::null_mut(), 0) };
    if size <= 0 {
        return Ok(Vec::new());
    }
    let mut buf = vec![0u8; size as usize];
    // SAFETY: the buffer holds buf.len() writable bytes.
    let n = unsafe { libc::flistxattr(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

fn get_xattr(fd: BorrowedFd, name: &CStr) -> io::Result<Vec<u8>> {
    // SAFETY: a null buffer of size 0 asks for the size only.
    let size = unsafe { libc::fgetxattr(fd.as_raw_fd(), name.as_ptr(), std::ptr::null_mut(), 0) };
    if size < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; size as usize];
    // SAFETY: the buffer holds buf.len() writable bytes.
    let n = unsafe { libc::fgetxattr(fd.as_raw_fd(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

fn own(fd: std::os::fd::RawFd) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful openat and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

    #[test]
    fn the_copy_keeps_content_types_modes_owners_and_times_and_follows_no_link() {
        let base = std::env::temp_dir().join(format!("tally-copyup-{}", std::process::id()));
        let (src, dst) = (base.join("src"), base.join("dst"));
        fs::create_dir_all(src.join("sub/deeper")).unwrap();
        fs::create_dir_all(&dst).unwrap();
        fs::write(src.join("file"), "content").unwrap();
        // chown clears set-id bits: the mode goes on after it.
        std::os::unix::fs::chown(src.join("file"), Some(1234), Some(5678)).unwrap();
        fs::set_permissions(src.join("file"), fs::Permissions::from_mode(0o4750)).unwrap();
        fs::write(src.join("sub/deeper/leaf"), "leaf").unwrap();
        fs::set_permissions(src.join("sub"), fs::Permissions::from_mode(0o1777)).unwrap();
        symlink("/etc/passwd", src.join("escape")).unwrap();
        nix::unistd::mkfifo(&src.join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
        let times = fs::metadata(src.join("sub/deeper/leaf")).unwrap().mtime();

        let open = |p: &std::path::Path| File::open(p).unwrap();
        copy_tree(open(&src).as_fd(), open(&dst).as_fd()).unwrap();

        assert_eq!(fs::read_to_string(dst.join("file")).unwrap(), "content");
        let md = fs::metadata(dst.join("file")).unwrap();
        assert_eq!((md.mode() & 0o7777, md.uid(), md.gid()), (0o4750, 1234, 5678));
        assert_eq!(fs::metadata(dst.join("sub")).unwrap().mode() & 0o7777, 0o1777);
        assert_eq!(fs::read_to_string(dst.join("sub/deeper/leaf")).unwrap(), "leaf");
        assert_eq!(fs::metadata(dst.join("sub/deeper/leaf")).unwrap().mtime(), times);
        // The link is copied as a link, not as the host file it names.
        assert_eq!(fs::read_link(dst.join("escape")).unwrap(), std::path::Path::new("/etc/passwd"));
        assert!(fs::symlink_metadata(dst.join("escape")).unwrap().file_type().is_symlink());
        use std::os::unix::fs::FileTypeExt;
        assert!(fs::symlink_metadata(dst.join("fifo")).unwrap().file_type().is_fifo());
        fs::remove_dir_all(&base).unwrap();
    }
}

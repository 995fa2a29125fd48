//! The CVE-2019-5736 class: a process that runs the tally binary inside a container (the init
//! before its execve, an exec'd process, or a program exec'd as `/proc/self/exe`, which names
//! the binary of the process doing the execve) exposes it at `/proc/PID/exe`. A container
//! process that opens that link while the process runs can reopen it for writing once no tally
//! runs any more, and overwrite the host's binary.
//!
//! So the commands that put processes into containers first re-execute tally from a handle on
//! its binary that cannot be written: `/proc/PID/exe` then names that, and the host's file is
//! never reachable for writing through a process in a container. The handle is, first choice,
//! the binary seen through a private read-only overlayfs (a detached mount nobody else can
//! reach; no upper layer, so every open for writing fails with EROFS), which costs two mounts
//! and shares the binary's page cache; where overlayfs is not available, a memfd copy sealed
//! with F_SEAL_WRITE, which costs a copy of the whole binary on every call.

use std::ffi::OsStr;
use std::ffi::{CString, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

const SEALS: libc::c_int = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;

const OVERLAYFS_SUPER_MAGIC: i64 = 0x794c_7630;

/// Whether the running binary is already one of the two unwritable handles.
fn is_protected(f: &File) -> bool {
    // SAFETY: F_GET_SEALS takes no argument; on a file that is not a memfd it fails (EINVAL).
    let seals = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GET_SEALS) };
    if seals >= 0 && seals & libc::F_SEAL_WRITE != 0 {
        return true;
    }
    let overlay = nix::sys::statfs::fstatfs(f).is_ok_and(|s| s.filesystem_type().0 == OVERLAYFS_SUPER_MAGIC);
    let read_only =
        nix::sys::statvfs::fstatvfs(f).is_ok_and(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY));
    overlay && read_only
}

/// A detached read-only mount: the binary's view must never be writable.
fn detached_mount(fstype: &std::ffi::CStr, options: &[(&std::ffi::CStr, &std::ffi::CStr)]) -> io::Result<OwnedFd> {
    use crate::sys::{MOUNT_ATTR_NODEV, MOUNT_ATTR_RDONLY};
    crate::sys::detached_mount(fstype, options, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV)
}

/// The binary seen through a private overlayfs whose layers are its directory and a second,
/// lower one (overlayfs wants two lower layers when it has no upper one). O_PATH: execveat
/// takes it as it is.
fn overlay_handle() -> io::Result<OwnedFd> {
    let exe = std::fs::read_link("/proc/self/exe")?;
    let (Some(dir), Some(name)) = (exe.parent(), exe.file_name()) else {
        return Err(io::ErrorKind::NotFound.into());
    };
    let dir = dir.as_os_str().as_encoded_bytes();
    // `:` separates layers and `,` options; a directory named with them is left to the memfd.
    if dir.iter().any(|b| matches!(b, b':' | b',' | b'\\'))
        || exe.as_os_str().as_encoded_bytes().ends_with(b" (deleted)")
    {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    // The second layer: /dev, which is always mounted and never holds the binary's directory;
    // the binary's directory is the top layer, so /dev's entries hide nothing, and the merged
    // root is reachable only through this process's mount fd. Failing that, an empty detached
    // tmpfs (kernels before 6.3 or so refuse a detached mount as a layer, and log "failed to
    // clone lowerpath", hence not first).
    let with_second = |second: &str| -> io::Result<OwnedFd> {
        if Path::new(OsStr::from_bytes(dir)).starts_with(second) {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        let mut lower = dir.to_vec();
        lower.push(b':');
        lower.extend_from_slice(second.as_bytes());
        let lower = CString::new(lower).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        detached_mount(c"overlay", &[(c"lowerdir", &lower)])
    };
    let overlay = with_second("/dev").or_else(|_| {
        let empty = detached_mount(c"tmpfs", &[])?;
        with_second(&format!("/proc/self/fd/{}", empty.as_raw_fd()))
    });
    let overlay = overlay?;
    let name = CString::new(name.as_encoded_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: overlay is an open mount fd and name a valid C string.
    let fd =
        unsafe { libc::openat(overlay.as_raw_fd(), name.as_ptr(), libc::O_PATH | libc::O_CLOEXEC | libc::O_NOFOLLOW) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel has just returned this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Re-executes this process, with the same arguments and environment, from an unwritable
/// handle on its binary. Returns only on failure; returns Ok at once when already running from
/// one. The caller's fds (none of tally's yet) are inherited as they are.
pub fn reexec_sealed(args: &[OsString]) -> io::Result<()> {
    let mut exe = File::open("/proc/self/exe")?;
    if is_protected(&exe) {
        return Ok(());
    }
    let handle = match overlay_handle() {
        Ok(fd) => fd,
        Err(_) => sealed_copy(&mut exe)?,
    };
    execveat(&handle, args)
}

/// A memfd copy of the binary, sealed against every change.
fn sealed_copy(exe: &mut File) -> io::Result<OwnedFd> {
    // SAFETY: a valid C string and flags; memfd_create returns a new fd or -1.
    let raw = unsafe { libc::memfd_create(c"tally".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: memfd_create just returned this fd and nothing else owns it.
    let memfd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut copy = File::from(memfd);
    io::copy(exe, &mut copy)?;
    // SAFETY: F_ADD_SEALS takes an int set of seals.
    if unsafe { libc::fcntl(copy.as_raw_fd(), libc::F_ADD_SEALS, SEALS) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(copy.into())
}

fn execveat(program: &OwnedFd, args: &[OsString]) -> io::Result<()> {
    let to_c = |s: OsString| CString::new(s.into_vec()).map_err(|_| io::Error::other("NUL in an argument"));
    let argv: Vec<CString> = args.iter().cloned().map(to_c).collect::<io::Result<_>>()?;
    let envp: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            to_c(kv)
        })
        .collect::<io::Result<_>>()?;
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut envp_p: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    envp_p.push(std::ptr::null());
    // SAFETY: the fd names an executable file; argv and envp are NULL-terminated arrays of C
    // strings that outlive the call, which only returns on failure.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            program.as_raw_fd(),
            c"".as_ptr(),
            argv_p.as_ptr(),
            envp_p.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    Err(io::Error::last_os_error())
}

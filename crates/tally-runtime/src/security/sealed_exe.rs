//! The CVE-2019-5736 class: a process that runs the tally binary inside a container (the init
//! before its execve, an exec'd process, or a program exec'd as `/proc/self/exe`, which names
//! the binary of the process doing the execve) exposes it at `/proc/PID/exe`. A container
//! process that opens that link while the process runs can reopen it for writing once no tally
//! runs any more, and overwrite the host's binary.
//!
//! So the commands that put processes into containers first re-execute tally from a sealed
//! memfd copy of itself: `/proc/PID/exe` then names that copy, which no one can write (the
//! kernel refuses writes to a memfd sealed with F_SEAL_WRITE), and the host's file is never
//! mapped by a process in a container.

use std::ffi::{CString, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;

const SEALS: libc::c_int = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;

fn is_sealed(f: &impl AsRawFd) -> bool {
    // SAFETY: F_GET_SEALS takes no argument; on a file that is not a memfd it fails (EINVAL).
    let seals = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GET_SEALS) };
    seals >= 0 && seals & libc::F_SEAL_WRITE != 0
}

/// Re-executes this process, with the same arguments and environment, from a sealed memfd
/// copy of its binary. Returns only on failure; returns Ok at once when already sealed. The
/// caller's fds (none of tally's yet) are inherited as they are.
pub fn reexec_sealed(args: &[OsString]) -> io::Result<()> {
    let mut exe = File::open("/proc/self/exe")?;
    if is_sealed(&exe) {
        return Ok(());
    }
    // SAFETY: a valid C string and flags; memfd_create returns a new fd or -1.
    let raw = unsafe { libc::memfd_create(c"tally".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: memfd_create just returned this fd and nothing else owns it.
    let memfd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut copy = File::from(memfd);
    io::copy(&mut exe, &mut copy)?;
    // SAFETY: F_ADD_SEALS takes an int set of seals.
    if unsafe { libc::fcntl(copy.as_raw_fd(), libc::F_ADD_SEALS, SEALS) } != 0 {
        return Err(io::Error::last_os_error());
    }
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
    // SAFETY: the fd is a sealed executable memfd; argv and envp are NULL-terminated arrays of
    // C strings that outlive the call, which only returns on failure.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            copy.as_raw_fd(),
            c"".as_ptr(),
            argv_p.as_ptr(),
            envp_p.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    Err(io::Error::last_os_error())
}

//! `process.terminal`: a pty allocated in the container's own devpts, its master handed to the
//! caller over `--console-socket` (SCM_RIGHTS), its slave made the container's stdio,
//! controlling terminal and /dev/console.

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::mount::{mount, MsFlags};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

use crate::rootfs::resolve::{fd_path, Kind, Root};

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("--console-socket {path}: {source}")]
    Connect { path: PathBuf, source: io::Error },
    #[error("process.terminal is true but no --console-socket was given")]
    NoSocket,
    #[error("console: {op}: {source}")]
    Io { op: &'static str, source: io::Error },
}

fn io_err(op: &'static str) -> impl FnOnce(io::Error) -> ConsoleError {
    move |source| ConsoleError::Io { op, source }
}

/// Connects to the caller's console socket (done by the runtime, whose view of the path is the
/// caller's).
pub fn connect(path: &Path) -> Result<OwnedFd, ConsoleError> {
    let s = UnixStream::connect(path).map_err(|source| ConsoleError::Connect { path: path.into(), source })?;
    Ok(s.into())
}

/// Allocates the pty inside the prepared rootfs (before pivot_root, through the container's
/// own /dev/ptmx), sends the master to `socket`, binds the slave onto /dev/console and returns
/// the slave.
pub fn allocate(root: &Root, socket: &OwnedFd, uid: u32, gid: u32) -> Result<OwnedFd, ConsoleError> {
    let ptmx = root.open_path(Path::new("/dev/ptmx")).map_err(io_err("open /dev/ptmx in the container"))?;
    let ptmx = open_checked_ptmx(&ptmx)?;
    let (master, slave, num) = open_pty(ptmx, uid, gid)?;
    let console = fresh_console(root)?;
    mount(Some(&fd_path(&slave)), &fd_path(&console), None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(|e| io_err("bind pty onto /dev/console")(e.into()))?;
    send_master(socket, &master, num)?;
    Ok(slave)
}

/// The mount point for /dev/console: whatever the image has there (a symlink to a host path or
/// to a file it wants the pty bound over, the CVE-2025-52565 class) is removed and a new empty
/// file made without following links; the bind then targets that file's fd, so swapping the
/// name afterwards changes nothing.
fn fresh_console(root: &Root) -> Result<OwnedFd, ConsoleError> {
    let dev = root.ensure(Path::new("/dev"), Kind::Dir).map_err(io_err("open /dev in the container"))?;
    // SAFETY: dev is an open directory fd and the name a static C string; unlinkat never
    // follows a symlink at the name, and a directory there is removed only if empty.
    unsafe {
        if libc::unlinkat(dev.as_raw_fd(), c"console".as_ptr(), 0) != 0 {
            libc::unlinkat(dev.as_raw_fd(), c"console".as_ptr(), libc::AT_REMOVEDIR);
        }
    }
    // SAFETY: as above; O_EXCL|O_NOFOLLOW create a new file or fail, never open another.
    let fd = unsafe {
        libc::openat(
            dev.as_raw_fd(),
            c"console".as_ptr(),
            libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_RDONLY | libc::O_CLOEXEC,
            0o600,
        )
    };
    if fd < 0 {
        return Err(io_err("create /dev/console")(io::Error::last_os_error()));
    }
    // SAFETY: the kernel has just returned this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The pty multiplexer must be a devpts's ptmx (char 5:2 on a devpts mount): an image can make
/// /dev/ptmx or /dev/pts/ptmx anything, and tally would hand its master to the caller. It is
/// checked through an O_PATH fd (opening a ptmx already allocates a pty), then that same inode
/// is opened.
fn open_checked_ptmx(fd: &OwnedFd) -> Result<OwnedFd, ConsoleError> {
    let refuse = |why: &str| ConsoleError::Io {
        op: "open /dev/ptmx in the container",
        source: io::Error::other(format!("refusing it: {why}")),
    };
    let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(|e| io_err("stat /dev/ptmx")(e.into()))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR || st.st_rdev != libc::makedev(5, 2) {
        return Err(refuse("it is not the pty multiplexer (char device 5:2)"));
    }
    let fs = nix::sys::statfs::fstatfs(fd).map_err(|e| io_err("statfs /dev/ptmx")(e.into()))?;
    if fs.filesystem_type().0 != libc::DEVPTS_SUPER_MAGIC {
        return Err(refuse("it is not on a devpts mount (mount devpts at /dev/pts)"));
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(fd_path(fd))
        .map(OwnedFd::from)
        .map_err(io_err("open /dev/ptmx in the container"))
}

/// For a process joining a running container (`exec --tty`): a pty from the /dev/ptmx of the
/// root this process is already in, its master sent to `socket`. /dev/console stays the init's.
pub fn allocate_joined(socket: &OwnedFd, uid: u32, gid: u32) -> Result<OwnedFd, ConsoleError> {
    let flags = OFlag::O_PATH | OFlag::O_CLOEXEC;
    let ptmx = nix::fcntl::open("/dev/ptmx", flags, nix::sys::stat::Mode::empty())
        .map_err(|e| io_err("open /dev/ptmx in the container")(e.into()))?;
    // SAFETY: the kernel has just returned this fd and nothing else owns it.
    let ptmx = open_checked_ptmx(&unsafe { OwnedFd::from_raw_fd(ptmx) })?;
    let (master, slave, num) = open_pty(ptmx, uid, gid)?;
    send_master(socket, &master, num)?;
    Ok(slave)
}

/// Unlocks the pty behind `master` and opens its slave, owned by uid:gid.
fn open_pty(master: OwnedFd, uid: u32, gid: u32) -> Result<(OwnedFd, OwnedFd, u32), ConsoleError> {
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int through the pointer, which points to a live local.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } != 0 {
        return Err(io_err("unlock pty")(io::Error::last_os_error()));
    }
    let mut num: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes one unsigned int through the pointer to a live local.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut num) } != 0 {
        return Err(io_err("pty number")(io::Error::last_os_error()));
    }
    // TIOCGPTPEER opens the slave from the master, without a path lookup in /dev/pts.
    // SAFETY: the ioctl takes open flags by value and returns a new fd or -1.
    let slave =
        unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if slave < 0 {
        return Err(io_err("open pty slave")(io::Error::last_os_error()));
    }
    // SAFETY: the kernel just returned this fd and nothing else owns it.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    nix::unistd::fchown(slave.as_raw_fd(), Some(uid.into()), Some(gid.into()))
        .map_err(|e| io_err("chown pty slave")(e.into()))?;
    Ok((master, slave, num))
}

fn send_master(socket: &OwnedFd, master: &OwnedFd, num: u32) -> Result<(), ConsoleError> {
    let name = format!("/dev/pts/{num}");
    send_fd(socket.as_raw_fd(), master.as_raw_fd(), name.as_bytes())
        .map_err(io_err("send pty master to --console-socket"))
}

fn send_fd(sock: RawFd, fd: RawFd, payload: &[u8]) -> io::Result<()> {
    let fds = [fd];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(payload)];
    sendmsg::<()>(sock, &iov, &cmsg, MsgFlags::empty(), None)?;
    Ok(())
}

/// Makes the process the leader of a new session without a terminal, as runc does for every
/// container process. A caller that kills the process group (conmon's `--timeout` sends
/// `kill(-pgid)`) must hit the container's processes, never the caller's own group.
pub fn new_session() -> Result<(), ConsoleError> {
    nix::unistd::setsid().map(drop).map_err(|e| io_err("setsid")(e.into()))
}

/// Makes `slave` the controlling terminal of a new session and the process's stdio.
pub fn attach(slave: &OwnedFd) -> Result<(), ConsoleError> {
    new_session()?;
    // SAFETY: TIOCSCTTY takes an int argument by value; 0 means do not steal.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } != 0 {
        return Err(io_err("set controlling terminal")(io::Error::last_os_error()));
    }
    for target in 0..3 {
        // SAFETY: dup2 onto the standard fds; both fds are valid.
        if unsafe { libc::dup2(slave.as_raw_fd(), target) } < 0 {
            return Err(io_err("dup pty onto stdio")(io::Error::last_os_error()));
        }
    }
    Ok(())
}

//! A terminal for a foreground `run` or `exec` with `process.terminal` and no
//! `--console-socket` (a person typing `tally exec -t ID sh`): tally listens on a console
//! socket of its own, takes the pty master the container process sends there, and copies
//! between it and its own stdin/stdout (the caller's terminal set raw meanwhile, its window
//! size passed on) until the process exits. Clients such as containerd and Podman always pass a
//! console socket and never get here.

use std::io::{self, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

use super::foreground::reap;

/// The console socket tally listens on itself, in a private temporary directory.
pub struct LocalConsole {
    dir: PathBuf,
    listener: UnixListener,
}

impl LocalConsole {
    pub fn listen() -> io::Result<Self> {
        let mut template = *b"/tmp/tally-console.XXXXXX\0";
        // SAFETY: mkdtemp rewrites the X's of a NUL-terminated template we own; the directory
        // it makes is 0700.
        if unsafe { libc::mkdtemp(template.as_mut_ptr().cast()) }.is_null() {
            return Err(io::Error::last_os_error());
        }
        let dir = PathBuf::from(std::str::from_utf8(&template[..template.len() - 1]).expect("ASCII template"));
        let listener = UnixListener::bind(dir.join("console.sock")).inspect_err(|_| {
            let _ = std::fs::remove_dir_all(&dir);
        })?;
        Ok(Self { dir, listener })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join("console.sock")
    }

    /// The pty master the container process sent (its connection is already queued).
    pub fn master(&self) -> io::Result<OwnedFd> {
        self.listener.set_nonblocking(true)?;
        let (conn, _) = self.listener.accept()?;
        let mut buf = [0u8; 256];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(conn.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)?;
        for c in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                if let Some(&fd) = fds.first() {
                    // SAFETY: the kernel gave this fd to us alone.
                    return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
        Err(io::Error::other("the console socket carried no pty master"))
    }
}

impl Drop for LocalConsole {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The caller's terminal settings, restored on drop.
struct RawMode {
    fd: RawFd,
    saved: libc::termios,
}

impl RawMode {
    fn enter(fd: RawFd) -> Option<Self> {
        // SAFETY: tcgetattr writes one termios into a zeroed local; isatty only asks.
        unsafe {
            if libc::isatty(fd) != 1 {
                return None;
            }
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(fd, &mut saved) != 0 {
                return None;
            }
            let mut raw = saved;
            libc::cfmakeraw(&mut raw);
            libc::tcsetattr(fd, libc::TCSANOW, &raw);
            Some(Self { fd, saved })
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restores the settings read from the same fd.
        unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved) };
    }
}

fn copy_window_size(from: RawFd, to: RawFd) {
    // SAFETY: TIOCGWINSZ writes one winsize into a zeroed local; TIOCSWINSZ reads it.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(from, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(to, libc::TIOCSWINSZ, &ws);
        }
    }
}

fn read_fd(fd: RawFd, buf: &mut [u8]) -> isize {
    // SAFETY: reads into a live buffer of the given length.
    unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) }
}

fn write_all(fd: RawFd, mut data: &[u8]) {
    while !data.is_empty() {
        // SAFETY: writes from a live buffer of the given length.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n <= 0 {
            return;
        }
        data = &data[n as usize..];
    }
}

/// Copies between stdin/stdout and `master` until `pid` (a child of this process) exits;
/// the signals in `set` (blocked by the caller) are forwarded, SIGWINCH as a new window size.
/// Returns the exit status.
pub fn proxy(master: &OwnedFd, pid: i32, set: &libc::sigset_t) -> i32 {
    let m = master.as_raw_fd();
    let _raw = RawMode::enter(0);
    copy_window_size(0, m);
    // SAFETY: a signalfd for the already-blocked set; the fd is ours alone.
    let sfd = unsafe { libc::signalfd(-1, set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
    // SAFETY: the kernel just returned this fd (or -1, checked first).
    let sfd = (sfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(sfd) });
    let mut stdin_open = true;
    let mut buf = [0u8; 16384];
    let mut status = None;
    loop {
        if status.is_none() {
            status = reap(pid);
        }
        let mut fds = vec![libc::pollfd { fd: m, events: libc::POLLIN, revents: 0 }];
        if let Some(s) = &sfd {
            fds.push(libc::pollfd { fd: s.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        }
        if stdin_open && status.is_none() {
            fds.push(libc::pollfd { fd: 0, events: libc::POLLIN, revents: 0 });
        }
        // Once the process has exited, only what is left in the pty is read, briefly.
        let timeout = if status.is_some() { 100 } else { -1 };
        // SAFETY: fds is a live array of initialised pollfds of the given length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if n == 0 {
            break;
        }
        if n < 0 {
            continue; // EINTR
        }
        for p in &fds {
            if p.revents == 0 {
                continue;
            }
            if p.fd == m {
                let r = read_fd(m, &mut buf);
                if r <= 0 {
                    // EIO: the last holder of the slave is gone; the process has exited or
                    // closed its terminal, and is waited for without more copying.
                    return status.unwrap_or_else(|| wait_for(pid));
                }
                write_all(1, &buf[..r as usize]);
            } else if p.fd == 0 {
                let r = read_fd(0, &mut buf);
                if r <= 0 {
                    stdin_open = false;
                    // End of input: the terminal's end-of-file character, as a keyboard sends.
                    write_all(m, &[4]);
                } else {
                    write_all(m, &buf[..r as usize]);
                }
            } else if let Some(s) = &sfd {
                let mut info: libc::signalfd_siginfo = unsafe_zeroed();
                let size = std::mem::size_of::<libc::signalfd_siginfo>();
                // SAFETY: reads whole siginfo records into a live struct of that size.
                while unsafe { libc::read(s.as_raw_fd(), (&mut info as *mut libc::signalfd_siginfo).cast(), size) }
                    == size as isize
                {
                    match info.ssi_signo as i32 {
                        libc::SIGCHLD => {}
                        libc::SIGWINCH => copy_window_size(0, m),
                        // SAFETY: kill takes a pid and a signal number.
                        sig => unsafe {
                            libc::kill(pid, sig);
                        },
                    }
                }
            }
        }
    }
    status.unwrap_or_else(|| wait_for(pid))
}

fn unsafe_zeroed() -> libc::signalfd_siginfo {
    // SAFETY: signalfd_siginfo is plain old data; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

fn wait_for(pid: i32) -> i32 {
    let mut status = 0;
    // SAFETY: waitpid on our own child writes its status into a live local.
    if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
        return 1;
    }
    if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        libc::WEXITSTATUS(status)
    }
}

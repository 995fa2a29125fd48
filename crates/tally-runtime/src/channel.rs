//! The sync channel between `tally create` and the container's init: a SOCK_SEQPACKET
//! socketpair carrying small tagged messages. Every receive has a timeout, and a closed peer
//! reads as end-of-file, so a failure on either side surfaces as one clear error.

use std::io;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("sync channel: {0}")]
    Io(#[from] io::Error),
    #[error("sync channel: the other side closed the channel")]
    Closed,
    #[error("sync channel: no message within {0:?}")]
    Timeout(Duration),
    #[error("sync channel: malformed message (tag {0})")]
    Malformed(u8),
}

/// Messages, named from the point of view of the process that sends them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// init → runtime: my user namespace exists; write my id maps, then send `Proceed`.
    UserNamespaceReady,
    /// runtime → init: maps written and cgroup joined; go on.
    Proceed,
    /// intermediate → runtime: the init is this host PID (after a fork into a new PID namespace).
    InitPid(i32),
    /// init → runtime: the container is set up and waits for `start`.
    Ready,
    /// runtime → init: the state is saved; wait for `start` and forget the runtime.
    Committed,
    /// init → runtime: setup failed with this message.
    Failed(String),
    /// init → runtime: the namespaces exist and the rootfs is mounted (not yet pivoted): run
    /// the prestart and createRuntime hooks; the runtime answers `InitPid` with the init's
    /// host PID, which the hooks the init runs itself report.
    RuntimeHooks,
    /// init → runtime: the seccomp listener fd travels with this message (SCM_RIGHTS), for
    /// the runtime to pass on to `linux.seccomp.listenerPath`.
    SeccompFd,
}

const MAX_MESSAGE: usize = 8192;

pub struct Channel {
    fd: OwnedFd,
    timeout: Duration,
}

impl Channel {
    /// A connected pair; both ends are close-on-exec so the container's program never sees them.
    pub fn pair(timeout: Duration) -> io::Result<(Channel, Channel)> {
        let mut fds = [0; 2];
        // SAFETY: socketpair writes two fds into the array we pass, which has room for two.
        let rc =
            unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both fds were just created by socketpair and are owned by nobody else.
        let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok((Channel { fd: a, timeout }, Channel { fd: b, timeout }))
    }

    pub fn send(&self, msg: &Message) -> Result<(), ChannelError> {
        let mut buf = Vec::with_capacity(16);
        match msg {
            Message::UserNamespaceReady => buf.push(1),
            Message::Proceed => buf.push(2),
            Message::InitPid(pid) => {
                buf.push(3);
                buf.extend_from_slice(&pid.to_le_bytes());
            }
            Message::Ready => buf.push(4),
            Message::Committed => buf.push(5),
            Message::RuntimeHooks => buf.push(7),
            Message::SeccompFd => buf.push(8),
            Message::Failed(text) => {
                buf.push(6);
                let bytes = text.as_bytes();
                buf.extend_from_slice(&bytes[..bytes.len().min(MAX_MESSAGE - 1)]);
            }
        }
        // SAFETY: buf is a live byte buffer of the length passed; MSG_NOSIGNAL keeps a closed
        // peer from killing us with SIGPIPE.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
        if n < 0 {
            return Err(io::Error::last_os_error().into());
        }
        Ok(())
    }

    pub fn recv(&self) -> Result<Message, ChannelError> {
        self.recv_with_fd().map(|(m, _)| m)
    }

    fn wait_readable(&self) -> Result<(), ChannelError> {
        let mut pfd = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        let ms = self.timeout.as_millis().min(i32::MAX as u128) as i32;
        loop {
            // SAFETY: pfd is one valid pollfd and we pass a count of one.
            let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e.into());
            }
            if rc == 0 {
                return Err(ChannelError::Timeout(self.timeout));
            }
            break;
        }
        Ok(())
    }

    /// Sends `msg` with `fd` attached (SCM_RIGHTS).
    pub fn send_with_fd(&self, msg: &Message, fd: RawFd) -> Result<(), ChannelError> {
        let tag = match msg {
            Message::SeccompFd => [8u8],
            _ => return Err(ChannelError::Malformed(0)),
        };
        let fds = [fd];
        let cmsg = [ControlMessage::ScmRights(&fds)];
        let iov = [IoSlice::new(&tag)];
        sendmsg::<()>(self.fd.as_raw_fd(), &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None).map_err(io::Error::from)?;
        Ok(())
    }

    /// Receives a message and the fd that came with it, if any (waits as `recv` does).
    pub fn recv_with_fd(&self) -> Result<(Message, Option<OwnedFd>), ChannelError> {
        self.wait_readable()?;
        let mut buf = vec![0u8; MAX_MESSAGE];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let (n, fd) = {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let msg = recvmsg::<()>(self.fd.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
                .map_err(io::Error::from)?;
            let mut fd = None;
            for c in msg.cmsgs().map_err(io::Error::from)? {
                if let ControlMessageOwned::ScmRights(fds) = c {
                    for raw in fds {
                        // SAFETY: the kernel installed this fd in our table for us alone.
                        let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                        fd.get_or_insert(owned);
                    }
                }
            }
            (msg.bytes, fd)
        };
        if n == 0 {
            return Err(ChannelError::Closed);
        }
        Ok((decode(&buf[..n])?, fd))
    }

    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }
}

fn decode(b: &[u8]) -> Result<Message, ChannelError> {
    let tag = b[0];
    let rest = &b[1..];
    Ok(match tag {
        1 => Message::UserNamespaceReady,
        2 => Message::Proceed,
        3 => {
            let raw: [u8; 4] = rest.try_into().map_err(|_| ChannelError::Malformed(tag))?;
            Message::InitPid(i32::from_le_bytes(raw))
        }
        4 => Message::Ready,
        5 => Message::Committed,
        6 => Message::Failed(String::from_utf8_lossy(rest).into_owned()),
        7 => Message::RuntimeHooks,
        8 => Message::SeccompFd,
        other => return Err(ChannelError::Malformed(other)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_round_trips() {
        let (a, b) = Channel::pair(Duration::from_secs(1)).unwrap();
        let msgs = [
            Message::UserNamespaceReady,
            Message::Proceed,
            Message::InitPid(4242),
            Message::Ready,
            Message::Committed,
            Message::Failed("mount /proc: permission denied".into()),
            Message::RuntimeHooks,
            Message::SeccompFd,
        ];
        for m in &msgs {
            a.send(m).unwrap();
            assert_eq!(&b.recv().unwrap(), m);
        }
    }

    #[test]
    fn an_fd_travels_with_its_message() {
        let (a, b) = Channel::pair(Duration::from_secs(1)).unwrap();
        let file = std::fs::File::open("/proc/self/status").unwrap();
        a.send_with_fd(&Message::SeccompFd, file.as_raw_fd()).unwrap();
        let (msg, fd) = b.recv_with_fd().unwrap();
        assert_eq!(msg, Message::SeccompFd);
        let fd = fd.expect("an fd arrived");
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::fs::File::from(fd), &mut text).unwrap();
        assert!(text.contains("Name:"));
    }

    #[test]
    fn closed_peer_and_timeout_are_errors() {
        let (a, b) = Channel::pair(Duration::from_millis(20)).unwrap();
        assert!(matches!(b.recv(), Err(ChannelError::Timeout(_))));
        drop(a);
        assert!(matches!(b.recv(), Err(ChannelError::Closed)));
    }
}

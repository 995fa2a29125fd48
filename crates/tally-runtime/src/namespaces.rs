//! Which namespaces a container gets: created new (clone/unshare flags) or joined by path
//! (setns). Paths are opened and their type checked in the runtime, before any process
//! exists, so a wrong path is an error with nothing to undo.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Linux, LinuxNamespaceType};

#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error("linux.namespaces: {kind} namespace path {path}: {source}")]
    Open { kind: &'static str, path: PathBuf, source: io::Error },
    #[error("linux.namespaces: {path} is a {actual} namespace, not a {kind} namespace")]
    WrongType { kind: &'static str, path: PathBuf, actual: &'static str },
    #[error("linux.namespaces: {0} namespaces are not supported by this kernel")]
    Unsupported(&'static str),
    #[error("setns into the {kind} namespace: {source}")]
    Setns { kind: &'static str, source: io::Error },
    #[error("setns into the container's namespaces (flags {flags:#x}) through its init's pidfd: {source}")]
    Join { flags: i32, source: io::Error },
    #[error("unshare namespaces {flags:#x}: {source}")]
    Unshare { flags: i32, source: io::Error },
}

/// CLONE_NEWTIME: not in every libc release, and only usable with unshare (its bit is the
/// exit-signal byte of clone(2)).
pub const CLONE_NEWTIME: i32 = 0x80;

pub fn name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mount",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "network",
        LinuxNamespaceType::Time => "time",
    }
}

fn flag(t: LinuxNamespaceType) -> i32 {
    match t {
        LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
        LinuxNamespaceType::User => libc::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
        LinuxNamespaceType::Network => libc::CLONE_NEWNET,
        LinuxNamespaceType::Time => CLONE_NEWTIME,
    }
}

fn name_of_flag(f: i32) -> &'static str {
    match f {
        libc::CLONE_NEWNS => "mount",
        libc::CLONE_NEWCGROUP => "cgroup",
        libc::CLONE_NEWUTS => "uts",
        libc::CLONE_NEWIPC => "ipc",
        libc::CLONE_NEWUSER => "user",
        libc::CLONE_NEWPID => "pid",
        libc::CLONE_NEWNET => "network",
        CLONE_NEWTIME => "time",
        _ => "unknown",
    }
}

/// A namespace to join, already opened.
pub struct Join {
    pub kind: LinuxNamespaceType,
    pub fd: OwnedFd,
}

/// The namespace plan for one container.
pub struct Plan {
    /// Namespaces to create, as CLONE_NEW* flags (time and cgroup included).
    pub new: i32,
    /// Namespaces to join, user first.
    pub joins: Vec<Join>,
}

impl Plan {
    pub fn from_spec(linux: &Linux) -> Result<Self, NamespaceError> {
        let mut new = 0;
        let mut joins = Vec::new();
        for ns in linux.namespaces().iter().flatten() {
            let kind = ns.typ();
            if kind == LinuxNamespaceType::Time && !Path::new("/proc/self/ns/time").exists() {
                return Err(NamespaceError::Unsupported("time"));
            }
            match ns.path() {
                None => new |= flag(kind),
                Some(path) => joins.push(Join { kind, fd: open_checked(kind, path)? }),
            }
        }
        // Joining the user namespace first gives the capabilities needed to join the
        // namespaces it owns.
        joins.sort_by_key(|j| j.kind != LinuxNamespaceType::User);
        Ok(Self { new, joins })
    }

    pub fn creates(&self, kind: LinuxNamespaceType) -> bool {
        self.new & flag(kind) != 0
    }

    pub fn joins(&self, kind: LinuxNamespaceType) -> bool {
        self.joins.iter().any(|j| j.kind == kind)
    }

    /// Flags for the clone that starts the container process. When nothing is joined, every
    /// namespace except cgroup and time is created by clone itself, so one process suffices.
    /// Cgroup waits until the process is in its cgroup (the namespace's root is the cgroup
    /// at unshare time); time can only be unshared.
    pub fn clone_flags(&self) -> i32 {
        if self.joins.is_empty() {
            self.new & !(libc::CLONE_NEWCGROUP | CLONE_NEWTIME)
        } else {
            0
        }
    }

    /// True when the process that clone created must fork once more to become the init:
    /// a PID namespace entered after clone (joined or unshared) applies only to children.
    pub fn needs_second_fork(&self) -> bool {
        !self.joins.is_empty() && (self.creates(LinuxNamespaceType::Pid) || self.joins(LinuxNamespaceType::Pid))
    }
}

fn open_checked(kind: LinuxNamespaceType, path: &Path) -> Result<OwnedFd, NamespaceError> {
    let kname = name(kind);
    let file = File::open(path).map_err(|source| NamespaceError::Open { kind: kname, path: path.into(), source })?;
    // NS_GET_NSTYPE = _IO(0xb7, 0x3): the CLONE_NEW* flag of the namespace behind the fd.
    const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
    // SAFETY: the ioctl takes no argument and only reads the fd's namespace type.
    let actual = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE) };
    if actual < 0 {
        return Err(NamespaceError::WrongType { kind: kname, path: path.into(), actual: "not a namespace, it" });
    }
    if actual != flag(kind) {
        return Err(NamespaceError::WrongType { kind: kname, path: path.into(), actual: name_of_flag(actual) });
    }
    Ok(file.into())
}

/// setns(2) into every joined namespace, user first (runs in the container process).
pub fn join_all(joins: &[Join]) -> Result<(), NamespaceError> {
    for j in joins {
        // SAFETY: setns takes an fd we own and a namespace-type constant.
        if unsafe { libc::setns(j.fd.as_raw_fd(), flag(j.kind)) } != 0 {
            return Err(NamespaceError::Setns { kind: name(j.kind), source: io::Error::last_os_error() });
        }
    }
    Ok(())
}

pub fn unshare(flags: i32) -> Result<(), NamespaceError> {
    if flags == 0 {
        return Ok(());
    }
    // SAFETY: unshare only takes a flag set; tally is single-threaded when it calls it.
    if unsafe { libc::unshare(flags) } != 0 {
        return Err(NamespaceError::Unshare { flags, source: io::Error::last_os_error() });
    }
    Ok(())
}

/// Every namespace kind a process can join, with its /proc/<pid>/ns entry. `pid` and `time`
/// take the active namespace, not the one for children.
const JOINABLE: &[(&str, i32)] = &[
    ("user", libc::CLONE_NEWUSER),
    ("mnt", libc::CLONE_NEWNS),
    ("uts", libc::CLONE_NEWUTS),
    ("ipc", libc::CLONE_NEWIPC),
    ("net", libc::CLONE_NEWNET),
    ("pid", libc::CLONE_NEWPID),
    ("cgroup", libc::CLONE_NEWCGROUP),
    ("time", CLONE_NEWTIME),
];

/// The CLONE_NEW* flags of the namespaces `pid` is in that this process is not: what a
/// process joining the container must enter. Joining one's own user namespace is EINVAL, so
/// comparing rather than joining everything is required, not only cheaper.
pub fn differing(pid: i32) -> io::Result<i32> {
    use std::os::unix::fs::MetadataExt;
    let mut flags = 0;
    for (entry, flag) in JOINABLE {
        let theirs = match std::fs::metadata(format!("/proc/{pid}/ns/{entry}")) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound && *entry == "time" => continue,
            Err(e) => return Err(e),
        };
        let ours = std::fs::metadata(format!("/proc/self/ns/{entry}"))?;
        if (theirs.dev(), theirs.ino()) != (ours.dev(), ours.ino()) {
            flags |= flag;
        }
    }
    Ok(flags)
}

/// setns(2) through a pidfd: all of `flags` at once, in the order the kernel needs (user
/// first), as one step that either joins them all or none.
pub fn join_process(pidfd: &OwnedFd, flags: i32) -> Result<(), NamespaceError> {
    if flags == 0 {
        return Ok(());
    }
    // SAFETY: setns takes an fd we own and a set of namespace flags.
    if unsafe { libc::setns(pidfd.as_raw_fd(), flags) } != 0 {
        return Err(NamespaceError::Join { flags, source: io::Error::last_os_error() });
    }
    Ok(())
}

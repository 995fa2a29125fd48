//! The container's process: its program (found at `create`, so a typo is an error there and
//! not a dead container later), environment, working directory, user and groups, umask and
//! the fds it inherits.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Process, User};

use crate::sys;

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("process.args[0]: {0:?}: executable file not found in $PATH")]
    NotInPath(String),
    #[error("process.args[0]: {path}: {message}")]
    NotExecutable { path: PathBuf, message: String },
    #[error("process.cwd {path}: {source}")]
    Cwd { path: PathBuf, source: io::Error },
    #[error("process.user: {op}: {source}")]
    Identity { op: String, source: io::Error },
    #[error("{field}: contains a NUL byte")]
    Nul { field: &'static str },
    #[error("--preserve-fds: {0}")]
    Fds(io::Error),
    #[error("--preserve-fds {count}: more than the open-file limit allows ({max} at most)")]
    TooManyFds { count: u32, max: u64 },
    #[error("exec {path}: {source}")]
    Exec { path: PathBuf, source: io::Error },
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A program ready for execve.
pub struct Program {
    path: CString,
    display: PathBuf,
    args: Vec<CString>,
    env: Vec<CString>,
}

fn cstrings(items: &[String], field: &'static str) -> Result<Vec<CString>, ProcessError> {
    items.iter().map(|s| CString::new(s.as_bytes()).map_err(|_| ProcessError::Nul { field })).collect()
}

/// Resolves the program inside the (already entered) container root and builds execve's
/// arguments. HOME is added from the container's /etc/passwd when the config lacks it.
pub fn prepare(process: &Process) -> Result<Program, ProcessError> {
    let args = process.args().clone().unwrap_or_default();
    let mut env = process.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", home_of(process.user().uid())));
    }
    let path_var = env.iter().find_map(|e| e.strip_prefix("PATH=")).unwrap_or(DEFAULT_PATH).to_string();
    let user = process.user();
    let groups = user.additional_gids().clone().unwrap_or_default();
    let who = Runner { uid: user.uid(), gid: user.gid(), groups: &groups };
    let display = find_executable(&args[0], &path_var, who)?;
    Ok(Program {
        path: CString::new(display.as_os_str().as_bytes()).map_err(|_| ProcessError::Nul { field: "process.args" })?,
        display,
        args: cstrings(&args, "process.args")?,
        env: cstrings(&env, "process.env")?,
    })
}

/// Who will run the program: execve's permission check is made against these ids, not
/// against the root that resolves the program at `create`.
#[derive(Debug, Clone, Copy)]
pub struct Runner<'a> {
    pub uid: u32,
    pub gid: u32,
    pub groups: &'a [u32],
}

impl Runner<'_> {
    pub const ROOT: Runner<'static> = Runner { uid: 0, gid: 0, groups: &[] };
}

/// The reasons use runc's wording classes (`no such file or directory`, `permission denied`):
/// Podman and containerd map them to exit codes 127 and 126.
fn is_executable(p: &Path, who: Runner) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let md = fs::metadata(p).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => "no such file or directory".to_string(),
        io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string().to_lowercase(),
    })?;
    if md.is_dir() {
        // execve gives EACCES for a directory, and so does runc's lookup.
        return Err("permission denied (is a directory)".into());
    }
    let mode = md.mode();
    let bits = if who.uid == 0 {
        mode & 0o111
    } else if md.uid() == who.uid {
        mode & 0o100
    } else if md.gid() == who.gid || who.groups.contains(&md.gid()) {
        mode & 0o010
    } else {
        mode & 0o001
    };
    if bits == 0 {
        return Err(format!("permission denied (mode {:04o}, uid {}, gid {})", mode & 0o7777, who.uid, who.gid));
    }
    if nix::sys::statvfs::statvfs(p).is_ok_and(|v| v.flags().contains(nix::sys::statvfs::FsFlags::ST_NOEXEC)) {
        return Err("permission denied (on a noexec mount)".into());
    }
    Ok(())
}

pub fn find_executable(name: &str, path_var: &str, who: Runner) -> Result<PathBuf, ProcessError> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return is_executable(&p, who)
            .map(|()| p.clone())
            .map_err(|message| ProcessError::NotExecutable { path: p, message });
    }
    path_var
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| is_executable(p, who).is_ok())
        .ok_or_else(|| ProcessError::NotInPath(name.to_string()))
}

fn home_of(uid: u32) -> String {
    // The container's file: at most 1 MiB of it (it may be a link to /dev/zero).
    use std::io::Read;
    let mut text = String::new();
    let read = fs::File::open("/etc/passwd").and_then(|f| f.take(1 << 20).read_to_string(&mut text));
    read.ok()
        .map(|_| text)
        .and_then(|p| {
            p.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() >= 6 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[5].to_string())
            })
        })
        .unwrap_or_else(|| "/".into())
}

pub fn chdir(cwd: &Path) -> Result<(), ProcessError> {
    std::env::set_current_dir(cwd).map_err(|source| ProcessError::Cwd { path: cwd.into(), source })
}

/// Groups, then gid, then uid: once the uid changes, the right to change the others is gone.
pub fn set_identity(user: &User) -> Result<(), ProcessError> {
    let err = |op: &str| {
        let source = io::Error::last_os_error();
        ProcessError::Identity { op: op.to_string(), source }
    };
    let groups: Vec<libc::gid_t> = user.additional_gids().clone().unwrap_or_default();
    // A user namespace whose gid_map an unprivileged caller wrote itself has setgroups denied
    // (the kernel's condition for that write): the process keeps no supplementary groups of the
    // host's anyway (they map to nobody), and only asked-for groups are an error, as in runc.
    let denied = std::fs::read_to_string("/proc/self/setgroups").is_ok_and(|s| s.trim() == "deny");
    if denied && !groups.is_empty() {
        return Err(ProcessError::Identity {
            op: format!("process.user.additionalGids {groups:?}"),
            source: io::Error::other(
                "setgroups is denied in this user namespace (a rootless container that maps only the caller's own \
                 gid); map the groups through linux.gidMappings ranges (newgidmap) instead",
            ),
        });
    }
    // SAFETY: the pointer and length describe a live Vec of gid_t.
    if !denied && unsafe { libc::setgroups(groups.len(), groups.as_ptr()) } != 0 {
        return Err(err(&format!("setgroups {groups:?}")));
    }
    let (uid, gid) = (user.uid(), user.gid());
    // SAFETY: setresgid/setresuid take plain ids.
    if unsafe { libc::setresgid(gid, gid, gid) } != 0 {
        return Err(err(&format!("setgid {gid}")));
    }
    // SAFETY: as above.
    if unsafe { libc::setresuid(uid, uid, uid) } != 0 {
        return Err(err(&format!("setuid {uid}")));
    }
    // runc's default when the config has none: 0022, not whatever the caller had.
    let mask = user.umask().unwrap_or(0o022);
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(mask as libc::mode_t) };
    Ok(())
}

/// The caller's fds 3..3+n (`--preserve-fds n`) as they were when tally started. A number in
/// that range the caller did not pass is held by a placeholder (/dev/null, close-on-exec), so
/// no fd tally opens later (its log, the state directory, the sync channel) can land there and
/// be handed to the container; placeholders are closed before exec.
#[derive(Debug, Clone, Default)]
pub struct Preserved {
    count: u32,
    placeholders: Vec<RawFd>,
}

impl Preserved {
    /// Must run before tally opens anything.
    pub fn claim(count: u32) -> Result<Preserved, ProcessError> {
        let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes one rlimit struct into a live local.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) };
        let max = rl.rlim_cur.saturating_sub(3).min(1 << 20);
        if u64::from(count) > max {
            return Err(ProcessError::TooManyFds { count, max });
        }
        let mut placeholders = Vec::new();
        for fd in 3..3 + count as RawFd {
            // SAFETY: F_GETFD only reads the flags of a possibly-closed fd.
            if unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0 {
                continue;
            }
            // SAFETY: open of a constant path; dup3 onto a free fd number; close of our own fd.
            unsafe {
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
                if null < 0 {
                    return Err(ProcessError::Fds(io::Error::last_os_error()));
                }
                if null != fd {
                    let r = libc::dup3(null, fd, libc::O_CLOEXEC);
                    libc::close(null);
                    if r < 0 {
                        return Err(ProcessError::Fds(io::Error::last_os_error()));
                    }
                }
            }
            placeholders.push(fd);
        }
        Ok(Preserved { count, placeholders })
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    /// The first fd number above the preserved range.
    pub fn end(&self) -> u32 {
        3 + self.count
    }
}

/// Keeps the caller's preserved fds open across exec, closes the placeholders, and marks
/// everything else tally still holds close-on-exec.
pub fn limit_inherited_fds(preserved: &Preserved) -> Result<(), ProcessError> {
    for fd in 3..preserved.end() as RawFd {
        if preserved.placeholders.contains(&fd) {
            // SAFETY: closes a placeholder this process made.
            unsafe { libc::close(fd) };
        } else {
            // SAFETY: F_SETFD on one of the caller's fds only clears its close-on-exec flag.
            unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
        }
    }
    sys::cloexec_from(preserved.end()).map_err(ProcessError::Fds)
}

/// A signal mask and ignored signals survive execve: the Rust runtime ignores SIGPIPE at
/// startup, and the program must not inherit that (nor any blocked signal).
pub fn reset_signals() {
    // SAFETY: an empty, initialised set; signal() with SIG_DFL on every catchable signal
    // installs no handler code.
    unsafe {
        for sig in 1..=libc::SIGRTMAX() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
}

impl Program {
    /// Replaces this process with the program. Returns only on failure.
    pub fn exec(&self) -> ProcessError {
        let argv: Vec<*const libc::c_char> = self.args.iter().map(|a| a.as_ptr()).chain([std::ptr::null()]).collect();
        let envp: Vec<*const libc::c_char> = self.env.iter().map(|e| e.as_ptr()).chain([std::ptr::null()]).collect();
        // SAFETY: path, argv and envp are NUL-terminated arrays of valid C strings that live
        // until execve returns (it only returns on failure).
        unsafe { libc::execve(self.path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        ProcessError::Exec { path: self.display.clone(), source: io::Error::last_os_error() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn finds_programs_in_path_and_refuses_others() {
        let root = Runner::ROOT;
        assert_eq!(find_executable("sh", "/nonexistent:/bin", root).unwrap(), PathBuf::from("/bin/sh"));
        assert!(matches!(find_executable("no-such-program-x", "/bin", root), Err(ProcessError::NotInPath(_))));
        let reason = |name: &str, who: Runner| match find_executable(name, "/bin", who) {
            Err(ProcessError::NotExecutable { message, .. }) => message,
            other => panic!("{name}: {other:?}"),
        };
        assert!(reason("/etc/passwd", root).starts_with("permission denied"));
        assert!(reason("/bin", root).starts_with("permission denied"), "a directory");
        assert_eq!(reason("/no/such/program", root), "no such file or directory");
    }

    #[test]
    fn the_permission_check_is_the_runners_not_roots() {
        let dir = std::env::temp_dir().join(format!("tally-exec-perm-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let prog = dir.join("owner-only");
        fs::write(&prog, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&prog, fs::Permissions::from_mode(0o700)).unwrap();
        let name = prog.to_str().unwrap();
        assert!(find_executable(name, "", Runner::ROOT).is_ok());
        let other = Runner { uid: 4242, gid: 4242, groups: &[] };
        assert!(matches!(find_executable(name, "", other), Err(ProcessError::NotExecutable { .. })));
        fs::set_permissions(&prog, fs::Permissions::from_mode(0o701)).unwrap();
        assert!(find_executable(name, "", other).is_ok());
        fs::remove_dir_all(&dir).unwrap();
    }
}

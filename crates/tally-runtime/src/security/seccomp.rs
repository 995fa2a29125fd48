//! `linux.seccomp` through libseccomp. The filter is compiled by the runtime before the
//! container process exists (so a bad profile is an error at `create`, with nothing to undo),
//! and loaded by the container process: right before exec when noNewPrivileges is set (as late
//! as possible), or before the capabilities are dropped when it is not (loading a filter then
//! needs CAP_SYS_ADMIN).
//!
//! Compiling a large profile (Docker's default has ~350 syscalls) costs milliseconds on every
//! `create`, though containers of one host mostly share a handful of profiles. So the BPF
//! program libseccomp produces is cached in the state root, keyed by the profile itself, and a
//! cache hit loads the program with seccomp(2) directly.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::{self, Read, Seek, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterAttr, ScmpFilterContext, ScmpSyscall};
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator, LinuxSyscall};

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("linux.seccomp.{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("linux.seccomp: {op}: {message}")]
    Libseccomp { op: String, message: String },
}

fn lib(op: impl Into<String>) -> impl FnOnce(libseccomp::error::SeccompError) -> SeccompError {
    let op = op.into();
    move |e| SeccompError::Libseccomp { op, message: e.to_string() }
}

/// A compiled filter, ready to load in the container process.
pub enum Filter {
    Compiled {
        ctx: ScmpFilterContext,
        notify: bool,
    },
    /// A BPF program from the cache, with the seccomp(2) flags the profile asks for.
    Cached {
        program: Vec<u8>,
        flags: libc::c_ulong,
        notify: bool,
    },
}

/// Whether any rule hands syscalls to a user-space listener (SCMP_ACT_NOTIFY).
pub fn uses_notify(cfg: &LinuxSeccomp) -> bool {
    cfg.syscalls().iter().flatten().any(|s| s.action() == LinuxSeccompAction::ScmpActNotify)
}

fn action(a: LinuxSeccompAction, errno_ret: Option<u32>, field: &str) -> Result<ScmpAction, SeccompError> {
    use LinuxSeccompAction::*;
    Ok(match a {
        ScmpActKill | ScmpActKillThread => ScmpAction::KillThread,
        ScmpActKillProcess => ScmpAction::KillProcess,
        ScmpActTrap => ScmpAction::Trap,
        ScmpActErrno => ScmpAction::Errno(errno_ret.unwrap_or(libc::EPERM as u32) as i32),
        ScmpActTrace => ScmpAction::Trace(errno_ret.unwrap_or(libc::EPERM as u32) as u16),
        ScmpActLog => ScmpAction::Log,
        ScmpActAllow => ScmpAction::Allow,
        ScmpActNotify if field == "defaultAction" => {
            return Err(SeccompError::Invalid {
                field: field.to_string(),
                message: "SCMP_ACT_NOTIFY cannot be the default action".into(),
            })
        }
        ScmpActNotify => ScmpAction::Notify,
    })
}

fn compare(index: usize, op: LinuxSeccompOperator, value: u64, value_two: Option<u64>) -> ScmpArgCompare {
    use LinuxSeccompOperator::*;
    let index = index as u32;
    match op {
        ScmpCmpNe => ScmpArgCompare::new(index, ScmpCompareOp::NotEqual, value),
        ScmpCmpLt => ScmpArgCompare::new(index, ScmpCompareOp::Less, value),
        ScmpCmpLe => ScmpArgCompare::new(index, ScmpCompareOp::LessOrEqual, value),
        ScmpCmpEq => ScmpArgCompare::new(index, ScmpCompareOp::Equal, value),
        ScmpCmpGe => ScmpArgCompare::new(index, ScmpCompareOp::GreaterEqual, value),
        ScmpCmpGt => ScmpArgCompare::new(index, ScmpCompareOp::Greater, value),
        // The spec's masked-eq compares (arg & value) == valueTwo.
        ScmpCmpMaskedEq => ScmpArgCompare::new(index, ScmpCompareOp::MaskedEqual(value), value_two.unwrap_or(0)),
    }
}

/// Compiles the profile. Unknown syscall names are skipped (debug log), as runc does, because
/// profiles list syscalls of newer kernels and other architectures.
pub fn compile(cfg: &LinuxSeccomp) -> Result<Filter, SeccompError> {
    if uses_notify(cfg) && cfg.listener_path().is_none() {
        return Err(SeccompError::Invalid {
            field: "listenerPath".into(),
            message: "is required when a rule uses SCMP_ACT_NOTIFY".into(),
        });
    }
    let default = action(cfg.default_action(), cfg.default_errno_ret(), "defaultAction")?;
    let mut ctx = ScmpFilterContext::new(default).map_err(lib("create filter"))?;
    // libseccomp sets no_new_privs itself when it loads a filter unless told not to; whether
    // the process gets it is process.noNewPrivileges' business.
    ctx.set_filter_attr(ScmpFilterAttr::CtlNnp, 0).map_err(lib("leave no_new_privs to the config"))?;
    for (i, arch) in cfg.architectures().iter().flatten().enumerate() {
        let name = serde_json::to_value(arch).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
        let a: ScmpArch = name.parse().map_err(|_| SeccompError::Invalid {
            field: format!("architectures[{i}]"),
            message: format!("{name} is not known to libseccomp"),
        })?;
        ctx.add_arch(a).map_err(lib(format!("add architecture {name}")))?;
    }
    for flag in cfg.flags().iter().flatten() {
        let (attr, name) = match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => (ScmpFilterAttr::CtlLog, "SECCOMP_FILTER_FLAG_LOG"),
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => (ScmpFilterAttr::CtlTsync, "SECCOMP_FILTER_FLAG_TSYNC"),
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                (ScmpFilterAttr::CtlSsb, "SECCOMP_FILTER_FLAG_SPEC_ALLOW")
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                (ScmpFilterAttr::CtlWaitkill, "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV")
            }
        };
        ctx.set_filter_attr(attr, 1)
            .map_err(lib(format!("flag {name} (not supported by this kernel or libseccomp)")))?;
    }
    for (i, sc) in cfg.syscalls().iter().flatten().enumerate() {
        add_syscall_rules(&mut ctx, i, sc, default)?;
    }
    Ok(Filter::Compiled { ctx, notify: uses_notify(cfg) })
}

fn add_syscall_rules(
    ctx: &mut ScmpFilterContext,
    i: usize,
    sc: &LinuxSyscall,
    default: ScmpAction,
) -> Result<(), SeccompError> {
    let act = action(sc.action(), sc.errno_ret(), &format!("syscalls[{i}].action"))?;
    // libseccomp refuses a rule whose action is the default one; such a rule changes nothing.
    if act == default {
        return Ok(());
    }
    let args = sc.args().clone().unwrap_or_default();
    for a in &args {
        if a.index() > 5 {
            return Err(SeccompError::Invalid {
                field: format!("syscalls[{i}].args"),
                message: format!("index {} is out of range (a syscall has 6 arguments, 0-5)", a.index()),
            });
        }
    }
    let conditions: Vec<ScmpArgCompare> =
        args.iter().map(|a| compare(a.index(), a.op(), a.value(), a.value_two())).collect();
    // libseccomp takes each argument at most once per rule; several comparisons of one
    // argument become one rule each (any of them matches), as runc does.
    let mut indices: Vec<usize> = args.iter().map(|a| a.index()).collect();
    indices.sort_unstable();
    let repeated = indices.windows(2).any(|w| w[0] == w[1]);
    for name in sc.names() {
        let Ok(syscall) = ScmpSyscall::from_name(name) else {
            tracing::debug!("linux.seccomp.syscalls[{i}]: syscall {name} is unknown here; skipped");
            continue;
        };
        let what = || format!("syscalls[{i}] rule for {name}");
        if conditions.is_empty() {
            ctx.add_rule(act, syscall).map_err(lib(what()))?;
        } else if repeated {
            for c in &conditions {
                ctx.add_rule_conditional(act, syscall, std::slice::from_ref(c)).map_err(lib(what()))?;
            }
        } else {
            ctx.add_rule_conditional(act, syscall, &conditions).map_err(lib(what()))?;
        }
    }
    Ok(())
}

impl Filter {
    pub fn notify(&self) -> bool {
        match self {
            Filter::Compiled { notify, .. } | Filter::Cached { notify, .. } => *notify,
        }
    }

    /// Installs the filter on the calling process (irreversible). With notify rules, returns
    /// the listener fd the kernel made for it.
    pub fn load(&self) -> Result<Option<OwnedFd>, SeccompError> {
        match self {
            Filter::Compiled { ctx, notify } => {
                ctx.load().map_err(lib("load filter"))?;
                if !notify {
                    return Ok(None);
                }
                let fd = ctx.get_notify_fd().map_err(lib("get the notify fd"))?;
                // The fd belongs to the filter context; hand out a copy of our own.
                // SAFETY: fcntl duplicates a valid fd; the result is new and unowned.
                let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
                if dup < 0 {
                    let message = io::Error::last_os_error().to_string();
                    return Err(SeccompError::Libseccomp { op: "dup notify fd".into(), message });
                }
                // SAFETY: dup is a fresh fd nothing else owns.
                Ok(Some(unsafe { OwnedFd::from_raw_fd(dup) }))
            }
            Filter::Cached { program, flags, notify } => {
                let flags = if *notify { flags | libc::SECCOMP_FILTER_FLAG_NEW_LISTENER } else { *flags };
                let fd = load_bpf(program, flags)?;
                // SAFETY: with NEW_LISTENER, seccomp(2) returned a new fd nothing else owns.
                Ok(notify.then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) }))
            }
        }
    }
}

/// The seccomp(2) flags of the profile, for loading a cached program without libseccomp.
fn syscall_flags(cfg: &LinuxSeccomp) -> libc::c_ulong {
    const TSYNC: libc::c_ulong = 1;
    const LOG: libc::c_ulong = 2;
    const SPEC_ALLOW: libc::c_ulong = 4;
    const WAIT_KILLABLE_RECV: libc::c_ulong = 32;
    cfg.flags().iter().flatten().fold(0, |acc, f| {
        acc | match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => SPEC_ALLOW,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => WAIT_KILLABLE_RECV,
        }
    })
}

fn load_bpf(program: &[u8], flags: libc::c_ulong) -> Result<libc::c_long, SeccompError> {
    let prog = libc::sock_fprog {
        len: (program.len() / std::mem::size_of::<libc::sock_filter>()) as u16,
        filter: program.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: prog points to `program`, a whole number of sock_filter structs that the kernel
    // only reads, and both outlive the call.
    let rc = unsafe {
        libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, flags, &prog as *const libc::sock_fprog)
    };
    if rc < 0 {
        let message = io::Error::last_os_error().to_string();
        return Err(SeccompError::Libseccomp { op: "load cached filter".into(), message });
    }
    Ok(rc)
}

/// The spec's names for what `features` reports.
pub const ACTIONS: &[&str] = &[
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_TRAP",
];
pub const OPERATORS: &[&str] =
    &["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"];
pub const KNOWN_FLAGS: &[(&str, libc::c_ulong)] = &[
    ("SECCOMP_FILTER_FLAG_TSYNC", 1),
    ("SECCOMP_FILTER_FLAG_LOG", 2),
    ("SECCOMP_FILTER_FLAG_SPEC_ALLOW", 4),
    ("SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV", 32),
];

/// The libseccomp architectures the spec names that the libseccomp crate can name (its
/// `ScmpArch` parser, a fixed table of the architectures libseccomp 2.5 supports).
/// The libseccomp tally is linked with, as `major.minor.micro`.
pub fn library_version() -> String {
    libseccomp::ScmpVersion::current()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
        .unwrap_or_else(|_| "unknown".into())
}

pub fn architectures() -> Vec<&'static str> {
    const ALL: &[&str] = &[
        "SCMP_ARCH_X86",
        "SCMP_ARCH_X86_64",
        "SCMP_ARCH_X32",
        "SCMP_ARCH_ARM",
        "SCMP_ARCH_AARCH64",
        "SCMP_ARCH_MIPS",
        "SCMP_ARCH_MIPS64",
        "SCMP_ARCH_MIPS64N32",
        "SCMP_ARCH_MIPSEL",
        "SCMP_ARCH_MIPSEL64",
        "SCMP_ARCH_MIPSEL64N32",
        "SCMP_ARCH_PPC",
        "SCMP_ARCH_PPC64",
        "SCMP_ARCH_PPC64LE",
        "SCMP_ARCH_RISCV64",
        "SCMP_ARCH_S390",
        "SCMP_ARCH_S390X",
        "SCMP_ARCH_PARISC",
        "SCMP_ARCH_PARISC64",
    ];
    ALL.iter().copied().filter(|a| a.parse::<ScmpArch>().is_ok()).collect()
}

/// The filter flags the running kernel accepts: seccomp(2) with a null program fails with
/// EFAULT when it understood the flags and EINVAL when it did not (runc's probe).
pub fn supported_flags() -> Vec<&'static str> {
    KNOWN_FLAGS
        .iter()
        .filter(|(_, flag)| {
            // SAFETY: a null program pointer makes the kernel fail the call after checking the
            // flags; nothing is installed.
            let rc = unsafe { libc::syscall(libc::SYS_seccomp, 1 as libc::c_ulong, *flag, std::ptr::null::<u8>()) };
            rc < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EFAULT)
        })
        .map(|(name, _)| *name)
        .collect()
}

/// Entries kept in the cache; the oldest go first.
const CACHE_ENTRIES: usize = 64;

/// `compile`, through the cache in `cache_dir`: a hit skips libseccomp's compiler.
pub fn compile_cached(cfg: &LinuxSeccomp, cache_dir: &Path) -> Result<Filter, SeccompError> {
    let key = serde_json::to_vec(cfg).expect("profile serializes");
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (env!("CARGO_PKG_VERSION"), std::env::consts::ARCH, &key).hash(&mut h);
    let path = cache_dir.join(format!("{:016x}.bpf", h.finish()));
    // The stored profile is compared too: a hash collision may cost a compile, never a wrong
    // filter.
    if let Some(program) = read_entry(&path, &key) {
        if !program.is_empty() && program.len() % std::mem::size_of::<libc::sock_filter>() == 0 {
            return Ok(Filter::Cached { program, flags: syscall_flags(cfg), notify: uses_notify(cfg) });
        }
    }
    let filter = compile(cfg)?;
    if let Filter::Compiled { ctx, .. } = &filter {
        // A cache that cannot be written only costs the next create a compile.
        if let Err(e) = export(ctx).and_then(|program| write_entry(cache_dir, &path, &key, &program)) {
            tracing::debug!("seccomp cache {}: {e}", path.display());
        }
    }
    Ok(filter)
}

/// An entry: the profile's length (8 bytes, little-endian), the profile, the BPF program.
fn read_entry(path: &Path, key: &[u8]) -> Option<Vec<u8>> {
    let data = fs::read(path).ok()?;
    let len = u64::from_le_bytes(data.get(..8)?.try_into().ok()?) as usize;
    let stored = data.get(8..8usize.checked_add(len)?)?;
    (stored == key).then(|| data[8 + len..].to_vec())
}

fn write_entry(dir: &Path, path: &Path, key: &[u8], program: &[u8]) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let mut entries: Vec<_> = fs::read_dir(dir)?.filter_map(|e| e.ok()).collect();
    if entries.len() >= CACHE_ENTRIES {
        entries.sort_by_key(|e| e.metadata().and_then(|m| m.modified()).ok());
        for e in &entries[..entries.len() + 1 - CACHE_ENTRIES] {
            let _ = fs::remove_file(e.path());
        }
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = fs::File::create(&tmp)?;
    f.write_all(&(key.len() as u64).to_le_bytes())?;
    f.write_all(key)?;
    f.write_all(program)?;
    fs::rename(&tmp, path)
}

/// libseccomp 2.5 exports only to an fd: a memfd, read back.
fn export(ctx: &ScmpFilterContext) -> io::Result<Vec<u8>> {
    let name = c"tally-seccomp";
    // SAFETY: name is a valid C string; memfd_create returns a new fd or -1.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the fd was just created and nothing else owns it.
    let mut file = unsafe { fs::File::from_raw_fd(fd) };
    ctx.export_bpf(&file).map_err(|e| io::Error::other(e.to_string()))?;
    file.seek(io::SeekFrom::Start(0))?;
    let mut program = Vec::new();
    file.read_to_end(&mut program)?;
    Ok(program)
}

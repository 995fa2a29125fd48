//! The container process's privileges and limits, applied in the order the kernel requires:
//! rlimits and oom_score_adj while the process still holds every capability, the bounding set
//! dropped before the user switch, the remaining sets after it (keep-caps in between), and
//! no_new_privs last before exec.

pub mod capabilities;
pub mod lsm;
pub mod rlimits;
pub mod sealed_exe;
pub mod seccomp;
pub mod sysctl;

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error(transparent)]
    Capabilities(#[from] capabilities::CapabilityError),
    #[error(transparent)]
    Rlimit(#[from] rlimits::RlimitError),
    #[error(transparent)]
    Sysctl(#[from] sysctl::SysctlError),
    #[error(transparent)]
    Seccomp(#[from] seccomp::SeccompError),
    #[error("process.oomScoreAdj {value}: {source}")]
    OomScoreAdj { value: i32, source: io::Error },
    #[error(transparent)]
    Procfs(#[from] crate::procfs::ProcfsError),
    #[error("process.noNewPrivileges: {0}")]
    NoNewPrivs(io::Error),
    #[error(transparent)]
    Lsm(#[from] lsm::LsmError),
    #[error("linux.personality: {0}")]
    Personality(String),
}

/// `linux.personality`: the execution domain (LINUX or LINUX32, which makes `uname -m` report
/// the 32-bit machine). The spec defines no flags yet; any given is an error, not ignored.
pub fn validate_personality(p: Option<&oci_spec::runtime::LinuxPersonality>) -> Result<(), SecurityError> {
    match p.and_then(|p| p.flags().as_ref()) {
        Some(flags) if !flags.is_empty() => {
            Err(SecurityError::Personality(format!("flags {flags:?} are not defined by the runtime spec")))
        }
        _ => Ok(()),
    }
}

pub fn set_personality(p: Option<&oci_spec::runtime::LinuxPersonality>) -> Result<(), SecurityError> {
    use oci_spec::runtime::LinuxPersonalityDomain;
    let Some(p) = p else { return Ok(()) };
    const PER_LINUX: libc::c_ulong = 0x0000;
    const PER_LINUX32: libc::c_ulong = 0x0008;
    let persona = match p.domain() {
        LinuxPersonalityDomain::PerLinux => PER_LINUX,
        LinuxPersonalityDomain::PerLinux32 => PER_LINUX32,
    };
    // SAFETY: personality takes a plain integer.
    if unsafe { libc::personality(persona) } < 0 {
        return Err(SecurityError::Personality(io::Error::last_os_error().to_string()));
    }
    Ok(())
}

/// Written through a verified procfs handle: a mount over /proc/self/oom_score_adj (a config's
/// or a racing container's) cannot take the write elsewhere.
pub fn set_oom_score_adj(proc: &crate::procfs::ProcFs, value: Option<i32>) -> Result<(), SecurityError> {
    let Some(value) = value else { return Ok(()) };
    let fd = proc.open_file(std::path::Path::new("self/oom_score_adj"), nix::fcntl::OFlag::O_WRONLY)?;
    std::io::Write::write_all(&mut std::fs::File::from(fd), value.to_string().as_bytes()).map_err(|source| {
        let source = if source.kind() == io::ErrorKind::PermissionDenied {
            io::Error::other(format!(
                "{source}: lowering it needs CAP_SYS_RESOURCE, which this host withholds from tally"
            ))
        } else {
            source
        };
        SecurityError::OomScoreAdj { value, source }
    })
}

pub fn set_no_new_privs(enabled: bool) -> Result<(), SecurityError> {
    if !enabled {
        return Ok(());
    }
    // SAFETY: prctl with PR_SET_NO_NEW_PRIVS takes plain integers.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(SecurityError::NoNewPrivs(io::Error::last_os_error()));
    }
    Ok(())
}

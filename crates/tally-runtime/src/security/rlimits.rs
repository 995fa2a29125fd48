//! `process.rlimits`: every RLIMIT_* by name (oci-spec refuses unknown names while parsing,
//! naming the field). A refused limit names the rlimit and both values.

use std::io;

use oci_spec::runtime::{PosixRlimit, PosixRlimitType};

#[derive(Debug, thiserror::Error)]
pub enum RlimitError {
    #[error("process.rlimits {name}: soft {soft} is above hard {hard}")]
    SoftAboveHard { name: String, soft: u64, hard: u64 },
    #[error("process.rlimits {name} (soft {soft}, hard {hard}): {source}{hint}")]
    Set { name: String, soft: u64, hard: u64, source: io::Error, hint: String },
}

fn resource(t: PosixRlimitType) -> libc::__rlimit_resource_t {
    use PosixRlimitType::*;
    match t {
        RlimitCpu => libc::RLIMIT_CPU,
        RlimitFsize => libc::RLIMIT_FSIZE,
        RlimitData => libc::RLIMIT_DATA,
        RlimitStack => libc::RLIMIT_STACK,
        RlimitCore => libc::RLIMIT_CORE,
        RlimitRss => libc::RLIMIT_RSS,
        RlimitNproc => libc::RLIMIT_NPROC,
        RlimitNofile => libc::RLIMIT_NOFILE,
        RlimitMemlock => libc::RLIMIT_MEMLOCK,
        RlimitAs => libc::RLIMIT_AS,
        RlimitLocks => libc::RLIMIT_LOCKS,
        RlimitSigpending => libc::RLIMIT_SIGPENDING,
        RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        RlimitNice => libc::RLIMIT_NICE,
        RlimitRtprio => libc::RLIMIT_RTPRIO,
        RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

fn name(t: PosixRlimitType) -> String {
    serde_json::to_value(t).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_else(|| format!("{t:?}"))
}

/// Checks what can be checked before any process exists.
pub fn validate(limits: &[PosixRlimit]) -> Result<(), RlimitError> {
    for l in limits {
        if l.soft() > l.hard() {
            return Err(RlimitError::SoftAboveHard { name: name(l.typ()), soft: l.soft(), hard: l.hard() });
        }
    }
    Ok(())
}

pub fn apply(limits: &[PosixRlimit]) -> Result<(), RlimitError> {
    for l in limits {
        let lim = libc::rlimit { rlim_cur: l.soft(), rlim_max: l.hard() };
        // SAFETY: setrlimit reads one rlimit struct from a live local.
        if unsafe { libc::setrlimit(resource(l.typ()), &lim) } != 0 {
            let source = io::Error::last_os_error();
            let mut cur = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            // SAFETY: getrlimit writes one rlimit struct into a live local.
            unsafe { libc::getrlimit(resource(l.typ()), &mut cur) };
            let hint = if source.raw_os_error() == Some(libc::EPERM) && l.hard() > cur.rlim_max {
                format!(
                    " (raising the hard limit above the current {} needs CAP_SYS_RESOURCE, which this host withholds from tally)",
                    cur.rlim_max
                )
            } else {
                String::new()
            };
            return Err(RlimitError::Set { name: name(l.typ()), soft: l.soft(), hard: l.hard(), source, hint });
        }
    }
    Ok(())
}

//! `linux.sysctl`: only namespaced keys, and only when the container has its own namespace for
//! them (otherwise the write would change the host). Written through a verified procfs handle
//! by the container's init, so the values land in the container's namespaces.

use std::collections::HashMap;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SysctlError {
    #[error("linux.sysctl {key:?}: {reason}")]
    NotAllowed { key: String, reason: String },
    #[error("linux.sysctl {key:?} = {value:?}: {source}")]
    Write { key: String, value: String, source: crate::procfs::ProcfsError },
}

/// Which namespace a key belongs to, if it is namespaced at all.
fn namespace_of(key: &str) -> Option<&'static str> {
    const IPC: &[&str] = &[
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    if IPC.contains(&key) || key.starts_with("fs.mqueue.") {
        return Some("ipc");
    }
    if key.starts_with("net.") {
        return Some("network");
    }
    if key == "kernel.hostname" || key == "kernel.domainname" {
        return Some("uts");
    }
    None
}

/// Checks every key against the namespaces the container gets (`has_new(kind)`).
pub fn validate(sysctl: &HashMap<String, String>, has_new: impl Fn(&str) -> bool) -> Result<(), SysctlError> {
    for key in sysctl.keys() {
        let bad = key.split(['.', '/']).any(|part| part.is_empty());
        if bad {
            return Err(SysctlError::NotAllowed { key: key.clone(), reason: "is not a sysctl name".into() });
        }
        let normalized = key.replace('/', ".");
        match namespace_of(&normalized) {
            None => {
                return Err(SysctlError::NotAllowed {
                    key: key.clone(),
                    reason: "is not namespaced: setting it would change the host".into(),
                })
            }
            Some(ns) if !has_new(ns) => {
                return Err(SysctlError::NotAllowed {
                    key: key.clone(),
                    reason: format!("needs the container to have its own {ns} namespace"),
                })
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The file under a procfs root for a key (`net.ipv4.ip_forward` or `net/ipv4/ip_forward`).
pub fn proc_path(key: &str) -> PathBuf {
    PathBuf::from("sys").join(key.replace('.', "/"))
}

/// Writes every key as the container's init (net, ipc and uts sysctls are those of the
/// writer's namespaces), never through the rootfs's /proc, which mounts can cover.
pub fn apply(proc: &crate::procfs::ProcFs, sysctl: &HashMap<String, String>) -> Result<(), SysctlError> {
    for (key, value) in sysctl {
        proc.write(proc_path(key), value.as_bytes()).map_err(|source| SysctlError::Write {
            key: key.clone(),
            value: value.clone(),
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(key: &str, namespaces: &[&str]) -> Result<(), SysctlError> {
        let m = HashMap::from([(key.to_string(), "1".to_string())]);
        validate(&m, |ns| namespaces.contains(&ns))
    }

    #[test]
    fn namespaced_keys_need_their_namespace() {
        assert!(check("net.ipv4.ip_forward", &["network"]).is_ok());
        assert!(check("net.ipv4.ip_forward", &["ipc"]).is_err());
        assert!(check("kernel.shmmax", &["ipc"]).is_ok());
        assert!(check("fs.mqueue.msg_max", &["ipc"]).is_ok());
        assert!(check("kernel.domainname", &["uts"]).is_ok());
    }

    #[test]
    fn host_wide_keys_are_refused_naming_the_key() {
        let e = check("kernel.panic", &["ipc", "network", "uts"]).unwrap_err().to_string();
        assert!(e.contains("kernel.panic") && e.contains("not namespaced"), "{e}");
        assert!(check("net/../../kernel/panic", &["network"]).is_err());
    }
}

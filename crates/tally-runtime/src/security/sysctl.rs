//! `linux.sysctl`: only namespaced keys, and only when the container has its own namespace for
//! them (otherwise the write would change the host). Written through the container's /proc.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SysctlError {
    #[error("linux.sysctl {key:?}: {reason}")]
    NotAllowed { key: String, reason: String },
    #[error("linux.sysctl {key:?} = {value:?}: {source}")]
    Write { key: String, value: String, source: io::Error },
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

/// The file under /proc/sys for a key (`net.ipv4.ip_forward` or `net/ipv4/ip_forward`).
pub fn proc_path(key: &str) -> PathBuf {
    PathBuf::from("/proc/sys").join(key.replace('.', "/"))
}

/// Writes every key through the container's own /proc (mounted in the rootfs), as the
/// container process, so namespaced values land in the container's namespaces.
pub fn apply(root: &crate::rootfs::Root, sysctl: &HashMap<String, String>) -> Result<(), SysctlError> {
    use std::io::Write;
    for (key, value) in sysctl {
        let err = |source| SysctlError::Write { key: key.clone(), value: value.clone(), source };
        let fd = root.open_with(&proc_path(key), nix::fcntl::OFlag::O_WRONLY).map_err(err)?;
        std::fs::File::from(fd).write_all(value.as_bytes()).map_err(err)?;
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

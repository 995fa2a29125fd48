//! `features`: the runtime-spec features document, true for this build on this host (a probe
//! of the kernel where the answer depends on it), so containerd and Podman can ask what tally
//! can do instead of guessing.

use std::path::Path;

use serde_json::{json, Value};

use crate::rootfs::options;
use crate::security::{capabilities, seccomp};

/// Annotations whose values change what the runtime does, and so must not be taken from
/// untrusted image configs (the spec's `potentiallyUnsafeConfigAnnotations`).
const UNSAFE_ANNOTATIONS: &[&str] = &[tally_beancounters::annotations::PREFIX, tally_beancounters::vz::PREFIX];

pub fn document() -> Value {
    let (v2_only, controllers) = crate::cgroups::available_controllers();
    let mounts = crate::cgroups::cgroup_mounts();
    let has_v1 = !v2_only && !mounts.is_empty();
    // On a hybrid host the cgroup manager uses v1 (the unified mount has no controllers), and
    // v2-only settings are refused: v2 is what the host is, not what the build could do.
    let has_v2 = v2_only;
    let systemd = std::fs::read_to_string("/proc/1/comm").is_ok_and(|c| c.trim() == "systemd");
    let rro = mount_setattr_works();
    let mount_options: Vec<&str> =
        options::NAMES.iter().copied().filter(|o| rro || !(o.starts_with('r') && is_recursive_attr(o))).collect();
    let mut namespaces = vec!["cgroup", "ipc", "mount", "network", "pid", "user", "uts"];
    if Path::new("/proc/self/ns/time").exists() {
        namespaces.push("time");
    }
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": crate::OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": mount_options,
        "linux": {
            "namespaces": namespaces,
            "capabilities": capabilities::supported_names(),
            "cgroup": {
                "v1": has_v1,
                "v2": has_v2,
                "systemd": systemd,
                "systemdUser": false,
                "rdma": controllers.iter().any(|c| c == "rdma"),
            },
            "seccomp": {
                "enabled": true,
                "actions": seccomp::ACTIONS,
                "operators": seccomp::OPERATORS,
                "archs": seccomp::architectures(),
                "knownFlags": seccomp::KNOWN_FLAGS.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
                "supportedFlags": seccomp::supported_flags(),
            },
            // What tally supports, whatever this host runs (features-linux.md); the host's
            // modules are in the org.tally.lsm.host annotation.
            "apparmor": {"enabled": true},
            "selinux": {"enabled": true},
            "intelRdt": {"enabled": false},
            "mountExtensions": {"idmap": {"enabled": false}},
            "netDevices": {"enabled": false},
        },
        "annotations": {
            "org.tally.version": env!("CARGO_PKG_VERSION"),
            "org.tally.lsm.host": lsm_host(),
            // The CRIU commands, as `criu` on PATH (or --criu) runs them.
            "org.tally.criu.commands": "checkpoint,restore,migrate",
            "io.github.seccomp.libseccomp.version": libseccomp_version(),
            // The beancounter annotations tally takes: the prefix and each settable resource.
            "org.tally.beancounter.prefix": tally_beancounters::annotations::PREFIX,
            "org.tally.beancounter.resources": tally_beancounters::annotations::RESOURCES
                .iter()
                .map(|(r, _)| *r)
                .chain([tally_beancounters::diskquota::DISKSPACE, tally_beancounters::diskquota::DISKINODES])
                .collect::<Vec<_>>()
                .join(","),
            // The OpenVZ CPU and I/O settings, the same way.
            "org.tally.vz.prefix": tally_beancounters::vz::PREFIX,
            "org.tally.vz.settings": tally_beancounters::vz::SETTINGS
                .iter()
                .map(|(n, _, _)| *n)
                .collect::<Vec<_>>()
                .join(","),
        },
        "potentiallyUnsafeConfigAnnotations": UNSAFE_ANNOTATIONS,
    })
}

/// The options that need mount_setattr(2) (the recursive attributes).
fn is_recursive_attr(o: &str) -> bool {
    !matches!(o, "rbind" | "relatime" | "remount" | "rprivate" | "rshared" | "rslave" | "runbindable" | "ro" | "rw")
}

/// mount_setattr(2) exists when a call with a bad fd fails with EBADF rather than ENOSYS.
fn mount_setattr_works() -> bool {
    let attr = crate::sys::MountAttr::default();
    match crate::sys::mount_setattr_recursive(-1, &attr) {
        Ok(()) => true,
        Err(e) => e.raw_os_error() != Some(libc::ENOSYS),
    }
}

fn libseccomp_version() -> String {
    libseccomp::ScmpVersion::current().map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro)).unwrap_or_default()
}

/// The security modules this host runs that a config can name ("apparmor", "selinux", both
/// or "none").
fn lsm_host() -> String {
    let host = crate::security::lsm::Host::detect();
    let on: Vec<&str> = [("apparmor", host.apparmor), ("selinux", host.selinux)]
        .into_iter()
        .filter_map(|(name, on)| on.then_some(name))
        .collect();
    match on.is_empty() {
        true => "none".into(),
        false => on.join(","),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_has_the_specs_fields() {
        let d = document();
        assert_eq!(d["ociVersionMax"], crate::OCI_VERSION);
        assert!(d["linux"]["seccomp"]["actions"].as_array().unwrap().contains(&json!("SCMP_ACT_NOTIFY")));
        assert!(d["mountOptions"].as_array().unwrap().contains(&json!("bind")));
        assert!(d["linux"]["capabilities"].as_array().unwrap().contains(&json!("CAP_SYS_ADMIN")));
        assert_eq!(d["potentiallyUnsafeConfigAnnotations"], json!(["org.tally.beancounter.", "org.tally.vz."]));
        assert!(d["annotations"]["org.tally.vz.settings"].as_str().unwrap().contains("cpuunits"));
        assert!(d["annotations"]["org.tally.beancounter.resources"].as_str().unwrap().contains("numproc"));
        assert!(d["annotations"]["org.tally.beancounter.resources"]
            .as_str()
            .unwrap()
            .ends_with("diskspace,diskinodes"));
        // The probes, on any kernel tally supports (5.12 and later): TSYNC is accepted, the
        // build's architecture is known, and mount_setattr exists for the recursive options.
        assert!(d["linux"]["seccomp"]["supportedFlags"]
            .as_array()
            .unwrap()
            .contains(&json!("SECCOMP_FILTER_FLAG_TSYNC")));
        assert!(d["linux"]["seccomp"]["archs"].as_array().unwrap().contains(&json!("SCMP_ARCH_X86_64")));
        assert!(d["mountOptions"].as_array().unwrap().contains(&json!("rro")));
    }
}

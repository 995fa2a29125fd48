//! Rootless mode: tally run by a user without root, or by root inside a user namespace (a
//! rootless Podman's or a nested runtime's). Detected as runc detects it (`--rootless auto`);
//! what changes is decided here: where the state lives, how the container's id maps are
//! written, and whether the container may have a cgroup at all.

use std::path::{Path, PathBuf};
use std::process::Command;

use oci_spec::runtime::LinuxIdMapping;

#[derive(Debug, thiserror::Error)]
pub enum RootlessError {
    #[error("--rootless {0:?}: must be true, false or auto")]
    Value(String),
    #[error("linux.{field}: {message}")]
    Helper { field: &'static str, message: String },
    #[error(
        "{what}: a rootless container gets a cgroup only where the caller may manage one, and {reason}; \
         drop the {what} or delegate a cgroup v2 subtree to uid {uid} (its cgroup.procs, cgroup.subtree_control \
         and directory writable by it)"
    )]
    NoCgroup { what: String, reason: String, uid: u32 },
}

/// `--rootless`: runc's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Auto,
    On,
    Off,
}

impl std::str::FromStr for Mode {
    type Err = RootlessError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" | "" => Ok(Mode::Auto),
            "true" => Ok(Mode::On),
            "false" => Ok(Mode::Off),
            other => Err(RootlessError::Value(other.into())),
        }
    }
}

impl Mode {
    /// `auto`: rootless when the effective uid is not 0, or when this process is in a user
    /// namespace other than the initial one (its root is not the host's root).
    pub fn resolve(self) -> bool {
        match self {
            Mode::On => true,
            Mode::Off => false,
            Mode::Auto => !nix::unistd::geteuid().is_root() || in_user_namespace(),
        }
    }
}

/// The initial user namespace maps every id onto itself: `0 0 4294967295`.
pub fn in_user_namespace() -> bool {
    match std::fs::read_to_string("/proc/self/uid_map") {
        Ok(map) => map.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"],
        Err(_) => false,
    }
}

/// The state root when `--root` is not given: `$XDG_RUNTIME_DIR/tally` for a rootless caller
/// that has one (as runc uses `$XDG_RUNTIME_DIR/runc`), else `/run/tally`.
pub fn default_root(rootless: bool) -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(dir) if rootless => Path::new(&dir).join("tally"),
        _ => PathBuf::from("/run/tally"),
    }
}

/// How the container's id maps get written.
#[derive(Debug, PartialEq, Eq)]
pub enum MapWriter {
    /// By tally itself: root (CAP_SETUID/CAP_SETGID over the parent namespace), or an
    /// unprivileged caller mapping only its own ids, which the kernel allows (gid_map after
    /// `deny` in setgroups).
    Direct { deny_setgroups: bool },
    /// Through the setuid helpers, which check /etc/subuid and /etc/subgid.
    Helpers,
}

/// Decides for a caller with effective ids `uid`/`gid` (`privileged`: it holds CAP_SETUID and
/// CAP_SETGID in its user namespace).
pub fn map_writer(privileged: bool, uid: u32, gid: u32, uids: &[LinuxIdMapping], gids: &[LinuxIdMapping]) -> MapWriter {
    if privileged {
        return MapWriter::Direct { deny_setgroups: false };
    }
    let own = |maps: &[LinuxIdMapping], id: u32| matches!(maps, [m] if m.host_id() == id && m.size() == 1);
    match own(uids, uid) && own(gids, gid) {
        true => MapWriter::Direct { deny_setgroups: true },
        false => MapWriter::Helpers,
    }
}

/// Whether this process may write any id map of its children: CAP_SETUID and CAP_SETGID in its
/// own user namespace.
pub fn can_map_any_ids() -> bool {
    let caps = caps::read(None, caps::CapSet::Effective).unwrap_or_default();
    caps.contains(&caps::Capability::CAP_SETUID) && caps.contains(&caps::Capability::CAP_SETGID)
}

/// The arguments of newuidmap/newgidmap after the PID: `inside outside count` per range.
pub fn helper_args(maps: &[LinuxIdMapping]) -> Vec<String> {
    maps.iter().flat_map(|m| [m.container_id(), m.host_id(), m.size()]).map(|n| n.to_string()).collect()
}

/// Runs newuidmap (or newgidmap) for `pid`. The helper is found on PATH, as runc finds it.
pub fn run_helper(pid: i32, field: &'static str, maps: &[LinuxIdMapping]) -> Result<(), RootlessError> {
    let (helper, kind) = match field {
        "uidMappings" => ("newuidmap", "uid"),
        _ => ("newgidmap", "gid"),
    };
    let args = helper_args(maps);
    let err = |reason: String| RootlessError::Helper {
        field,
        message: format!(
            "mapping more than the caller's own id (uid {}, gid {}) needs {helper} (package uidmap) and ranges for \
             this user in /etc/sub{kind}; {helper} {pid} {}: {reason}",
            nix::unistd::geteuid(),
            nix::unistd::getegid(),
            args.join(" ")
        ),
    };
    let out = Command::new(helper).arg(pid.to_string()).args(&args).output().map_err(|e| err(e.to_string()))?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stderr);
        return Err(err(text.trim().lines().last().unwrap_or("failed").to_string()));
    }
    Ok(())
}

/// Where a rootless container's cgroup can be: `Ok(None)` when `path` (the cgroupfs driver's,
/// relative to each hierarchy's root) is in a subtree delegated to the caller in every
/// hierarchy, so the container gets it; `Ok(Some(reason))` when it is not and the config asks
/// for nothing that needs it, so the container runs without a cgroup, as runc's do; an error
/// when the config sets a limit or names its cgroupsPath and there is no delegation.
pub fn placement(
    path: &Path,
    explicit_path: bool,
    resources: Option<&oci_spec::runtime::LinuxResources>,
) -> Result<Option<String>, RootlessError> {
    let reason = match undelegated(path, &crate::cgroups::cgroup_mounts()) {
        None => return Ok(None),
        Some(reason) => reason,
    };
    let uid = nix::unistd::geteuid().as_raw();
    if let Some(field) = resources.and_then(first_limit) {
        return Err(RootlessError::NoCgroup { what: format!("linux.resources.{field}"), reason, uid });
    }
    if explicit_path {
        return Err(RootlessError::NoCgroup { what: format!("linux.cgroupsPath {:?}", path), reason, uid });
    }
    Ok(Some(reason))
}

/// Why `path` is not the caller's to manage in one of the hierarchies, or `None`. In each,
/// the deepest part of the path that exists must be a directory the caller may write (to make
/// the rest) with a writable cgroup.procs (to move processes in); a v1 hierarchy is never
/// delegated by a stock host, and an empty list of hierarchies is no cgroup at all.
fn undelegated(path: &Path, mounts: &[PathBuf]) -> Option<String> {
    use nix::unistd::{access, AccessFlags};
    if mounts.is_empty() {
        return Some("this process sees no cgroup filesystem".into());
    }
    let relative = path.strip_prefix("/").unwrap_or(path);
    for mount in mounts {
        let mut dir = mount.join(relative);
        while !dir.exists() && dir != *mount {
            dir.pop();
        }
        let writable = |p: &Path| access(p, AccessFlags::W_OK).is_ok();
        if !writable(&dir) || !writable(&dir.join("cgroup.procs")) {
            return Some(format!("{} is not writable by it", dir.display()));
        }
    }
    None
}

/// The first `linux.resources` field that is a limit a cgroup must enforce; device rules are
/// not (see `cgroups::Cgroup::apply`), nor empty sections.
fn first_limit(r: &oci_spec::runtime::LinuxResources) -> Option<&'static str> {
    let mem = r.memory().as_ref().is_some_and(|m| *m != Default::default());
    let cpu = r.cpu().as_ref().is_some_and(|c| *c != Default::default());
    let io = r.block_io().as_ref().is_some_and(|b| *b != Default::default());
    [
        ("memory", mem),
        ("cpu", cpu),
        ("pids", r.pids().is_some()),
        ("blockIO", io),
        ("hugepageLimits", r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty())),
        ("network", r.network().is_some()),
        ("rdma", r.rdma().as_ref().is_some_and(|x| !x.is_empty())),
        ("unified", r.unified().as_ref().is_some_and(|u| !u.is_empty())),
    ]
    .into_iter()
    .find_map(|(name, set)| set.then_some(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxIdMappingBuilder;

    fn map(container: u32, host: u32, size: u32) -> LinuxIdMapping {
        LinuxIdMappingBuilder::default().container_id(container).host_id(host).size(size).build().unwrap()
    }

    #[test]
    fn rootless_values_are_runcs() {
        assert_eq!("auto".parse::<Mode>().unwrap(), Mode::Auto);
        assert_eq!("true".parse::<Mode>().unwrap(), Mode::On);
        assert_eq!("false".parse::<Mode>().unwrap(), Mode::Off);
        let e = "yes".parse::<Mode>().unwrap_err().to_string();
        assert_eq!(e, "--rootless \"yes\": must be true, false or auto");
        assert!(Mode::On.resolve());
        assert!(!Mode::Off.resolve());
    }

    #[test]
    fn only_the_callers_own_ids_are_mapped_without_the_helpers() {
        let own = [map(0, 1000, 1)];
        let own_g = [map(0, 100, 1)];
        assert_eq!(map_writer(false, 1000, 100, &own, &own_g), MapWriter::Direct { deny_setgroups: true });
        assert_eq!(map_writer(true, 0, 0, &own, &own_g), MapWriter::Direct { deny_setgroups: false });
        // A second range, someone else's id, or more than one id: the helpers.
        let ranges = [map(0, 1000, 1), map(1, 200000, 65536)];
        assert_eq!(map_writer(false, 1000, 100, &ranges, &own_g), MapWriter::Helpers);
        assert_eq!(map_writer(false, 1000, 100, &[map(0, 1001, 1)], &own_g), MapWriter::Helpers);
        assert_eq!(map_writer(false, 1000, 100, &own, &[map(0, 100, 2)]), MapWriter::Helpers);
    }

    #[test]
    fn helper_arguments_are_inside_outside_count_triples() {
        let ranges = [map(0, 1000, 1), map(1, 200000, 65536)];
        assert_eq!(helper_args(&ranges), ["0", "1000", "1", "1", "200000", "65536"]);
    }

    #[test]
    fn only_limits_need_a_cgroup() {
        use oci_spec::runtime::{LinuxDeviceCgroupBuilder, LinuxPidsBuilder, LinuxResources};
        let mut r = LinuxResources::default();
        r.set_devices(Some(vec![LinuxDeviceCgroupBuilder::default().allow(false).access("rwm").build().unwrap()]));
        r.set_memory(Some(Default::default()));
        assert_eq!(first_limit(&r), None);
        r.set_pids(Some(LinuxPidsBuilder::default().limit(10).build().unwrap()));
        assert_eq!(first_limit(&r), Some("pids"));
    }

    #[test]
    fn a_subtree_is_delegated_when_its_deepest_existing_directory_and_procs_are_writable() {
        let base = std::env::temp_dir().join(format!("tally-deleg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("user/sub")).unwrap();
        std::fs::write(base.join("user/cgroup.procs"), "").unwrap();
        std::fs::write(base.join("user/sub/cgroup.procs"), "").unwrap();
        // Writable (this test may run as root, for whom everything is: then only the
        // missing-procs case can be checked).
        assert_eq!(undelegated(Path::new("/user/sub/c1"), std::slice::from_ref(&base)), None);
        assert_eq!(undelegated(Path::new("/user/new/c1"), std::slice::from_ref(&base)), None);
        // No cgroup.procs where the path stops existing: not a cgroup the caller may join.
        let why = undelegated(Path::new("/c1"), std::slice::from_ref(&base)).unwrap();
        assert!(why.contains("is not writable"), "{why}");
        assert!(undelegated(Path::new("/c1"), &[]).unwrap().contains("no cgroup filesystem"));
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn the_rootless_default_root_is_under_xdg_runtime_dir() {
        // Read, not set: the variable belongs to the whole test process.
        match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
            Some(d) => assert_eq!(default_root(true), Path::new(&d).join("tally")),
            None => assert_eq!(default_root(true), Path::new("/run/tally")),
        }
        assert_eq!(default_root(false), Path::new("/run/tally"));
    }
}

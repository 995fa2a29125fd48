//! The Linux security modules a config names: `process.apparmorProfile`, `process.selinuxLabel`
//! and `linux.mountLabel`. A label given for a module the host does not run is an error at
//! `create` (and `exec`), never a silent downgrade to an unconfined container.
//!
//! Both labels are "on exec" attributes: written to the process's own procfs attributes during
//! its setup, they take effect at its execve, so nothing of tally's setup runs confined and the
//! program never runs unconfined. They are written while the process still has every
//! capability and before no_new_privs: AppArmor refuses a profile change under no_new_privs
//! (unless it only narrows the current confinement), and the write then fails at `create` with
//! the profile's name instead of at `start`.

use std::io;
use std::path::Path;

use crate::procfs::{ProcFs, ProcfsError};

#[derive(Debug, thiserror::Error)]
pub enum LsmError {
    #[error("{field} {value:?}: {module} is not enabled on this host ({why}); refusing to run the process without it")]
    NotEnabled { field: &'static str, value: String, module: &'static str, why: &'static str },
    #[error("{field} {value:?}: must not contain a NUL byte or a newline")]
    Malformed { field: &'static str, value: String },
    #[error("{field} {value:?}: {source}{hint}")]
    Apply { field: &'static str, value: String, source: ProcfsError, hint: &'static str },
}

/// AppArmor is on when its module parameter says so (what runc and the apparmor library read);
/// securityfs need not be mounted for a profile change to work.
pub fn apparmor_enabled() -> bool {
    std::fs::read("/sys/module/apparmor/parameters/enabled").is_ok_and(|v| v.first() == Some(&b'Y'))
}

/// SELinux is on when selinuxfs is mounted and this process has a context other than `kernel`
/// (which is what a kernel with SELinux built in but no policy loaded reports).
pub fn selinux_enabled() -> bool {
    Path::new("/sys/fs/selinux/enforce").exists()
        && std::fs::read_to_string("/proc/self/attr/current")
            .is_ok_and(|c| !c.trim_end_matches(['\0', '\n']).is_empty() && c.trim_end_matches(['\0', '\n']) != "kernel")
}

/// The labels of one process, as the config (or `exec`'s flags) gives them; empty strings are
/// no label, as for runc.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Labels {
    pub apparmor: Option<String>,
    pub selinux: Option<String>,
}

impl Labels {
    pub fn of(process: &oci_spec::runtime::Process) -> Self {
        let given = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        Labels { apparmor: given(process.apparmor_profile()), selinux: given(process.selinux_label()) }
    }

    pub fn is_empty(&self) -> bool {
        self.apparmor.is_none() && self.selinux.is_none()
    }

    /// Checked before anything is made: the modules are on and the labels can be written.
    pub fn validate(&self, host: &Host) -> Result<(), LsmError> {
        if let Some(p) = &self.apparmor {
            check_value(APPARMOR_FIELD, p)?;
            if !host.apparmor {
                return Err(LsmError::NotEnabled {
                    field: APPARMOR_FIELD,
                    value: p.clone(),
                    module: "AppArmor",
                    why: "/sys/module/apparmor/parameters/enabled is not Y",
                });
            }
        }
        if let Some(l) = &self.selinux {
            check_value(SELINUX_FIELD, l)?;
            if !host.selinux {
                return Err(not_selinux(SELINUX_FIELD, l));
            }
        }
        Ok(())
    }

    /// What is written where, in order. Each write goes to the first of its paths that exists.
    fn writes(&self) -> Vec<Write> {
        let mut out = Vec::new();
        if let Some(p) = &self.apparmor {
            // Kernels since 5.8 give each module its own directory; the shared attr/exec is
            // whichever module came first, and is AppArmor's on older kernels.
            out.push(Write {
                field: APPARMOR_FIELD,
                value: p.clone(),
                paths: &["thread-self/attr/apparmor/exec", "thread-self/attr/exec"],
                data: format!("exec {p}"),
            });
        }
        if let Some(l) = &self.selinux {
            // The keyring label first: keys the process creates from now on get the
            // container's label, not the runtime's.
            out.push(Write {
                field: SELINUX_FIELD,
                value: l.clone(),
                paths: &["thread-self/attr/keycreate"],
                data: l.clone(),
            });
            out.push(Write {
                field: SELINUX_FIELD,
                value: l.clone(),
                paths: &["thread-self/attr/exec"],
                data: l.clone(),
            });
        }
        out
    }

    /// Writes the labels through a verified procfs handle (a mount over /proc/self/attr cannot
    /// redirect them); they apply at the process's next execve.
    pub fn apply(&self, proc: &ProcFs) -> Result<(), LsmError> {
        for w in self.writes() {
            if let Err(source) = write_first(proc, w.paths, w.data.as_bytes()) {
                let hint = hint(w.field, &source);
                return Err(LsmError::Apply { field: w.field, value: w.value, source, hint });
            }
        }
        Ok(())
    }
}

/// What this host runs, read once per command.
#[derive(Debug, Clone, Copy, Default)]
pub struct Host {
    pub apparmor: bool,
    pub selinux: bool,
}

impl Host {
    pub fn detect() -> Self {
        Host { apparmor: apparmor_enabled(), selinux: selinux_enabled() }
    }
}

const APPARMOR_FIELD: &str = "process.apparmorProfile";
const SELINUX_FIELD: &str = "process.selinuxLabel";
const MOUNT_LABEL_FIELD: &str = "linux.mountLabel";

struct Write {
    field: &'static str,
    value: String,
    paths: &'static [&'static str],
    data: String,
}

/// Opens the first of `paths` that exists and writes `data` to it in one write(2). An ENOENT
/// from the write itself (AppArmor's "no such profile") is the write's error, not a reason to
/// try the next path.
fn write_first(proc: &ProcFs, paths: &[&str], data: &[u8]) -> Result<(), ProcfsError> {
    let mut missing = None;
    for path in paths {
        match proc.open_file(Path::new(path), nix::fcntl::OFlag::O_WRONLY) {
            Ok(fd) => {
                return io::Write::write_all(&mut std::fs::File::from(fd), data)
                    .map_err(|source| ProcfsError::File { path: path.into(), source })
            }
            Err(ProcfsError::File { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                missing = Some(ProcfsError::File { path: path.into(), source })
            }
            Err(e) => return Err(e),
        }
    }
    Err(missing.unwrap_or_else(|| ProcfsError::Open(io::ErrorKind::NotFound.into())))
}

fn check_value(field: &'static str, value: &str) -> Result<(), LsmError> {
    match value.contains(['\0', '\n']) {
        true => Err(LsmError::Malformed { field, value: value.into() }),
        false => Ok(()),
    }
}

fn not_selinux(field: &'static str, value: &str) -> LsmError {
    LsmError::NotEnabled {
        field,
        value: value.into(),
        module: "SELinux",
        why: "no selinuxfs at /sys/fs/selinux, or no policy loaded",
    }
}

fn hint(field: &str, e: &ProcfsError) -> &'static str {
    let errno = match e {
        ProcfsError::File { source, .. } => source.raw_os_error(),
        _ => None,
    };
    match (field, errno) {
        (APPARMOR_FIELD, Some(libc::ENOENT)) => " (no such profile is loaded: load it with apparmor_parser -r)",
        (APPARMOR_FIELD, Some(libc::EPERM)) => " (AppArmor refuses the change: no_new_privs or a confined runtime)",
        (SELINUX_FIELD, Some(libc::EINVAL)) => " (the policy does not define this context)",
        _ => "",
    }
}

/// `linux.mountLabel`, checked like a process label: given while SELinux is off, it is an
/// error, as the mounts that carry it would fail or silently lose it.
pub fn validate_mount_label(label: Option<&str>, host: &Host) -> Result<(), LsmError> {
    match label.filter(|l| !l.is_empty()) {
        Some(l) => {
            check_value(MOUNT_LABEL_FIELD, l)?;
            if l.contains('"') {
                return Err(LsmError::Malformed { field: MOUNT_LABEL_FIELD, value: l.into() });
            }
            match host.selinux {
                true => Ok(()),
                false => Err(not_selinux(MOUNT_LABEL_FIELD, l)),
            }
        }
        None => Ok(()),
    }
}

/// The mount(2) data of a filesystem tally mounts for the container (tmpfs, devpts, mqueue,
/// the masking tmpfs), with the mount label added as SELinux's `context=` option. proc,
/// sysfs, cgroup and bind mounts get none: the kernel labels the first three itself and a
/// bind mount keeps its source's labels (runc does the same).
pub fn with_mount_label(data: Option<&str>, label: Option<&str>) -> Option<String> {
    let label = label.filter(|l| !l.is_empty());
    match (data.filter(|d| !d.is_empty()), label) {
        (d, None) => d.map(str::to_string),
        (None, Some(l)) => Some(format!("context=\"{l}\"")),
        (Some(d), Some(l)) => Some(format!("{d},context=\"{l}\"")),
    }
}

/// The filesystem types whose mounts take the mount label.
pub fn takes_mount_label(fstype: &str) -> bool {
    matches!(fstype, "tmpfs" | "devpts" | "mqueue")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(apparmor: Option<&str>, selinux: Option<&str>) -> Labels {
        Labels { apparmor: apparmor.map(Into::into), selinux: selinux.map(Into::into) }
    }

    #[test]
    fn apparmor_writes_exec_profile_to_its_own_attr_directory_first() {
        let w = labels(Some("tally-test"), None).writes();
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].paths, ["thread-self/attr/apparmor/exec", "thread-self/attr/exec"]);
        assert_eq!(w[0].data, "exec tally-test");
    }

    #[test]
    fn selinux_writes_the_keyring_label_then_the_exec_label() {
        let l = "system_u:system_r:container_t:s0:c1,c2";
        let w = labels(None, Some(l)).writes();
        let got: Vec<_> = w.iter().map(|w| (w.paths, w.data.as_str())).collect();
        assert_eq!(got, [(&["thread-self/attr/keycreate"][..], l), (&["thread-self/attr/exec"][..], l)]);
    }

    #[test]
    fn empty_labels_are_no_labels() {
        let mut p = oci_spec::runtime::Process::default();
        p.set_apparmor_profile(Some(String::new()));
        p.set_selinux_label(Some(String::new()));
        let l = Labels::of(&p);
        assert!(l.is_empty());
        assert!(l.writes().is_empty());
        assert!(l.validate(&Host::default()).is_ok());
    }

    #[test]
    fn a_label_for_a_module_the_host_lacks_is_an_error_naming_the_field() {
        let off = Host::default();
        let e = labels(Some("p"), None).validate(&off).unwrap_err().to_string();
        assert!(e.starts_with("process.apparmorProfile \"p\": AppArmor is not enabled"), "{e}");
        let e = labels(None, Some("s")).validate(&off).unwrap_err().to_string();
        assert!(e.starts_with("process.selinuxLabel \"s\": SELinux is not enabled"), "{e}");
        let e = validate_mount_label(Some("m"), &off).unwrap_err().to_string();
        assert!(e.starts_with("linux.mountLabel \"m\": SELinux is not enabled"), "{e}");
        let on = Host { apparmor: true, selinux: true };
        assert!(labels(Some("p"), Some("s")).validate(&on).is_ok());
        assert!(validate_mount_label(Some("m"), &on).is_ok());
        assert!(validate_mount_label(None, &off).is_ok());
    }

    #[test]
    fn labels_that_would_be_cut_or_break_the_mount_data_are_refused() {
        let on = Host { apparmor: true, selinux: true };
        assert!(matches!(labels(Some("a\nb"), None).validate(&on), Err(LsmError::Malformed { .. })));
        assert!(matches!(labels(None, Some("a\0b")).validate(&on), Err(LsmError::Malformed { .. })));
        assert!(matches!(validate_mount_label(Some("a\",b"), &on), Err(LsmError::Malformed { .. })));
    }

    #[test]
    fn the_mount_label_is_added_as_a_quoted_context_option() {
        let l = Some("system_u:object_r:container_file_t:s0:c1,c2");
        assert_eq!(
            with_mount_label(Some("mode=755,size=65536k"), l).as_deref(),
            Some("mode=755,size=65536k,context=\"system_u:object_r:container_file_t:s0:c1,c2\"")
        );
        assert_eq!(
            with_mount_label(None, l).as_deref(),
            Some("context=\"system_u:object_r:container_file_t:s0:c1,c2\"")
        );
        assert_eq!(with_mount_label(Some("mode=755"), None).as_deref(), Some("mode=755"));
        assert_eq!(with_mount_label(None, Some("")), None);
        assert!(takes_mount_label("tmpfs") && takes_mount_label("devpts") && takes_mount_label("mqueue"));
        assert!(!takes_mount_label("proc") && !takes_mount_label("sysfs") && !takes_mount_label("cgroup"));
    }

    /// On a host without either module the write itself fails: the error names the field.
    #[test]
    fn applying_without_the_module_fails_with_the_field_named() {
        if apparmor_enabled() {
            return;
        }
        let proc = ProcFs::open().unwrap();
        let e = labels(Some("tally-none"), None).apply(&proc).unwrap_err().to_string();
        assert!(e.starts_with("process.apparmorProfile \"tally-none\": /proc/thread-self/attr/"), "{e}");
    }
}

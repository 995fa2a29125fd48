//! `create`: validate everything, make the state directory, spawn the container process, save
//! the state. Any failure undoes what was done: no process, cgroup or directory remains.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::LifecycleError;
use crate::bundle::Bundle;
use crate::cgroups::{self, Cgroup};
use crate::spawn::{self, Request};
use crate::state::{ContainerDir, ContainerState, StateError, StateRoot};
use crate::{id, rootfs, security, timefmt};

pub struct CreateOptions<'a> {
    pub bundle: &'a Path,
    pub pid_file: Option<&'a Path>,
    pub console_socket: Option<&'a Path>,
    pub no_pivot: bool,
    pub preserved: &'a crate::process::Preserved,
    pub systemd_cgroup: bool,
    /// `--rootless` as resolved (rootless::Mode::resolve).
    pub rootless: bool,
}

/// A container just created: its init's host PID and its cgroup, for callers (run) that go on
/// to use it in the same process.
pub struct Created {
    pub pid: i32,
    pub cgroup: Cgroup,
}

/// Creates the container and returns its init's host PID.
pub fn create(root: &StateRoot, container_id: &str, opts: &CreateOptions) -> Result<i32, LifecycleError> {
    create_container(root, container_id, opts).map(|c| c.pid)
}

pub fn create_container(root: &StateRoot, container_id: &str, opts: &CreateOptions) -> Result<Created, LifecycleError> {
    id::validate(container_id)?;
    let bundle = Bundle::load(opts.bundle)?;
    rootfs::check_propagation(&bundle.spec)?;
    warn_about_ignored(&bundle.spec);
    let linux = bundle.spec.linux().as_ref().expect("validated by bundle");
    let lsm_host = security::lsm::Host::detect();
    if let Some(p) = bundle.spec.process() {
        security::lsm::Labels::of(p).validate(&lsm_host)?;
    }
    security::lsm::validate_mount_label(linux.mount_label().as_deref(), &lsm_host)?;
    // The seccomp cache lives in the root: make the root (0700) before it writes there.
    root.ensure()?;
    let seccomp = match linux.seccomp() {
        Some(cfg) => Some(security::seccomp::compile_cached(cfg, &root.path().join(".seccomp-cache"))?),
        None => None,
    };
    let cg_path = if opts.systemd_cgroup {
        cgroups::systemd_path(linux.cgroups_path().as_deref(), container_id)?
    } else {
        cgroups::container_path(linux.cgroups_path().as_deref(), container_id)?
    };
    if let Some(res) = linux.resources() {
        cgroups::check_controllers(res)?;
    }
    // The systemd driver goes to the user's own systemd (libcgroups picks the session bus for
    // a caller that is not root), which delegates the user's slice.
    let no_cgroup = match opts.rootless && !opts.systemd_cgroup {
        true => {
            let explicit = linux.cgroups_path().as_ref().is_some_and(|p| !p.as_os_str().is_empty());
            crate::rootless::placement(&cg_path, explicit, linux.resources().as_ref())?
        }
        false => None,
    };

    let dir = ContainerDir::create(root, container_id)?;
    let result = (|| {
        // Before anything else is made: `exec` reads it later, and a `delete --force` of a create
        // that died half-way finds the cgroup path in it.
        // 0600: process.env often carries secrets, and the root may be readable by others.
        write_private(&dir.config_path(), &bundle.raw).map_err(|source| {
            LifecycleError::State(StateError::Io { id: container_id.into(), path: dir.config_path(), source })
        })?;
        // Before the container can write anything, so all it writes is charged.
        if let Some(limits) = crate::disk_quota::requested(&bundle.spec)? {
            crate::disk_quota::setup(root, &dir, container_id, &bundle.rootfs, limits)?;
        }
        let cgroup = match (&no_cgroup, opts.rootless) {
            (Some(reason), _) => Cgroup::none(&cg_path, container_id, reason.clone()),
            (None, true) => Cgroup::open_rootless(&cg_path, opts.systemd_cgroup, container_id)?,
            (None, false) => Cgroup::open(&cg_path, opts.systemd_cgroup, container_id)?,
        };
        let spawned = spawn::spawn(&Request {
            id: container_id,
            bundle: &bundle,
            fifo: &dir.fifo_path(),
            start_error: &dir.start_error_path(),
            seccomp: seccomp.as_ref(),
            console_socket: opts.console_socket,
            no_pivot: opts.no_pivot,
            preserved: opts.preserved,
            cgroup: &cgroup,
            timeout: spawn::SETUP_TIMEOUT,
        });
        let spawned = match spawned {
            Ok(s) => s,
            Err(e) => {
                let _ = cgroup.remove();
                return Err(e.into());
            }
        };
        let state = ContainerState {
            id: container_id.to_string(),
            oci_version: bundle.spec.version().clone(),
            pid: spawned.pid,
            pid_start_time: spawned.start_time,
            bundle: bundle.dir.clone(),
            rootfs: bundle.rootfs.clone(),
            created: timefmt::rfc3339_nanos(SystemTime::now()),
            annotations: bundle.spec.annotations().clone().unwrap_or_default(),
            cgroup_path: cgroup.path().to_path_buf(),
            systemd_cgroup: opts.systemd_cgroup,
            rootless: opts.rootless,
            no_cgroup: no_cgroup.clone(),
            hooks: bundle.spec.hooks().clone(),
            paused: false,
            resources: linux.resources().clone(),
        };
        let saved = dir.save(&state).map_err(LifecycleError::from).and_then(|()| match opts.pid_file {
            Some(p) => write_pid_file(p, spawned.pid),
            None => Ok(()),
        });
        let pid = spawned.pid;
        match saved.and_then(|()| spawned.commit().map_err(LifecycleError::from)) {
            Ok(()) => Ok(Created { pid, cgroup }),
            Err(e) => {
                spawn::kill_and_wait(pid);
                let _ = cgroup.remove();
                if let Some(p) = opts.pid_file {
                    let _ = fs::remove_file(p);
                }
                Err(e)
            }
        }
    })();
    if result.is_err() {
        let _ = crate::disk_quota::release(root, &dir);
        let _ = dir.remove();
    }
    result
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(data)
}

/// Written to a temporary file in the same directory and renamed, so a caller polling for the
/// pid file never reads a partial number.
pub(super) fn write_pid_file(path: &Path, pid: i32) -> Result<(), LifecycleError> {
    let err = |source| LifecycleError::PidFile { path: path.into(), source };
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| err(std::io::ErrorKind::InvalidInput.into()))?;
    let tmp: PathBuf = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    let mut f = fs::File::create(&tmp).map_err(err)?;
    f.write_all(pid.to_string().as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)?;
    fs::rename(&tmp, path).map_err(err)
}

/// What the config asks for that this build or host cannot give: said before anything is made.
fn warn_about_ignored(spec: &oci_spec::runtime::Spec) {
    let process = spec.process().as_ref();
    for w in security::capabilities::unavailable(process.and_then(|p| p.capabilities().as_ref())) {
        tracing::warn!("process.capabilities: {w}");
    }
    let skipped = crate::rootfs::skipped_without_mount_namespace(spec);
    if !skipped.is_empty() {
        tracing::warn!(
            "linux.namespaces has no mount namespace: the container shares the caller's mounts and is only \
             chrooted into root.path; not applied: {}",
            skipped.join(", ")
        );
    }
}

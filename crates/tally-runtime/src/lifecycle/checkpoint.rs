//! `checkpoint` and `restore`: a running container written to disk by CRIU and brought back,
//! into the same or another container ID, with the bundle's config. tally's part: the
//! container's external mounts, its cgroup (the restored processes are put in the new
//! container's, with its limits), the state, and the beancounters, whose high-water marks the
//! image carries (`tally-checkpoint.json`) and restore continues; the ledger records both.

use std::ffi::CString;
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::LifecycleError;
use crate::bundle::Bundle;
use crate::cgroups::{self, Cgroup};
use crate::criu::{self, CriuError, External};
use crate::state::{ContainerDir, ContainerState, Lock, StateRoot, Status};
use crate::sys::{self, Forked};
use crate::{id, proc_info, rootfs, timefmt};

/// What tally adds to CRIU's images.
const RECORD: &str = "tally-checkpoint.json";

pub struct CheckpointOptions {
    pub criu: PathBuf,
    pub dump: criu::DumpOptions,
}

pub struct RestoreOptions<'a> {
    pub criu: PathBuf,
    pub bundle: &'a Path,
    pub restore: criu::RestoreOptions,
    pub detach: bool,
    pub pid_file: Option<&'a Path>,
    pub systemd_cgroup: bool,
}

fn invalid(message: String) -> LifecycleError {
    LifecycleError::Checkpoint(message)
}

fn path_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> LifecycleError + 'a {
    move |source| LifecycleError::Criu(CriuError::Path { what, path: path.into(), source })
}

/// Dumps the container. A failed dump leaves it running and unchanged (CRIU resumes what it
/// froze); a final dump without `--leave-running` ends it, and it is deleted as runc does.
pub fn checkpoint(root: &StateRoot, id: &str, opts: &CheckpointOptions) -> Result<(), LifecycleError> {
    let dir = ContainerDir::open(root, id, Lock::Exclusive)?;
    let state = dir.load()?.ok_or_else(|| LifecycleError::Creating(id.into()))?;
    let status = dir.status(Some(&state));
    if !matches!(status, Status::Running | Status::Paused) {
        return Err(LifecycleError::WrongStatus {
            id: id.into(),
            status,
            message: "only a running container can be checkpointed",
        });
    }
    let o = &opts.dump;
    for (what, p) in [("--image-path", &o.common.image), ("--work-path", &o.common.work)] {
        fs::create_dir_all(p).map_err(path_err(what, p))?;
    }
    if let Some(parent) = &o.parent {
        let full = if parent.is_absolute() { parent.clone() } else { o.common.image.join(parent) };
        if !full.is_dir() {
            return Err(invalid(format!("--parent-path {}: no such directory of a previous dump", full.display())));
        }
    }
    let spec = dir.config()?;
    let mountinfo_path = PathBuf::from(format!("/proc/{}/mountinfo", state.pid));
    let mountinfo = fs::read_to_string(&mountinfo_path).map_err(path_err("the init's mounts", &mountinfo_path))?;
    let externals = criu::externals(&mountinfo, &spec, &state.bundle).map_err(invalid)?;
    let final_dump = !o.pre_dump;
    let bc = super::beancounters::read(&dir, &state, false);
    let stdio = criu::stdio_of(state.pid, &mountinfo);
    // A network namespace joined by path stays where it is: CRIU knows it by its inode.
    let joined_netns = match criu::joined_netns(&spec) {
        Some(_) => {
            let ns = PathBuf::from(format!("/proc/{}/ns/net", state.pid));
            Some(fs::metadata(&ns).map_err(path_err("the init's network namespace", &ns))?.ino())
        }
        None => None,
    };
    if final_dump {
        let record = serde_json::json!({
            "id": id,
            "checkpointed": timefmt::rfc3339_nanos(SystemTime::now()),
            "externals": externals.iter().map(|e| serde_json::json!({"destination": e.destination, "source": e.source})).collect::<Vec<_>>(),
            "beancounters": bc,
            "stdio": stdio,
            "joined_netns": joined_netns.is_some(),
        });
        let path = o.common.image.join(RECORD);
        fs::write(&path, serde_json::to_vec_pretty(&record).expect("serializes"))
            .map_err(path_err("the checkpoint record", &path))?;
    }
    let mut args = criu::dump_args(state.pid, &externals, o);
    args.extend(criu::external_stdio(&stdio));
    if let Some(ino) = joined_netns {
        args.extend(["--external".into(), format!("net[{ino}]:{}", criu::EXTERNAL_NETNS).into()]);
    }
    // CRIU stops the tasks through the container's freezer, as runc has it do: atomically, and
    // also when the container is paused (containerd pauses a task before it checkpoints it),
    // where stopping them with ptrace alone leaves CRIU waiting forever on a frozen task to run
    // its parasite. A paused container is left paused again.
    if let Some(freezer) = Cgroup::of(&state).ok().and_then(|c| c.freezer_dir()) {
        args.extend(["--freeze-cgroup".into(), freezer.into()]);
    }
    let op = if o.pre_dump { "pre-dump" } else { "dump" };
    let log = o.common.work.join(format!("{op}.log"));
    criu::run(&opts.criu, op, &args, log, None)?;
    if final_dump {
        if let Err(e) = tally_beancounters::ledger::append_event(root.path(), &bc, "checkpointed") {
            tracing::warn!("beancounter ledger in {}: {e}", root.path().display());
        }
    }
    if final_dump && !o.leave_running {
        // CRIU has ended the processes: what is left is the cgroup and the state.
        drop(dir);
        super::delete::delete(root, id, true)?;
    }
    Ok(())
}

/// The externals recorded at dump, with the sources the new bundle's config gives for its
/// bind mounts (so a volume can move), the new container's cgroup directory for its cgroup
/// mount, the recorded ones otherwise.
fn restore_externals(
    record: &serde_json::Value,
    spec: &oci_spec::runtime::Spec,
    bundle: &Path,
    cgroup_dir: &Path,
) -> Vec<External> {
    let recorded = record["externals"].as_array().cloned().unwrap_or_default();
    recorded
        .iter()
        .filter_map(|e| {
            let destination = PathBuf::from(e["destination"].as_str()?);
            if e["source"].as_str() == Some(criu::CGROUP_SOURCE) {
                return Some(External { destination, source: cgroup_dir.to_path_buf() });
            }
            let from_config = spec.mounts().iter().flatten().find(|m| m.destination() == &destination).and_then(|m| {
                let src = m.source().clone()?;
                Some(if src.is_absolute() { src } else { bundle.join(src) })
            });
            let source = from_config.unwrap_or_else(|| PathBuf::from(e["source"].as_str().unwrap_or_default()));
            Some(External { destination, source })
        })
        .collect()
}

/// The network namespace the restored container joins, opened for CRIU to inherit (not
/// close-on-exec), when the checkpointed one joined one by path; a bundle that does not say the
/// same as the checkpoint is an error, since CRIU would otherwise rebuild a namespace where the
/// config names one, or find none to put the container in.
fn restore_netns(
    record: &serde_json::Value,
    spec: &oci_spec::runtime::Spec,
) -> Result<Option<OwnedFd>, LifecycleError> {
    let dumped_joined = record["joined_netns"].as_bool().unwrap_or(false);
    match (dumped_joined, criu::joined_netns(spec)) {
        (false, None) => Ok(None),
        (true, Some(path)) => {
            let fd = nix::fcntl::open(&path, nix::fcntl::OFlag::O_RDONLY, nix::sys::stat::Mode::empty())
                .map_err(|e| path_err("linux.namespaces network path", &path)(e.into()))?;
            // SAFETY: open returned this fd just now and nothing else owns it.
            Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
        }
        (true, None) => Err(invalid(
            "the checkpointed container joined a network namespace by path; the bundle's linux.namespaces names none to restore it into".into(),
        )),
        (false, Some(path)) => Err(invalid(format!(
            "linux.namespaces network path {}: the checkpointed container had a network namespace of its own, which CRIU restores; it cannot join another",
            path.display()
        ))),
    }
}

/// Restores a checkpoint into container `id` made from `--bundle`; returns the restored
/// init's host PID, and with `detach` off waits for it and returns its exit status instead.
pub fn restore(root: &StateRoot, id: &str, opts: &RestoreOptions) -> Result<i32, LifecycleError> {
    id::validate(id)?;
    let bundle = Bundle::load(opts.bundle)?;
    let linux = bundle.spec.linux().as_ref().expect("validated by bundle");
    let o = &opts.restore;
    let record_path = o.image.join(RECORD);
    let record_text = fs::read(&record_path).map_err(|e| {
        invalid(format!("--image-path {}: not a tally checkpoint ({} : {e})", o.image.display(), record_path.display()))
    })?;
    let record: serde_json::Value = serde_json::from_slice(&record_text)
        .map_err(|e| invalid(format!("{}: corrupt checkpoint record: {e}", record_path.display())))?;
    root.ensure()?;
    fs::create_dir_all(&o.work).map_err(path_err("--work-path", &o.work))?;
    let cg_path = if opts.systemd_cgroup {
        cgroups::systemd_path(linux.cgroups_path().as_deref(), id)?
    } else {
        cgroups::container_path(linux.cgroups_path().as_deref(), id)?
    };
    if let Some(res) = linux.resources() {
        cgroups::check_controllers(res)?;
    }
    let rel = cgroups::hierarchy_path(&cg_path, opts.systemd_cgroup);
    let cgroup_dir = Path::new("/sys/fs/cgroup").join(rel.strip_prefix("/").unwrap_or(&rel));
    let externals = restore_externals(&record, &bundle.spec, &bundle.dir, &cgroup_dir);
    // Checked before the rootfs gets its mount points: a refused restore changes nothing.
    let netns = restore_netns(&record, &bundle.spec)?;
    let rootfs = rootfs::Root::open(&bundle.rootfs).map_err(path_err("the bundle's rootfs", &bundle.rootfs))?;
    rootfs::ensure_mount_points(&rootfs, &bundle.dir, bundle.spec.mounts().as_deref().unwrap_or_default())
        .map_err(|e| invalid(e.to_string()))?;
    drop(rootfs);
    let dir = ContainerDir::create(root, id)?;
    let result = (|| -> Result<ContainerState, LifecycleError> {
        fs::write(dir.config_path(), &bundle.raw).map_err(path_err("the config copy", &dir.config_path()))?;
        let cgroup = Cgroup::open(&cg_path, opts.systemd_cgroup, id)?;
        let pidfile = dir.path().join("restore.pid");
        let mut args = criu::restore_args(&bundle.rootfs, &pidfile, &externals, o);
        let stdio: Vec<String> = record["stdio"]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_str().unwrap_or_default().to_string()).collect())
            .unwrap_or_default();
        args.extend(criu::inherit_stdio(&stdio));
        if let Some(fd) = &netns {
            args.extend(["--inherit-fd".into(), format!("fd[{}]:{}", fd.as_raw_fd(), criu::EXTERNAL_NETNS).into()]);
        }
        if !opts.detach {
            // The restored init becomes tally's child, so tally can wait for its status.
            args.push("--restore-sibling".into());
        }
        let log = o.work.join("restore.log");
        let ran = run_restore(&opts.criu, &args, &bundle.rootfs, &cgroup, linux.resources().as_ref(), log);
        if let Err(e) = ran {
            let _ = cgroup.remove();
            return Err(e);
        }
        let pid: i32 = fs::read_to_string(&pidfile)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .ok_or_else(|| invalid(format!("criu restore wrote no pid to {}", pidfile.display())))?;
        let _ = fs::remove_file(&pidfile);
        let start_time = match proc_info::start_time(pid) {
            Some((t, false)) => t,
            _ => {
                let _ = cgroup.remove();
                return Err(invalid(format!("the restored init (pid {pid}) is already gone")));
            }
        };
        if criu::network_lock() == Some("nftables") {
            if let Err(e) = criu::netlock::unlock_restored(pid) {
                crate::spawn::kill_and_wait(pid);
                let _ = cgroup.remove();
                return Err(invalid(format!("{e}: CRIU's network lock would stay on the restored container")));
            }
        }
        Ok(ContainerState {
            id: id.to_string(),
            oci_version: bundle.spec.version().clone(),
            pid,
            pid_start_time: start_time,
            bundle: bundle.dir.clone(),
            rootfs: bundle.rootfs.clone(),
            created: timefmt::rfc3339_nanos(SystemTime::now()),
            annotations: bundle.spec.annotations().clone().unwrap_or_default(),
            cgroup_path: cgroup.path().to_path_buf(),
            systemd_cgroup: opts.systemd_cgroup,
            rootless: false,
            no_cgroup: None,
            hooks: bundle.spec.hooks().clone(),
            paused: false,
            resources: linux.resources().clone(),
        })
    })();
    let state = match result.and_then(|s| dir.save(&s).map(|()| s).map_err(LifecycleError::from)) {
        Ok(s) => s,
        Err(e) => {
            if let Ok(Some(s)) = dir.load() {
                crate::spawn::kill_and_wait(s.pid);
            }
            let _ = dir.remove();
            return Err(e);
        }
    };
    super::beancounters::continue_from(&dir, &record["beancounters"]);
    let bc = super::beancounters::read(&dir, &state, true);
    if let Err(e) = tally_beancounters::ledger::append_event(root.path(), &bc, "restored") {
        tracing::warn!("beancounter ledger in {}: {e}", root.path().display());
    }
    if let Some(p) = opts.pid_file {
        super::create::write_pid_file(p, state.pid)?;
    }
    if opts.detach {
        return Ok(state.pid);
    }
    drop(dir);
    let set = super::foreground::block_forwarded();
    let code = super::foreground::wait_forwarding(state.pid, &set);
    super::delete::delete(root, id, true)?;
    Ok(code)
}

/// Runs `criu restore` in a mount namespace of its own (where the rootfs is bound onto itself,
/// the mount point CRIU's `--root` wants) and in the new container's cgroup, which the restored
/// processes inherit: CRIU is forked, put in the cgroup with the bundle's limits applied, and
/// only then exec'd.
fn run_restore(
    bin: &Path,
    args: &[std::ffi::OsString],
    rootfs: &Path,
    cgroup: &Cgroup,
    resources: Option<&oci_spec::runtime::LinuxResources>,
    log: PathBuf,
) -> Result<(), LifecycleError> {
    use std::os::unix::ffi::OsStrExt;
    let cstr = |b: &[u8]| CString::new(b).map_err(|_| invalid("a path with a NUL byte".into()));
    let bin_c = cstr(bin.as_os_str().as_bytes())?;
    let mut argv: Vec<CString> = vec![bin_c.clone()];
    for a in args {
        argv.push(cstr(a.as_bytes())?);
    }
    let rootfs_c = cstr(rootfs.as_os_str().as_bytes())?;
    let (gate_r, gate_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| invalid(format!("pipe: {e}")))?;
    let child = match sys::clone_process(0).map_err(|e| invalid(format!("fork criu: {e}")))? {
        Forked::Child => {
            drop(gate_w);
            let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
            ptrs.push(std::ptr::null());
            // SAFETY: only system calls on memory prepared before the fork, then exec or _exit.
            unsafe {
                let mut byte = 0u8;
                if libc::read(gate_r.as_raw_fd(), (&mut byte as *mut u8).cast(), 1) != 1 {
                    libc::_exit(1);
                }
                let none = std::ptr::null::<libc::c_char>();
                if libc::unshare(libc::CLONE_NEWNS) != 0
                    || libc::mount(none, c"/".as_ptr(), none, libc::MS_REC | libc::MS_SLAVE, std::ptr::null()) != 0
                    || libc::mount(
                        rootfs_c.as_ptr(),
                        rootfs_c.as_ptr(),
                        none,
                        libc::MS_BIND | libc::MS_REC,
                        std::ptr::null(),
                    ) != 0
                {
                    libc::_exit(126);
                }
                libc::execvp(bin_c.as_ptr(), ptrs.as_ptr());
                libc::_exit(127)
            }
        }
        Forked::Parent(pid) => pid,
    };
    drop(gate_r);
    let joined = (|| -> Result<(), LifecycleError> {
        cgroup.add_task(child)?;
        if let Some(res) = resources {
            cgroup.apply(res)?;
        }
        Ok(())
    })();
    if let Err(e) = joined {
        crate::spawn::kill_and_wait(child);
        return Err(e);
    }
    nix::unistd::write(&gate_w, &[1]).map_err(|e| invalid(format!("release criu: {e}")))?;
    drop(gate_w);
    let mut status = 0;
    // SAFETY: waitpid on our own child, writing into a live local.
    unsafe { libc::waitpid(child, &mut status, 0) };
    match (libc::WIFEXITED(status), libc::WEXITSTATUS(status)) {
        (true, 0) => Ok(()),
        (true, 127) => {
            Err(CriuError::Spawn { op: "restore", bin: bin.into(), source: std::io::ErrorKind::NotFound.into() }.into())
        }
        (true, 126) => Err(invalid("criu restore: could not prepare its mount namespace".into())),
        _ => {
            let code = if libc::WIFEXITED(status) {
                format!("exit status {}", libc::WEXITSTATUS(status))
            } else {
                format!("killed by signal {}", libc::WTERMSIG(status))
            };
            Err(criu::failed("restore", code, log).into())
        }
    }
}

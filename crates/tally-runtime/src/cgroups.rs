//! A thin adapter over `libcgroups`: where a container's cgroup is, putting its init there, and
//! removing it (with the empty parent tally made, so `delete` leaves nothing).

use std::cell::OnceCell;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use libcgroups::common::{
    self, AnyCgroupManager, AnyManagerError, CgroupConfig, CgroupManager, ControllerOpt, FreezerState,
};
use libcgroups::v2::manager::V2ManagerError;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxDeviceType, LinuxResources};

mod entry;
pub use entry::Entry;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroup {path}: {message}")]
    Manager { path: PathBuf, message: String },
    #[error(
        "--systemd-cgroup: the systemd cgroup driver needs systemd as PID 1, but PID 1 is {0:?}; \
         drop --systemd-cgroup to use cgroupfs"
    )]
    NoSystemd(String),
    #[error(
        "linux.cgroupsPath {0:?}: must name a cgroup below the hierarchy's root, without \"..\", for the \
         cgroupfs driver"
    )]
    BadPath(PathBuf),
    #[error(
        "--cgroup {0:?}: must be [controller[,controller]:]path, a relative path without \"..\" to an existing \
         sub-cgroup of the container's"
    )]
    BadSub(String),
    #[error(
        "linux.cgroupsPath {0:?}: with --systemd-cgroup it must be [slice]:prefix:name (e.g. system.slice:tally:c1)"
    )]
    BadSystemdPath(String),
    #[error("linux.resources.{field}: the {controller} cgroup controller is not available on this host ({mode})")]
    NoController { field: &'static str, controller: String, mode: &'static str },
    #[error("linux.resources.{field}: {value} is not a valid value: {message}")]
    Value { field: &'static str, value: i64, message: &'static str },
    #[error("linux.resources.devices[{0}].type: \"p\" is not a device cgroup type (a, b or c); a FIFO needs no rule")]
    DeviceType(usize),
    #[error("linux.resources.unified {key:?}: {message}")]
    Unified { key: String, message: String },
    #[error(
        "linux.resources.blockIO.weight: cgroup v1's blkio controller has no proportional weight on this host: \
         its weight files come with the BFQ I/O scheduler (CFQ's went with CFQ), which this kernel has not loaded \
         (modprobe bfq)"
    )]
    NoWeight,
    #[error("container {id} has no cgroup ({reason}): {op} needs one")]
    NoCgroup { id: String, reason: String, op: &'static str },
}

pub struct Cgroup {
    path: PathBuf,
    systemd: bool,
    /// `Err`: the container has no cgroup of its own (rootless without delegation); the
    /// string says why, for the commands that would need one. The manager itself is made
    /// when first used: libcgroups' v1 one reads the mount table and /proc/self/cgroup once
    /// per controller, which `exec` into a running container does not need.
    manager: Result<OnceCell<AnyCgroupManager>, String>,
    id: String,
    /// Rootless: a device filter the kernel refuses is done without (see `apply`).
    rootless: bool,
}

/// With `--systemd-cgroup`, `linux.cgroupsPath` is systemd's `slice:prefix:name` (the slice may
/// be empty: `system.slice`), the default `:tally:<id>`; the systemd manager makes the unit
/// `<prefix>-<name>.scope` in that slice.
pub fn systemd_path(spec_path: Option<&Path>, id: &str) -> Result<PathBuf, CgroupError> {
    let Some(p) = spec_path.filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(PathBuf::from(format!(":tally:{id}")));
    };
    let text = p.to_string_lossy();
    let parts: Vec<&str> = text.split(':').collect();
    let ok = matches!(parts.len(), 2 | 3)
        && !parts[parts.len() - 1].is_empty()
        && parts.iter().all(|s| !s.contains('/'))
        && (parts.len() == 2 || parts[0].is_empty() || parts[0].ends_with(".slice"));
    if !ok {
        return Err(CgroupError::BadSystemdPath(text.into_owned()));
    }
    Ok(p.to_path_buf())
}

/// Where systemd puts the unit of `slice:prefix:name`, relative to the cgroup root: slices
/// nest by their dashes (`a-b.slice` lives in `a.slice`).
pub fn systemd_dir(path: &Path) -> PathBuf {
    let text = path.to_string_lossy();
    let parts: Vec<&str> = text.split(':').collect();
    let (slice, prefix, name) = match parts.as_slice() {
        [p, n] => ("", *p, *n),
        [s, p, n] => (*s, *p, *n),
        _ => return path.to_path_buf(),
    };
    let slice = if slice.is_empty() { "system.slice" } else { slice };
    let mut dir = PathBuf::new();
    let stem = slice.trim_end_matches(".slice");
    let mut acc = String::new();
    for part in stem.split('-') {
        if !acc.is_empty() {
            acc.push('-');
        }
        acc.push_str(part);
        dir.push(format!("{acc}.slice"));
    }
    let unit = if prefix.is_empty() { format!("{name}.scope") } else { format!("{prefix}-{name}.scope") };
    dir.push(unit);
    dir
}

/// The cgroup's directory relative to each hierarchy's root, for the files tally reads itself.
pub fn hierarchy_path(path: &Path, systemd: bool) -> PathBuf {
    if systemd {
        Path::new("/").join(systemd_dir(path))
    } else {
        path.to_path_buf()
    }
}

/// Chooses the container's cgroup path: `linux.cgroupsPath` or, as runc's cgroupfs driver
/// chooses it, `/<id>`.
pub fn container_path(spec_path: Option<&Path>, id: &str) -> Result<PathBuf, CgroupError> {
    match spec_path {
        None => Ok(Path::new("/").join(id)),
        Some(p) if p.as_os_str().is_empty() => Ok(Path::new("/").join(id)),
        Some(p) => {
            // The hierarchy's root itself (`/`, `/.`) is refused too: `delete` would kill every
            // process on the host and try to remove the root.
            let bad = p.components().any(|c| matches!(c, std::path::Component::ParentDir))
                || !p.components().any(|c| matches!(c, std::path::Component::Normal(_)));
            if bad {
                return Err(CgroupError::BadPath(p.into()));
            }
            // runc treats a relative cgroupfs path as relative to the root of the hierarchy.
            Ok(Path::new("/").join(p))
        }
    }
}

impl Cgroup {
    pub fn open(path: &Path, systemd: bool, id: &str) -> Result<Self, CgroupError> {
        if systemd {
            let comm = fs::read_to_string("/proc/1/comm").unwrap_or_default().trim().to_string();
            if comm != "systemd" {
                return Err(CgroupError::NoSystemd(comm));
            }
        }
        let cgroup = Self::lazy(path, systemd, id, false);
        cgroup.managed()?;
        Ok(cgroup)
    }

    /// `open` without making the manager yet (its errors come with its first use).
    fn lazy(path: &Path, systemd: bool, id: &str, rootless: bool) -> Self {
        Self { path: path.into(), systemd, manager: Ok(OnceCell::new()), id: id.into(), rootless }
    }

    /// A rootless container's cgroup (in a delegated subtree, or through the user's systemd).
    pub fn open_rootless(path: &Path, systemd: bool, id: &str) -> Result<Self, CgroupError> {
        Ok(Self { rootless: true, ..Self::open(path, systemd, id)? })
    }

    /// No cgroup: a rootless container on a host that delegates none to the caller.
    pub fn none(path: &Path, id: &str, reason: String) -> Self {
        Self { path: path.into(), systemd: false, manager: Err(reason), id: id.into(), rootless: true }
    }

    /// The cgroup of a container whose state is saved.
    pub fn of(state: &crate::state::ContainerState) -> Result<Self, CgroupError> {
        match (&state.no_cgroup, state.rootless) {
            (Some(reason), _) => Ok(Self::none(&state.cgroup_path, &state.id, reason.clone())),
            // The systemd driver (PID 1, its D-Bus connection) is checked at once, as at create.
            (None, true) if state.systemd_cgroup => Self::open_rootless(&state.cgroup_path, true, &state.id),
            (None, false) if state.systemd_cgroup => Self::open(&state.cgroup_path, true, &state.id),
            (None, rootless) => Ok(Self::lazy(&state.cgroup_path, false, &state.id, rootless)),
        }
    }

    /// Why the container has no cgroup, if it has none.
    pub fn missing(&self) -> Option<&str> {
        self.manager.as_ref().err().map(String::as_str)
    }

    fn manager(&self, op: &'static str) -> Result<&AnyCgroupManager, CgroupError> {
        match &self.manager {
            Ok(cell) => self.made(cell),
            Err(reason) => Err(CgroupError::NoCgroup { id: self.id.clone(), reason: reason.clone(), op }),
        }
    }

    /// The manager, `None` without a cgroup.
    fn managed(&self) -> Result<Option<&AnyCgroupManager>, CgroupError> {
        match &self.manager {
            Ok(cell) => self.made(cell).map(Some),
            Err(_) => Ok(None),
        }
    }

    fn made<'a>(&self, cell: &'a OnceCell<AnyCgroupManager>) -> Result<&'a AnyCgroupManager, CgroupError> {
        if let Some(m) = cell.get() {
            return Ok(m);
        }
        let manager = common::create_cgroup_manager(CgroupConfig {
            cgroup_path: self.path.clone(),
            systemd_cgroup: self.systemd,
            container_name: self.id.clone(),
        })
        .map_err(|e| self.err(e))?;
        Ok(cell.get_or_init(|| manager))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cgroup made ready for a new init to start in it or move itself in (see `entry`);
    /// `None` where the runtime moves it by PID after the clone (`add_task`): the systemd
    /// driver, a rootless container, no cgroup.
    pub fn prepare_entry(&self) -> Result<Option<Entry>, CgroupError> {
        if self.systemd || self.rootless || self.manager.is_err() {
            return Ok(None);
        }
        Entry::prepare(&self.path).map(Some).map_err(|e| self.err(e))
    }

    /// After the clone, what the init cannot do itself: joining v2 by PID when clone3 could not
    /// start it there (or everything, without an `Entry`).
    pub fn complete_entry(&self, entry: Option<&Entry>, pid: i32, in_v2: bool) -> Result<(), CgroupError> {
        match entry {
            None => self.add_task(pid),
            Some(_) if in_v2 => Ok(()),
            Some(e) => e.add_to_v2(pid).map_err(|e| self.err(e)),
        }
    }

    pub fn add_task(&self, pid: i32) -> Result<(), CgroupError> {
        let Some(manager) = self.managed()? else { return Ok(()) };
        manager.add_task(Pid::from_raw(pid)).map_err(|e| self.err(e))?;
        if !self.systemd {
            for dir in self.unmanaged_dirs() {
                fs::create_dir_all(&dir)
                    .and_then(|()| fs::write(dir.join("cgroup.procs"), pid.to_string()))
                    .map_err(|e| self.err(format!("{}: {e}", dir.display())))?;
            }
        }
        Ok(())
    }

    /// The container's directories in the hierarchies libcgroups leaves alone (see
    /// `unmanaged_hierarchies`).
    fn unmanaged_dirs(&self) -> Vec<PathBuf> {
        let relative = self.path.strip_prefix("/").unwrap_or(&self.path);
        unmanaged_hierarchies().into_iter().map(|m| m.join(relative)).collect()
    }

    /// Applies `linux.resources`. The device rules are the config's, with the access it gives:
    /// libcgroups appends the standard devices every container needs (and mknod on all), as
    /// runc does, and neither adds a rule for `linux.devices` entries (Podman's `--device`
    /// sends its own rule with the access asked for).
    pub fn apply(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        // Without a cgroup, create has refused every limit already (rootless::placement).
        let Some(manager) = self.managed()? else { return Ok(()) };
        let mut res = resources.clone();
        // Podman sends `"memory": {}` after dropping `--memory` on a host without the
        // controller; libcgroups' v1 manager would still look for the hierarchy.
        if res.memory().as_ref().is_some_and(|m| *m == Default::default()) {
            res.set_memory(None);
        }
        let opt =
            ControllerOpt { resources: &res, disable_oom_killer: false, oom_score_adj: None, freezer_state: None };
        let err = |e: &dyn std::fmt::Display| CgroupError::Manager {
            path: self.path.clone(),
            message: format!("linux.resources: {e}"),
        };
        match manager.apply(&opt) {
            // libcgroups' v2 manager always loads a device filter, after every controller but
            // before the unified keys; a rootless caller cannot load one (BPF is privileged
            // over the host). The user namespace already keeps the container from making
            // device nodes, and the ones it gets are bind mounts of the host's, which the host's
            // permissions govern; runc goes without the filter the same way. What remains to
            // apply is the unified keys.
            Err(AnyManagerError::V2(V2ManagerError::DevicesController(_))) if self.rootless => {
                let dir =
                    Path::new(common::DEFAULT_CGROUP_ROOT).join(self.path.strip_prefix("/").unwrap_or(&self.path));
                for (key, value) in res.unified().iter().flatten() {
                    fs::write(dir.join(key), value).map_err(|e| err(&format!("unified {key:?}: {e}")))?;
                }
                Ok(())
            }
            r => r.map_err(|e| err(&e)),
        }
    }

    /// `exec --cgroup [CONTROLLER[,CONTROLLER]:]PATH`: a sub-cgroup of the container's,
    /// which must exist, in every hierarchy (or the named controllers' hierarchies) that has it.
    pub fn add_task_to_sub(&self, pid: i32, spec: &str) -> Result<(), CgroupError> {
        self.manager("exec --cgroup")?;
        let (controllers, sub) = match spec.split_once(':') {
            Some((c, p)) => (c.split(',').filter(|c| !c.is_empty()).collect::<Vec<_>>(), p),
            None => (Vec::new(), spec),
        };
        let sub = Path::new(sub.trim_start_matches('/'));
        let bad = sub.as_os_str().is_empty() || sub.components().any(|c| !matches!(c, std::path::Component::Normal(_)));
        if bad {
            return Err(CgroupError::BadSub(spec.into()));
        }
        let dir = hierarchy_path(&self.path, self.systemd);
        let relative = dir.strip_prefix("/").unwrap_or(&dir);
        let mut joined = 0;
        for mount in cgroup_mounts() {
            let name = mount.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if !controllers.is_empty() && !name.split(',').any(|n| controllers.contains(&n)) {
                continue;
            }
            let dir = mount.join(relative).join(sub);
            if dir.is_dir() {
                fs::write(dir.join("cgroup.procs"), pid.to_string())
                    .map_err(|e| self.err(format!("{}: {e}", dir.display())))?;
                joined += 1;
            }
        }
        if joined == 0 {
            return Err(CgroupError::BadSub(spec.into()));
        }
        Ok(())
    }

    /// The directory whose freezer holds the container (v2: the cgroup itself; v1: its
    /// directory in the freezer hierarchy), when it has one: what CRIU's `--freeze-cgroup`
    /// takes.
    pub fn freezer_dir(&self) -> Option<PathBuf> {
        self.manager.as_ref().ok()?;
        let rel = hierarchy_path(&self.path, self.systemd);
        let rel = rel.strip_prefix("/").unwrap_or(&rel);
        let base = if pure_v2() {
            Path::new("/sys/fs/cgroup").to_path_buf()
        } else {
            Path::new("/sys/fs/cgroup/freezer").to_path_buf()
        };
        let dir = base.join(rel);
        dir.is_dir().then_some(dir)
    }

    /// Freezes (pause) or thaws (resume) every process in the cgroup.
    pub fn freeze(&self, frozen: bool) -> Result<(), CgroupError> {
        let state = if frozen { FreezerState::Frozen } else { FreezerState::Thawed };
        let op = if frozen { "pause" } else { "resume" };
        self.manager(op)?.freeze(state).map_err(|e| self.err(format!("freezer: {e}")))
    }

    /// The controllers' counters (cpu, memory, pids, blkio, hugetlb) as libcgroups reads them.
    pub fn stats(&self) -> Result<libcgroups::stats::Stats, CgroupError> {
        self.manager("the cgroup's statistics")?.stats().map_err(|e| self.err(format!("stats: {e}")))
    }

    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let pids = self.manager("the cgroup's process list")?.get_all_pids().map_err(|e| self.err(e))?;
        Ok(pids.into_iter().map(|p| p.as_raw()).collect())
    }

    /// The container's processes: the cgroup's, or without one, every process in the pid
    /// namespace of the init (`init_pid`), which is the whole container when it has its own.
    pub fn processes(&self, init_pid: i32) -> Result<Vec<i32>, CgroupError> {
        match self.missing() {
            Some(_) => Ok(crate::proc_info::pid_namespace_members(init_pid)),
            None => self.pids(),
        }
    }

    /// Kills what is left in the cgroup and removes it.
    pub fn remove(&self) -> Result<(), CgroupError> {
        let Some(manager) = self.managed()? else { return Ok(()) };
        // Sub-cgroups (`exec --cgroup`, or made by the container's own cgroup manager) first:
        // libcgroups' v1 manager removes only the container's own directory.
        self.remove_children();
        manager.remove().map_err(|e| self.err(e))?;
        if !self.systemd {
            for dir in self.unmanaged_dirs() {
                remove_when_empty(&dir).map_err(|e| self.err(format!("{}: {e}", dir.display())))?;
            }
        }
        Ok(())
    }

    fn remove_children(&self) {
        fn prune(dir: &Path, depth: usize) {
            for e in fs::read_dir(dir).into_iter().flatten().flatten() {
                if depth < 16 && e.file_type().is_ok_and(|t| t.is_dir()) {
                    prune(&e.path(), depth + 1);
                    // Fails while processes remain, which the manager's removal then reports.
                    let _ = fs::remove_dir(e.path());
                }
            }
        }
        let dir = hierarchy_path(&self.path, self.systemd);
        let relative = dir.strip_prefix("/").unwrap_or(&dir);
        for mount in cgroup_mounts() {
            prune(&mount.join(relative), 0);
        }
    }

    fn err(&self, e: impl std::fmt::Display) -> CgroupError {
        CgroupError::Manager { path: self.path.clone(), message: e.to_string() }
    }
}

/// The controllers this host offers: on a pure v2 host those in the root's
/// `cgroup.controllers`, otherwise the v1 hierarchies mounted (the v2 one of a hybrid host
/// has none).
pub fn available_controllers() -> (bool, Vec<String>) {
    if let Ok(list) = fs::read_to_string("/sys/fs/cgroup/cgroup.controllers") {
        return (true, list.split_whitespace().map(String::from).collect());
    }
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out = Vec::new();
    for line in info.lines() {
        let Some((_, right)) = line.split_once(" - ") else { continue };
        let mut f = right.split_whitespace();
        if f.next() != Some("cgroup") {
            continue;
        }
        for opt in f.nth(1).unwrap_or_default().split(',') {
            if !matches!(opt, "rw" | "ro" | "nosuid" | "nodev" | "noexec" | "relatime" | "xattr")
                && !opt.starts_with("name=")
                && !opt.contains('=')
            {
                out.push(opt.to_string());
            }
        }
    }
    (false, out)
}

/// Refuses limits whose controller this host lacks (the spec: a runtime must not silently
/// drop a configured limit). Empty sections need nothing.
pub fn check_controllers(res: &LinuxResources) -> Result<(), CgroupError> {
    check_values(res)?;
    // Most configs carry only device rules: nothing to look up then.
    let devices_only = res.memory().is_none()
        && res.cpu().is_none()
        && res.pids().is_none()
        && res.block_io().is_none()
        && res.hugepage_limits().as_ref().is_none_or(|h| h.is_empty())
        && res.rdma().as_ref().is_none_or(|r| r.is_empty())
        && res.unified().as_ref().is_none_or(|u| u.is_empty());
    if devices_only {
        return Ok(());
    }
    let (v2, available) = available_controllers();
    let mode = if v2 { "cgroup v2" } else { "cgroup v1" };
    let has = |c: &str| available.iter().any(|a| a == c);
    let need = |field: &'static str, controller: &str| -> Result<(), CgroupError> {
        if has(controller) {
            Ok(())
        } else {
            Err(CgroupError::NoController { field, controller: controller.into(), mode })
        }
    };
    if let Some(m) = res.memory() {
        if *m != Default::default() {
            need("memory", "memory")?;
        }
    }
    if let Some(c) = res.cpu() {
        let cpu_part = c.shares().is_some()
            || c.quota().is_some()
            || c.period().is_some()
            || c.burst().is_some()
            || c.realtime_period().is_some()
            || c.realtime_runtime().is_some()
            || c.idle().is_some();
        if cpu_part {
            need("cpu", "cpu")?;
        }
        if c.cpus().as_deref().is_some_and(|s| !s.is_empty()) || c.mems().as_deref().is_some_and(|s| !s.is_empty()) {
            need("cpu.cpus", "cpuset")?;
        }
    }
    if res.pids().is_some() {
        need("pids", "pids")?;
    }
    if let Some(b) = res.block_io() {
        if *b != Default::default() {
            need("blockIO", if v2 { "io" } else { "blkio" })?;
        }
        let weighted = b.weight().is_some()
            || b.leaf_weight().is_some()
            || b.weight_device().as_ref().is_some_and(|w| !w.is_empty());
        if weighted && !v2 && !v1_blkio_weights() {
            return Err(CgroupError::NoWeight);
        }
    }
    if res.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty()) {
        need("hugepageLimits", "hugetlb")?;
    }
    if res.rdma().as_ref().is_some_and(|r| !r.is_empty()) {
        need("rdma", "rdma")?;
    }
    for key in res.unified().iter().flatten().map(|(k, _)| k) {
        let err = |message: &str| CgroupError::Unified { key: key.clone(), message: message.into() };
        if key.contains('/') || key.contains("..") || !key.contains('.') {
            return Err(err("not a cgroup file name"));
        }
        if !v2 {
            return Err(err("unified keys need cgroup v2, and this host uses cgroup v1"));
        }
        let controller = key.split('.').next().unwrap_or_default();
        if controller != "cgroup" && !has(controller) {
            return Err(err(&format!("the {controller} controller is not available on this host")));
        }
    }
    Ok(())
}

/// Whether a v1 blkio cgroup has weight files: CFQ's `blkio.weight` (kernels before 5.0, also
/// in the root cgroup), or BFQ's `blkio.bfq.weight`, which exists once the BFQ scheduler is
/// registered (it is then listed in every queue's `scheduler`), in every cgroup but the root.
fn v1_blkio_weights() -> bool {
    if Path::new("/sys/fs/cgroup/blkio/blkio.weight").exists() {
        return true;
    }
    fs::read_dir("/sys/block").into_iter().flatten().flatten().any(|dev| {
        fs::read_to_string(dev.path().join("queue/scheduler"))
            .is_ok_and(|s| s.split_whitespace().any(|n| n.trim_matches(['[', ']']) == "bfq"))
    })
}

/// Values no controller accepts, refused before anything is written.
fn check_values(res: &LinuxResources) -> Result<(), CgroupError> {
    // A device rule is for a, b or c devices (what v1's devices.allow and the v2 filter know);
    // a FIFO in `linux.devices` gets its node and no rule.
    for (i, rule) in res.devices().iter().flatten().enumerate() {
        if rule.typ() == Some(LinuxDeviceType::P) {
            return Err(CgroupError::DeviceType(i));
        }
    }
    let at_least_minus_one = |field: &'static str, v: Option<i64>| match v {
        Some(v) if v < -1 => Err(CgroupError::Value { field, value: v, message: "must be -1 (no limit) or more" }),
        _ => Ok(()),
    };
    if let Some(m) = res.memory() {
        at_least_minus_one("memory.limit", m.limit())?;
        at_least_minus_one("memory.reservation", m.reservation())?;
        at_least_minus_one("memory.swap", m.swap())?;
        if let Some(sw) = m.swappiness().filter(|s| *s > 100) {
            return Err(CgroupError::Value {
                field: "memory.swappiness",
                value: sw as i64,
                message: "must be 0 to 100",
            });
        }
    }
    if let Some(c) = res.cpu() {
        at_least_minus_one("cpu.quota", c.quota())?;
    }
    if let Some(p) = res.pids() {
        at_least_minus_one("pids.limit", Some(p.limit()))?;
    }
    if let Some(w) = res.block_io().as_ref().and_then(|b| b.weight()) {
        if !(10..=1000).contains(&w) && w != 0 {
            return Err(CgroupError::Value { field: "blockIO.weight", value: w as i64, message: "must be 10 to 1000" });
        }
    }
    Ok(())
}

/// On a v1 or hybrid host, the hierarchies runc's cgroupfs driver joins and libcgroups' v1
/// manager does not (`CgroupMount::unmanaged`). None on a pure v2 host.
fn unmanaged_hierarchies() -> Vec<PathBuf> {
    if pure_v2() {
        return Vec::new();
    }
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    CgroupMount::parse(&info).into_iter().filter(CgroupMount::unmanaged).map(|m| m.dir).collect()
}

/// Whether /sys/fs/cgroup is the v2 tree itself (no v1 hierarchy in use).
fn pure_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// The v1 controllers libcgroups' manager joins, limits and removes, wherever they are mounted.
const MANAGED_V1: [&str; 12] = [
    "cpu",
    "cpuacct",
    "cpuset",
    "devices",
    "hugetlb",
    "memory",
    "pids",
    "perf_event",
    "blkio",
    "net_prio",
    "net_cls",
    "freezer",
];

/// A cgroup (v1) or cgroup2 mount of a mountinfo text.
struct CgroupMount {
    dir: PathBuf,
    v2: bool,
    /// The superblock's options: a v1 hierarchy's controllers, `name=`, and the like.
    options: String,
}

impl CgroupMount {
    fn parse(info: &str) -> Vec<Self> {
        info.lines()
            .filter_map(|line| {
                let (left, right) = line.split_once(" - ")?;
                let mut f = right.split_whitespace();
                let v2 = match f.next()? {
                    "cgroup2" => true,
                    "cgroup" => false,
                    _ => return None,
                };
                let options = f.nth(1).unwrap_or_default().to_string();
                Some(Self { dir: PathBuf::from(left.split_whitespace().nth(4)?), v2, options })
            })
            .collect()
    }

    fn has_option(&self, name: &str) -> bool {
        self.options.split(',').any(|o| o == name)
    }

    /// On a v1 or hybrid host: a hierarchy under /sys/fs/cgroup that libcgroups' v1 manager
    /// leaves alone and runc's cgroupfs driver joins: named ones (`name=systemd`, which systemd
    /// in a container needs), `rdma`, `misc`, and the controller-less cgroup2 `unified` one.
    fn unmanaged(&self) -> bool {
        let named = self.options.split(',').any(|o| o.starts_with("name=") || o == "rdma" || o == "misc");
        (self.v2 || named) && self.dir.starts_with("/sys/fs/cgroup")
    }

    /// On a v1 or hybrid host: a mount of a controller libcgroups' v1 manager handles.
    fn managed_v1(&self) -> bool {
        !self.v2 && MANAGED_V1.iter().any(|c| self.has_option(c))
    }
}

/// rmdir of a cgroup whose last processes have just been killed: the kernel may still count
/// them for a moment (EBUSY). A directory already gone is fine.
fn remove_when_empty(dir: &Path) -> io::Result<()> {
    for _ in 0..100 {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => std::thread::sleep(std::time::Duration::from_millis(10)),
            Err(e) => return Err(e),
        }
    }
    fs::remove_dir(dir)
}

/// Mount points of every cgroup (v1) and cgroup2 filesystem this process sees.
pub fn cgroup_mounts() -> Vec<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    CgroupMount::parse(&info).into_iter().map(|m| m.dir).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_mounts_are_read_from_mountinfo_with_their_options() {
        let info = "\
30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate
32 30 0:28 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset
33 30 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
34 30 0:30 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
35 25 0:31 / /mnt/other rw - cgroup cgroup rw,pids
36 25 0:32 / /proc rw - proc proc rw
";
        let m = CgroupMount::parse(info);
        let seen: Vec<_> = m.iter().map(|m| (m.dir.to_str().unwrap(), m.v2, m.has_option("cpuset"))).collect();
        assert_eq!(
            seen,
            [
                ("/sys/fs/cgroup/unified", true, false),
                ("/sys/fs/cgroup/cpuset", false, true),
                ("/sys/fs/cgroup/cpu,cpuacct", false, false),
                ("/sys/fs/cgroup/systemd", false, false),
                ("/mnt/other", false, false),
            ]
        );
        assert!(m[3].options.contains("name=systemd"));
    }

    #[test]
    fn default_and_explicit_paths() {
        assert_eq!(container_path(None, "c1").unwrap(), PathBuf::from("/c1"));
        assert_eq!(container_path(Some(Path::new("")), "c1").unwrap(), PathBuf::from("/c1"));
        assert_eq!(container_path(Some(Path::new("/a/b")), "c1").unwrap(), PathBuf::from("/a/b"));
        assert_eq!(container_path(Some(Path::new("a/b")), "c1").unwrap(), PathBuf::from("/a/b"));
        assert!(container_path(Some(Path::new("/a/../../b")), "c1").is_err());
        for root in ["/", "/.", "//", "."] {
            assert!(container_path(Some(Path::new(root)), "c1").is_err(), "{root}");
        }
    }

    #[test]
    fn systemd_paths_are_slice_prefix_name() {
        assert_eq!(systemd_path(None, "c1").unwrap(), PathBuf::from(":tally:c1"));
        assert!(systemd_path(Some(Path::new("machine.slice:podman:abc")), "c1").is_ok());
        assert!(systemd_path(Some(Path::new("/tally/c1")), "c1").is_err());
        assert!(systemd_path(Some(Path::new("a:b:c:d")), "c1").is_err());
        assert_eq!(systemd_dir(Path::new(":tally:c1")), PathBuf::from("system.slice/tally-c1.scope"));
        assert_eq!(
            systemd_dir(Path::new("kubepods-besteffort.slice:cri-containerd:abc")),
            PathBuf::from("kubepods.slice/kubepods-besteffort.slice/cri-containerd-abc.scope")
        );
    }
}

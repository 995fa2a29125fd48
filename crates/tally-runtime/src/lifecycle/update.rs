//! `update`: new resource limits for a live container, from a LinuxResources document (as
//! containerd sends it on stdin) and runc's individual flags on top. The values are merged
//! into those last applied, applied through the cgroup manager, and saved in the state.

use std::path::PathBuf;

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};

use super::LifecycleError;
use crate::bundle;
use crate::cgroups::Cgroup;
use crate::state::{ContainerDir, Lock, StateRoot, Status};

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("--resources {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("--resources {path}: {field}: {message}")]
    Parse { path: PathBuf, field: String, message: String },
    #[error("--{flag} {value:?}: {message}")]
    Flag { flag: &'static str, value: String, message: &'static str },
    #[error("--{flag}: {message}")]
    Vz { flag: String, message: String },
}

/// runc's individual `update` flags; sizes are strings with an optional k/m/g/t suffix.
#[derive(Debug, Default)]
pub struct UpdateFlags {
    pub blkio_weight: Option<u16>,
    pub cpu_period: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpu_burst: Option<u64>,
    pub cpu_shares: Option<u64>,
    pub cpu_rt_period: Option<u64>,
    pub cpu_rt_runtime: Option<i64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    pub cpu_idle: Option<i64>,
    pub memory: Option<String>,
    pub memory_reservation: Option<String>,
    pub memory_swap: Option<String>,
    pub pids_limit: Option<i64>,
    /// OpenVZ's settings by name (`cpuunits`, `cpulimit`, `cpus`, `ioprio`, `iolimit`,
    /// `iopslimit`), translated as the `org.tally.vz.*` annotations are at create.
    pub vz: Vec<(&'static str, String)>,
}

pub fn update(
    root: &StateRoot,
    id: &str,
    resources_file: Option<&std::path::Path>,
    flags: &UpdateFlags,
) -> Result<(), LifecycleError> {
    // Everything the caller gave is parsed before the container is touched.
    let doc = match resources_file {
        Some(path) => Some(read_resources(path)?),
        None => None,
    };
    let from_flags = flags_to_resources(flags)?;

    let dir = ContainerDir::open(root, id, Lock::Exclusive)?;
    let mut state = dir.load()?.ok_or_else(|| LifecycleError::Creating(id.into()))?;
    let status = dir.status(Some(&state));
    if !matches!(status, Status::Created | Status::Running | Status::Paused) {
        return Err(LifecycleError::WrongStatus { id: id.into(), status, message: "cannot update its resources" });
    }
    let mut change = LinuxResources::default();
    if let Some(doc) = &doc {
        merge(&mut change, doc);
    }
    merge(&mut change, &from_flags);
    if !flags.vz.is_empty() {
        change = with_vz_settings(change, &flags.vz, &state.rootfs)?;
    }

    crate::cgroups::check_controllers(&change)?;
    let before = state.resources.clone().unwrap_or_default();
    let mut merged = before.clone();
    merge(&mut merged, &change);
    // The merged limits are applied, not only the change: v2 wants memory.max with a swap
    // limit, and v1's memory+swap meaning depends on both. On cgroup v2 libcgroups rebuilds the
    // device filter from what it is given, so the container's device rules go with it; on v1
    // they are rewritten (deny all, then allow) only when the update changes them, since a
    // running container would see that window.
    let v2 = crate::cgroups::available_controllers().0;
    let keep_devices = v2 || change.devices().is_some();
    let without_devices = |r: &LinuxResources| {
        let mut r = r.clone();
        if !keep_devices {
            r.set_devices(None);
        }
        r
    };
    let cgroup = Cgroup::of(&state)?;
    if let Err(e) = cgroup.apply(&without_devices(&merged)) {
        // libcgroups writes one controller after another: put back what was there.
        let _ = cgroup.apply(&without_devices(&before));
        return Err(e.into());
    }
    state.resources = Some(merged);
    dir.save(&state)?;
    Ok(())
}

/// The OpenVZ settings of `update`, translated onto the rest of the change (so `--cpu-share`
/// with `--cpuunits` is the same contradiction it is in a config).
fn with_vz_settings(
    change: LinuxResources,
    settings: &[(&'static str, String)],
    rootfs: &std::path::Path,
) -> Result<LinuxResources, UpdateError> {
    use tally_beancounters::vz;
    let resources = serde_json::to_value(&change).expect("resources serialize");
    let mut doc = serde_json::json!({"annotations": {}, "linux": {"resources": resources}});
    for (name, value) in settings {
        doc["annotations"][format!("{}{name}", vz::PREFIX)] = serde_json::json!(value);
    }
    let v2 = crate::cgroups::available_controllers().0;
    vz::apply(&mut doc, v2, bundle::block_device_of(rootfs)).map_err(|e| UpdateError::Vz {
        flag: e.annotation.trim_start_matches(vz::PREFIX).to_string(),
        message: e.message,
    })?;
    bundle::parse_json(&serde_json::to_vec(&doc["linux"]["resources"]).expect("JSON serializes")).map_err(
        |(field, message)| UpdateError::Vz { flag: "resources".into(), message: format!("{field}: {message}") },
    )
}

fn read_resources(path: &std::path::Path) -> Result<LinuxResources, UpdateError> {
    let data = super::read_input(path).map_err(|source| UpdateError::Read { path: path.into(), source })?;
    bundle::parse_json(&data).map_err(|(field, message)| UpdateError::Parse {
        path: path.into(),
        field: if field == "config" { "resources".into() } else { field },
        message,
    })
}

/// Bytes from runc's size syntax: a number with an optional b/k/m/g/t suffix (powers of 1024),
/// or -1 for no limit.
pub fn parse_size(flag: &'static str, value: &str) -> Result<i64, UpdateError> {
    let bad = |message| UpdateError::Flag { flag, value: value.into(), message };
    let v = value.trim().to_ascii_lowercase();
    if v == "-1" {
        return Ok(-1);
    }
    let v = v.strip_suffix('b').unwrap_or(&v);
    let (num, mult) = match v.char_indices().last() {
        Some((i, 'k')) => (&v[..i], 1i64 << 10),
        Some((i, 'm')) => (&v[..i], 1 << 20),
        Some((i, 'g')) => (&v[..i], 1 << 30),
        Some((i, 't')) => (&v[..i], 1 << 40),
        _ => (v, 1),
    };
    let n: i64 = num.trim().parse().map_err(|_| bad("not a size (bytes, or a number with k, m, g or t)"))?;
    if n < 0 {
        return Err(bad("must not be negative (use -1 for no limit)"));
    }
    n.checked_mul(mult).ok_or_else(|| bad("too large"))
}

fn flags_to_resources(f: &UpdateFlags) -> Result<LinuxResources, UpdateError> {
    let mut r = LinuxResources::default();
    let mut mem = LinuxMemory::default();
    let mut any_mem = false;
    if let Some(v) = &f.memory {
        mem.set_limit(Some(parse_size("memory", v)?));
        any_mem = true;
    }
    if let Some(v) = &f.memory_reservation {
        mem.set_reservation(Some(parse_size("memory-reservation", v)?));
        any_mem = true;
    }
    if let Some(v) = &f.memory_swap {
        mem.set_swap(Some(parse_size("memory-swap", v)?));
        any_mem = true;
    }
    if any_mem {
        r.set_memory(Some(mem));
    }
    let mut cpu = LinuxCpu::default();
    cpu.set_period(f.cpu_period);
    cpu.set_quota(f.cpu_quota);
    cpu.set_burst(f.cpu_burst);
    cpu.set_shares(f.cpu_shares);
    cpu.set_realtime_period(f.cpu_rt_period);
    cpu.set_realtime_runtime(f.cpu_rt_runtime);
    cpu.set_cpus(f.cpuset_cpus.clone());
    cpu.set_mems(f.cpuset_mems.clone());
    cpu.set_idle(f.cpu_idle);
    if cpu != LinuxCpu::default() {
        r.set_cpu(Some(cpu));
    }
    if let Some(limit) = f.pids_limit {
        if limit == 0 || limit < -1 {
            return Err(UpdateError::Flag {
                flag: "pids-limit",
                value: limit.to_string(),
                message: "must be positive, or -1 for no limit",
            });
        }
        let mut pids = LinuxPids::default();
        pids.set_limit(limit);
        r.set_pids(Some(pids));
    }
    if let Some(w) = f.blkio_weight {
        let mut b = LinuxBlockIo::default();
        b.set_weight(Some(w));
        r.set_block_io(Some(b));
    }
    Ok(r)
}

/// Copies every value `new` sets into `into`, field by field for memory, cpu and pids, so an
/// update of one limit keeps the others.
fn merge(into: &mut LinuxResources, new: &LinuxResources) {
    if let Some(m) = new.memory() {
        let mut cur = (*into.memory()).unwrap_or_default();
        macro_rules! take { ($($get:ident $set:ident),*) => { $( if m.$get().is_some() { cur.$set(m.$get().clone()); } )* } }
        take!(limit set_limit, reservation set_reservation, swap set_swap, kernel set_kernel,
              kernel_tcp set_kernel_tcp, swappiness set_swappiness, disable_oom_killer set_disable_oom_killer,
              use_hierarchy set_use_hierarchy, check_before_update set_check_before_update);
        into.set_memory(Some(cur));
    }
    if let Some(c) = new.cpu() {
        let mut cur = into.cpu().clone().unwrap_or_default();
        macro_rules! take { ($($get:ident $set:ident),*) => { $( if c.$get().is_some() { cur.$set(c.$get().clone()); } )* } }
        take!(shares set_shares, quota set_quota, burst set_burst, period set_period,
              realtime_runtime set_realtime_runtime, realtime_period set_realtime_period,
              cpus set_cpus, mems set_mems, idle set_idle);
        into.set_cpu(Some(cur));
    }
    if new.pids().is_some() {
        into.set_pids(*new.pids());
    }
    if new.block_io().is_some() {
        into.set_block_io(new.block_io().clone());
    }
    if new.hugepage_limits().is_some() {
        into.set_hugepage_limits(new.hugepage_limits().clone());
    }
    if new.network().is_some() {
        into.set_network(new.network().clone());
    }
    if new.rdma().is_some() {
        into.set_rdma(new.rdma().clone());
    }
    if new.unified().is_some() {
        let mut u = into.unified().clone().unwrap_or_default();
        u.extend(new.unified().clone().unwrap_or_default());
        into.set_unified(Some(u));
    }
    if new.devices().is_some() {
        into.set_devices(new.devices().clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_runc_suffixes() {
        assert_eq!(parse_size("memory", "512").unwrap(), 512);
        assert_eq!(parse_size("memory", "64m").unwrap(), 64 << 20);
        assert_eq!(parse_size("memory", "1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("memory", "2kb").unwrap(), 2048);
        assert_eq!(parse_size("memory", "-1").unwrap(), -1);
        assert!(parse_size("memory", "-5").is_err());
        assert!(parse_size("memory", "lots").is_err());
    }

    #[test]
    fn an_update_of_one_limit_keeps_the_others() {
        let mut cur: LinuxResources =
            serde_json::from_str(r#"{"memory":{"limit":100,"reservation":50},"pids":{"limit":5}}"#).unwrap();
        let new: LinuxResources = serde_json::from_str(r#"{"memory":{"limit":200}}"#).unwrap();
        merge(&mut cur, &new);
        let m = cur.memory().as_ref().unwrap();
        assert_eq!((m.limit(), m.reservation()), (Some(200), Some(50)));
        assert_eq!(cur.pids().as_ref().unwrap().limit(), 5);
    }
}

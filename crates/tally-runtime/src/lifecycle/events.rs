//! `events`: runc's JSON lines about a container. `stats` events carry the cgroup counters
//! under runc's field names (containerd's shim and `ctr task metrics` decode them) plus the
//! beancounters; `oom` and `beancounter` events come from the cgroup's `*.events` files,
//! watched with inotify, not polled. The command returns when the container stops.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use libcgroups::stats::{BlkioDeviceStat, MemoryData, Stats};
use serde_json::{json, Map, Value};

use super::LifecycleError;
use crate::cgroups::Cgroup;
use crate::proc_info::{self, Liveness};
use crate::state::{ContainerDir, ContainerState, Lock, StateRoot, Status};
use crate::sys;
use tally_beancounters::{cgroup_rows, Layout, Row};

/// One `stats` event for the container, as runc prints it with `events --stats`, plus the
/// container's beancounters in `data.beancounters` (runc's fields keep their names).
pub fn stats_event(root: &StateRoot, id: &str) -> Result<Value, LifecycleError> {
    let (dir, state, cgroup) = open(root, id)?;
    Ok(json!({"type": "stats", "id": id, "data": stats_data(&cgroup, &dir, &state)?}))
}

/// Prints events with `emit` until the container stops: `stats` every `interval`; `oom` and
/// `beancounter` (a failcnt grew) as soon as the kernel changes one of the cgroup's `*.events`
/// files, which inotify reports.
pub fn watch(
    root: &StateRoot,
    id: &str,
    interval: Duration,
    mut emit: impl FnMut(&Value),
) -> Result<(), LifecycleError> {
    let (dir, state, cgroup) = open(root, id)?;
    // The pidfd turns readable when the init exits, which ends the stream at once.
    let Ok(pidfd) = sys::pidfd_open(state.pid) else { return Ok(()) };
    let layout = match cgroup.missing() {
        Some(_) => Layout::None,
        None => Layout::find(&crate::cgroups::hierarchy_path(&state.cgroup_path, state.systemd_cgroup)),
    };
    let watch = EventsWatch::new(&layout.events_files());
    let mut seen = failcnts(&layout);
    let mut next = Instant::now() + interval;
    loop {
        if proc_info::liveness(state.pid, state.pid_start_time) == Liveness::Gone {
            return Ok(());
        }
        let mut wait = next.saturating_duration_since(Instant::now());
        if matches!(layout, Layout::V1(_)) {
            // cgroup v1's pids.events is not notified to inotify: read it four times a second.
            wait = wait.min(V1_POLL);
        }
        let mut fds = vec![libc::pollfd { fd: pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
        if let Some(w) = &watch {
            fds.push(libc::pollfd { fd: w.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        }
        // SAFETY: fds is a live array of initialised pollfds of the given length.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait.as_millis() as i32) };
        if let Some(w) = &watch {
            w.drain();
        }
        // Compared on every wake-up, so a counter whose file the kernel does not notify (some
        // v1 files) is still reported, at the latest with the next stats line.
        let now = failcnts(&layout);
        for (resource, (count, row)) in &now {
            let before = seen.get(resource).map(|(c, _)| *c).unwrap_or(0);
            if *count > before {
                if resource == "oomguarpages" {
                    emit(&json!({"type": "oom", "id": id}));
                }
                emit(&json!({"type": "beancounter", "id": id, "data": {
                    "resource": resource,
                    "failcnt": count,
                    "delta": count - before,
                    "held": row.held,
                    "barrier": row.barrier,
                    "limit": row.limit,
                }}));
            }
        }
        seen = now;
        if Instant::now() >= next {
            next += interval;
            match stats_data(&cgroup, &dir, &state) {
                Ok(data) => emit(&json!({"type": "stats", "id": id, "data": data})),
                // The cgroup goes away with the container: that ends the stream, not an error.
                Err(_) if proc_info::liveness(state.pid, state.pid_start_time) == Liveness::Gone => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }
}

const V1_POLL: Duration = Duration::from_millis(250);

/// The failcnt of every row that has one, with the row.
fn failcnts(layout: &Layout) -> HashMap<String, (u64, Row)> {
    cgroup_rows(layout)
        .into_iter()
        // cpu's nr_throttled and the pressure rows' stall times change all the time and are
        // not refusals: only counters from the *.events files make events.
        .filter(|r| r.resource != "cpu" && !r.resource.starts_with("pressure."))
        .filter_map(|r| Some((r.resource.clone(), (r.failcnt.num()?, r))))
        .collect()
}

/// No lock is held: `events` runs as long as the container does, and `delete` must not wait
/// for it.
fn open(root: &StateRoot, id: &str) -> Result<(ContainerDir, ContainerState, Cgroup), LifecycleError> {
    let dir = ContainerDir::open(root, id, Lock::None)?;
    let state = dir.load()?.ok_or_else(|| LifecycleError::Creating(id.into()))?;
    let status = dir.status(Some(&state));
    if status == Status::Stopped {
        return Err(LifecycleError::WrongStatus { id: id.into(), status, message: "it has no events" });
    }
    let cgroup = Cgroup::of(&state)?;
    Ok((dir, state, cgroup))
}

/// The cgroup's `*.events` files, watched with inotify: the kernel signals a modify on such a
/// file whenever one of its counters changes.
struct EventsWatch {
    fd: OwnedFd,
}

impl EventsWatch {
    fn new(files: &[PathBuf]) -> Option<Self> {
        if files.is_empty() {
            return None;
        }
        // SAFETY: inotify_init1 takes flags and returns a new fd or -1.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        if fd < 0 {
            return None;
        }
        // SAFETY: the kernel just returned this fd and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        for path in files {
            let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else { continue };
            // SAFETY: a valid inotify fd and a NUL-terminated path.
            unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), libc::IN_MODIFY) };
        }
        Some(Self { fd })
    }

    fn drain(&self) {
        let mut buf = [0u8; 4096];
        // SAFETY: reads into a live buffer of the given length; the fd is non-blocking.
        while unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
    }
}

/// libcgroups' counters under the names runc's `events` uses (runc's types/events.go).
pub fn runc_stats(s: &Stats) -> Value {
    let mem = |m: &MemoryData| json!({"limit": m.limit, "usage": m.usage, "max": m.max_usage, "failcnt": m.fail_count});
    let blkio = |v: &[BlkioDeviceStat]| -> Value {
        v.iter()
            .map(|e| json!({"major": e.major, "minor": e.minor, "op": e.op_type.clone().unwrap_or_default(), "value": e.value}))
            .collect()
    };
    let hugetlb: Map<String, Value> = s
        .hugetlb
        .iter()
        .map(|(size, h)| (size.clone(), json!({"usage": h.usage, "max": h.max_usage, "failcnt": h.fail_count})))
        .collect();
    json!({
        "cpu": {
            "usage": {
                "total": s.cpu.usage.usage_total,
                "percpu": s.cpu.usage.per_core_usage_total,
                "percpu_kernel": s.cpu.usage.per_core_usage_kernel,
                "percpu_user": s.cpu.usage.per_core_usage_user,
                "kernel": s.cpu.usage.usage_kernel,
                "user": s.cpu.usage.usage_user,
            },
            "throttling": {
                "periods": s.cpu.throttling.periods,
                "throttledPeriods": s.cpu.throttling.throttled_periods,
                "throttledTime": s.cpu.throttling.throttled_time,
            },
        },
        "memory": {
            "cache": s.memory.cache,
            "usage": mem(&s.memory.memory),
            "swap": mem(&s.memory.memswap),
            "kernel": mem(&s.memory.kernel),
            "kernelTCP": mem(&s.memory.kernel_tcp),
            "raw": s.memory.stats,
        },
        "pids": {"current": s.pids.current, "limit": s.pids.limit},
        "blkio": {
            "ioServiceBytesRecursive": blkio(&s.blkio.service_bytes),
            "ioServicedRecursive": blkio(&s.blkio.serviced),
            "ioQueueRecursive": blkio(&s.blkio.queued),
            "ioServiceTimeRecursive": blkio(&s.blkio.service_time),
            "ioWaitTimeRecursive": blkio(&s.blkio.wait_time),
            "ioMergedRecursive": blkio(&s.blkio.merged),
            "ioTimeRecursive": blkio(&s.blkio.time),
            "sectorsRecursive": blkio(&s.blkio.sectors),
        },
        "hugetlb": hugetlb,
        // runc prints these too; tally has no Intel RDT or network statistics to put there.
        "intel_rdt": {},
        "network_interfaces": null,
    })
}

/// runc's `cpuset` object: the container's CPUs and memory nodes as lists, and the v1 flags.
fn cpuset_stats(cgroup_path: &std::path::Path) -> Value {
    let (dir, v2) = match Layout::find(cgroup_path) {
        Layout::V2(d) => (Some(d), true),
        Layout::V1(m) => (m.get("cpuset").cloned(), false),
        Layout::None => (None, false),
    };
    let read = |name: &str| dir.as_ref().and_then(|d| std::fs::read_to_string(d.join(name)).ok());
    let list = |name: &str| -> Vec<u32> { read(name).map(|t| parse_list(t.trim())).unwrap_or_default() };
    let flag = |name: &str| -> u64 { read(name).and_then(|t| t.trim().parse().ok()).unwrap_or(0) };
    let (cpus, mems) = if v2 {
        (list("cpuset.cpus.effective"), list("cpuset.mems.effective"))
    } else {
        (list("cpuset.cpus"), list("cpuset.mems"))
    };
    json!({
        "cpus": cpus,
        "mems": mems,
        "cpu_exclusive": flag("cpuset.cpu_exclusive"),
        "mem_exclusive": flag("cpuset.mem_exclusive"),
        "mem_hardwall": flag("cpuset.mem_hardwall"),
        "memory_migrate": flag("cpuset.memory_migrate"),
        "memory_pressure": flag("cpuset.memory_pressure"),
        "memory_spread_page": flag("cpuset.memory_spread_page"),
        "memory_spread_slab": flag("cpuset.memory_spread_slab"),
        "sched_load_balance": flag("cpuset.sched_load_balance"),
        "sched_relax_domain_level": flag("cpuset.sched_relax_domain_level"),
    })
}

/// A kernel CPU list ("0-3,8") as its numbers.
fn parse_list(text: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                    out.extend(a..=b.min(a.saturating_add(4096)));
                }
            }
            None => out.extend(part.parse::<u32>().ok()),
        }
    }
    out
}

/// The full `data` of a stats event.
fn stats_data(cgroup: &Cgroup, dir: &ContainerDir, state: &ContainerState) -> Result<Value, LifecycleError> {
    let mut data = runc_stats(&cgroup.stats()?);
    data["cpuset"] = cpuset_stats(&crate::cgroups::hierarchy_path(&state.cgroup_path, state.systemd_cgroup));
    data["beancounters"] = json!(super::beancounters::read(dir, state, false).resources);
    Ok(data)
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_lists_expand() {
        assert_eq!(super::parse_list("0-3,8"), [0, 1, 2, 3, 8]);
        assert_eq!(super::parse_list(""), Vec::<u32>::new());
    }
}

//! `events`: runc's JSON lines about a container. `stats` events carry the cgroup counters
//! under runc's field names (containerd's shim and `ctr task metrics` decode them); `oom`
//! events come from memory.events on cgroup v2, watched with inotify, not polled. The command
//! returns when the container stops.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use libcgroups::stats::{BlkioDeviceStat, MemoryData, Stats};
use serde_json::{json, Map, Value};

use super::LifecycleError;
use crate::cgroups::Cgroup;
use crate::proc_info::{self, Liveness};
use crate::state::{ContainerDir, ContainerState, Lock, StateRoot, Status};
use crate::sys;

/// One `stats` event for the container, as runc prints it with `events --stats`.
pub fn stats_event(root: &StateRoot, id: &str) -> Result<Value, LifecycleError> {
    let (_, cgroup) = open(root, id)?;
    Ok(json!({"type": "stats", "id": id, "data": runc_stats(&cgroup.stats()?)}))
}

/// Prints events with `emit` every `interval` (and an `oom` event as soon as one happens)
/// until the container stops.
pub fn watch(
    root: &StateRoot,
    id: &str,
    interval: Duration,
    mut emit: impl FnMut(&Value),
) -> Result<(), LifecycleError> {
    let (state, cgroup) = open(root, id)?;
    // The pidfd turns readable when the init exits, which ends the stream at once.
    let Ok(pidfd) = sys::pidfd_open(state.pid) else { return Ok(()) };
    let oom = OomWatch::new(&state.cgroup_path);
    let mut ooms = oom.as_ref().map(|w| w.count()).unwrap_or(0);
    let mut next = Instant::now() + interval;
    loop {
        if proc_info::liveness(state.pid, state.pid_start_time) == Liveness::Gone {
            return Ok(());
        }
        let wait = next.saturating_duration_since(Instant::now());
        let mut fds = vec![libc::pollfd { fd: pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
        if let Some(w) = &oom {
            fds.push(libc::pollfd { fd: w.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        }
        // SAFETY: fds is a live array of initialised pollfds of the given length.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait.as_millis() as i32) };
        if let Some(w) = &oom {
            w.drain();
            let now = w.count();
            if now > ooms {
                emit(&json!({"type": "oom", "id": id}));
            }
            ooms = now;
        }
        if Instant::now() >= next {
            next += interval;
            match cgroup.stats() {
                Ok(s) => emit(&json!({"type": "stats", "id": id, "data": runc_stats(&s)})),
                // The cgroup goes away with the container: that ends the stream, not an error.
                Err(_) if proc_info::liveness(state.pid, state.pid_start_time) == Liveness::Gone => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

fn open(root: &StateRoot, id: &str) -> Result<(ContainerState, Cgroup), LifecycleError> {
    let dir = ContainerDir::open(root, id, Lock::Shared)?;
    let state = dir.load()?.ok_or_else(|| LifecycleError::Creating(id.into()))?;
    let status = dir.status(Some(&state));
    if status == Status::Stopped {
        return Err(LifecycleError::WrongStatus { id: id.into(), status, message: "it has no events" });
    }
    let cgroup = Cgroup::open(&state.cgroup_path, state.default_cgroup_path, state.systemd_cgroup, id)?;
    Ok((state, cgroup))
}

/// memory.events of a cgroup v2 container, watched with inotify (the kernel signals a modify
/// on the file whenever one of its counters changes).
struct OomWatch {
    fd: OwnedFd,
    path: PathBuf,
}

impl OomWatch {
    fn new(cgroup_path: &Path) -> Option<Self> {
        let path = Path::new("/sys/fs/cgroup")
            .join(cgroup_path.strip_prefix("/").unwrap_or(cgroup_path))
            .join("memory.events");
        if !path.exists() {
            return None;
        }
        // SAFETY: inotify_init1 takes flags and returns a new fd or -1.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        if fd < 0 {
            return None;
        }
        // SAFETY: the kernel just returned this fd and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
        // SAFETY: a valid inotify fd and a NUL-terminated path.
        if unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), libc::IN_MODIFY) } < 0 {
            return None;
        }
        Some(Self { fd, path })
    }

    fn drain(&self) {
        let mut buf = [0u8; 4096];
        // SAFETY: reads into a live buffer of the given length; the fd is non-blocking.
        while unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
    }

    /// oom_kill events so far (the `oom` line counts the times the limit was hit even when
    /// nothing was killed; runc reports kills).
    fn count(&self) -> u64 {
        std::fs::read_to_string(&self.path)
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill ").and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0)
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
    })
}

//! Resource limits a container gets from `linux.resources` on a pure cgroup v2 host with every
//! controller (the test VM): enforced by the kernel, and readable back from the cgroup. On the
//! host sandbox (cgroup v1 without memory) the v2-only tests are skipped with the reason; the
//! device allow-list is checked on both.

use std::fs;
use std::path::PathBuf;

use integration_tests::{cgroup_host, skip, Bundle, CgroupHost, Tally};
use serde_json::json;

const V2_ONLY: &str = "needs pure cgroup v2 with every controller: runs in the VM (make vm-test)";

fn v2(test: &str) -> bool {
    if cgroup_host() == CgroupHost::V2 {
        true
    } else {
        skip(test, V2_ONLY);
        false
    }
}

fn cg(id: &str) -> PathBuf {
    PathBuf::from("/sys/fs/cgroup").join(id)
}

fn read(id: &str, file: &str) -> String {
    let p = cg(id).join(file);
    fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).trim().to_string()
}

/// The value of `key` in a flat-keyed file such as memory.events.
fn keyed(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(' ')).map(|v| v.trim().parse().unwrap()))
        .unwrap_or_else(|| panic!("no {key} in {text:?}"))
}

#[test]
fn a_memory_limit_oom_kills_and_memory_peak_reaches_it() {
    if !v2("a_memory_limit_oom_kills_and_memory_peak_reaches_it") {
        return;
    }
    const LIMIT: u64 = 32 << 20;
    let t = Tally::new();
    let mut b = Bundle::busybox("v2-mem");
    // tmpfs pages are charged to the writer's cgroup and cannot be reclaimed without swap, so
    // writing 64 MiB to /dev/shm must end in the OOM killer.
    b.sh("dd if=/dev/zero of=/dev/shm/fill bs=1M count=64; echo dd-status=$? > /tmp/dd");
    b.edit(|c| {
        c["linux"]["resources"]["memory"] = json!({"limit": LIMIT, "swap": LIMIT});
        c["mounts"] = json!([
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "nodev", "size=128m"]}
        ]);
    });
    t.create("v2-mem", &b).ok();
    assert_eq!(read("v2-mem", "memory.max"), LIMIT.to_string());
    t.run(&["start", "v2-mem"]).ok();
    t.wait_status("v2-mem", "stopped");
    let events = read("v2-mem", "memory.events");
    assert!(keyed(&events, "oom_kill") >= 1, "memory.events: {events}");
    assert!(keyed(&events, "max") >= 1, "memory.events: {events}");
    let peak: u64 = read("v2-mem", "memory.peak").parse().unwrap();
    assert!((LIMIT - (1 << 20)..=LIMIT).contains(&peak), "memory.peak {peak} should be at the limit {LIMIT}");
    t.run(&["delete", "v2-mem"]).ok();
    assert!(!cg("v2-mem").exists(), "delete removes the cgroup");
    t.assert_clean("v2-mem", &b);
}

#[test]
fn a_pids_limit_of_10_refuses_the_eleventh_process() {
    if !v2("a_pids_limit_of_10_refuses_the_eleventh_process") {
        return;
    }
    let t = Tally::new();
    let mut b = Bundle::busybox("v2-pids");
    // busybox sh gives up (and exits) at the first fork the kernel refuses; the counters in
    // the cgroup tell what happened.
    b.sh("i=0; while [ $i -lt 20 ]; do sleep 1000 & i=$((i+1)); done; wait");
    b.edit(|c| c["linux"]["resources"]["pids"] = json!({"limit": 10}));
    t.create("v2-pids", &b).ok();
    assert_eq!(read("v2-pids", "pids.max"), "10");
    t.run(&["start", "v2-pids"]).ok();
    t.wait_status("v2-pids", "stopped");
    let events = read("v2-pids", "pids.events");
    assert!(keyed(&events, "max") >= 1, "pids.events: {events}");
    assert_eq!(read("v2-pids", "pids.peak"), "10", "the shell and 9 sleeps, never an 11th");
    t.run(&["delete", "--force", "v2-pids"]).ok();
    assert!(!cg("v2-pids").exists());
    t.assert_clean("v2-pids", &b);
}

#[test]
fn cpu_cpuset_and_io_settings_read_back_as_configured() {
    if !v2("cpu_cpuset_and_io_settings_read_back_as_configured") {
        return;
    }
    let disk = std::env::var("TALLY_VM_DISK").expect("the VM exports its virtio disk as TALLY_VM_DISK=maj:min");
    let (major, minor) = disk.split_once(':').unwrap();
    let (major, minor): (i64, i64) = (major.parse().unwrap(), minor.parse().unwrap());
    let t = Tally::new();
    let mut b = Bundle::busybox("v2-cpu-io");
    b.sh("exec sleep 1000");
    b.edit(|c| {
        c["linux"]["resources"]["cpu"] = json!({"quota": 50000, "period": 100000, "shares": 1024, "cpus": "0"});
        c["linux"]["resources"]["blockIO"] = json!({
            "throttleReadBpsDevice": [{"major": major, "minor": minor, "rate": 1048576}],
            "throttleWriteIOPSDevice": [{"major": major, "minor": minor, "rate": 100}]
        });
    });
    t.create("v2-cpu-io", &b).ok();
    assert_eq!(read("v2-cpu-io", "cpu.max"), "50000 100000");
    // libcgroups maps shares onto weight with the quadratic-in-log2 formula runc and crun
    // use, which sends v1's default (1024) to v2's default (100).
    assert_eq!(read("v2-cpu-io", "cpu.weight"), "100");
    assert_eq!(read("v2-cpu-io", "cpuset.cpus"), "0");
    let io = read("v2-cpu-io", "io.max");
    assert_eq!(io, format!("{major}:{minor} rbps=1048576 wbps=max riops=max wiops=100"));
    t.run(&["delete", "v2-cpu-io"]).ok();
    assert!(!cg("v2-cpu-io").exists());
    t.assert_clean("v2-cpu-io", &b);
}

#[test]
fn a_device_outside_the_allow_list_cannot_be_opened() {
    // v2: the eBPF device filter; v1: the devices controller. `tally spec` denies every device
    // and tally allows the standard ones, so /dev/null works and a fresh node for /dev/kmsg
    // (1:11) does not, even for root in the container.
    let t = Tally::new();
    let mut b = Bundle::busybox("v2-devices");
    // mknod needs CAP_MKNOD, which `tally spec`'s default set leaves out.
    b.edit(|c| {
        for set in ["bounding", "effective", "permitted"] {
            c["process"]["capabilities"][set].as_array_mut().unwrap().push(json!("CAP_MKNOD"));
        }
    });
    b.sh("echo x > /dev/null && echo null-ok; mknod /tmp/kmsg c 1 11 && if head -c 1 /tmp/kmsg >/dev/null 2>&1; then echo opened; else echo refused; fi");
    let r = t.run_container("v2-devices", &b).ok();
    assert_eq!(r.stdout.lines().collect::<Vec<_>>(), ["null-ok", "refused"], "stderr: {}", r.stderr);
    t.assert_clean("v2-devices", &b);
}

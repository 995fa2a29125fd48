//! OpenVZ's CPU and I/O settings as `org.tally.vz.*` annotations: translated at create into the
//! OCI fields that carry them and, through those, into the container's cgroup; bad values and
//! contradictions are errors naming the annotation, and nothing is left behind.

use std::fs;
use std::path::PathBuf;

use integration_tests::{cgroup_dirs_named, skip, Bundle, Tally};
use serde_json::json;

/// The file `name` in whichever of the container's cgroup directories has it.
fn cgroup_file(id: &str, name: &str) -> Option<String> {
    cgroup_dirs_named(id).iter().map(|d| d.join(name)).find(|p| p.exists()).map(|p| fs::read_to_string(p).unwrap())
}

#[test]
fn cpuunits_cpulimit_ioprio_and_iolimit_reach_the_cgroup() {
    let t = Tally::new();
    let id = "vz-cpu";
    // The VM's scratch disk, where there is one: its bundles are on a block device.
    let mut b = match std::env::var_os("TALLY_VM_DISK_MNT") {
        Some(m) => Bundle::busybox_in(std::path::Path::new(&m), id),
        None => Bundle::busybox(id),
    };
    // The I/O limits are tested where the rootfs has a disk.
    let dev = std::os::unix::fs::MetadataExt::dev(&fs::metadata(b.rootfs()).unwrap());
    let has_disk = PathBuf::from(format!("/sys/dev/block/{}:{}", libc::major(dev), libc::minor(dev))).exists();
    if !has_disk {
        skip("cpuunits_cpulimit_ioprio_and_iolimit_reach_the_cgroup", "iolimit/iopslimit: the rootfs has no disk here");
    }
    b.edit(|c| {
        c["process"]["args"] = json!(["sleep", "300"]);
        c["annotations"] = json!({"org.tally.vz.cpuunits": "3000", "org.tally.vz.cpulimit": "25"});
        if has_disk {
            c["annotations"]["org.tally.vz.iolimit"] = json!("1048576");
            c["annotations"]["org.tally.vz.iopslimit"] = json!("100");
        }
    });
    t.create(id, &b).ok();
    // A hybrid host has a v2 directory without controllers too: the v1 cpu file decides.
    let v1 = cgroup_file(id, "cpu.shares").is_some();
    if !v1 {
        // cgroup v2: cpuunits / 10 as cpu.weight (linear, as vzctl's units), the quota as cpu.max.
        assert_eq!(cgroup_file(id, "cpu.weight").unwrap().trim(), "300");
        assert_eq!(cgroup_file(id, "cpu.max").unwrap().trim(), "25000 100000");
        let io = cgroup_file(id, "io.max").unwrap_or_default();
        assert!(!has_disk || io.contains("rbps=1048576 wbps=1048576 riops=100 wiops=100"), "io.max: {io}");
    } else {
        assert_eq!(cgroup_file(id, "cpu.shares").unwrap().trim(), "3072");
        assert_eq!(cgroup_file(id, "cpu.cfs_quota_us").unwrap().trim(), "25000");
        assert_eq!(cgroup_file(id, "cpu.cfs_period_us").unwrap().trim(), "100000");
        let bps = cgroup_file(id, "blkio.throttle.write_bps_device").unwrap_or_default();
        let iops = cgroup_file(id, "blkio.throttle.read_iops_device").unwrap_or_default();
        assert!(!has_disk || bps.trim().ends_with(" 1048576"), "blkio.throttle.write_bps_device: {bps}");
        assert!(!has_disk || iops.trim().ends_with(" 100"), "blkio.throttle.read_iops_device: {iops}");
    }
    t.run(&["delete", "--force", id]).ok();
    t.assert_clean(id, &b);
}

#[test]
fn ioprio_sets_the_block_io_weight_where_the_kernel_has_one() {
    let t = Tally::new();
    let id = "vz-ioprio";
    let mut b = Bundle::busybox(id);
    b.edit(|c| c["annotations"] = json!({"org.tally.vz.ioprio": "6"}));
    let created = t.create(id, &b);
    if created.code != 0 {
        // cgroup v1 without the BFQ scheduler has no weight file at all: refused up front.
        created.fails_with(&["linux.resources.blockIO.weight", "BFQ"]);
        t.assert_clean(id, &b);
        return skip(
            "ioprio_sets_the_block_io_weight_where_the_kernel_has_one",
            "no proportional I/O weight on this host (cgroup v1 without BFQ): create refuses it, as checked",
        );
    }
    // BFQ's blkio.bfq.weight on cgroup v1 (CFQ's blkio.weight went with CFQ), io.weight on
    // v2: only in non-root cgroups, so looked for in the container's.
    let weight = ["blkio.weight", "blkio.bfq.weight", "io.weight"].into_iter().find_map(|f| cgroup_file(id, f));
    match weight {
        // v1: 100 per step from 100; v2's io.weight: 20 per step from 20 ("default 140").
        Some(got) => assert!(got.contains("700") || got.contains("140"), "the weight: {got}"),
        None => skip(
            "ioprio_sets_the_block_io_weight_where_the_kernel_has_one",
            "no proportional I/O scheduler (no weight file) on this host",
        ),
    }
    t.run(&["delete", "--force", id]).ok();
    t.assert_clean(id, &b);
}

#[test]
fn bad_values_and_contradictions_name_the_annotation_and_leave_nothing() {
    let t = Tally::new();
    let id = "vz-bad";
    let mut b = Bundle::busybox(id);
    for (annotations, needles) in [
        (json!({"org.tally.vz.cpuunits": "0"}), vec!["org.tally.vz.cpuunits", "out of range"]),
        (json!({"org.tally.vz.ioprio": "9"}), vec!["org.tally.vz.ioprio", "out of range (0..7)"]),
        (json!({"org.tally.vz.cpulimit": "half"}), vec!["org.tally.vz.cpulimit", "not a whole number"]),
        (json!({"org.tally.vz.cpuspeed": "1"}), vec!["org.tally.vz.cpuspeed", "unknown setting"]),
    ] {
        b.edit(|c| c["annotations"] = annotations.clone());
        t.create(id, &b).fails_with(&needles);
        t.assert_clean(id, &b);
    }
    b.edit(|c| {
        c["annotations"] = json!({"org.tally.vz.cpuunits": "1000"});
        c["linux"]["resources"]["cpu"] = json!({"shares": 512});
    });
    t.create(id, &b).fails_with(&["org.tally.vz.cpuunits", "linux.resources.cpu.shares"]);
    t.assert_clean(id, &b);
}

#[test]
fn an_io_limit_on_a_rootfs_without_a_block_device_is_an_error_naming_it() {
    let t = Tally::new();
    let id = "vz-tmpfs";
    let mut b = Bundle::busybox(id);
    // /dev/shm is a tmpfs: no disk under it to throttle.
    let root = PathBuf::from("/dev/shm").join(integration_tests::unique("tally-vz-root"));
    fs::create_dir_all(&root).unwrap();
    b.edit(|c| {
        c["root"]["path"] = json!(root);
        c["annotations"] = json!({"org.tally.vz.iolimit": "1048576"});
    });
    t.create(id, &b).fails_with(&["org.tally.vz.iolimit", "without a block device", root.to_str().unwrap()]);
    t.assert_clean(id, &b);
    fs::remove_dir_all(&root).unwrap();
}

#[test]
fn update_takes_the_same_names_on_a_running_container() {
    let t = Tally::new();
    let id = "vz-update";
    let mut b = Bundle::busybox(id);
    b.edit(|c| {
        c["process"]["args"] = json!(["sleep", "300"]);
        c["annotations"] = json!({"org.tally.vz.cpuunits": "1000"});
    });
    t.run_to_files(&["run", "-d", "--bundle", b.dir.to_str().unwrap(), id]).ok();
    t.run(&["update", "--cpuunits", "2000", "--cpulimit", "50", id]).ok();
    let v1 = cgroup_file(id, "cpu.shares").is_some();
    if v1 {
        assert_eq!(cgroup_file(id, "cpu.shares").unwrap().trim(), "2048");
        assert_eq!(cgroup_file(id, "cpu.cfs_quota_us").unwrap().trim(), "50000");
    } else {
        assert_eq!(cgroup_file(id, "cpu.weight").unwrap().trim(), "200");
        assert_eq!(cgroup_file(id, "cpu.max").unwrap().trim(), "50000 100000");
    }
    t.run(&["update", "--ioprio", "9", id]).fails_with(&["--ioprio", "out of range (0..7)"]);
    t.run(&["update", "--cpuunits", "1000", "--cpu-share", "512", id])
        .fails_with(&["--cpuunits", "linux.resources.cpu.shares"]);
    // A refused update changes nothing.
    let weight = if v1 { cgroup_file(id, "cpu.shares") } else { cgroup_file(id, "cpu.weight") };
    assert_eq!(weight.unwrap().trim(), if v1 { "2048" } else { "200" });
    t.run(&["delete", "--force", id]).ok();
    t.assert_clean(id, &b);
}

/// CPU time a container's cgroup has used (cgroup v2 cpu.stat), in µs.
fn usage_usec(id: &str) -> u64 {
    let stat = cgroup_file(id, "cpu.stat").expect("cpu.stat");
    stat.lines().find_map(|l| l.strip_prefix("usage_usec ")).and_then(|v| v.trim().parse().ok()).expect("usage_usec")
}

/// A busy-looping container pinned to CPU 0, started, with the given vz annotations.
fn busy(t: &Tally, id: &str, annotations: serde_json::Value) -> Bundle {
    let mut b = Bundle::busybox(id);
    b.edit(|c| {
        c["annotations"] = annotations;
        c["linux"]["resources"]["cpu"] = json!({"cpus": "0"});
        c["process"]["args"] = json!(["sh", "-c", "while :; do :; done"]);
    });
    t.run_to_files(&["run", "-d", "--bundle", b.dir.to_str().unwrap(), id]).ok();
    b
}

/// The CPU measurements pin their loops to CPU 0: one at a time, or each measures the other.
static CPU0: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn needs_v2(test: &str) -> bool {
    let v2 = integration_tests::cgroup_host() == integration_tests::CgroupHost::V2;
    if !v2 {
        skip(test, "needs pure cgroup v2 with the cpu and cpuset controllers: runs in the VM (make vm-test)");
    }
    v2
}

/// vzctl's promise: CPU time in proportion to cpuunits. Two CPU-bound containers on one CPU
/// at 1000 and 3000 get about 1:3 of it (within 15 %).
#[test]
fn cpuunits_1000_and_3000_share_one_cpu_about_one_to_three() {
    if !needs_v2("cpuunits_1000_and_3000_share_one_cpu_about_one_to_three") {
        return;
    }
    let _cpu0 = CPU0.lock().unwrap_or_else(|e| e.into_inner());
    let t = Tally::new();
    let a = busy(&t, "vz-share-a", json!({"org.tally.vz.cpuunits": "1000"}));
    let b = busy(&t, "vz-share-b", json!({"org.tally.vz.cpuunits": "3000"}));
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (a0, b0) = (usage_usec("vz-share-a"), usage_usec("vz-share-b"));
    std::thread::sleep(std::time::Duration::from_secs(6));
    let (a1, b1) = (usage_usec("vz-share-a"), usage_usec("vz-share-b"));
    let ratio = (b1 - b0) as f64 / (a1 - a0).max(1) as f64;
    eprintln!("cpuunits 3000 : 1000 got {ratio:.2} : 1 of one CPU ({} µs : {} µs)", b1 - b0, a1 - a0);
    assert!((2.55..=3.45).contains(&ratio), "ratio {ratio:.2}, not 3 within 15 %");
    for (id, bundle) in [("vz-share-a", &a), ("vz-share-b", &b)] {
        t.run(&["delete", "--force", id]).ok();
        t.assert_clean(id, bundle);
    }
}

/// cpulimit 25 holds a busy loop at a quarter of one CPU (25 % ± 5). "One CPU" is what an
/// unlimited busy loop gets on CPU 0 in the same place just before: in the emulated VM a vCPU
/// may not get a whole host core.
#[test]
fn cpulimit_25_holds_a_busy_loop_at_a_quarter_of_a_cpu() {
    if !needs_v2("cpulimit_25_holds_a_busy_loop_at_a_quarter_of_a_cpu") {
        return;
    }
    let _cpu0 = CPU0.lock().unwrap_or_else(|e| e.into_inner());
    let t = Tally::new();
    let rate = |id: &str| {
        std::thread::sleep(std::time::Duration::from_millis(500));
        let (u0, t0) = (usage_usec(id), std::time::Instant::now());
        std::thread::sleep(std::time::Duration::from_secs(4));
        (usage_usec(id) - u0) as f64 / t0.elapsed().as_micros() as f64
    };
    let reference = busy(&t, "vz-limit-ref", json!({}));
    let whole = rate("vz-limit-ref");
    t.run(&["delete", "--force", "vz-limit-ref"]).ok();
    t.assert_clean("vz-limit-ref", &reference);
    let id = "vz-limit";
    let b = busy(&t, id, json!({"org.tally.vz.cpulimit": "25"}));
    let share = rate(id) / whole * 100.0;
    eprintln!(
        "cpulimit 25: the busy loop got {share:.1} % of one CPU (an unlimited one got {:.1} % of wall time)",
        whole * 100.0
    );
    assert!((20.0..=30.0).contains(&share), "{share:.1} % of one CPU, not 25 ± 5");
    t.run(&["delete", "--force", id]).ok();
    t.assert_clean(id, &b);
}

/// The seconds between the two /proc/uptime readings the writer prints ("T0 T1").
fn elapsed_seconds(out: &str) -> f64 {
    let t: Vec<f64> = out.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    match t[..] {
        [t0, t1] => t1 - t0,
        _ => panic!("no two uptimes in the writer's output: {out}"),
    }
}

/// A direct-I/O writer of `ops` 4 KiB writes in a container on the VM's disk, with the given
/// vz annotations: the seconds dd took (busybox's dd reports no time: /proc/uptime around it,
/// 10 ms resolution).
fn direct_writer(t: &Tally, mnt: &std::path::Path, id: &str, ops: u32, annotations: serde_json::Value) -> f64 {
    let mut b = Bundle::busybox_in(mnt, id);
    // Overwrites of a file already on disk: one device write per dd write, no allocation.
    fs::write(b.rootfs().join("data"), vec![1u8; ops as usize * 4096]).unwrap();
    fs::File::open(b.rootfs().join("data")).unwrap().sync_all().unwrap();
    b.edit(|c| c["annotations"] = annotations);
    b.sh(&format!(
        "read t0 _ < /proc/uptime; dd if=/dev/zero of=/data bs=4096 count={ops} oflag=direct conv=notrunc 2>/dev/null; \
         read t1 _ < /proc/uptime; echo $t0 $t1"
    ));
    let r = t.run_container(id, &b).ok();
    t.assert_clean(id, &b);
    elapsed_seconds(&r.stdout)
}

/// iopslimit caps a direct-I/O writer within 10 %: 400 writes at 100 ops/s take 4 s.
#[test]
fn iopslimit_caps_a_direct_io_writer() {
    let Some(mnt) = std::env::var_os("TALLY_VM_DISK_MNT").map(PathBuf::from) else {
        skip("iopslimit_caps_a_direct_io_writer", "needs a disk the test may throttle: runs in the VM (make vm-test)");
        return;
    };
    let t = Tally::new();
    let free = direct_writer(&t, &mnt, "vz-iops-free", 400, json!({}));
    let free_rate = 400.0 / free;
    if free_rate < 200.0 {
        skip("iopslimit_caps_a_direct_io_writer", &format!("the disk does only {free_rate:.0} ops/s unthrottled"));
        return;
    }
    let limited = direct_writer(&t, &mnt, "vz-iops", 400, json!({"org.tally.vz.iopslimit": "100"}));
    let rate = 400.0 / limited;
    eprintln!("iopslimit 100: the writer did {rate:.1} ops/s ({limited:.2} s); unthrottled {free_rate:.0} ops/s");
    assert!((90.0..=110.0).contains(&rate), "{rate:.1} ops/s, not 100 within 10 %");
}

//! Beancounters: per container and per resource, held / maxheld / barrier / limit / failcnt,
//! as OpenVZ reported them, from the container's cgroup and from /proc; set by annotations;
//! reported by `tally beancounters`, `tally events` and, after `delete`, the ledger.

use std::fs;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use integration_tests::{cgroup_host, skip, Bundle, CgroupHost, Tally};
use serde_json::{json, Value};

/// The JSON row of `resource` for container `id`.
fn row(t: &Tally, id: &str, resource: &str) -> Value {
    let r = t.run(&["beancounters", "--format", "json", id]).ok();
    let all: Value = serde_json::from_str(&r.stdout).unwrap();
    all[0]["resources"].as_array().unwrap().iter().find(|r| r["resource"] == resource).cloned().unwrap_or_else(|| {
        panic!("no {resource} row in {}", r.stdout);
    })
}

#[track_caller]
fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(15);
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting until {what}");
}

#[test]
fn a_numproc_limit_counts_refused_forks_and_a_running_events_reports_them_at_once() {
    let t = Tally::new();
    let id = "bc-numproc";
    // The init is a shell, which reaps the orphans the fork loop leaves (as a real init does).
    let b = t.sleeping(id, |c| {
        c["process"]["args"] = json!(["sh", "-c", "while :; do sleep 1; done"]);
        c["annotations"] = json!({"org.tally.beancounter.numproc": "20:20"});
    });
    let r = row(&t, id, "numproc");
    assert_eq!((r["barrier"].as_u64(), r["limit"].as_u64()), (Some(20), Some(20)));
    let normal = r["held"].as_u64().unwrap();
    assert!((1..=2).contains(&normal), "the shell and at most its sleep: {r}");

    let events_out = b.dir.join("events.out");
    let mut events = t
        .command()
        .args(["events", "--interval", "60s", id])
        .stdout(fs::File::create(&events_out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Give `events` time to take its baseline before the forks start.
    std::thread::sleep(Duration::from_millis(300));
    // The shell's forks past 20 processes fail; it keeps going and waits for the rest.
    t.run(&["exec", id, "sh", "-c", "for i in $(seq 1 30); do sleep 2 & done 2>/dev/null; wait"]);
    let mut failed_at = None;
    wait_until("numproc failcnt > 0", || {
        let ok = row(&t, id, "numproc")["failcnt"].as_u64().unwrap_or(0) > 0;
        if ok {
            failed_at = Some(Instant::now());
        }
        ok
    });
    // The event was written by the time the failcnt was seen, or within a second of it.
    let deadline = failed_at.unwrap() + Duration::from_secs(1);
    let mut event = None;
    while Instant::now() < deadline && event.is_none() {
        let text = fs::read_to_string(&events_out).unwrap_or_default();
        event = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|e| e["type"] == "beancounter" && e["data"]["resource"] == "numproc");
        std::thread::sleep(Duration::from_millis(20));
    }
    let event = event.expect("a beancounter event for numproc within a second");
    assert!(event["data"]["failcnt"].as_u64().unwrap() >= 1 && event["data"]["delta"].as_u64().unwrap() >= 1);
    assert_eq!(event["data"]["limit"], 20);
    assert_eq!(event["id"], id);

    // Back to normal once the sleeps end.
    wait_until("numproc held back to normal", || row(&t, id, "numproc")["held"].as_u64() <= Some(2));
    let r = row(&t, id, "numproc");
    if cgroup_host() == CgroupHost::V2 {
        // pids.peak: the kernel's own high-water mark.
        assert_eq!(r["maxheld"].as_u64(), Some(20), "{r}");
    } else {
        assert!(r["maxheld"].as_u64().unwrap() >= 1, "{r}");
    }
    t.run(&["delete", "--force", id]).ok();
    let _ = events.wait();
    t.assert_clean(id, &b);
}

#[test]
fn a_physpages_limit_counts_hits_and_oom_kills_and_peaks_at_the_limit() {
    if cgroup_host() != CgroupHost::V2 {
        return skip(
            "a_physpages_limit_counts_hits_and_oom_kills_and_peaks_at_the_limit",
            "needs the cgroup v2 memory controller: runs in the VM (make vm-test)",
        );
    }
    let t = Tally::new();
    let id = "bc-physpages";
    let mut b = Bundle::busybox(id);
    b.edit(|c| c["annotations"] = json!({"org.tally.beancounter.physpages": "0:32M"}));
    b.sh("dd if=/dev/zero of=/dev/shm/fill bs=1M count=64; echo done > /tmp/dd; sleep 300");
    t.run_to_files(&["run", "-d", "--bundle", b.dir.to_str().unwrap(), id]).ok();
    wait_until("the OOM kill", || row(&t, id, "oomguarpages")["failcnt"].as_u64().unwrap_or(0) >= 1);
    let phys = row(&t, id, "physpages");
    assert_eq!(phys["limit"], 8192, "{phys}");
    assert!(phys["failcnt"].as_u64().unwrap() > 0, "{phys}");
    let peak = phys["maxheld"].as_u64().unwrap();
    assert!((8192 * 9 / 10..=8192).contains(&peak), "maxheld {peak} should be at the limit");
    // The tmpfs pages stay charged, so the shell after dd can be killed too: the row is taken
    // between two reads of memory.events that agree.
    let kills = || -> u64 {
        let events = fs::read_to_string(format!("/sys/fs/cgroup/{id}/memory.events")).unwrap();
        events.lines().find_map(|l| l.strip_prefix("oom_kill ")).unwrap().trim().parse().unwrap()
    };
    let (oom, killed) = (0..50)
        .find_map(|_| {
            let before = kills();
            let oom = row(&t, id, "oomguarpages");
            (kills() == before).then_some((oom, before))
        })
        .expect("memory.events kept changing");
    assert_eq!(oom["failcnt"].as_u64(), Some(killed), "{oom}");
    t.run(&["delete", "--force", id]).ok();
    t.assert_clean(id, &b);
}

#[test]
fn numfile_counts_the_files_a_process_holds_open() {
    let t = Tally::new();
    let id = "bc-numfile";
    let mut b = Bundle::busybox(id);
    // tail -f keeps every file it follows open.
    b.sh("for i in $(seq 1 500); do : > /tmp/f$i; done; touch /tmp/ready; exec tail -f /tmp/f* > /dev/null");
    t.run_to_files(&["run", "-d", "--bundle", b.dir.to_str().unwrap(), id]).ok();
    integration_tests::wait_for_file(&b.rootfs().join("tmp/ready"));
    wait_until("tail has its files open", || row(&t, id, "numfile")["held"].as_u64().unwrap_or(0) >= 500);
    let r = row(&t, id, "numfile");
    let held = r["held"].as_u64().unwrap();
    assert!((500..=510).contains(&held), "500 files plus the process's own handful: {r}");
    assert_eq!((r["barrier"].as_u64(), r["limit"].as_u64()), (Some(1024), Some(1024)), "RLIMIT_NOFILE: {r}");
    assert_eq!(r["enforced"], "rlimit-per-process");
    t.run(&["delete", "--force", id]).ok();
    t.assert_clean(id, &b);
}

#[test]
fn numpty_follows_the_devpts_max_the_annotation_sets() {
    let t = Tally::new();
    let id = "bc-numpty";
    let mut b = Bundle::busybox(id);
    b.edit(|c| c["annotations"] = json!({"org.tally.beancounter.numpty": "2"}));
    b.sh("exec 3<>/dev/ptmx 4<>/dev/ptmx && echo two-opened > /tmp/pty; \
          (exec 5<>/dev/ptmx) 2>/dev/null && echo third-opened >> /tmp/pty || echo third-refused >> /tmp/pty; \
          exec sleep 300");
    t.run_to_files(&["run", "-d", "--bundle", b.dir.to_str().unwrap(), id]).ok();
    let marker = b.rootfs().join("tmp/pty");
    wait_until("the pty probe", || fs::read_to_string(&marker).is_ok_and(|s| s.lines().count() == 2));
    assert_eq!(fs::read_to_string(&marker).unwrap(), "two-opened\nthird-refused\n");
    let r = row(&t, id, "numpty");
    assert_eq!((r["held"].as_u64(), r["limit"].as_u64()), (Some(2), Some(2)), "{r}");
    assert_eq!(r["enforced"], "mount-option");
    t.run(&["delete", "--force", id]).ok();
    t.assert_clean(id, &b);
}

#[test]
fn numtcpsock_counts_listening_sockets_opened_in_the_container() {
    let t = Tally::new();
    let id = "bc-tcp";
    let mut b = Bundle::busybox(id);
    b.sh("nc -l -p 7001 & nc -l -p 7002 & nc -l -p 7003 & touch /tmp/ready; exec sleep 300");
    t.run_to_files(&["run", "-d", "--bundle", b.dir.to_str().unwrap(), id]).ok();
    integration_tests::wait_for_file(&b.rootfs().join("tmp/ready"));
    wait_until("three listening TCP sockets", || row(&t, id, "numtcpsock")["held"].as_u64() == Some(3));
    t.run(&["delete", "--force", id]).ok();
    t.assert_clean(id, &b);
}

#[test]
fn numothersock_counts_the_sockets_that_are_not_tcp() {
    // (The busybox here has no flock applet: numflock's fdinfo reading is tested on a process
    // of the test binary itself, in tally-beancounters' sampler.)
    let t = Tally::new();
    let id = "bc-othersock";
    let mut b = Bundle::busybox(id);
    // syslogd holds one UNIX datagram socket (/dev/log), nc one TCP listener.
    b.sh("syslogd -n -O /tmp/log & nc -l -p 7004 & touch /tmp/ready; exec sleep 300");
    t.run_to_files(&["run", "-d", "--bundle", b.dir.to_str().unwrap(), id]).ok();
    integration_tests::wait_for_file(&b.rootfs().join("tmp/ready"));
    wait_until("one UNIX socket", || row(&t, id, "numothersock")["held"].as_u64() == Some(1));
    wait_until("one TCP socket", || row(&t, id, "numtcpsock")["held"].as_u64() == Some(1));
    t.run(&["delete", "--force", id]).ok();
    t.assert_clean(id, &b);
}

#[test]
fn resources_reads_only_the_rows_asked_for_and_names_an_unknown_one() {
    let t = Tally::new();
    let id = "bc-filter";
    let b = t.sleeping(id, |_| {});
    let r = t.run(&["beancounters", "--format", "json", "--resources", "numproc,numfile", id]).ok();
    let all: Value = serde_json::from_str(&r.stdout).unwrap();
    let names: Vec<&str> =
        all[0]["resources"].as_array().unwrap().iter().map(|r| r["resource"].as_str().unwrap()).collect();
    assert_eq!(names, ["numproc", "numfile"], "{}", r.stdout);
    t.run(&["beancounters", "--resources", "numproc,nosuch", id])
        .fails_with(&["--resources", "unknown resource 'nosuch'"]);
    t.run(&["delete", "--force", id]).ok();
    t.assert_clean(id, &b);
    // The ledger's final set, filtered the same way.
    let r = t.run(&["beancounters", "--ledger", "--format", "json", "--resources", "numfile", id]).ok();
    let entries: Value = serde_json::from_str(&r.stdout).unwrap();
    let rows = entries[0]["beancounters"]["resources"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{}", r.stdout);
    assert_eq!(rows[0]["resource"], "numfile");
}

#[test]
fn the_table_is_the_openvz_format_with_the_cgroup_inode_as_uid() {
    use std::os::unix::fs::MetadataExt;
    let t = Tally::new();
    let id = "bc-table";
    let b = t.sleeping(id, |_| {});
    let r = t.run(&["beancounters", id]).ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[0], "Version: 2.5");
    assert_eq!(
        lines[1],
        "       uid  resource                     held              maxheld              barrier                limit              failcnt"
    );
    assert_eq!(lines.len(), 2 + 24, "24 rows, dummies included:\n{}", r.stdout);
    let dir = match cgroup_host() {
        CgroupHost::V2 => format!("/sys/fs/cgroup/{id}"),
        CgroupHost::V1 => format!("/sys/fs/cgroup/pids/{id}"),
    };
    let ino = fs::metadata(dir).unwrap().ino();
    assert!(lines[2].starts_with(&format!("{:>10}: kmemsize ", ino)), "{}", lines[2]);
    let numproc = lines.iter().find(|l| l.trim_start().starts_with("numproc")).unwrap();
    let cols: Vec<&str> = numproc.split_whitespace().collect();
    assert_eq!(cols[1], "1", "one process: {numproc}");
    assert_eq!(cols[3], "9223372036854775807", "no pids limit is unlimited: {numproc}");

    let json: Value = serde_json::from_str(&t.run(&["beancounters", "--format", "json"]).ok().stdout).unwrap();
    let me = json.as_array().unwrap().iter().find(|c| c["id"] == id).unwrap();
    assert_eq!(me["cgroup_id"].as_u64(), Some(ino));
    if cgroup_host() == CgroupHost::V1 {
        // The host sandbox has no memory controller: those numbers do not exist.
        let phys = me["resources"].as_array().unwrap().iter().find(|r| r["resource"] == "physpages").unwrap();
        assert!(phys["held"].is_null() && phys["limit"].is_null(), "{phys}");
    }
    t.run(&["delete", "--force", id]).ok();
    t.assert_clean(id, &b);
}

#[test]
fn delete_leaves_the_final_beancounters_in_the_ledger() {
    let t = Tally::new();
    let id = "bc-ledger";
    let b = t.sleeping(id, |c| c["annotations"] = json!({"org.tally.beancounter.numproc": "50"}));
    t.run(&["delete", "--force", id]).ok();
    t.assert_clean(id, &b);
    let r = t.run(&["beancounters", "--ledger", "--format", "json"]).ok();
    let entries: Value = serde_json::from_str(&r.stdout).unwrap();
    let last =
        entries.as_array().unwrap().iter().rev().find(|e| e["beancounters"]["id"] == id).expect("a ledger entry");
    let numproc =
        last["beancounters"]["resources"].as_array().unwrap().iter().find(|r| r["resource"] == "numproc").unwrap();
    assert_eq!((numproc["held"].as_u64(), numproc["limit"].as_u64()), (Some(1), Some(50)), "{numproc}");
    assert!(last["deleted"].as_u64().unwrap() > 0);
    let table = t.run(&["beancounters", "--ledger", id]).ok();
    assert!(table.stdout.contains("Version: 2.5") && table.stdout.contains("numproc"), "{}", table.stdout);
}

#[test]
fn bad_beancounter_annotations_are_errors_naming_them_at_create() {
    let t = Tally::new();
    for (id, key, value, needle) in [
        ("bc-bad1", "org.tally.beancounter.numbeans", "10", "unknown beancounter resource"),
        ("bc-bad2", "org.tally.beancounter.numproc", "ten", "not a number"),
        ("bc-bad3", "org.tally.beancounter.numproc", "30:20", "above the limit"),
        ("bc-bad4", "org.tally.beancounter.numfile", "64:128", "contradicts process.rlimits"),
    ] {
        let mut b = Bundle::busybox(id);
        b.edit(|c| c["annotations"] = json!({ key: value }));
        t.create(id, &b).fails_with(&[key, needle]);
        t.assert_clean(id, &b);
    }
}

#[test]
fn events_stats_carries_the_beancounters_beside_runcs_fields() {
    let t = Tally::new();
    let id = "bc-stats";
    let b = t.sleeping(id, |_| {});
    let r = t.run(&["events", "--stats", id]).ok();
    let line = BufReader::new(r.stdout.as_bytes()).lines().next().unwrap().unwrap();
    let e: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(e["type"], "stats");
    for field in ["cpu", "memory", "pids", "blkio", "hugetlb"] {
        assert!(e["data"].get(field).is_some(), "runc's {field} is kept: {e}");
    }
    let bcs = e["data"]["beancounters"].as_array().unwrap();
    assert!(bcs.iter().any(|r| r["resource"] == "numproc" && r["held"] == 1), "{e}");
    t.run(&["delete", "--force", id]).ok();
    t.assert_clean(id, &b);
}

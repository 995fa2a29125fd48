//! `checkpoint` and `restore` with CRIU: a running container is written to disk and brought
//! back, into another container ID, and goes on where it was: its counter continues (not from
//! 0), PID 1 is the same program, an open file's offset holds, a listening socket and an
//! established connection work again, also one from the host side of a veth into a network
//! namespace the container joins by path; stdio that is its caller's pipes or files is the
//! restoring caller's; a paused container is dumped through its freezer; `--leave-running` and
//! `--pre-dump` + `--parent-path`; `migrate` to another root over CRIU's page server; the
//! beancounters' high-water marks and the ledger carry over; bad input is a clear error and
//! leaves nothing.
//!
//! CRIU works in the test VM (hack/vm-test.sh puts it in the guest as TALLY_CRIU, with the
//! kernel modules it needs). The development host's kernel (6.18) fails `criu check`
//! ("vdso: Unexpected rt vDSO area bounds"): there the tests that need CRIU are skipped.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use integration_tests::{skip, unique, Bundle, Tally};
use serde_json::{json, Value};

fn criu(test: &str) -> Option<PathBuf> {
    match std::env::var_os("TALLY_CRIU") {
        Some(c) => Some(PathBuf::from(c)),
        None => {
            skip(test, "no working CRIU here (the host's kernel 6.18 fails criu check: vdso; the VM runs these)");
            None
        }
    }
}

/// A container that counts: its stdio on its own /dev/null (the caller's files as stdio have a
/// test of their own), a line per tick on fd 3 of /count.log
/// (opened once: its offset must survive), the last value in /counter. On its loopback, a
/// listening server on port 7000 answers `tcp-ok`, and an established connection to port 7001
/// carries a `ping` every 0.2 s into /got.
fn counter(t: &Tally, id: &str) -> Bundle {
    t.sleeping(id, |c| {
        let caps = json!(["CAP_NET_ADMIN", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
        c["process"]["capabilities"] = json!({"bounding": caps.clone(), "effective": caps.clone(), "permitted": caps});
        c["process"]["args"] = json!([
            "sh",
            "-c",
            "exec </dev/null >/dev/null 2>&1 3>/count.log; busybox ip link set lo up; \
             nc -ll -p 7000 -e /bin/echo tcp-ok & sleep 1000000 | nc -l -p 7001 > /got & sleep 0.3; \
             (while :; do echo ping; sleep 0.2; done) | nc 127.0.0.1 7001 & i=0; \
             while :; do i=$((i+1)); echo $i >&3; echo $i > /counter; sleep 0.1; done"
        ]);
    })
}

fn pings(b: &Bundle) -> usize {
    fs::read_to_string(b.rootfs().join("got")).map(|s| s.lines().count()).unwrap_or(0)
}

/// Waits until the connection has carried `at_least` pings in all.
#[track_caller]
fn wait_pings(b: &Bundle, at_least: usize) {
    let end = Instant::now() + Duration::from_secs(30);
    while pings(b) < at_least {
        assert!(Instant::now() < end, "the connection carried {} pings, not {at_least}", pings(b));
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The counters write `echo $i > FILE`, which empties the file before it writes the number: a
/// read in that gap gets nothing, and is read again (up to 20 times) rather than taken for 0.
fn counter_value(read: impl Fn() -> Option<u64>) -> u64 {
    for _ in 0..20 {
        if let Some(n) = read() {
            return n;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    0
}

fn count(b: &Bundle) -> u64 {
    counter_value(|| fs::read_to_string(b.rootfs().join("counter")).ok()?.trim().parse().ok())
}

#[track_caller]
fn wait_count(b: &Bundle, at_least: u64) -> u64 {
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let n = count(b);
        if n >= at_least {
            return n;
        }
        assert!(Instant::now() < end, "the counter stayed at {n}, below {at_least}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The log's lines are 1, 2, 3, ... with no gap and no restart: the offset held.
#[track_caller]
fn assert_log_continuous(b: &Bundle) {
    let log = fs::read_to_string(b.rootfs().join("count.log")).unwrap();
    for (i, line) in log.lines().enumerate() {
        assert_eq!(line, (i + 1).to_string(), "line {} of count.log: {log}", i + 1);
    }
}

fn tally_with(t: &Tally, criu: &Path, args: &[&str]) -> integration_tests::Ran {
    let mut full = vec!["--criu", criu.to_str().unwrap()];
    full.extend_from_slice(args);
    let r = t.run_to_files(&full);
    // A CRIU failure names its log: its end is what explains it (the test VM's files are gone
    // once it powers off).
    if let Some(log) = r.stderr.split("its log is ").nth(1).and_then(|s| s.split(';').next()) {
        let text = fs::read_to_string(log.trim()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        eprintln!("--- the end of {log}:\n{}", lines[lines.len().saturating_sub(40)..].join("\n"));
    }
    r
}

#[test]
fn a_checkpointed_counter_is_restored_into_another_id_and_continues_where_it_was() {
    let test = "a_checkpointed_counter_is_restored_into_another_id_and_continues_where_it_was";
    let Some(criu) = criu(test) else { return };
    let t = Tally::new();
    let b = counter(&t, "cr-src");
    wait_count(&b, 5);
    assert_eq!(t.run(&["exec", "cr-src", "nc", "127.0.0.1", "7000"]).ok().stdout.trim(), "tcp-ok");
    wait_pings(&b, 3);
    let images = std::env::temp_dir().join(unique("tally-it-images"));
    let img = images.to_str().unwrap();
    // (Both ends of the connection are in the container's network namespace, which CRIU dumps
    // whole: it takes them even without --tcp-established, which is passed as runc users do.)
    tally_with(&t, &criu, &["checkpoint", "--tcp-established", "--image-path", img, "cr-src"]).ok();
    // runc's checkpoint ends the container and deletes it.
    assert!(!t.root.join("cr-src").exists(), "the checkpointed container is gone");
    let frozen = count(&b);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(count(&b), frozen, "nothing counts while checkpointed");
    assert!(images.join("tally-checkpoint.json").exists());

    let pinged = pings(&b);
    tally_with(
        &t,
        &criu,
        &["restore", "-d", "--tcp-established", "--bundle", b.dir.to_str().unwrap(), "--image-path", img, "cr-dst"],
    )
    .ok();
    let st = t.state("cr-dst");
    assert_eq!(st["status"], "running");
    let after = wait_count(&b, frozen + 3);
    assert!(after > frozen, "the counter went on from {frozen}: {after}");
    let r = t.run(&["exec", "cr-dst", "cat", "/proc/1/cmdline"]).ok();
    assert!(r.stdout.starts_with("sh\0-c\0exec"), "PID 1 is the same program: {:?}", r.stdout);
    assert_log_continuous(&b);
    // The sockets came back: the listener answers again, and the connection that was open
    // across the checkpoint carries new pings. (With CRIU 3.17's nftables network lock, the
    // one a host without iptables gets, this needs tally to lift the lock CRIU leaves on the
    // restored namespace: criu/netlock.rs.)
    assert_eq!(t.run(&["exec", "cr-dst", "nc", "-w", "5", "127.0.0.1", "7000"]).ok().stdout.trim(), "tcp-ok");
    wait_pings(&b, pinged + 3);
    // The ledger has both events, the restored container the checkpointed one's maxheld.
    let ledger = t.run(&["beancounters", "--ledger", "--format", "json"]).ok();
    let entries: Value = serde_json::from_str(&ledger.stdout).unwrap();
    let events: Vec<&str> = entries.as_array().unwrap().iter().filter_map(|e| e["event"].as_str()).collect();
    assert!(events.contains(&"checkpointed") && events.contains(&"restored"), "{events:?}");
    t.run(&["delete", "--force", "cr-dst"]).ok();
    t.assert_clean("cr-dst", &b);
    t.assert_clean("cr-src", &b);
    let _ = fs::remove_dir_all(&images);
}

#[test]
fn migrate_moves_a_running_counter_to_another_root_over_the_page_server_in_pre_dump_rounds() {
    let test = "migrate_moves_a_running_counter_to_another_root_over_the_page_server_in_pre_dump_rounds";
    let Some(criu) = criu(test) else { return };
    let t = Tally::new();
    let dst = Tally::new();
    let b = counter(&t, "cr-mig");
    wait_count(&b, 5);
    wait_pings(&b, 3);
    let to = dst.root.to_str().unwrap();
    let r =
        tally_with(&t, &criu, &["migrate", "--to-root", to, "--pre-dump-rounds", "2", "--tcp-established", "cr-mig"]);
    let report: Value = serde_json::from_str(&r.ok().stdout).expect("migrate prints its report as JSON");
    let kinds: Vec<&str> = report["rounds"].as_array().unwrap().iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["pre-dump", "pre-dump", "dump"], "{report}");
    // The first round sends all the memory; the page server received it.
    assert!(report["rounds"][0]["page_bytes"].as_u64().unwrap() > 0, "{report}");
    let downtime = report["downtime_ms"].as_f64().unwrap();
    assert!(downtime > 0.0 && downtime >= report["restore_ms"].as_f64().unwrap(), "{report}");
    // Gone from the old root, running under the new one, where it goes on counting.
    assert!(!t.root.join("cr-mig").exists(), "the source container is gone");
    assert_eq!(dst.status("cr-mig"), "running");
    assert_eq!(dst.state("cr-mig")["pid"].as_i64(), report["pid"].as_i64());
    let at = count(&b);
    wait_count(&b, at + 3);
    assert_log_continuous(&b);
    assert_eq!(dst.run(&["exec", "cr-mig", "nc", "-w", "5", "127.0.0.1", "7000"]).ok().stdout.trim(), "tcp-ok");
    let pinged = pings(&b);
    wait_pings(&b, pinged + 3);
    assert!(!dst.root.join(".migrate-cr-mig").exists(), "the rounds' images are removed");
    dst.run(&["delete", "--force", "cr-mig"]).ok();
    dst.assert_clean("cr-mig", &b);
    t.assert_clean("cr-mig", &b);

    // Bad input: to its own root, to a root that has the ID (a created container there, in a
    // cgroup of its own), a stopped container. Each is refused before anything is dumped.
    let b2 = t.sleeping("cr-mig2", |_| {});
    let own = t.root.to_str().unwrap();
    tally_with(&t, &criu, &["migrate", "--to-root", own, "cr-mig2"]).fails_with(&["--to-root", "own root"]);
    let mut held = Bundle::busybox("cr-mig2-held");
    held.edit(|c| c["linux"]["cgroupsPath"] = json!("/tally-it-mig-held"));
    dst.create("cr-mig2", &held).ok();
    tally_with(&t, &criu, &["migrate", "--to-root", to, "cr-mig2"]).fails_with(&["--to-root", "already there"]);
    assert_eq!(t.status("cr-mig2"), "running", "a refused migration leaves the container running");
    dst.run(&["delete", "--force", "cr-mig2"]).ok();
    t.run(&["kill", "cr-mig2", "KILL"]).ok();
    t.wait_status("cr-mig2", "stopped");
    tally_with(&t, &criu, &["migrate", "--to-root", to, "cr-mig2"]).fails_with(&["cr-mig2", "stopped"]);
    t.run(&["delete", "cr-mig2"]).ok();
    t.assert_clean("cr-mig2", &b2);
    dst.assert_clean("cr-mig2", &held);
}

/// Reads the numbers a container writes to a pipe, on a thread, until the pipe closes.
fn collect_lines(pipe: std::process::ChildStdout) -> std::sync::Arc<std::sync::Mutex<Vec<u64>>> {
    use std::io::BufRead;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let into = seen.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
            into.lock().unwrap().push(line.trim().parse().unwrap_or(0));
        }
    });
    seen
}

#[track_caller]
fn wait_lines(seen: &std::sync::Mutex<Vec<u64>>, at_least: usize) -> Vec<u64> {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let v = seen.lock().unwrap().clone();
        if v.len() >= at_least {
            return v;
        }
        assert!(Instant::now() < end, "{} lines from the container, not {at_least}: {v:?}", v.len());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_container_writing_to_its_callers_pipe_is_restored_writing_to_the_restoring_callers_pipe() {
    let test = "a_container_writing_to_its_callers_pipe_is_restored_writing_to_the_restoring_callers_pipe";
    let Some(criu) = criu(test) else { return };
    use std::process::Stdio;
    let t = Tally::new();
    let mut b = Bundle::busybox("cr-pipe");
    b.edit(|c| {
        c["process"]["args"] =
            json!(["sh", "-c", "exec </dev/null 2>/dev/null; i=0; while :; do i=$((i+1)); echo $i; sleep 0.1; done"])
    });
    // Its stdout is a pipe to its caller, as a shim's or conmon's is.
    let criu_arg = criu.to_str().unwrap();
    let mut run = t
        .command()
        .args(["run", "-d", "--bundle", b.dir.to_str().unwrap(), "cr-pipe"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let before = collect_lines(run.stdout.take().unwrap());
    assert!(run.wait().unwrap().success());
    wait_lines(&before, 5);
    let images = std::env::temp_dir().join(unique("tally-it-pipe"));
    let img = images.to_str().unwrap();
    tally_with(&t, &criu, &["checkpoint", "--image-path", img, "cr-pipe"]).ok();
    // The dump ended the writer: the old pipe drains and closes.
    let end = Instant::now() + Duration::from_secs(10);
    while std::sync::Arc::strong_count(&before) > 1 {
        assert!(Instant::now() < end, "the old pipe did not close after the dump");
        std::thread::sleep(Duration::from_millis(50));
    }
    let old = before.lock().unwrap().clone();
    let last = *old.last().unwrap();
    let mut restore = t
        .command()
        .args([
            "--criu",
            criu_arg,
            "restore",
            "-d",
            "--bundle",
            b.dir.to_str().unwrap(),
            "--image-path",
            img,
            "cr-pipe2",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let after = collect_lines(restore.stdout.take().unwrap());
    assert!(restore.wait().unwrap().success(), "restore -d with its stdout a pipe");
    let new = wait_lines(&after, 5);
    // The numbers go on in the new pipe (what was still in the old pipe's buffer at the dump
    // may come again: CRIU keeps a pipe's contents), not from 1.
    assert!(new[0] > 1 && new[0] <= last + 1, "the new pipe starts at {}, the old one ended at {last}", new[0]);
    for w in new.windows(2) {
        assert_eq!(w[1], w[0] + 1, "consecutive in the new pipe: {new:?}");
    }
    t.run(&["delete", "--force", "cr-pipe2"]).ok();
    t.assert_clean("cr-pipe2", &b);
    t.assert_clean("cr-pipe", &b);
    let _ = fs::remove_dir_all(&images);
}

/// A network namespace made outside the container, with a veth to the host: what
/// `ip netns add` and a CNI plugin make for Podman or a pod. Removed on drop.
struct HostVeth {
    name: &'static str,
}

impl HostVeth {
    fn new(name: &'static str) -> Self {
        let ip = |args: &[&str]| {
            let out = std::process::Command::new("ip").args(args).output().expect("ip (iproute2)");
            assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        ip(&["netns", "add", name]);
        let me = Self { name };
        ip(&["link", "add", "tally-crh", "type", "veth", "peer", "name", "tally-crc", "netns", name]);
        ip(&["addr", "add", "10.77.0.1/24", "dev", "tally-crh"]);
        ip(&["link", "set", "tally-crh", "up"]);
        ip(&["-n", name, "addr", "add", "10.77.0.2/24", "dev", "tally-crc"]);
        ip(&["-n", name, "link", "set", "tally-crc", "up"]);
        ip(&["-n", name, "link", "set", "lo", "up"]);
        me
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }
}

impl Drop for HostVeth {
    fn drop(&mut self) {
        // Deleting the namespace deletes its veth end, and with it the host's.
        let _ = std::process::Command::new("ip").args(["netns", "delete", self.name]).status();
    }
}

/// What the container's listener wrote to /work/got (read inside it).
fn got(t: &Tally, id: &str) -> String {
    t.run(&["exec", id, "cat", "/work/got"]).stdout
}

#[track_caller]
fn wait_got(t: &Tally, id: &str, want: &str) {
    let end = Instant::now() + Duration::from_secs(60);
    while !got(t, id).contains(want) {
        assert!(Instant::now() < end, "{want:?} never reached the listener of {id}: {:?}", got(t, id));
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A container in a network namespace it joins by path (Podman's, a CNI pod's), reached from
/// the host side of a veth. The namespace is not the container's: the dump leaves it out
/// (external, as runc has it), the restored container joins the one the bundle names, and a
/// connection open from the host across the checkpoint carries data again (--tcp-established).
#[test]
fn a_container_in_a_joined_network_namespace_keeps_a_connection_from_the_host_side_of_a_veth() {
    let test = "a_container_in_a_joined_network_namespace_keeps_a_connection_from_the_host_side_of_a_veth";
    let Some(criu) = criu(test) else { return };
    use std::io::Write;
    let veth = HostVeth::new("tally-it-crns");
    let t = Tally::new();
    let b = t.sleeping("cr-net", |c| {
        c["mounts"].as_array_mut().unwrap().push(json!({"destination": "/work", "type": "tmpfs", "source": "tmpfs"}));
        for ns in c["linux"]["namespaces"].as_array_mut().unwrap() {
            if ns["type"] == "network" {
                ns["path"] = json!(veth.path());
            }
        }
        c["process"]["args"] = json!(["sh", "-c", "exec </dev/null >/dev/null 2>&1; nc -l -p 7000 > /work/got"]);
    });
    let end = Instant::now() + Duration::from_secs(30);
    let mut conn = loop {
        match std::net::TcpStream::connect("10.77.0.2:7000") {
            Ok(c) => break c,
            Err(e) => assert!(Instant::now() < end, "no listener on the container's side of the veth: {e}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    conn.write_all(b"before\n").unwrap();
    wait_got(&t, "cr-net", "before");
    let images = std::env::temp_dir().join(unique("tally-it-netns"));
    let img = images.to_str().unwrap();
    tally_with(&t, &criu, &["checkpoint", "--tcp-established", "--image-path", img, "cr-net"]).ok();
    assert!(Path::new(&veth.path()).exists(), "the joined namespace is the host's to keep");
    // Sent while the container is on disk: CRIU's lock drops it, the host's TCP sends it again.
    conn.write_all(b"while-away\n").unwrap();
    tally_with(
        &t,
        &criu,
        &["restore", "-d", "--tcp-established", "--bundle", b.dir.to_str().unwrap(), "--image-path", img, "cr-net2"],
    )
    .ok();
    let pid = t.state("cr-net2")["pid"].as_i64().unwrap();
    let inode = |p: &str| std::os::unix::fs::MetadataExt::ino(&fs::metadata(p).unwrap());
    assert_eq!(inode(&format!("/proc/{pid}/ns/net")), inode(&veth.path()), "restored into the joined namespace");
    conn.write_all(b"after\n").unwrap();
    wait_got(&t, "cr-net2", "after");
    let seen = got(&t, "cr-net2");
    assert!(seen.contains("before") && seen.contains("while-away"), "the connection lost nothing: {seen:?}");
    // A bundle that says otherwise than the checkpoint is refused, naming the field.
    let own = Bundle::busybox("cr-net3");
    let r = tally_with(
        &t,
        &criu,
        &["restore", "-d", "--bundle", own.dir.to_str().unwrap(), "--image-path", img, "cr-net3"],
    );
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("linux.namespaces"), "{}", r.stderr);
    assert!(!t.root.join("cr-net3").exists(), "a refused restore leaves no state");
    t.run(&["delete", "--force", "cr-net2"]).ok();
    t.assert_clean("cr-net2", &b);
    t.assert_clean("cr-net", &b);
    let _ = fs::remove_dir_all(&images);
}

/// Podman's conmon and containerd's shim give a detached container their own files as stdio:
/// the host's /dev/null, a log file. Those are on mounts the container does not have, where
/// CRIU cannot reopen them ("Can't lookup mount"): the dump declares them external, and the
/// restore puts the restoring caller's files of the same numbers in their place.
#[test]
fn a_container_whose_stdio_is_its_callers_files_is_restored_onto_the_restoring_callers_files() {
    let test = "a_container_whose_stdio_is_its_callers_files_is_restored_onto_the_restoring_callers_files";
    let Some(criu) = criu(test) else { return };
    use std::os::unix::fs::MetadataExt;
    let t = Tally::new();
    // stdin the host's /dev/null, stdout and stderr a log in the host's /tmp opened for
    // appending, as a supervisor keeps one. (A file not opened for appending must have the same
    // size at restore: CRIU checks it even for a file handed in with --inherit-fd.)
    let log = |name: &str| fs::OpenOptions::new().create(true).append(true).open(name).unwrap();
    let mut b = Bundle::busybox("cr-files");
    b.edit(|c| {
        c["mounts"].as_array_mut().unwrap().push(json!({"destination": "/work", "type": "tmpfs", "source": "tmpfs"}));
        c["process"]["args"] =
            json!(["sh", "-c", "i=0; while :; do i=$((i+1)); echo $i > /work/counter; echo tick $i; sleep 0.1; done"]);
    });
    let first = std::env::temp_dir().join(unique("tally-it-files-log"));
    let status = t
        .command()
        .args(["run", "-d", "--bundle", b.dir.to_str().unwrap(), "cr-files"])
        .stdin(std::process::Stdio::null())
        .stdout(log(first.to_str().unwrap()))
        .stderr(log(first.to_str().unwrap()))
        .status()
        .unwrap();
    assert!(status.success(), "run -d");
    let before = wait_exec_count(&t, "cr-files", 5);
    let images = std::env::temp_dir().join(unique("tally-it-files"));
    let img = images.to_str().unwrap();
    tally_with(&t, &criu, &["checkpoint", "--image-path", img, "cr-files"]).ok();
    let record: Value =
        serde_json::from_str(&fs::read_to_string(images.join("tally-checkpoint.json")).unwrap()).unwrap();
    let stdio: Vec<&str> = record["stdio"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(stdio.iter().all(|s| s.starts_with("file[")), "each stdio is recorded as an outside file: {stdio:?}");
    let out = std::env::temp_dir().join(unique("tally-it-restored-out"));
    let err = out.with_extension("err");
    let status = t
        .command()
        .args(["--criu", criu.to_str().unwrap(), "restore", "-d", "--bundle", b.dir.to_str().unwrap()])
        .args(["--image-path", img, "cr-files2"])
        .stdin(std::process::Stdio::null())
        .stdout(log(out.to_str().unwrap()))
        .stderr(log(err.to_str().unwrap()))
        .status()
        .unwrap();
    let said = fs::read_to_string(&err).unwrap_or_default();
    if let Some(log) = said.split("its log is ").nth(1).and_then(|s| s.split(';').next()) {
        eprintln!("--- {log}:\n{}", fs::read_to_string(log.trim()).unwrap_or_default());
    }
    assert!(status.success(), "restore with the caller's /dev/null and files as stdio: {said}");
    let at = exec_count(&t, "cr-files2");
    assert!(at >= before, "the counter continues from {before}, not from 0: {at}");
    wait_exec_count(&t, "cr-files2", at + 1);
    let pid = t.state("cr-files2")["pid"].as_i64().unwrap();
    let (null, stdin) = (fs::metadata("/dev/null").unwrap(), fs::metadata(format!("/proc/{pid}/fd/0")).unwrap());
    assert_eq!((stdin.dev(), stdin.ino()), (null.dev(), null.ino()), "stdin is the restoring caller's /dev/null");
    let end = Instant::now() + Duration::from_secs(30);
    while !fs::read_to_string(&out)
        .unwrap_or_default()
        .lines()
        .any(|l| l.trim_start_matches("tick ").parse::<u64>().is_ok_and(|n| n > before))
    {
        assert!(Instant::now() < end, "the restored counter writes no ticks to the restoring caller's stdout");
        std::thread::sleep(Duration::from_millis(100));
    }
    t.run(&["delete", "--force", "cr-files2"]).ok();
    t.assert_clean("cr-files2", &b);
    t.assert_clean("cr-files", &b);
    let _ = fs::remove_dir_all(&images);
    for f in [&first, &out, &err] {
        let _ = fs::remove_file(f);
    }
}

/// containerd pauses a task before it checkpoints it. CRIU then has to stop the tasks through
/// the container's freezer (with ptrace alone it waits forever for a frozen task to run its
/// parasite); a `--leave-running` dump leaves the container paused, and it goes on when resumed.
#[test]
fn a_paused_container_is_checkpointed_through_its_freezer_and_left_paused() {
    let test = "a_paused_container_is_checkpointed_through_its_freezer_and_left_paused";
    let Some(criu) = criu(test) else { return };
    let t = Tally::new();
    let b = tmpfs_counter(&t, "cr-paused");
    wait_exec_count(&t, "cr-paused", 5);
    t.run(&["pause", "cr-paused"]).ok();
    let images = std::env::temp_dir().join(unique("tally-it-paused"));
    let img = images.to_str().unwrap();
    tally_with(&t, &criu, &["checkpoint", "--leave-running", "--image-path", img, "cr-paused"]).ok();
    assert_eq!(t.status("cr-paused"), "paused", "the dump leaves the container as it found it");
    // (CRIU runs in the cgroup v2 VM only: the default cgroup /<id> in the unified tree.)
    let freeze = fs::read_to_string("/sys/fs/cgroup/cr-paused/cgroup.freeze").unwrap_or_default();
    assert_eq!(freeze.trim(), "1", "the kernel still holds the container frozen after the dump");
    t.run(&["resume", "cr-paused"]).ok();
    let at = exec_count(&t, "cr-paused");
    wait_exec_count(&t, "cr-paused", at + 1);
    t.run(&["delete", "--force", "cr-paused"]).ok();
    tally_with(&t, &criu, &["restore", "-d", "--bundle", b.dir.to_str().unwrap(), "--image-path", img, "cr-paused2"])
        .ok();
    assert!(exec_count(&t, "cr-paused2") >= 5, "the restored counter continues from the dump");
    t.run(&["delete", "--force", "cr-paused2"]).ok();
    t.assert_clean("cr-paused2", &b);
    t.assert_clean("cr-paused", &b);
    let _ = fs::remove_dir_all(&images);
}

/// A counter whose files are on a tmpfs of its own: CRIU carries a tmpfs's contents in the
/// images, so the container may go on writing after a `--leave-running` dump and still be
/// restored from it (files on the rootfs must then match what the images expect; a real
/// migration snapshots them). Read through `exec`.
fn tmpfs_counter(t: &Tally, id: &str) -> Bundle {
    t.sleeping(id, |c| {
        c["mounts"].as_array_mut().unwrap().push(json!({"destination": "/work", "type": "tmpfs", "source": "tmpfs"}));
        c["process"]["args"] = json!([
            "sh",
            "-c",
            "exec </dev/null >/dev/null 2>&1 3>/work/count.log; i=0; \
             while :; do i=$((i+1)); echo $i >&3; echo $i > /work/counter; sleep 0.1; done"
        ]);
    })
}

fn exec_count(t: &Tally, id: &str) -> u64 {
    counter_value(|| t.run(&["exec", id, "cat", "/work/counter"]).stdout.trim().parse().ok())
}

#[track_caller]
fn wait_exec_count(t: &Tally, id: &str, at_least: u64) -> u64 {
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let n = exec_count(t, id);
        if n >= at_least {
            return n;
        }
        assert!(Instant::now() < end, "the counter of {id} stayed at {n}, below {at_least}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// When the restore under the other root fails (here that root is a read-only mount, which
/// only the restore finds out, when it makes the container's directory), `migrate` brings the
/// container back where it was from the same images, says so, and the counter goes on there.
#[test]
fn a_migration_whose_restore_fails_brings_the_container_back_where_it_was() {
    let test = "a_migration_whose_restore_fails_brings_the_container_back_where_it_was";
    let Some(criu) = criu(test) else { return };
    let t = Tally::new();
    let b = tmpfs_counter(&t, "cr-back");
    let before = wait_exec_count(&t, "cr-back", 5);
    let ro = std::env::temp_dir().join(unique("tally-it-ro-root"));
    fs::create_dir_all(&ro).unwrap();
    let ro_c = std::ffi::CString::new(ro.to_str().unwrap()).unwrap();
    let none = std::ptr::null::<libc::c_char>();
    // SAFETY: NUL-terminated paths; a bind of the directory onto itself, then read-only.
    unsafe {
        assert_eq!(libc::mount(ro_c.as_ptr(), ro_c.as_ptr(), none, libc::MS_BIND, std::ptr::null()), 0);
        let flags = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY;
        assert_eq!(libc::mount(none, ro_c.as_ptr(), none, flags, std::ptr::null()), 0);
    }
    let images = std::env::temp_dir().join(unique("tally-it-back-images"));
    let r = tally_with(
        &t,
        &criu,
        &["migrate", "--to-root", ro.to_str().unwrap(), "--image-path", images.to_str().unwrap(), "cr-back"],
    );
    // SAFETY: unmounts the bind made above.
    unsafe { libc::umount2(ro_c.as_ptr(), libc::MNT_DETACH) };
    assert_ne!(r.code, 0, "a migration whose restore failed is an error");
    assert!(r.stderr.contains("runs again where it was"), "{}", r.stderr);
    assert_eq!(t.status("cr-back"), "running", "back in its own root");
    let at = exec_count(&t, "cr-back");
    assert!(at >= before, "the counter continues from {before}: {at}");
    wait_exec_count(&t, "cr-back", at + 1);
    t.run(&["delete", "--force", "cr-back"]).ok();
    t.assert_clean("cr-back", &b);
    assert_eq!(fs::read_dir(&ro).unwrap().count(), 0, "nothing was made under the other root");
    let _ = fs::remove_dir_all(&images);
    let _ = fs::remove_dir(&ro);
}

/// Post-copy (lazy) migration, as runc's users run it: `checkpoint --lazy-pages --page-server
/// ADDR --status-fd FD` dumps everything but the memory, says so on FD, and serves the pages on
/// ADDR; `criu lazy-pages` on the restoring side fetches them as the restored container
/// touches them (userfaultfd); `restore --lazy-pages` runs the container before its memory has
/// arrived. The counter goes on, and the dump side ends once every page is sent.
#[test]
fn a_lazy_pages_restore_runs_while_the_dump_side_serves_its_memory() {
    let test = "a_lazy_pages_restore_runs_while_the_dump_side_serves_its_memory";
    let Some(criu) = criu(test) else { return };
    use std::io::Read;
    use std::os::fd::FromRawFd;
    let t = Tally::new();
    let b = tmpfs_counter(&t, "cr-lazy");
    let before = wait_exec_count(&t, "cr-lazy", 5);
    let images = std::env::temp_dir().join(unique("tally-it-lazy"));
    let work = images.join("work");
    fs::create_dir_all(&work).unwrap();
    let img = images.to_str().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut fds = [0; 2];
    // SAFETY: pipe fills the two-int array; both ends are ours (not close-on-exec: the write
    // end is the checkpoint's --status-fd).
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let (status_r, status_w) = (fds[0], fds[1]);
    let criu_arg = criu.to_str().unwrap();
    let addr = format!("127.0.0.1:{port}");
    let w = status_w.to_string();
    let mut dump = t
        .command()
        .args(["--criu", criu_arg, "checkpoint", "--lazy-pages", "--page-server", &addr, "--status-fd", &w])
        .args(["--image-path", img, "cr-lazy"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // SAFETY: the write end was handed to the child; the parent's copy is closed once.
    unsafe { libc::close(status_w) };
    // SAFETY: the read end is ours alone from here.
    let mut ready = unsafe { fs::File::from_raw_fd(status_r) };
    let mut byte = [0u8; 1];
    assert_eq!(ready.read(&mut byte).unwrap(), 1, "the lazy dump says on --status-fd when its pages can be fetched");
    let lazy_log = images.join("lazy-pages.log");
    let mut lazy = std::process::Command::new(&criu)
        .args(["lazy-pages", "--page-server", "--address", "127.0.0.1", "--port", &port.to_string()])
        .args(["--images-dir", img, "--work-dir", work.to_str().unwrap(), "-v4", "--log-file"])
        .arg(&lazy_log)
        .spawn()
        .unwrap();
    // The restore connects to the daemon's socket in the work directory: it must exist first
    // (on a loaded emulated VM the daemon can take a while to make it).
    let socket = work.join("lazy-pages.socket");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !socket.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "criu lazy-pages made no {} in 30 s; its log:\n{}",
            socket.display(),
            fs::read_to_string(&lazy_log).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let restored = tally_with(
        &t,
        &criu,
        &[
            "restore",
            "-d",
            "--lazy-pages",
            "--bundle",
            b.dir.to_str().unwrap(),
            "--image-path",
            img,
            "--work-path",
            work.to_str().unwrap(),
            "cr-lazy2",
        ],
    );
    if restored.code != 0 {
        eprintln!("--- {}:\n{}", lazy_log.display(), fs::read_to_string(&lazy_log).unwrap_or_default());
        let _ = (dump.kill(), lazy.kill());
    }
    restored.ok();
    let at = wait_exec_count(&t, "cr-lazy2", before);
    wait_exec_count(&t, "cr-lazy2", at + 1);
    assert!(dump.wait().unwrap().success(), "the dump side ends once its pages are sent");
    assert!(lazy.wait().unwrap().success(), "criu lazy-pages ends once every page is in");
    t.run(&["delete", "--force", "cr-lazy2"]).ok();
    t.assert_clean("cr-lazy2", &b);
    t.assert_clean("cr-lazy", &b);
    let _ = fs::remove_dir_all(&images);
}

#[test]
fn leave_running_keeps_the_container_counting_and_pre_dump_rounds_feed_the_final_dump() {
    let test = "leave_running_keeps_the_container_counting_and_pre_dump_rounds_feed_the_final_dump";
    let Some(criu) = criu(test) else { return };
    let t = Tally::new();
    let b = tmpfs_counter(&t, "cr-live");
    wait_exec_count(&t, "cr-live", 3);
    let base = std::env::temp_dir().join(unique("tally-it-predump"));
    let (pre, fin) = (base.join("pre"), base.join("final"));
    tally_with(&t, &criu, &["checkpoint", "--pre-dump", "--image-path", pre.to_str().unwrap(), "cr-live"]).ok();
    assert_eq!(t.status("cr-live"), "running", "a pre-dump leaves the container running");
    let n = exec_count(&t, "cr-live");
    wait_exec_count(&t, "cr-live", n + 3);
    tally_with(
        &t,
        &criu,
        &["checkpoint", "--leave-running", "--parent-path", "../pre", "--image-path", fin.to_str().unwrap(), "cr-live"],
    )
    .ok();
    assert_eq!(t.status("cr-live"), "running", "--leave-running");
    let dumped = exec_count(&t, "cr-live");
    wait_exec_count(&t, "cr-live", dumped + 5);
    t.run(&["delete", "--force", "cr-live"]).ok();
    // The final images restore, on top of the pre-dump's pages, at the dump's count.
    tally_with(
        &t,
        &criu,
        &["restore", "-d", "--bundle", b.dir.to_str().unwrap(), "--image-path", fin.to_str().unwrap(), "cr-live2"],
    )
    .ok();
    assert_eq!(t.status("cr-live2"), "running");
    let restored = exec_count(&t, "cr-live2");
    assert!(restored >= dumped && restored < dumped + 5, "restored at {restored}, dumped near {dumped}");
    let log = t.run(&["exec", "cr-live2", "cat", "/work/count.log"]).ok().stdout;
    for (i, line) in log.lines().enumerate() {
        assert_eq!(line, (i + 1).to_string(), "line {} of count.log", i + 1);
    }
    t.run(&["delete", "--force", "cr-live2"]).ok();
    t.assert_clean("cr-live2", &b);
    t.assert_clean("cr-live", &b);
    let _ = fs::remove_dir_all(&base);
}

#[test]
fn bad_checkpoints_and_restores_are_clear_errors_that_leave_nothing() {
    let test = "bad_checkpoints_and_restores_are_clear_errors_that_leave_nothing";
    let t = Tally::new();
    // What needs no CRIU: a created container, a missing one, a missing image.
    let b = Bundle::busybox("cr-bad");
    t.create("cr-bad", &b).ok();
    t.run(&["checkpoint", "--image-path", "/tmp/never", "cr-bad"]).fails_with(&["cr-bad", "created", "running"]);
    assert_eq!(t.status("cr-bad"), "created");
    t.run(&["delete", "--force", "cr-bad"]).ok();
    t.run(&["checkpoint", "nosuch"]).fails_with(&["nosuch"]);
    let missing = std::env::temp_dir().join(unique("tally-it-noimage"));
    t.run(&["restore", "--bundle", b.dir.to_str().unwrap(), "--image-path", missing.to_str().unwrap(), "cr-bad"])
        .fails_with(&["--image-path", "not a tally checkpoint"]);
    t.run(&["checkpoint", "--manage-cgroups-mode", "sometimes", "cr-bad"]).fails_with(&["--manage-cgroups-mode"]);
    t.assert_clean("cr-bad", &b);
    let Some(criu) = criu(test) else { return };
    // A corrupt image: CRIU's refusal with its log named, and nothing made.
    let corrupt = std::env::temp_dir().join(unique("tally-it-corrupt"));
    fs::create_dir_all(&corrupt).unwrap();
    fs::write(corrupt.join("tally-checkpoint.json"), r#"{"externals": [], "beancounters": {}}"#).unwrap();
    fs::write(corrupt.join("inventory.img"), "not an image").unwrap();
    tally_with(
        &t,
        &criu,
        &["restore", "-d", "--bundle", b.dir.to_str().unwrap(), "--image-path", corrupt.to_str().unwrap(), "cr-bad"],
    )
    .fails_with(&["criu restore failed", "restore.log"]);
    t.assert_clean("cr-bad", &b);
    let _ = fs::remove_dir_all(&corrupt);
}

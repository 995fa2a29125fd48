//! runc's commands over a live container: `pause` and `resume` (the cgroup freezer), `ps`,
//! `update` (new limits in the cgroup), `events` (runc's stats lines, once or every interval
//! until the container stops) and `features`. Every container test checks what the command
//! did to the container and its cgroup, and that the host is clean once it is deleted.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use integration_tests::{
    assert_host_clean, cgroup_host, processes_under, skip, unique, Bundle, CgroupHost, Ran, Tally,
};
use serde_json::{json, Value};

/// The directory of the container's default cgroup (`/<id>`) in `controller`'s
/// hierarchy on v1 (`cpu` may be co-mounted as `cpu,cpuacct`), or in the unified tree on v2.
fn cgroup_dir(controller: &str, id: &str) -> PathBuf {
    let base = match cgroup_host() {
        CgroupHost::V2 => PathBuf::from("/sys/fs/cgroup"),
        CgroupHost::V1 => [controller.to_string(), format!("{controller},cpuacct")]
            .iter()
            .map(|d| Path::new("/sys/fs/cgroup").join(d))
            .find(|p| p.is_dir())
            .unwrap_or_else(|| panic!("no v1 {controller} hierarchy under /sys/fs/cgroup")),
    };
    base.join(id)
}

/// A cgroup file of the container, trimmed.
#[track_caller]
fn cg_read(controller: &str, id: &str, file: &str) -> String {
    let p = cgroup_dir(controller, id).join(file);
    fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).trim().to_string()
}

/// The freezer's file: v1 `freezer.state` (THAWED, FREEZING, FROZEN), v2 `cgroup.freeze` (0, 1).
fn freezer_file(id: &str) -> PathBuf {
    match cgroup_host() {
        CgroupHost::V1 => cgroup_dir("freezer", id).join("freezer.state"),
        CgroupHost::V2 => cgroup_dir("", id).join("cgroup.freeze"),
    }
}

/// Whether the kernel holds the container's cgroup frozen.
#[track_caller]
fn frozen(id: &str) -> bool {
    let p = freezer_file(id);
    let v = fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    match (cgroup_host(), v.trim()) {
        (CgroupHost::V1, "FROZEN") | (CgroupHost::V2, "1") => true,
        (CgroupHost::V1, "THAWED") | (CgroupHost::V2, "0") => false,
        (_, other) => panic!("{}: unexpected {other:?}", p.display()),
    }
}

/// Thaws the container's cgroup behind tally's back when a test ends (also by a panic), so a
/// failing test never leaves frozen processes behind: on v1 a frozen task acts on SIGKILL only
/// once thawed, and tally's `delete --force` thaws only a container it reports as `paused`.
/// Declared after the `Tally`, it is dropped before the `Tally`'s own force-delete of leftovers.
struct ThawOnDrop(String);

impl Drop for ThawOnDrop {
    fn drop(&mut self) {
        let thawed = match cgroup_host() {
            CgroupHost::V1 => "THAWED",
            CgroupHost::V2 => "0",
        };
        let _ = fs::write(freezer_file(&self.0), thawed);
    }
}

/// A bundle whose program is `args`.
fn bundle_running(name: &str, args: &[&str]) -> Bundle {
    let mut b = Bundle::busybox(name);
    b.edit(|c| c["process"]["args"] = json!(args));
    b
}

/// `tally run -d` of `b` as `id`; the container keeps running.
fn run_detached(t: &Tally, id: &str, b: &Bundle) {
    t.run_to_files(&["run", "-d", "--bundle", b.dir.to_str().unwrap(), id]).ok();
    assert_eq!(t.status(id), "running");
}

fn init_pid(t: &Tally, id: &str) -> i64 {
    let pid = t.state(id)["pid"].as_i64().unwrap();
    assert!(pid > 0, "container {id} has no init pid");
    pid
}

/// The status `list --format json` gives the container.
fn listed_status(t: &Tally, id: &str) -> String {
    let out = t.run(&["list", "--format", "json"]).ok().stdout;
    let list: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("list is JSON ({e}): {out}"));
    let entry = list.as_array().unwrap().iter().find(|e| e["id"] == id).unwrap_or_else(|| panic!("{id} not in {out}"));
    entry["status"].as_str().unwrap().to_string()
}

/// `tally args...` with `input` on its stdin.
fn run_with_stdin(t: &Tally, args: &[&str], input: &str) -> Ran {
    let mut child = t
        .command()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tally");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Waits (bounded, 5 s) until `cond` holds.
#[track_caller]
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

// pause and resume

#[test]
fn pause_freezes_every_process_and_resume_lets_them_run_on() {
    let t = Tally::new();
    let mut b = Bundle::busybox("pause");
    // One line per tick, appended by a single write: the line count is the counter, and a
    // freeze can never leave it half-written.
    b.sh("while true; do echo tick >> /tmp/ticks; sleep 0.05; done");
    let ticks_file = b.rootfs().join("tmp/ticks");
    let ticks = || fs::read_to_string(&ticks_file).unwrap_or_default().matches('\n').count();
    run_detached(&t, "pause1", &b);
    let _thaw = ThawOnDrop("pause1".into());
    let pid = init_pid(&t, "pause1");
    wait_until("the counter to start", || ticks() >= 3);

    t.run(&["pause", "pause1"]).ok();
    assert_eq!(t.status("pause1"), "paused");
    assert_eq!(listed_status(&t, "pause1"), "paused");
    assert_eq!(init_pid(&t, "pause1"), pid, "a paused container keeps its init");
    assert!(frozen("pause1"), "pause returns once the cgroup is frozen");
    let before = ticks();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(ticks(), before, "the counter must not advance while the container is paused");

    t.run(&["resume", "pause1"]).ok();
    assert_eq!(t.status("pause1"), "running");
    assert_eq!(listed_status(&t, "pause1"), "running");
    assert!(!frozen("pause1"));
    wait_until("the counter to advance after resume", || ticks() > before);

    t.run(&["delete", "--force", "pause1"]).ok();
    t.assert_clean("pause1", &b);
}

#[test]
fn pause_and_resume_refuse_a_container_in_the_wrong_status_and_change_nothing() {
    let t = Tally::new();
    let b = bundle_running("pause-bad", &["sleep", "60"]);
    run_detached(&t, "pause-bad", &b);
    let _thaw = ThawOnDrop("pause-bad".into());

    t.run(&["resume", "pause-bad"]).fails_with(&["pause-bad", "running", "not paused"]);
    assert_eq!(t.status("pause-bad"), "running");
    assert!(!frozen("pause-bad"), "a refused resume leaves the freezer alone");

    t.run(&["pause", "pause-bad"]).ok();
    t.run(&["pause", "pause-bad"]).fails_with(&["pause-bad", "paused"]);
    assert_eq!(t.status("pause-bad"), "paused");
    assert!(frozen("pause-bad"), "a refused pause leaves the freezer alone");
    t.run(&["resume", "pause-bad"]).ok();

    t.run(&["kill", "pause-bad", "KILL"]).ok();
    t.wait_status("pause-bad", "stopped");
    t.run(&["pause", "pause-bad"]).fails_with(&["pause-bad", "stopped"]);
    assert_eq!(t.status("pause-bad"), "stopped");
    assert!(!frozen("pause-bad"));
    t.run(&["resume", "pause-bad"]).fails_with(&["pause-bad", "stopped"]);
    assert_eq!(t.status("pause-bad"), "stopped");

    t.run(&["delete", "pause-bad"]).ok();
    t.assert_clean("pause-bad", &b);
}

#[test]
fn a_created_container_can_be_paused_resumed_and_then_started() {
    // runc pauses a created container too, and reports it `paused` until it is resumed.
    let t = Tally::new();
    let mut b = Bundle::busybox("pause-created");
    b.sh("touch /tmp/started; exec sleep 60");
    t.create("pause-created", &b).ok();
    let _thaw = ThawOnDrop("pause-created".into());

    t.run(&["pause", "pause-created"]).ok();
    assert!(frozen("pause-created"));
    assert_eq!(t.status("pause-created"), "paused", "a frozen container must not be reported as created");
    t.run(&["resume", "pause-created"]).ok();
    assert!(!frozen("pause-created"));
    assert_eq!(t.status("pause-created"), "created");

    t.run(&["start", "pause-created"]).ok();
    integration_tests::wait_for_file(&b.rootfs().join("tmp/started"));
    assert_eq!(t.status("pause-created"), "running");
    t.run(&["delete", "--force", "pause-created"]).ok();
    t.assert_clean("pause-created", &b);
}

#[test]
fn delete_force_removes_a_paused_container() {
    let t = Tally::new();
    let b = bundle_running("pause-delete", &["sleep", "60"]);
    run_detached(&t, "pause-delete", &b);
    let _thaw = ThawOnDrop("pause-delete".into());
    t.run(&["pause", "pause-delete"]).ok();
    t.run(&["delete", "pause-delete"]).fails_with(&["pause-delete", "paused", "--force"]);
    assert_eq!(t.status("pause-delete"), "paused", "a refused delete changes nothing");
    let started = Instant::now();
    t.run(&["delete", "--force", "pause-delete"]).ok();
    assert!(started.elapsed() < Duration::from_secs(5), "delete --force took {:?}", started.elapsed());
    t.assert_clean("pause-delete", &b);
}

/// `kill SIGNAL` (of the init, or `--all`) of a paused container: SIGKILL stops it, as with
/// runc, which thaws the cgroup for SIGKILL (on v1 a frozen process acts on it only once thawed).
fn kill_of_a_paused_container(id: &str, all: bool) {
    let t = Tally::new();
    let b = bundle_running(id, &["sleep", "60"]);
    run_detached(&t, id, &b);
    let _thaw = ThawOnDrop(id.into());
    t.run(&["pause", id]).ok();
    let args: &[&str] = if all { &["kill", "--all", id, "KILL"] } else { &["kill", id, "KILL"] };
    t.run(args).ok();
    t.wait_status(id, "stopped");
    t.run(&["delete", id]).ok();
    t.assert_clean(id, &b);
}

#[test]
fn kill_with_sigkill_stops_a_paused_container() {
    kill_of_a_paused_container("pause-kill", false);
}

#[test]
fn kill_all_with_sigkill_stops_a_paused_container() {
    kill_of_a_paused_container("pause-killall", true);
}

// ps

#[test]
fn ps_lists_the_containers_processes_as_a_table_and_as_json_pids() {
    let t = Tally::new();
    let b = bundle_running("ps", &["sh", "-c", "sleep 1000 & exec sleep 1001"]);
    run_detached(&t, "ps1", &b);
    let init = init_pid(&t, "ps1");

    // The background sleep is forked after the init started: wait for both processes.
    let mut pids: Vec<i64> = Vec::new();
    wait_until("two processes in ps --format json", || {
        let out = t.run(&["ps", "--format", "json", "ps1"]).ok().stdout;
        pids = serde_json::from_str(&out).unwrap_or_else(|e| panic!("ps json is an array of pids ({e}): {out}"));
        pids.len() == 2
    });
    assert!(pids.contains(&init), "ps json {pids:?} lacks the init {init}");
    let mut theirs: Vec<i64> = processes_under(&b.dir).into_iter().map(i64::from).collect();
    theirs.sort_unstable();
    assert_eq!(pids, theirs, "ps json lists exactly the container's processes");

    let mut table = String::new();
    wait_until("both sleeps in the ps table", || {
        table = t.run(&["ps", "ps1"]).ok().stdout;
        table.contains("sleep 1000") && table.contains("sleep 1001")
    });
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    let pid_col =
        header.split_whitespace().position(|h| h == "PID").unwrap_or_else(|| panic!("no PID column: {table}"));
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 2, "only the container's two processes: {table}");
    let mut listed: Vec<i64> =
        rows.iter().map(|r| r.split_whitespace().nth(pid_col).unwrap().parse().unwrap()).collect();
    listed.sort_unstable();
    assert_eq!(listed, pids, "the table lists the same processes as the json");
    assert!(rows.iter().all(|r| r.contains("sleep")), "{table}");

    t.run(&["delete", "--force", "ps1"]).ok();
    t.assert_clean("ps1", &b);
}

// update

#[test]
fn update_pids_limit_sets_pids_max() {
    let t = Tally::new();
    let b = bundle_running("upd-pids", &["sleep", "60"]);
    run_detached(&t, "upd-pids", &b);
    t.run(&["update", "--pids-limit", "20", "upd-pids"]).ok();
    assert_eq!(cg_read("pids", "upd-pids", "pids.max"), "20");
    assert_eq!(t.status("upd-pids"), "running");
    t.run(&["delete", "--force", "upd-pids"]).ok();
    t.assert_clean("upd-pids", &b);
}

#[test]
fn update_reads_a_resources_document_from_a_file_or_from_stdin() {
    let t = Tally::new();
    let b = bundle_running("upd-res", &["sleep", "60"]);
    run_detached(&t, "upd-res", &b);
    let file = b.dir.join("resources.json");
    fs::write(&file, r#"{"pids":{"limit":33}}"#).unwrap();
    t.run(&["update", "--resources", file.to_str().unwrap(), "upd-res"]).ok();
    assert_eq!(cg_read("pids", "upd-res", "pids.max"), "33");
    run_with_stdin(&t, &["update", "--resources", "-", "upd-res"], r#"{"pids":{"limit":44}}"#).ok();
    assert_eq!(cg_read("pids", "upd-res", "pids.max"), "44");
    // The flags apply on top of the document.
    run_with_stdin(&t, &["update", "-r", "-", "--pids-limit", "55", "upd-res"], r#"{"pids":{"limit":66}}"#).ok();
    assert_eq!(cg_read("pids", "upd-res", "pids.max"), "55");
    t.run(&["delete", "--force", "upd-res"]).ok();
    t.assert_clean("upd-res", &b);
}

#[test]
fn update_cpu_quota_and_period_read_back_from_the_cgroup() {
    let t = Tally::new();
    let b = bundle_running("upd-cpu", &["sleep", "60"]);
    run_detached(&t, "upd-cpu", &b);
    t.run(&["update", "--cpu-quota", "50000", "--cpu-period", "100000", "upd-cpu"]).ok();
    match cgroup_host() {
        CgroupHost::V1 => {
            assert_eq!(cg_read("cpu", "upd-cpu", "cpu.cfs_quota_us"), "50000");
            assert_eq!(cg_read("cpu", "upd-cpu", "cpu.cfs_period_us"), "100000");
        }
        CgroupHost::V2 => assert_eq!(cg_read("cpu", "upd-cpu", "cpu.max"), "50000 100000"),
    }
    t.run(&["delete", "--force", "upd-cpu"]).ok();
    t.assert_clean("upd-cpu", &b);
}

#[test]
fn update_refuses_bad_values_and_changes_nothing() {
    let t = Tally::new();
    let b = bundle_running("upd-bad", &["sleep", "60"]);
    run_detached(&t, "upd-bad", &b);
    t.run(&["update", "--pids-limit", "20", "upd-bad"]).ok();

    t.run(&["update", "--memory", "lots", "--pids-limit", "30", "upd-bad"]).fails_with(&["--memory", "\"lots\""]);
    assert_eq!(cg_read("pids", "upd-bad", "pids.max"), "20", "a refused update applies no part of itself");

    run_with_stdin(&t, &["update", "--resources", "-", "upd-bad"], r#"{"pids":{"limit":"many"}}"#).fails_with(&[
        "--resources",
        "pids.limit",
        "invalid type",
    ]);
    let file = b.dir.join("broken.json");
    fs::write(&file, r#"{"pids": {"limit": 30}"#).unwrap();
    t.run(&["update", "--resources", file.to_str().unwrap(), "upd-bad"]).fails_with(&[
        "--resources",
        file.to_str().unwrap(),
        "EOF",
    ]);
    t.run(&["update", "--resources", b.dir.join("missing.json").to_str().unwrap(), "upd-bad"])
        .fails_with(&["missing.json", "No such file or directory"]);
    t.run(&["update", "--pids-limit", "0", "upd-bad"]).fails_with(&["--pids-limit"]);
    assert_eq!(cg_read("pids", "upd-bad", "pids.max"), "20");

    t.run(&["update", "--pids-limit", "30", "no-such-container"]).fails_with(&["no-such-container", "does not exist"]);

    t.run(&["kill", "upd-bad", "KILL"]).ok();
    t.wait_status("upd-bad", "stopped");
    t.run(&["update", "--pids-limit", "30", "upd-bad"]).fails_with(&["upd-bad", "stopped"]);
    assert_eq!(cg_read("pids", "upd-bad", "pids.max"), "20");
    t.run(&["delete", "upd-bad"]).ok();
    t.assert_clean("upd-bad", &b);
}

#[test]
fn update_memory_is_an_error_naming_the_controller_where_the_host_has_none() {
    if cgroup_host() != CgroupHost::V1 {
        skip(
            "update_memory_is_an_error_naming_the_controller_where_the_host_has_none",
            "the host sandbox (cgroup v1) hides the memory controller; this host has it",
        );
        return;
    }
    let t = Tally::new();
    let b = bundle_running("upd-nomem", &["sleep", "60"]);
    run_detached(&t, "upd-nomem", &b);
    t.run(&["update", "--pids-limit", "20", "upd-nomem"]).ok();
    t.run(&["update", "--memory", "64m", "--pids-limit", "30", "upd-nomem"]).fails_with(&[
        "linux.resources.memory",
        "memory cgroup controller",
        "not available",
    ]);
    assert_eq!(cg_read("pids", "upd-nomem", "pids.max"), "20", "a refused update applies no part of itself");
    assert_eq!(t.status("upd-nomem"), "running");
    t.run(&["delete", "--force", "upd-nomem"]).ok();
    t.assert_clean("upd-nomem", &b);
}

#[test]
fn update_memory_sets_memory_max_on_cgroup_v2() {
    if cgroup_host() != CgroupHost::V2 {
        skip(
            "update_memory_sets_memory_max_on_cgroup_v2",
            "needs pure cgroup v2 with the memory controller: runs in the VM (make vm-test)",
        );
        return;
    }
    let t = Tally::new();
    let b = bundle_running("upd-mem", &["sleep", "60"]);
    run_detached(&t, "upd-mem", &b);
    t.run(&["update", "--memory", "64m", "upd-mem"]).ok();
    assert_eq!(cg_read("memory", "upd-mem", "memory.max"), "67108864");
    t.run(&["delete", "--force", "upd-mem"]).ok();
    t.assert_clean("upd-mem", &b);
}

// events

/// Every key path in `v` ("cpu.usage.total"), through objects only; array contents are left out.
fn key_paths(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    if let Value::Object(map) = v {
        for (k, child) in map {
            let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
            key_paths(child, &path, out);
            out.insert(path);
        }
    }
}

/// The single stats line of `tally events --stats ID`, checked for its envelope.
#[track_caller]
fn stats_of(t: &Tally, id: &str) -> Value {
    let out = t.run(&["events", "--stats", id]).ok().stdout;
    assert_eq!(out.lines().count(), 1, "one JSON line: {out}");
    let ev: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("stats is JSON ({e}): {out}"));
    assert_eq!(ev["type"], "stats", "{ev}");
    assert_eq!(ev["id"], id, "{ev}");
    ev
}

#[test]
fn events_stats_prints_one_line_with_runcs_field_names() {
    let t = Tally::new();
    let b = bundle_running("ev-stats", &["sleep", "60"]);
    run_detached(&t, "ev-stats", &b);
    let ev = stats_of(&t, "ev-stats");
    let data = &ev["data"];
    assert!(data["cpu"]["usage"]["total"].is_u64(), "cpu.usage.total: {data}");
    assert!(data["cpu"]["usage"]["percpu"].is_array(), "cpu.usage.percpu: {data}");
    assert!(data["memory"]["usage"].is_object(), "memory.usage: {data}");
    assert!(data["pids"]["current"].as_u64().is_some_and(|n| n >= 1), "pids.current: {data}");
    assert!(data["blkio"].is_object(), "blkio: {data}");
    assert!(data["hugetlb"].is_object(), "hugetlb: {data}");
    t.run(&["delete", "--force", "ev-stats"]).ok();
    t.assert_clean("ev-stats", &b);
}

#[test]
fn events_of_a_stopped_container_is_an_error() {
    let t = Tally::new();
    let b = Bundle::busybox("ev-stopped"); // runs `true`
    t.create("ev-stopped", &b).ok();
    t.run(&["start", "ev-stopped"]).ok();
    t.wait_status("ev-stopped", "stopped");
    t.run(&["events", "--stats", "ev-stopped"]).fails_with(&["ev-stopped", "stopped"]);
    t.run(&["events", "--interval", "1s", "ev-stopped"]).fails_with(&["ev-stopped", "stopped"]);
    t.run(&["delete", "ev-stopped"]).ok();
    t.assert_clean("ev-stopped", &b);
}

/// runc: /usr/sbin/runc or the first `runc` on the PATH.
fn runc_bin() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("runc")).collect())
        .unwrap_or_default();
    candidates.insert(0, "/usr/sbin/runc".into());
    candidates.into_iter().find(|p| p.is_file())
}

/// runc with a private state root; whatever is left in it is force-deleted on drop.
struct Runc {
    bin: PathBuf,
    root: PathBuf,
}

impl Runc {
    fn command(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root").arg(&self.root);
        c
    }
}

impl Drop for Runc {
    fn drop(&mut self) {
        if let Ok(entries) = fs::read_dir(&self.root) {
            for e in entries.flatten() {
                let _ = self
                    .command()
                    .args(["delete", "--force"])
                    .arg(e.file_name())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        let _ = fs::remove_dir_all(&self.root);
    }
}

#[test]
fn events_stats_has_every_field_runc_prints() {
    const TEST: &str = "events_stats_has_every_field_runc_prints";
    let Some(bin) = runc_bin() else {
        skip(TEST, "runc is not installed (neither /usr/sbin/runc nor on the PATH)");
        return;
    };
    let runc = Runc { bin, root: PathBuf::from("/run").join(unique("tally-it-runc")) };
    let runc_id = "ev-cmp-runc";
    let mut rb = bundle_running("ev-cmp-runc", &["sleep", "60"]);
    // An explicit cgroup path, so the leak check finds it whatever runc's own cgroup is.
    rb.edit(|c| c["linux"]["cgroupsPath"] = json!(format!("/{runc_id}")));
    let base = rb.dir.join("runc");
    let status = runc
        .command()
        .args(["run", "-d", "--bundle", rb.dir.to_str().unwrap(), runc_id])
        .stdin(Stdio::null())
        .stdout(fs::File::create(base.with_extension("out")).unwrap())
        .stderr(fs::File::create(base.with_extension("err")).unwrap())
        .status()
        .unwrap();
    assert!(status.success(), "runc run -d: {}", fs::read_to_string(base.with_extension("err")).unwrap_or_default());
    let out = runc.command().args(["events", "--stats", runc_id]).stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "runc events --stats: {}", String::from_utf8_lossy(&out.stderr));
    let runc_ev: Value = serde_json::from_slice(&out.stdout).expect("runc's stats line is JSON");
    let out = runc.command().args(["delete", "--force", runc_id]).output().unwrap();
    assert!(out.status.success(), "runc delete --force: {}", String::from_utf8_lossy(&out.stderr));
    assert_host_clean(&runc.root, runc_id, &rb.dir);

    let t = Tally::new();
    let b = bundle_running("ev-cmp", &["sleep", "60"]);
    run_detached(&t, "ev-cmp", &b);
    let tally_ev = stats_of(&t, "ev-cmp");
    t.run(&["delete", "--force", "ev-cmp"]).ok();
    t.assert_clean("ev-cmp", &b);

    let (mut runc_paths, mut tally_paths) = (BTreeSet::new(), BTreeSet::new());
    key_paths(&runc_ev, "", &mut runc_paths);
    key_paths(&tally_ev, "", &mut tally_paths);
    assert!(runc_paths.contains("data.cpu.usage.total"), "runc's line: {runc_ev}");
    // runc leaves out zero values (Go's omitempty), so only runc ⊆ tally can hold.
    let missing: Vec<&String> = runc_paths.difference(&tally_paths).collect();
    assert!(missing.is_empty(), "tally's stats lack runc's fields {missing:?}\nrunc: {runc_ev}\ntally: {tally_ev}");
}

#[test]
fn events_with_an_interval_prints_stats_until_the_container_stops() {
    let t = Tally::new();
    let b = bundle_running("ev-interval", &["sh", "-c", "sleep 2"]);
    run_detached(&t, "ev-interval", &b);
    let mut child = t
        .command()
        .args(["events", "--interval", "1s", "ev-interval"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("events did not return within 10 s of a container that exits after 2 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "events: {}\nstdout: {stdout}", String::from_utf8_lossy(&out.stderr));
    let events: Vec<Value> =
        stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    assert!(!events.is_empty(), "at least one stats line in 2 s at 1 s intervals");
    for ev in &events {
        assert_eq!(ev["type"], "stats", "{ev}");
        assert_eq!(ev["id"], "ev-interval", "{ev}");
        assert!(ev["data"]["pids"]["current"].is_u64(), "{ev}");
    }
    assert_eq!(t.status("ev-interval"), "stopped");
    t.run(&["delete", "ev-interval"]).ok();
    t.assert_clean("ev-interval", &b);
}

// features

#[test]
fn features_describes_what_tally_supports_as_runtime_spec_json() {
    let out = Tally::new().run(&["features"]).ok().stdout;
    let f: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("features is JSON ({e}): {out}"));
    let has = |list: &Value, item: &str| list.as_array().is_some_and(|a| a.iter().any(|v| v == item));
    assert_eq!(f["ociVersionMax"], "1.3.0", "{f}");
    assert!(f["ociVersionMin"].is_string(), "{f}");
    assert!(has(&f["linux"]["namespaces"], "pid"), "linux.namespaces: {}", f["linux"]["namespaces"]);
    assert!(has(&f["linux"]["seccomp"]["actions"], "SCMP_ACT_NOTIFY"), "{}", f["linux"]["seccomp"]);
    let hooks: BTreeSet<&str> = f["hooks"].as_array().unwrap().iter().map(|h| h.as_str().unwrap()).collect();
    let all: BTreeSet<&str> =
        ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"].into();
    assert_eq!(hooks, all);
    assert!(has(&f["mountOptions"], "rbind"), "mountOptions: {}", f["mountOptions"]);
}

#[test]
fn update_keeps_the_device_rules_the_container_was_created_with() {
    let t = Tally::new();
    let id = "upd-dev";
    let mut b = bundle_running(id, &["sleep", "300"]);
    // A device the default allow-list lacks (10:200, the tun device), allowed by the config.
    b.edit(|c| {
        c["linux"]["devices"] = json!([{"path": "/dev/tally-test", "type": "c", "major": 10, "minor": 200, "fileMode": 438}]);
        c["linux"]["resources"]["devices"] =
            json!([{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 10, "minor": 200, "access": "rw"}]);
    });
    run_detached(&t, id, &b);
    // The cgroup lets the open through: whatever the driver then says, it is not EPERM.
    let probe = || t.run(&["exec", id, "sh", "-c", "cat /dev/tally-test 2>&1 >/dev/null; echo done"]).ok().stdout;
    let before = probe();
    assert!(!before.contains("Operation not permitted"), "{before}");
    t.run(&["update", "--pids-limit", "30", id]).ok();
    let after = probe();
    assert!(!after.contains("Operation not permitted"), "the update dropped the device rule: {after}");
    // A device the config never allowed stays refused.
    let r = t
        .run(&[
            "exec",
            "--cap",
            "CAP_MKNOD",
            id,
            "sh",
            "-c",
            "mknod /tmp/m c 10 201 && cat /tmp/m 2>&1 >/dev/null; echo done",
        ])
        .ok();
    assert!(r.stdout.contains("Operation not permitted"), "{}", r.stdout);
    t.run(&["delete", "--force", id]).ok();
    t.assert_clean(id, &b);
}

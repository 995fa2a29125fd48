//! The container lifecycle as runc's callers drive it: create, start, state, kill, delete,
//! run, list; with the host left clean after each.

use integration_tests::{wait_for_file, Bundle, Tally};

#[test]
fn run_prints_the_containers_output_and_returns_its_exit_status() {
    let t = Tally::new();
    let mut b = Bundle::busybox("run");
    b.sh("echo hello from $(hostname); exit 3");
    let r = t.run_container("run1", &b);
    assert_eq!(r.code, 3, "stderr: {}", r.stderr);
    assert_eq!(r.stdout.trim(), "hello from tally");
    t.assert_clean("run1", &b);
}

#[test]
fn run_reports_a_signal_death_as_128_plus_the_signal() {
    let t = Tally::new();
    let mut b = Bundle::busybox("run-sig");
    b.sh("touch /tmp/ready; exec sleep 1000");
    let mut child = t
        .command()
        .args(["run", "--bundle", b.dir.to_str().unwrap(), "sig1"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_file(&b.rootfs().join("tmp/ready"));
    t.run(&["kill", "sig1", "KILL"]).ok();
    assert_eq!(child.wait().unwrap().code(), Some(128 + 9));
    t.assert_clean("sig1", &b);
}

#[test]
fn run_forwards_signals_to_the_container() {
    let t = Tally::new();
    let mut b = Bundle::busybox("run-fwd");
    b.sh("trap 'exit 42' TERM; touch /tmp/ready; while true; do sleep 0.05; done");
    let mut child = t
        .command()
        .args(["run", "--bundle", b.dir.to_str().unwrap(), "fwd1"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_file(&b.rootfs().join("tmp/ready"));
    // SAFETY: kill takes a pid and a signal number.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(child.wait().unwrap().code(), Some(42));
    t.assert_clean("fwd1", &b);
}

#[test]
fn create_start_kill_delete_walks_through_every_status() {
    let t = Tally::new();
    let mut b = Bundle::busybox("cycle");
    let marker = b.rootfs().join("tmp/started");
    b.sh("touch /tmp/started; exec sleep 1000");

    t.create("c1", &b).ok();
    let st = t.state("c1");
    assert_eq!(st["status"], "created");
    let pid = st["pid"].as_i64().unwrap();
    assert!(pid > 0 && std::path::Path::new(&format!("/proc/{pid}")).exists());
    for field in ["ociVersion", "id", "pid", "status", "bundle", "rootfs", "created", "owner"] {
        assert!(st.get(field).is_some(), "state lacks {field}: {st}");
    }
    assert_eq!(st["bundle"].as_str().unwrap(), b.dir.to_str().unwrap());
    assert!(!marker.exists(), "the program must not run before start");

    t.run(&["start", "c1"]).ok();
    assert_eq!(t.status("c1"), "running");
    wait_for_file(&marker);

    t.run(&["kill", "c1", "KILL"]).ok();
    t.wait_status("c1", "stopped");
    assert_eq!(t.state("c1")["pid"], 0, "a stopped container reports pid 0");
    t.run(&["kill", "c1"]).fails_with(&["c1", "not running"]);
    t.run(&["delete", "c1"]).ok();
    t.assert_clean("c1", &b);
}

#[test]
fn kill_accepts_numbers_names_and_sig_names() {
    let t = Tally::new();
    let mut b = Bundle::busybox("signals");
    // The init handles USR1 and TERM so each signal is observed, not fatal.
    b.sh("trap 'echo usr1 >> /tmp/log' USR1; trap 'echo term >> /tmp/log; exit 0' TERM; touch /tmp/ready; while true; do sleep 0.05; done");
    t.create("k1", &b).ok();
    t.run(&["start", "k1"]).ok();
    let ready = b.rootfs().join("tmp/ready");
    wait_for_file(&ready);
    // Pending standard signals coalesce: wait for each to be handled before the next.
    let log = b.rootfs().join("tmp/log");
    let lines = || std::fs::read_to_string(&log).unwrap_or_default().lines().count();
    for (i, sig) in ["10", "USR1", "SIGUSR1"].iter().enumerate() {
        t.run(&["kill", "k1", sig]).ok();
        for _ in 0..500 {
            if lines() > i {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(lines(), i + 1, "signal {sig} was delivered once");
    }
    t.run(&["kill", "k1", "SIGFOO"]).fails_with(&["SIGFOO"]);
    t.run(&["kill", "k1"]).ok(); // TERM by default
    t.wait_status("k1", "stopped");
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().collect::<Vec<_>>(), ["usr1", "usr1", "usr1", "term"]);
    t.run(&["delete", "k1"]).ok();
    t.assert_clean("k1", &b);
}

#[test]
fn kill_all_signals_every_process_in_the_container() {
    let t = Tally::new();
    let mut b = Bundle::busybox("killall");
    b.sh("sleep 1000 & sleep 1000 & touch /tmp/ready; wait");
    t.create("ka", &b).ok();
    t.run(&["start", "ka"]).ok();
    wait_for_file(&b.rootfs().join("tmp/ready"));
    t.run(&["kill", "--all", "ka", "KILL"]).ok();
    t.wait_status("ka", "stopped");
    t.run(&["delete", "ka"]).ok();
    t.assert_clean("ka", &b);
}

#[test]
fn a_created_container_can_be_deleted_without_force() {
    // containerd deletes a task that never started with a plain delete, as runc allows.
    let t = Tally::new();
    let mut b = Bundle::busybox("del-created");
    b.sh("sleep 1000");
    t.create("dc", &b).ok();
    let pid = t.state("dc")["pid"].as_i64().unwrap();
    t.run(&["delete", "dc"]).ok();
    assert!(!std::path::Path::new(&format!("/proc/{pid}/status")).exists() || is_zombie(pid));
    t.assert_clean("dc", &b);
}

fn is_zombie(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| s.contains(") Z ")).unwrap_or(true)
}

#[test]
fn a_running_container_needs_force_to_be_deleted() {
    let t = Tally::new();
    let mut b = Bundle::busybox("del-running");
    b.sh("sleep 1000");
    t.create("dr", &b).ok();
    t.run(&["start", "dr"]).ok();
    t.run(&["delete", "dr"]).fails_with(&["dr", "running", "--force"]);
    assert_eq!(t.status("dr"), "running", "a refused delete changes nothing");
    t.run(&["delete", "--force", "dr"]).ok();
    t.assert_clean("dr", &b);
}

#[test]
fn start_twice_is_an_error() {
    let t = Tally::new();
    let mut b = Bundle::busybox("start-twice");
    b.sh("sleep 1000");
    t.create("s2", &b).ok();
    t.run(&["start", "s2"]).ok();
    t.run(&["start", "s2"]).fails_with(&["s2", "running"]);
    t.run(&["delete", "--force", "s2"]).ok();
    t.assert_clean("s2", &b);
}

#[test]
fn run_detach_returns_at_once_and_leaves_the_container_running() {
    let t = Tally::new();
    let mut b = Bundle::busybox("detach");
    b.sh("sleep 1000");
    t.run_to_files(&["run", "--detach", "--bundle", b.dir.to_str().unwrap(), "d1"]).ok();
    assert_eq!(t.status("d1"), "running");
    t.run(&["kill", "d1", "KILL"]).ok();
    t.wait_status("d1", "stopped");
    t.run(&["delete", "d1"]).ok();
    t.assert_clean("d1", &b);
}

#[test]
fn list_shows_containers_as_table_json_and_ids() {
    let t = Tally::new();
    let mut b = Bundle::busybox("list");
    b.sh("sleep 1000");
    t.create("l1", &b).ok();
    let table = t.run(&["list"]).ok().stdout;
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]);
    assert!(table.lines().any(|l| l.starts_with("l1 ") && l.contains("created")), "{table}");
    let json: serde_json::Value = serde_json::from_str(&t.run(&["list", "--format", "json"]).ok().stdout).unwrap();
    assert_eq!(json[0]["id"], "l1");
    assert_eq!(json[0]["status"], "created");
    assert_eq!(t.run(&["list", "-q"]).ok().stdout, "l1\n");
    t.run(&["delete", "l1"]).ok();
    assert_eq!(t.run(&["list", "-q"]).ok().stdout, "");
    t.assert_clean("l1", &b);
}

#[test]
fn pid_file_holds_the_init_pid() {
    let t = Tally::new();
    let mut b = Bundle::busybox("pidfile");
    b.sh("sleep 1000");
    let pidfile = b.dir.join("init.pid");
    t.run_to_files(&["create", "--bundle", b.dir.to_str().unwrap(), "--pid-file", pidfile.to_str().unwrap(), "p1"])
        .ok();
    let pid: i64 = std::fs::read_to_string(&pidfile).unwrap().parse().unwrap();
    assert_eq!(t.state("p1")["pid"].as_i64().unwrap(), pid);
    t.run(&["delete", "p1"]).ok();
    t.assert_clean("p1", &b);
}

#[test]
fn concurrent_commands_on_one_container_do_not_corrupt_its_state() {
    let t = Tally::new();
    let mut b = Bundle::busybox("concurrent");
    b.sh("sleep 1000");
    t.create("cc", &b).ok();
    // Many readers and a start race; every state read must parse and the start must win once.
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let mut cmd = t.command();
            if i == 4 {
                cmd.args(["start", "cc"]);
            } else {
                cmd.args(["state", "cc"]);
            }
            cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap()
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let out = h.wait_with_output().unwrap();
        assert!(out.status.success(), "command {i}: {}", String::from_utf8_lossy(&out.stderr));
        if i != 4 {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("state parses");
            assert!(v["status"] == "created" || v["status"] == "running");
        }
    }
    assert_eq!(t.status("cc"), "running");
    t.run(&["delete", "--force", "cc"]).ok();
    t.assert_clean("cc", &b);
}

/// runc's shape, line for line: Podman's `info` and containerd read the first line and
/// `commit:`; the libseccomp line is the library tally runs with.
#[test]
fn version_names_tally_its_commit_the_spec_and_libseccomp() {
    let r = Tally::new().run(&["--version"]).ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", r.stdout);
    assert!(lines[0].starts_with("tally version "), "{}", r.stdout);
    let commit = lines[1].strip_prefix("commit: ").expect("a commit line");
    assert!(commit == "unknown" || (commit.len() == 40 && commit.chars().all(|c| c.is_ascii_hexdigit())), "{commit}");
    assert!(lines[2].starts_with("spec: 1."), "{}", r.stdout);
    let seccomp = lines[3].strip_prefix("libseccomp: ").expect("a libseccomp line");
    assert_eq!(seccomp.split('.').filter(|p| p.parse::<u32>().is_ok()).count(), 3, "{seccomp}");
}

#[test]
fn start_succeeds_for_a_program_that_exits_at_once() {
    let t = Tally::new();
    let b = Bundle::busybox("quick-exit"); // runs `true`
    for i in 0..5 {
        let id = format!("qe{i}");
        t.create(&id, &b).ok();
        t.run(&["start", &id]).ok();
        t.wait_status(&id, "stopped");
        t.run(&["delete", &id]).ok();
        t.assert_clean(&id, &b);
    }
}

#[test]
fn start_reports_a_program_the_kernel_cannot_execute() {
    use std::os::unix::fs::PermissionsExt;
    let t = Tally::new();
    let mut b = Bundle::busybox("noexec");
    let bogus = b.rootfs().join("bin/bogus");
    std::fs::write(&bogus, "not an executable format\n").unwrap();
    std::fs::set_permissions(&bogus, std::fs::Permissions::from_mode(0o755)).unwrap();
    b.edit(|c| c["process"]["args"] = serde_json::json!(["/bin/bogus"]));
    t.create("nx", &b).ok();
    t.run(&["start", "nx"]).fails_with(&["nx", "/bin/bogus", "Exec format error"]);
    t.wait_status("nx", "stopped");
    t.run(&["delete", "nx"]).ok();
    t.assert_clean("nx", &b);
}

#[test]
fn kill_term_ends_a_created_container_whose_init_has_its_own_pid_namespace() {
    let t = Tally::new();
    let mut b = Bundle::busybox("kill-created");
    b.sh("sleep 300");
    t.create("kill-created", &b).ok();
    assert_eq!(t.status("kill-created"), "created");
    t.run(&["kill", "kill-created", "TERM"]).ok();
    t.wait_status("kill-created", "stopped");
    t.run(&["delete", "kill-created"]).ok();
    t.assert_clean("kill-created", &b);
}

#[test]
fn delete_force_cleans_up_a_create_that_died_half_way_even_in_a_custom_cgroup() {
    use std::fs;
    let t = Tally::new();
    let mut b = Bundle::busybox("half");
    let cg = format!("/tally-it-half-{}", std::process::id());
    b.edit(|c| c["linux"]["cgroupsPath"] = serde_json::json!(cg));
    // What a create killed after making its cgroup leaves: the state directory with the config
    // copy but no state.json, and the cgroup.
    let dir = t.root.join("half");
    fs::create_dir_all(&dir).unwrap();
    fs::copy(b.dir.join("config.json"), dir.join("config.json")).unwrap();
    let pids_cg = std::path::Path::new("/sys/fs/cgroup/pids").join(cg.trim_start_matches('/'));
    let v2_cg = std::path::Path::new("/sys/fs/cgroup").join(cg.trim_start_matches('/'));
    let made = match integration_tests::cgroup_host() {
        integration_tests::CgroupHost::V1 => pids_cg,
        integration_tests::CgroupHost::V2 => v2_cg,
    };
    fs::create_dir_all(&made).unwrap();
    t.run(&["delete", "--force", "half"]).ok();
    assert!(!made.exists(), "{} remains", made.display());
    t.assert_clean("half", &b);
}

//! `tally exec`: a new process in a running container shares every namespace and the cgroup
//! of the container's init, gets the container's security, returns its exit status, and
//! leaves the container as it was when it fails.

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::process::Stdio;

use integration_tests::{recv_fd, Bundle, Tally};
use serde_json::json;

fn finish(t: &Tally, id: &str, b: &Bundle) {
    t.run(&["delete", "--force", id]).ok();
    t.assert_clean(id, b);
}

#[test]
fn an_exec_shares_every_namespace_and_the_cgroup_of_the_init_and_returns_its_status() {
    let t = Tally::new();
    let id = "exec-ns";
    let b = t.sleeping(id, |c| {
        let ns = c["linux"]["namespaces"].as_array().unwrap();
        assert!(ns.iter().any(|n| n["type"] == "cgroup"), "the default spec has a cgroup namespace");
    });
    let script = "for n in mnt pid net ipc uts cgroup; do \
                  [ $(readlink /proc/1/ns/$n) = $(readlink /proc/self/ns/$n) ] && echo same-$n; done; \
                  [ \"$(cat /proc/1/cgroup)\" = \"$(cat /proc/self/cgroup)\" ] && echo same-cgroup; \
                  hostname; exit 7";
    let r = t.run(&["exec", id, "sh", "-c", script]);
    assert_eq!(r.code, 7, "stderr: {}", r.stderr);
    for n in ["mnt", "pid", "net", "ipc", "uts", "cgroup"] {
        assert!(r.stdout.contains(&format!("same-{n}")), "{n} differs: {}", r.stdout);
    }
    assert!(r.stdout.contains("same-cgroup"), "{}", r.stdout);
    assert_eq!(t.status(id), "running");
    finish(&t, id, &b);
}

#[test]
fn the_command_line_sets_env_cwd_user_groups_capabilities_and_no_new_privs() {
    let t = Tally::new();
    let id = "exec-flags";
    let b = t.sleeping(id, |_| {});
    let r = t
        .run(&[
            "exec",
            "--env",
            "FOO=bar",
            "-e",
            "PATH=/bin",
            "--cwd",
            "/tmp",
            "--user",
            "65534:65534",
            "--additional-gids",
            "10",
            id,
            "sh",
            "-c",
            "echo foo=$FOO path=$PATH; pwd; id -u; id -g; id -G",
        ])
        .ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines, ["foo=bar path=/bin", "/tmp", "65534", "65534", "65534 10"], "{}", r.stdout);

    // Without --cap, the default spec's effective set lacks CAP_SYS_ADMIN (bit 21).
    let caps = |extra: &[&str]| -> u64 {
        let mut args = vec!["exec"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[id, "grep", "CapEff", "/proc/self/status"]);
        let r = t.run(&args).ok();
        u64::from_str_radix(r.stdout.split_whitespace().nth(1).unwrap(), 16).unwrap()
    };
    assert_eq!(caps(&[]) & (1 << 21), 0);
    assert_ne!(caps(&["--cap", "CAP_SYS_ADMIN"]) & (1 << 21), 0);
    let r = t.run(&["exec", "--no-new-privs", id, "grep", "NoNewPrivs", "/proc/self/status"]).ok();
    assert!(r.stdout.contains('1'), "{}", r.stdout);
    finish(&t, id, &b);
}

#[test]
fn a_process_json_describes_the_whole_process() {
    let t = Tally::new();
    let id = "exec-pjson";
    let b = t.sleeping(id, |_| {});
    let p = b.dir.join("process.json");
    let process = json!({
        "terminal": false,
        "user": {"uid": 65534, "gid": 65534},
        "args": ["sh", "-c", "echo $GREETING; pwd; id -u"],
        "env": ["GREETING=hi", "PATH=/bin"],
        "cwd": "/etc",
    });
    fs::write(&p, process.to_string()).unwrap();
    let r = t.run(&["exec", "--process", p.to_str().unwrap(), id]).ok();
    assert_eq!(r.stdout.lines().collect::<Vec<_>>(), ["hi", "/etc", "65534"]);

    fs::write(&p, r#"{"args": ["true"], "cwd": "/", "user": {"uid": "root"}}"#).unwrap();
    t.run(&["exec", "--process", p.to_str().unwrap(), id]).fails_with(&["process.json", "user.uid"]);
    assert_eq!(t.status(id), "running");
    finish(&t, id, &b);
}

#[test]
fn a_missing_executable_fails_and_leaves_the_container_running() {
    let t = Tally::new();
    let id = "exec-missing";
    let b = t.sleeping(id, |_| {});
    t.run(&["exec", id, "no-such-program"]).fails_with(&["no-such-program", "not found"]);
    t.run(&["exec", "--cwd", "/nonexistent", id, "true"]).fails_with(&["/nonexistent"]);
    t.run(&["exec", id]).fails_with(&["no command"]);
    assert_eq!(t.status(id), "running");
    let ps = t.run(&["ps", "--format", "json", id]).ok();
    let pids: Vec<i32> = serde_json::from_str(&ps.stdout).unwrap();
    assert_eq!(pids.len(), 1, "only the init is left: {pids:?}");
    finish(&t, id, &b);
}

#[test]
fn exec_refuses_stopped_and_paused_containers() {
    let t = Tally::new();
    let id = "exec-status";
    let mut b = Bundle::busybox(id);
    b.edit(|c| c["process"]["args"] = json!(["true"]));
    t.run_to_files(&["run", "-d", "--keep", "--bundle", b.dir.to_str().unwrap(), id]).ok();
    t.wait_status(id, "stopped");
    t.run(&["exec", id, "true"]).fails_with(&[id, "stopped"]);
    t.run(&["delete", id]).ok();
    t.assert_clean(id, &b);

    let id = "exec-paused";
    let b = t.sleeping(id, |_| {});
    t.run(&["pause", id]).ok();
    t.run(&["exec", id, "true"]).fails_with(&["paused", "--ignore-paused"]);
    // With --ignore-paused the process is set up, then frozen with the rest until resume.
    let pid_file = b.dir.join("paused-exec.pid");
    t.run_to_files(&[
        "exec",
        "-d",
        "--ignore-paused",
        "--pid-file",
        pid_file.to_str().unwrap(),
        id,
        "touch",
        "/tmp/after-resume",
    ])
    .ok();
    // It waits in the container's frozen cgroup (the freezer's, on v1).
    let pid = fs::read_to_string(&pid_file).unwrap();
    let cgroups = fs::read_to_string(format!("/proc/{}/cgroup", pid.trim())).unwrap();
    let frozen_line = match integration_tests::cgroup_host() {
        integration_tests::CgroupHost::V1 => cgroups.lines().find(|l| l.contains(":freezer:")).map(String::from),
        integration_tests::CgroupHost::V2 => cgroups.lines().next().map(String::from),
    };
    assert!(frozen_line.is_some_and(|l| l.ends_with(&format!(":/{id}"))), "{cgroups}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let marker = b.rootfs().join("tmp/after-resume");
    assert!(!marker.exists(), "the program must not run while the container is paused");
    t.run(&["resume", id]).ok();
    integration_tests::wait_for_file(&marker);
    t.run(&["exec", id, "true"]).ok();
    finish(&t, id, &b);
}

#[test]
fn a_detached_exec_writes_its_pid_file_and_runs_in_the_container() {
    let t = Tally::new();
    let id = "exec-detach";
    let b = t.sleeping(id, |_| {});
    let pid_file = b.dir.join("exec.pid");
    t.run_to_files(&["exec", "-d", "--pid-file", pid_file.to_str().unwrap(), id, "sleep", "300"]).ok();
    let pid: i32 = fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    let ps = t.run(&["ps", "--format", "json", id]).ok();
    let pids: Vec<i32> = serde_json::from_str(&ps.stdout).unwrap();
    assert!(pids.contains(&pid), "{pid} not in {pids:?}");
    let init = t.state(id)["pid"].as_i64().unwrap();
    assert_eq!(
        fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap(),
        fs::read_link(format!("/proc/{init}/ns/mnt")).unwrap()
    );
    // The leak check of assert_clean sees both processes while they live.
    let live = integration_tests::processes_under(&b.dir);
    assert!(live.contains(&pid) && live.contains(&(init as i32)), "{live:?}");
    finish(&t, id, &b);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists() || is_zombie(pid));
}

fn is_zombie(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| s.contains(") Z ")).unwrap_or(true)
}

#[test]
fn signals_to_a_foreground_exec_reach_its_process() {
    let t = Tally::new();
    let id = "exec-signal";
    let b = t.sleeping(id, |_| {});
    let marker = b.rootfs().join("tmp/trap-ready");
    let child = t
        .command()
        .args([
            "exec",
            id,
            "sh",
            "-c",
            "trap 'echo got-term; exit 3' TERM; touch /tmp/trap-ready; while :; do sleep 0.1; done",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    integration_tests::wait_for_file(&marker);
    // SAFETY: kill takes a pid and a signal number.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).contains("got-term"));
    finish(&t, id, &b);
}

#[test]
fn an_exec_inherits_no_fd_of_the_runtime_and_keeps_the_containers_seccomp() {
    let t = Tally::new();
    let id = "exec-fds";
    let b = t.sleeping(id, |c| {
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        });
    });
    // ls's own directory fd is the only one above stderr, also when the caller asks to preserve
    // fds it did not pass: none of tally's own (state directory, channel, pidfd) may fill them.
    for extra in [&[][..], &["--preserve-fds", "8"][..]] {
        let mut args = vec!["exec"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[id, "ls", "/proc/self/fd"]);
        let r = t.run_with_only_stdio(&args).ok();
        let fds: Vec<&str> = r.stdout.split_whitespace().collect();
        assert_eq!(fds, ["0", "1", "2", "3"], "{extra:?}: {}", r.stdout);
    }
    t.run(&["exec", "--preserve-fds", "4294967295", id, "true"]).fails_with(&["--preserve-fds", "4294967295"]);
    let r = t.run(&["exec", id, "sh", "-c", "mkdir /tmp/x 2>&1; grep Seccomp: /proc/self/status"]).ok();
    assert!(r.stdout.contains("Operation not permitted") && r.stdout.contains("Seccomp:\t2"), "{}", r.stdout);
    finish(&t, id, &b);
}

#[test]
fn exec_joins_a_user_namespace_container_as_its_mapped_root() {
    let t = Tally::new();
    let id = "exec-userns";
    let b = t.sleeping(id, |c| {
        c["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "user"}));
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    });
    let r = t.run(&["exec", id, "sh", "-c", "id -u; cat /proc/self/uid_map"]).ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[0], "0");
    assert!(lines[1].split_whitespace().eq(["0", "100000", "65536"]), "{}", r.stdout);
    finish(&t, id, &b);
}

#[test]
fn a_tty_exec_gets_a_pty_whose_master_goes_to_the_console_socket() {
    let t = Tally::new();
    let id = "exec-tty";
    let b = t.sleeping(id, |_| {});
    let sock = b.dir.join("exec-console.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let child = t
        .command()
        .args(["exec", "-t", "--console-socket", sock.to_str().unwrap(), id, "sh", "-c", "tty; test -t 0 && echo ok"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (conn, _) = listener.accept().unwrap();
    let (master, _) = recv_fd(conn.as_raw_fd());
    let mut out = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        // SAFETY: reads into a live buffer of the given length.
        let n = unsafe { libc::read(master.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break; // EIO once the slave's last holder exits
        }
        out.extend_from_slice(&buf[..n as usize]);
        if String::from_utf8_lossy(&out).contains("ok") {
            break;
        }
    }
    let status = child.wait_with_output().unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("/dev/pts/") && text.contains("ok"), "{text:?}");
    finish(&t, id, &b);
}

#[test]
fn exec_cgroup_puts_the_process_in_a_sub_cgroup_and_keeps_it_in_the_containers_others() {
    let t = Tally::new();
    let id = "exec-subcg";
    let b = t.sleeping(id, |_| {});
    let (sub_dir, flag, want) = match integration_tests::cgroup_host() {
        integration_tests::CgroupHost::V1 => (format!("/sys/fs/cgroup/pids/{id}/sub"), "pids:sub", "pids:/sub"),
        integration_tests::CgroupHost::V2 => (format!("/sys/fs/cgroup/{id}/sub"), "sub", "0::/sub"),
    };
    fs::create_dir(&sub_dir).unwrap();
    let r = t.run(&["exec", "--cgroup", flag, id, "cat", "/proc/self/cgroup"]).ok();
    assert!(r.stdout.lines().any(|l| l.ends_with(want)), "in the sub-cgroup: {}", r.stdout);
    if integration_tests::cgroup_host() == integration_tests::CgroupHost::V1 {
        // Every other hierarchy: the container's own cgroup, the root of its cgroup namespace.
        for ctrl in ["devices", "freezer", "cpu"] {
            let line = r.stdout.lines().find(|l| l.split(':').nth(1).is_some_and(|c| c.split(',').any(|c| c == ctrl)));
            assert!(line.is_some_and(|l| l.ends_with(":/")), "{ctrl} outside the container: {}", r.stdout);
        }
    }
    t.run(&["exec", "--cgroup", "pids:../escape", id, "true"]).fails_with(&["--cgroup", "../escape"]);
    t.run(&["exec", "--cgroup", "nosuch", id, "true"]).fails_with(&["--cgroup", "nosuch"]);
    // delete removes the sub-cgroup with the container's.
    finish(&t, id, &b);
    assert!(!std::path::Path::new(&sub_dir).exists());
}

#[test]
fn a_tty_exec_without_a_console_socket_gets_a_pty_tally_holds_itself() {
    use std::io::Write as _;
    let t = Tally::new();
    let id = "exec-localtty";
    let b = t.sleeping(id, |_| {});
    let mut child = t
        .command()
        .args(["exec", "-t", id, "sh"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"echo typed-$((6*7)); tty; exit 3\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{text} {}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("typed-42") && text.contains("/dev/pts/"), "{text:?}");
    finish(&t, id, &b);
}

#[test]
fn exec_into_a_container_without_a_kept_config_reads_its_bundle() {
    let t = Tally::new();
    let id = "exec-oldstate";
    let b = t.sleeping(id, |c| c["process"]["env"] = json!(["PATH=/bin", "FROM=bundle"]));
    // As a container created before tally kept a copy of its config.
    fs::remove_file(t.root.join(id).join("config.json")).unwrap();
    let r = t.run(&["exec", id, "sh", "-c", "echo $FROM"]).ok();
    assert_eq!(r.stdout.trim(), "bundle");
    finish(&t, id, &b);
}

//! `linux.seccomp`: the filter the container's program runs under, checked by what its
//! syscalls get back; and a malformed profile refused at `create`.

use integration_tests::{Bundle, Tally};
use serde_json::{json, Value};

fn with_profile(b: &mut Bundle, syscalls: Value, nnp: bool) {
    b.edit(|c| {
        c["process"]["noNewPrivileges"] = json!(nnp);
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
            "syscalls": syscalls
        });
    });
}

#[test]
fn an_errno_rule_fails_the_syscall_with_that_errno_and_the_filter_is_visible() {
    let t = Tally::new();
    for (id, nnp) in [("sc-errno-nnp", true), ("sc-errno-caps", false)] {
        let mut b = Bundle::busybox(id);
        // Unknown names (other kernels, other architectures) are skipped, not errors.
        with_profile(
            &mut b,
            json!([{"names": ["mkdir", "mkdirat", "no_such_syscall_x"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]),
            nnp,
        );
        b.sh("grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; mkdir /tmp/d 2>&1; echo mkdir=$?");
        let r = t.run_container(id, &b).ok();
        assert!(r.stdout.contains("Seccomp:\t2"), "{}", r.stdout);
        // The filter does not bring no_new_privs with it: that is the config's choice.
        let expected = format!("NoNewPrivs:\t{}", u8::from(nnp));
        assert!(r.stdout.contains(&expected), "{}", r.stdout);
        assert!(r.stdout.contains("Function not implemented"), "ENOSYS (38) from mkdir: {}", r.stdout);
        assert!(r.stdout.contains("mkdir=1"), "{}", r.stdout);
        assert!(!b.rootfs().join("tmp/d").exists());
        t.assert_clean(id, &b);
    }
}

#[test]
fn a_kill_rule_kills_the_process_with_sigsys() {
    let t = Tally::new();
    let mut b = Bundle::busybox("sc-kill");
    with_profile(&mut b, json!([{"names": ["sethostname"], "action": "SCMP_ACT_KILL_PROCESS"}]), true);
    b.sh("hostname renamed; echo status=$?; hostname");
    let r = t.run_container("sc-kill", &b).ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines, [format!("status={}", 128 + libc::SIGSYS).as_str(), "tally"], "{}", r.stdout);
    t.assert_clean("sc-kill", &b);
}

#[test]
fn argument_conditions_select_which_calls_a_rule_matches() {
    let t = Tally::new();
    let mut b = Bundle::busybox("sc-args");
    // Writes on fd 2 are refused (what `ls` prints about a missing file never arrives); writes
    // on fd 1 pass. openat with O_CREAT (masked-eq) is
    // refused; opening for reading passes.
    let o_creat = libc::O_CREAT as u64;
    with_profile(
        &mut b,
        json!([
            {"names": ["write"], "action": "SCMP_ACT_ERRNO", "errnoRet": 9,
             "args": [{"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]},
            {"names": ["openat", "open"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 2, "value": o_creat, "valueTwo": o_creat, "op": "SCMP_CMP_MASKED_EQ"}]}
        ]),
        true,
    );
    b.sh("echo to-stdout; ls /nonexistent-x; touch /tmp/new; echo touch=$?; head -c 4 /etc/passwd; echo");
    let r = t.run_container("sc-args", &b).ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines, ["to-stdout", "touch=1", "root"], "stderr: {}", r.stderr);
    assert!(!r.stderr.contains("nonexistent-x"), "{}", r.stderr);
    assert!(!b.rootfs().join("tmp/new").exists());
    t.assert_clean("sc-args", &b);
}

#[test]
fn a_malformed_profile_is_refused_at_create_naming_the_field() {
    let t = Tally::new();
    let mut b = Bundle::busybox("sc-bad");
    let cases = [
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_FLY"}]}),
            vec!["linux.seccomp.syscalls[0].action", "SCMP_ACT_FLY"],
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_SOMETIMES"}]}]}),
            vec!["linux.seccomp.syscalls[0].args[0].op", "SCMP_CMP_SOMETIMES"],
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_Z80"]}),
            vec!["linux.seccomp.architectures[0]", "SCMP_ARCH_Z80"],
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                "args": [{"index": 9, "value": 1, "op": "SCMP_CMP_EQ"}]}]}),
            vec!["linux.seccomp.syscalls[0].args", "index 9"],
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}),
            vec!["linux.seccomp.listenerPath", "SCMP_ACT_NOTIFY"],
        ),
    ];
    for (profile, needles) in cases {
        b.edit(|c| c["linux"]["seccomp"] = profile.clone());
        t.create("sc-bad", &b).fails_with(&needles);
        t.assert_clean("sc-bad", &b);
    }
}

#[test]
fn a_profile_seen_before_is_loaded_from_the_cache_with_the_same_effect() {
    let t = Tally::new();
    let profile = json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]);
    for id in ["sc-cache-1", "sc-cache-2"] {
        let mut b = Bundle::busybox(id);
        with_profile(&mut b, profile.clone(), true);
        b.sh("mkdir /tmp/d 2>&1; echo mkdir=$?");
        let r = t.run_container(id, &b).ok();
        assert!(r.stdout.contains("Operation not permitted") && r.stdout.contains("mkdir=1"), "{id}: {}", r.stdout);
        t.assert_clean(id, &b);
        let cached: Vec<_> = std::fs::read_dir(t.root.join(".seccomp-cache")).unwrap().collect();
        assert_eq!(cached.len(), 1, "one profile, one cache entry");
    }
    assert_eq!(t.run(&["list", "-q"]).ok().stdout, "", "the cache is not a container");
}

#[test]
fn a_notify_rule_hands_the_syscall_to_the_listener_which_answers_it() {
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixListener;

    let t = Tally::new();
    let mut b = Bundle::busybox("sc-notify");
    let sock_path = b.dir.join("listener.sock");
    let listener = UnixListener::bind(&sock_path).unwrap();
    b.edit(|c| {
        c["process"]["noNewPrivileges"] = json!(true);
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": sock_path,
            "listenerMetadata": "agent-config-1",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
        });
    });
    b.sh("mkdir /tmp/n 2>&1; echo rc=$?");

    // The agent: take the state and the fd, then answer every notification with EACCES.
    let agent = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let (fd, buf) = integration_tests::recv_fd(conn.as_raw_fd());
        let doc: Value = serde_json::from_slice(&buf).unwrap();
        let mut answered = 0;
        loop {
            // A blocked NOTIF_RECV is not woken when the last filtered task exits (kernel 6.1
            // leaves it asleep for ever); poll reports POLLHUP then, so wait there first.
            let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd for the duration of the call.
            let ready = unsafe { libc::poll(&mut pfd, 1, 30_000) };
            if ready <= 0 || pfd.revents & libc::POLLIN == 0 {
                break; // the filtered process is gone (POLLHUP), or nothing came for 30 s
            }
            // SAFETY: zeroed plain-old-data structs for the two ioctls, which read and write
            // exactly these types.
            let mut req: libc::seccomp_notif = unsafe { std::mem::zeroed() };
            if unsafe { libc::ioctl(fd.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_RECV, &mut req) } != 0 {
                break; // the filtered process is gone
            }
            let mut resp: libc::seccomp_notif_resp = unsafe { std::mem::zeroed() };
            resp.id = req.id;
            resp.error = -libc::EACCES;
            // SAFETY: as above.
            unsafe { libc::ioctl(fd.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_SEND, &mut resp) };
            answered += 1;
        }
        (doc, answered)
    });

    let r = t.run_container("sc-notify", &b).ok();
    assert!(r.stdout.contains("Permission denied") && r.stdout.contains("rc=1"), "{}", r.stdout);
    assert!(!b.rootfs().join("tmp/n").exists());
    let (doc, answered) = agent.join().unwrap();
    assert!(answered >= 1);
    assert_eq!(doc["fds"], json!(["seccompFd"]));
    assert_eq!(doc["metadata"], "agent-config-1");
    assert_eq!(doc["state"]["id"], "sc-notify");
    assert!(doc["pid"].as_i64().unwrap() > 0);
    t.assert_clean("sc-notify", &b);
}

/// What static busybox's `sh -c 'echo ok'` calls (strace -f -c), and nothing else.
const BUSYBOX_ECHO: &[&str] = &[
    "execve",
    "brk",
    "arch_prctl",
    "set_tid_address",
    "set_robust_list",
    "rseq",
    "prlimit64",
    "mprotect",
    "getrandom",
    "uname",
    "readlink",
    "getuid",
    "getpid",
    "getppid",
    "prctl",
    "rt_sigaction",
    "newfstatat",
    "write",
    "exit_group",
    "exit",
];

/// A deny-by-default profile that allows `names`: what older and hand-written profiles (and
/// runtime-tools' default config) look like, with no `close_range` in it.
fn allow_only(b: &mut Bundle, names: &[&str], nnp: bool) {
    b.edit(|c| {
        c["process"]["noNewPrivileges"] = json!(nnp);
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
            "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}]
        });
    });
}

#[test]
fn a_deny_by_default_profile_constrains_the_program_and_nothing_tally_does_before_it() {
    let t = Tally::new();
    // With no_new_privs the filter goes on right before execve: the program's own calls are
    // all it must allow.
    let mut b = Bundle::busybox("sc-deny-nnp");
    allow_only(&mut b, BUSYBOX_ECHO, true);
    b.sh("echo ok");
    let r = t.run_to_files(&["run", "--preserve-fds", "0", "--bundle", b.dir.to_str().unwrap(), "sc-deny-nnp"]).ok();
    assert_eq!(r.stdout, "ok\n", "stderr: {}", r.stderr);
    t.assert_clean("sc-deny-nnp", &b);

    // Without it the filter is loaded while tally still holds CAP_SYS_ADMIN, before the user
    // switch and the wait for `start`: what tally does after it is what such a profile allows
    // for any runtime (credentials, signals, the sync socket), and close_range is not part of it.
    let mut b = Bundle::busybox("sc-deny-caps");
    let mut names = BUSYBOX_ECHO.to_vec();
    names.extend([
        "capget",
        "capset",
        "setresuid",
        "setresgid",
        "setgroups",
        "setuid",
        "setgid",
        "rt_sigprocmask",
        "sigaltstack",
        "read",
        "recvmsg",
        "recvfrom",
        "sendmsg",
        "sendto",
        "close",
        "munmap",
        "futex",
        "poll",
    ]);
    allow_only(&mut b, &names, false);
    b.sh("echo ok");
    let r = t.run_to_files(&["run", "--preserve-fds", "0", "--bundle", b.dir.to_str().unwrap(), "sc-deny-caps"]).ok();
    assert_eq!(r.stdout, "ok\n", "stderr: {}", r.stderr);

    // An exec'd process gets the same filter, loaded at the same point of its setup.
    names.extend(["nanosleep", "clock_nanosleep"]);
    allow_only(&mut b, &names, false);
    b.edit(|c| c["process"]["args"] = json!(["sleep", "300"]));
    t.run_to_files(&["run", "-d", "--bundle", b.dir.to_str().unwrap(), "sc-deny-caps"]).ok();
    let r = t.run(&["exec", "sc-deny-caps", "sh", "-c", "echo exec-ok"]).ok();
    assert_eq!(r.stdout, "exec-ok\n", "stderr: {}", r.stderr);
    t.run(&["delete", "--force", "sc-deny-caps"]).ok();
    t.assert_clean("sc-deny-caps", &b);
}

//! The container's process: its arguments, environment, working directory, user, groups and
//! umask, HOME, its terminal (a pty handed over `--console-socket`) or the caller's stdio, and
//! exactly the fds the caller asked to pass on.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use integration_tests::{recv_fd, Bundle, Tally};
use serde_json::json;

#[test]
fn args_are_passed_one_for_one() {
    let t = Tally::new();
    let mut b = Bundle::busybox("proc-args");
    b.edit(|c| {
        c["process"]["args"] =
            json!(["sh", "-c", "for a in \"$@\"; do echo \"<$a>\"; done", "argv0", "two words", "", "*"])
    });
    let r = t.run_container("proc-args", &b).ok();
    assert_eq!(r.stdout, "<two words>\n<>\n<*>\n");
    t.assert_clean("proc-args", &b);
}

#[test]
fn env_is_exactly_the_configured_variables_and_path_finds_the_program() {
    let t = Tally::new();
    let mut b = Bundle::busybox("proc-env");
    let custom = b.rootfs().join("custom-bin");
    fs::create_dir_all(&custom).unwrap();
    fs::write(custom.join("hello"), "#!/bin/sh\necho \"hello from $0 FOO=$FOO\"\nenv\n").unwrap();
    fs::set_permissions(custom.join("hello"), fs::Permissions::from_mode(0o755)).unwrap();
    b.edit(|c| {
        c["process"]["args"] = json!(["hello"]);
        c["process"]["env"] = json!(["PATH=/custom-bin:/bin", "FOO=bar baz", "HOME=/home/x"]);
    });
    let r = t.run_container("proc-env", &b).ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[0], "hello from /custom-bin/hello FOO=bar baz", "{}", r.stdout);
    // `env` also shows what the shell adds itself (PWD, SHLVL); nothing from the host leaks.
    let mut vars: Vec<&str> =
        lines[1..].iter().filter(|l| !l.starts_with("PWD=") && !l.starts_with("SHLVL=")).copied().collect();
    vars.sort();
    assert_eq!(vars, ["FOO=bar baz", "HOME=/home/x", "PATH=/custom-bin:/bin"], "{}", r.stdout);
    t.assert_clean("proc-env", &b);
}

#[test]
fn cwd_is_the_working_directory() {
    let t = Tally::new();
    let mut b = Bundle::busybox("proc-cwd");
    fs::create_dir_all(b.rootfs().join("srv/work")).unwrap();
    b.edit(|c| c["process"]["cwd"] = json!("/srv/work"));
    b.sh("pwd; echo here > relative-file");
    let r = t.run_container("proc-cwd", &b).ok();
    assert_eq!(r.stdout, "/srv/work\n");
    assert!(b.rootfs().join("srv/work/relative-file").exists());
    t.assert_clean("proc-cwd", &b);
}

#[test]
fn user_uid_gid_and_additional_gids_are_applied() {
    let t = Tally::new();
    let mut b = Bundle::busybox("proc-user");
    b.edit(|c| c["process"]["user"] = json!({"uid": 1234, "gid": 2345, "additionalGids": [10, 20, 30]}));
    b.sh("id -u; id -g; grep -E '^(Uid|Gid|Groups):' /proc/self/status");
    let r = t.run_container("proc-user", &b).ok();
    let lines: Vec<String> = r.stdout.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
    assert_eq!(
        lines,
        ["1234", "2345", "Uid: 1234 1234 1234 1234", "Gid: 2345 2345 2345 2345", "Groups: 10 20 30"],
        "stderr: {}",
        r.stderr
    );
    t.assert_clean("proc-user", &b);
}

#[test]
fn without_additional_gids_the_process_has_no_supplementary_groups() {
    let t = Tally::new();
    let mut b = Bundle::busybox("proc-nogroups");
    b.edit(|c| c["process"]["user"] = json!({"uid": 1000, "gid": 1000}));
    b.sh("grep '^Groups:' /proc/self/status");
    let r = t.run_container("proc-nogroups", &b).ok();
    assert_eq!(r.stdout.split_whitespace().collect::<Vec<_>>(), ["Groups:"], "the host's groups do not leak");
    t.assert_clean("proc-nogroups", &b);
}

#[test]
fn umask_is_applied() {
    let t = Tally::new();
    let mut b = Bundle::busybox("proc-umask");
    b.edit(|c| c["process"]["user"]["umask"] = json!(0o027));
    b.sh("umask; touch /tmp/f; mkdir /tmp/d; stat -c %a /tmp/f /tmp/d");
    let r = t.run_container("proc-umask", &b).ok();
    assert_eq!(r.stdout, "0027\n640\n750\n");
    t.assert_clean("proc-umask", &b);
}

#[test]
fn home_comes_from_etc_passwd_when_the_config_has_none() {
    let t = Tally::new();
    let mut b = Bundle::busybox("proc-home");
    b.sh("echo $HOME");
    assert!(!b.config["process"]["env"].as_array().unwrap().iter().any(|e| e.as_str().unwrap().starts_with("HOME=")));
    let r = t.run_container("proc-home", &b).ok();
    assert_eq!(r.stdout, "/root\n", "root's home in the container's /etc/passwd");
    t.assert_clean("proc-home", &b);

    // Another user gets its own entry's home.
    b.edit(|c| c["process"]["user"] = json!({"uid": 65534, "gid": 65534}));
    let r = t.run_container("proc-home-nobody", &b).ok();
    assert_eq!(r.stdout, "/nonexistent\n");
    t.assert_clean("proc-home-nobody", &b);
}

/// Reads from a pty master until `want` shows up, EOF/EIO (no slave left), or 10 s.
fn read_pty(master: &OwnedFd, want: &str) -> String {
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut f = fs::File::from(master.try_clone().unwrap());
    while Instant::now() < deadline && !String::from_utf8_lossy(&out).contains(want) {
        let mut pfd = libc::pollfd { fd: master.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, 100) } <= 0 {
            continue;
        }
        let mut buf = [0u8; 1024];
        match f.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn a_terminal_is_a_pty_whose_master_goes_to_the_console_socket() {
    let t = Tally::new();
    let mut b = Bundle::busybox("proc-tty");
    b.edit(|c| c["process"]["terminal"] = json!(true));
    b.sh("tty; test -t 0 && test -t 1 && test -t 2 && echo all-ttys; stat -c %F /dev/console; read line; echo got=$line; echo ok");
    let sock_path = b.dir.join("console.sock");
    let listener = UnixListener::bind(&sock_path).unwrap();
    t.run_to_files(&[
        "create",
        "--bundle",
        b.dir.to_str().unwrap(),
        "--console-socket",
        sock_path.to_str().unwrap(),
        "proc-tty",
    ])
    .ok();
    let (conn, _) = listener.accept().unwrap();
    let (master, name) = recv_fd(conn.as_raw_fd());
    let name = String::from_utf8_lossy(&name).into_owned();
    assert_eq!(name, "/dev/pts/0", "the payload names the pty inside the container");
    t.run(&["start", "proc-tty"]).ok();
    // The master is the container's keyboard as well as its screen.
    fs::File::from(master.try_clone().unwrap()).write_all(b"typed\n").unwrap();
    let out = read_pty(&master, "ok\r\n");
    let lines: Vec<&str> = out.lines().map(|l| l.trim_end_matches('\r')).filter(|l| *l != "typed").collect();
    assert_eq!(lines, ["/dev/pts/0", "all-ttys", "character special file", "got=typed", "ok"], "{out:?}");
    t.wait_status("proc-tty", "stopped");
    t.run(&["delete", "proc-tty"]).ok();
    t.assert_clean("proc-tty", &b);
}

#[test]
fn a_terminal_without_a_console_socket_is_an_error() {
    let t = Tally::new();
    let mut b = Bundle::busybox("proc-tty-nosock");
    b.edit(|c| c["process"]["terminal"] = json!(true));
    t.create("proc-tty-nosock", &b).fails_with(&["process.terminal", "--console-socket"]);
    t.assert_clean("proc-tty-nosock", &b);
}

#[test]
fn a_console_socket_nobody_listens_on_is_an_error() {
    let t = Tally::new();
    let mut b = Bundle::busybox("proc-tty-badsock");
    b.edit(|c| c["process"]["terminal"] = json!(true));
    let sock = b.dir.join("nobody.sock");
    t.run_to_files(&[
        "create",
        "--bundle",
        b.dir.to_str().unwrap(),
        "--console-socket",
        sock.to_str().unwrap(),
        "proc-tty-badsock",
    ])
    .fails_with(&["--console-socket", "nobody.sock"]);
    t.assert_clean("proc-tty-badsock", &b);
}

/// A pipe; both ends close-on-exec.
fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap()
}

/// `tally run` with `fd` installed as fds 3 and 4 of tally (not close-on-exec there).
fn run_with_extra_fds(t: &Tally, b: &Bundle, id: &str, extra: &[&str], fd: RawFd) -> std::process::Output {
    let mut cmd = t.command();
    cmd.arg("run").args(extra).args(["--bundle", b.dir.to_str().unwrap(), id]);
    cmd.stdin(Stdio::null());
    // SAFETY: between fork and exec only async-signal-safe calls: dup2 of an fd the parent
    // keeps open until spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            for target in [3, 4] {
                if libc::dup2(fd, target) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    cmd.output().unwrap()
}

fn read_all(fd: OwnedFd) -> String {
    let mut s = String::new();
    fs::File::from(fd).read_to_string(&mut s).unwrap();
    s
}

#[test]
fn preserve_fds_passes_the_callers_extra_fds_to_the_container() {
    let t = Tally::new();
    let mut b = Bundle::busybox("proc-fds");
    b.sh("echo via-fd3 >&3; echo fd4 >&4; echo rc=$?");
    let (r, w) = pipe();
    let out = run_with_extra_fds(&t, &b, "proc-fds", &["--preserve-fds", "1"], w.as_raw_fd());
    drop(w);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(read_all(r), "via-fd3\n", "fd 3 reaches the container, fd 4 (not asked for) does not");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "rc=1\n");
    t.assert_clean("proc-fds", &b);
}

#[test]
fn without_preserve_fds_no_fd_beyond_stdio_reaches_the_container() {
    let t = Tally::new();
    let mut b = Bundle::busybox("proc-nofds");
    // ls opens /proc/self/fd itself: that is the one fd beyond 0, 1 and 2 it may list.
    b.sh("echo leaked >&3; echo rc=$?; echo $(ls /proc/self/fd)");
    let (r, w) = pipe();
    let out = run_with_extra_fds(&t, &b, "proc-nofds", &[], w.as_raw_fd());
    drop(w);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(read_all(r), "", "fd 3 must not reach the container");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "rc=1");
    assert_eq!(lines[1].split_whitespace().collect::<Vec<_>>(), ["0", "1", "2", "3"], "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Bad file descriptor"));
    t.assert_clean("proc-nofds", &b);
}

#[test]
fn without_a_terminal_the_container_uses_the_callers_stdio() {
    let t = Tally::new();
    let mut b = Bundle::busybox("proc-stdio");
    b.sh("read line; echo out:$line; echo err:$line >&2; test -t 0 || echo no-tty");
    let mut child = t
        .command()
        .args(["run", "--bundle", b.dir.to_str().unwrap(), "proc-stdio"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"from-stdin\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out:from-stdin\nno-tty\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err:from-stdin\n");
    t.assert_clean("proc-stdio", &b);
}

#[test]
fn a_missing_cwd_is_an_error_at_create() {
    let t = Tally::new();
    let mut b = Bundle::busybox("proc-nocwd");
    b.edit(|c| c["process"]["cwd"] = json!("/no/such/dir"));
    t.create("proc-nocwd", &b).fails_with(&["process.cwd", "/no/such/dir", "No such file"]);
    t.assert_clean("proc-nocwd", &b);
}

#[test]
fn preserve_fds_beyond_what_the_caller_passed_hands_over_none_of_tallys_own() {
    let t = Tally::new();
    let mut b = Bundle::busybox("proc-fds-gap");
    // The caller passes no fd 3 and up: with the state directory, the sync channel and the
    // start fifo open in tally, none of them may reach the container as fds 3-10.
    b.sh("echo $(ls /proc/self/fd)");
    let r = t
        .run_with_only_stdio(&["run", "--preserve-fds", "8", "--bundle", b.dir.to_str().unwrap(), "proc-fds-gap"])
        .ok();
    assert_eq!(r.stdout.split_whitespace().collect::<Vec<_>>(), ["0", "1", "2", "3"], "{}", r.stdout);
    t.assert_clean("proc-fds-gap", &b);
}

#[test]
fn a_foreground_run_of_a_terminal_container_without_a_console_socket_gets_a_pty_tally_holds() {
    let t = Tally::new();
    let mut b = Bundle::busybox("proc-localtty");
    b.edit(|c| c["process"]["terminal"] = json!(true));
    b.sh("tty; exit 5");
    let r = t.run_container("proc-localtty", &b);
    assert_eq!(r.code, 5, "{} {}", r.stdout, r.stderr);
    assert!(r.stdout.contains("/dev/pts/0"), "{:?}", r.stdout);
    // Detached, there is nobody to hold it: a console socket is required.
    t.run_to_files(&["run", "-d", "--bundle", b.dir.to_str().unwrap(), "proc-localtty"])
        .fails_with(&["--console-socket"]);
    t.assert_clean("proc-localtty", &b);
}

/// Podman and containerd tell "not found" (127) from "cannot run" (126) by runc's wording, and
/// a `create` that succeeds for a program that cannot run leaves them a container that never
/// started: the check is made at `create`, as the process's user, inside the container's root.
#[test]
fn a_program_that_cannot_be_executed_fails_create_with_runcs_wording() {
    let t = Tally::new();
    let id = "proc-noexec";
    let mut b = Bundle::busybox(id);
    let bin = b.rootfs().join("opt");
    fs::create_dir_all(bin.join("a-directory")).unwrap();
    fs::write(bin.join("not-executable"), "#!/bin/sh\necho ran\n").unwrap();
    fs::set_permissions(bin.join("not-executable"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(bin.join("owner-only"), "#!/bin/sh\necho ran\n").unwrap();
    fs::set_permissions(bin.join("owner-only"), fs::Permissions::from_mode(0o700)).unwrap();
    let cases: [(&str, u32, &[&str]); 5] = [
        ("no-such-program", 0, &["no-such-program", "executable file not found in $PATH"]),
        ("/opt/missing", 0, &["/opt/missing", "no such file or directory"]),
        ("/opt/not-executable", 0, &["/opt/not-executable", "permission denied"]),
        ("/opt/a-directory", 0, &["/opt/a-directory", "permission denied"]),
        // root owns it and may run it; user 1000 may not.
        ("/opt/owner-only", 1000, &["/opt/owner-only", "permission denied"]),
    ];
    for (program, uid, needles) in cases {
        b.edit(|c| {
            c["process"]["args"] = json!([program]);
            c["process"]["user"] = json!({"uid": uid, "gid": uid});
        });
        t.create(id, &b).fails_with(needles);
        t.assert_clean(id, &b);
    }
    // The same program as its owner: create succeeds and it runs.
    b.edit(|c| {
        c["process"]["args"] = json!(["/opt/owner-only"]);
        c["process"]["user"] = json!({"uid": 0, "gid": 0});
    });
    assert_eq!(t.run_container(id, &b).ok().stdout, "ran\n");
    t.assert_clean(id, &b);
}

/// runc makes every container process a session leader (setsid) when it has no terminal:
/// conmon's `--timeout` kills the container's process group, and one shared with conmon's
/// would kill conmon.
#[test]
fn without_a_terminal_the_init_and_an_exec_lead_their_own_sessions() {
    let t = Tally::new();
    let id = "proc-setsid";
    let mut b = Bundle::busybox(id);
    // Fields 1, 5 and 6 of /proc/PID/stat: pid, process group, session.
    let stat = "cut -d' ' -f1,5,6 /proc/self/stat";
    b.edit(|c| c["process"]["args"] = json!(["sh", "-c", format!("exec {stat}")]));
    assert_eq!(t.run_container(id, &b).ok().stdout, "1 1 1\n");
    t.assert_clean(id, &b);

    b.edit(|c| c["process"]["args"] = json!(["sleep", "300"]));
    t.run_to_files(&["run", "-d", "--bundle", b.dir.to_str().unwrap(), id]).ok();
    let r = t.run(&["exec", id, "sh", "-c", &format!("exec {stat}")]).ok();
    let fields: Vec<&str> = r.stdout.split_whitespace().collect();
    assert_eq!(fields.len(), 3, "{}", r.stdout);
    assert_ne!(fields[0], "1");
    assert!(fields.iter().all(|f| *f == fields[0]), "the exec leads its session: {}", r.stdout);
    t.run(&["delete", "--force", id]).ok();
    t.assert_clean(id, &b);
}

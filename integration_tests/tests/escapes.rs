//! Escapes runc has had, run from inside a container against tally: each test performs the
//! attack and asserts the host is untouched.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use integration_tests::{rounds, tally_bin, unique, wait_for_file, Bundle, Tally};
use serde_json::json;

/// A private copy of the binary under test: an attack that works must not destroy the tally
/// the rest of the suite runs.
fn binary_copy() -> PathBuf {
    let copy = std::env::temp_dir().join(unique("tally-escape-bin"));
    fs::copy(tally_bin(), &copy).unwrap();
    copy
}

fn run(bin: &Path, root: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin).arg("--root").arg(root).args(args).stdin(Stdio::null()).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// CVE-2019-5736 class. The container execs `/proc/self/exe` (which names the binary of the
/// tally process doing the execve), keeps that process's `/proc/PID/exe` open, kills it, and
/// waits until no tally runs to reopen the link for writing. Against the build before
/// security/sealed_exe.rs this appended "PWNED" to the binary (seen while writing this test);
/// tally now runs container-side from its binary seen through a private read-only overlayfs
/// (or a sealed memfd copy), and the host binary stays as it was.
#[test]
fn the_host_binary_cannot_be_overwritten_through_proc_pid_exe() {
    let bin = binary_copy();
    let before = fs::read(&bin).unwrap();
    let t = Tally::new();
    let id = "esc-exe";
    let mut b = Bundle::busybox(id);
    b.edit(|c| c["process"]["args"] = json!(["sleep", "300"]));
    // A FIFO nobody writes: the tally run as the container's program blocks opening it.
    nix::unistd::mkfifo(&b.rootfs().join("block"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let root = t.root.clone();
    // Detached processes keep the caller's stdio: not pipes this test would wait on.
    let detached = |args: &[&str]| {
        let status = Command::new(&bin)
            .arg("--root")
            .arg(&root)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "{args:?}");
    };
    detached(&["run", "-d", "--bundle", b.dir.to_str().unwrap(), id]);
    detached(&["exec", "-d", id, "/proc/self/exe", "update", "-r", "/block", "x"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let attack = r#"
        for p in /proc/[0-9]*; do
          [ "${p#/proc/}" != $$ ] && grep -q block "$p/cmdline" 2>/dev/null && pid=${p#/proc/}
        done
        [ -n "$pid" ] || { echo no-target; exit 1; }
        readlink /proc/$pid/exe
        exec 3</proc/$pid/exe || exit 0
        kill -9 $pid
        ( i=0
          while [ $i -lt 60 ]; do
            if echo PWNED 2>/dev/null >> /proc/self/fd/3; then echo wrote > /wrote; break; fi
            sleep 0.05; i=$((i+1))
          done; echo done > /attack-done ) </dev/null >/dev/null 2>&1 &
    "#;
    let (code, out, err) = run(&bin, &root, &["exec", id, "sh", "-c", attack]);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    let host_path = bin.display().to_string();
    assert!(!out.contains(&host_path), "the program's exe is not the host's binary: {out}");
    // No tally process runs now: the writer loop gets its chance (60 tries of a fork and a
    // 0.05 s sleep, which the emulated VM can stretch past 5 s: up to 15 s are waited).
    for _ in 0..300 {
        if b.rootfs().join("attack-done").exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(b.rootfs().join("attack-done").exists(), "the attack loop ran to its end");
    assert!(!b.rootfs().join("wrote").exists(), "a write through /proc/PID/exe succeeded");
    assert!(fs::read(&bin).unwrap() == before, "the host's tally binary changed");
    let (code, _, err) = run(&bin, &root, &["delete", "--force", id]);
    assert_eq!(code, 0, "{err}");
    t.assert_clean(id, &b);
    fs::remove_file(&bin).unwrap();
}

/// CVE-2022-29162 class: the inheritable and ambient sets are empty unless the config names
/// them, for the init and for exec'd processes, as root and as another user.
/// Against a deliberately broken build that filled an absent inheritable set from the bounding
/// set (runc's bug) the init's CapInh was 0000000020000420.
#[test]
fn inheritable_and_ambient_capabilities_are_empty_unless_configured() {
    let t = Tally::new();
    let id = "esc-caps";
    let mut b = Bundle::busybox(id);
    b.edit(|c| {
        c["process"]["args"] = json!(["sleep", "300"]);
        c["process"]["capabilities"].as_object_mut().unwrap().remove("inheritable");
        c["process"]["capabilities"].as_object_mut().unwrap().remove("ambient");
    });
    t.run_to_files(&["run", "-d", "--bundle", b.dir.to_str().unwrap(), id]).ok();
    let pid = t.state(id)["pid"].as_i64().unwrap();
    let caps = |status: &str, key: &str| {
        status.lines().find_map(|l| l.strip_prefix(key)).map(|v| v.trim().to_string()).unwrap()
    };
    let init = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    for key in ["CapInh:", "CapAmb:"] {
        assert_eq!(caps(&init, key), "0000000000000000", "init {key}");
    }
    for user in ["0", "1000"] {
        let r = t.run(&["exec", "--user", user, id, "cat", "/proc/self/status"]).ok();
        for key in ["CapInh:", "CapAmb:"] {
            assert_eq!(caps(&r.stdout, key), "0000000000000000", "exec as {user}: {key}");
        }
    }
    t.run(&["delete", "--force", id]).ok();
    t.assert_clean(id, &b);
}

/// Whether the working directory is the directory its path names inside the container: a cwd
/// on a leaked host directory reads as "/" or "(unreachable)/..." but is another inode.
const CWD_INSIDE: &str = r#"c=$(readlink /proc/self/cwd); a=$(stat -c %d:%i .)
    b=$(stat -c %d:%i "$c" 2>/dev/null); [ "$a" = "$b" ] && echo "inside $c" || echo "outside $c""#;

/// CVE-2024-21626 class: a cwd of `/proc/self/fd/N` must not land outside the container, at
/// create or at exec; and no fd of the init or of an exec'd process is a directory. Against a
/// build that leaked a host directory fd into the init (a deliberately broken build, as runc
/// leaked a cgroup fd) both the cwd check and the fd listing failed.
#[test]
fn a_cwd_through_proc_self_fd_never_leaves_the_container() {
    let t = Tally::new();
    let id = "esc-cwd";
    let mut b = Bundle::busybox(id);
    for n in 3..64 {
        b.edit(|c| {
            c["process"]["cwd"] = json!(format!("/proc/self/fd/{n}"));
            c["process"]["args"] = json!(["sh", "-c", CWD_INSIDE]);
        });
        let r = t.run_container(id, &b);
        assert!(!r.stdout.contains("outside"), "cwd fd {n}: {}", r.stdout);
        t.assert_clean(id, &b);
    }
    b.edit(|c| {
        c["process"]["cwd"] = json!("/");
        c["process"]["args"] = json!(["sleep", "300"]);
    });
    t.create(id, &b).ok();
    let pid = t.state(id)["pid"].as_i64().unwrap();
    let dir_fds = |pid: i64| -> Vec<String> {
        fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .flatten()
            .filter(|e| fs::metadata(e.path()).is_ok_and(|m| m.is_dir()))
            .map(|e| format!("{:?}", fs::read_link(e.path())))
            .collect()
    };
    assert_eq!(dir_fds(pid), Vec::<String>::new(), "the created init holds directories");
    t.run(&["start", id]).ok();
    for n in 3..64 {
        let r = t.run(&["exec", "--cwd", &format!("/proc/self/fd/{n}"), id, "sh", "-c", CWD_INSIDE]);
        assert!(!r.stdout.contains("outside"), "exec cwd fd {n}: {}", r.stdout);
    }
    let r = t
        .run(&["exec", id, "sh", "-c", "ls -l /proc/self/fd/ | grep -v -e pipe: -e /dev/ -e socket: -e /proc/ ; true"])
        .ok();
    assert!(!r.stdout.lines().any(|l| l.contains("->")), "an exec'd process holds: {}", r.stdout);
    t.run(&["delete", "--force", id]).ok();
    t.assert_clean(id, &b);
}

/// CVE-2021-30465 / CVE-2024-45310 classes: mount destinations, masked and read-only paths
/// that are symlinks out of the rootfs (absolute, and `..` chains) resolve inside it; the host
/// directory they name is neither mounted on nor written.
/// Against a deliberately broken build whose destination walk let the host resolve the path,
/// `m1` and `m2` appeared in the host directory.
#[test]
fn symlinks_at_mount_destinations_and_protected_paths_stay_in_the_rootfs() {
    let host = std::env::temp_dir().join(unique("tally-escape-host"));
    fs::create_dir_all(&host).unwrap();
    fs::write(host.join("secret"), "host\n").unwrap();
    let t = Tally::new();
    let id = "esc-links";
    let mut b = Bundle::busybox(id);
    let r = b.rootfs();
    std::os::unix::fs::symlink(&host, r.join("abs")).unwrap();
    std::os::unix::fs::symlink(format!("../../../../../../..{}", host.display()), r.join("dots")).unwrap();
    b.edit(|c| {
        let mounts = c["mounts"].as_array_mut().unwrap();
        mounts.push(json!({"destination": "/abs/m1", "type": "tmpfs", "source": "tmpfs"}));
        mounts.push(json!({"destination": "/dots/m2", "type": "tmpfs", "source": "tmpfs"}));
        mounts.push(json!({"destination": "/abs", "type": "bind", "source": "/etc", "options": ["rbind", "ro"]}));
        c["linux"]["maskedPaths"].as_array_mut().unwrap().push(json!("/dots/secret"));
        c["linux"]["readonlyPaths"].as_array_mut().unwrap().push(json!("/abs/secret"));
    });
    b.sh("true");
    let before = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let _ = t.run_container(id, &b);
    let after = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert_eq!(before.lines().count(), after.lines().count(), "a mount reached the host");
    let entries: Vec<_> = fs::read_dir(&host).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(entries, vec![std::ffi::OsString::from("secret")], "the host directory changed");
    assert_eq!(fs::read_to_string(host.join("secret")).unwrap(), "host\n");
    t.assert_clean(id, &b);
    fs::remove_dir_all(&host).unwrap();
}

/// A fork bomb under `pids.max` 50 is contained, and `delete --force` ends it.
#[test]
fn a_fork_bomb_under_a_pids_limit_is_contained() {
    let t = Tally::new();
    let id = "esc-forkbomb";
    let mut b = Bundle::busybox(id);
    b.edit(|c| {
        c["linux"]["resources"]["pids"] = json!({"limit": 50});
        c["process"]["args"] = json!(["sh", "-c", "b() { b | b & }; b; sleep 300"]);
    });
    t.run_to_files(&["run", "-d", "--bundle", b.dir.to_str().unwrap(), id]).ok();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let ps = t.run(&["ps", "--format", "json", id]).ok();
    let pids: Vec<i32> = serde_json::from_str(&ps.stdout).unwrap();
    assert!(pids.len() <= 50, "{} processes", pids.len());
    // The host still forks.
    assert!(Command::new("true").status().unwrap().success());
    t.run(&["delete", "--force", id]).ok();
    t.assert_clean(id, &b);
}

/// Receives the pty master `create --console-socket` sends, so the container keeps a terminal.
fn accept_master(listener: &std::os::unix::net::UnixListener) -> std::os::fd::OwnedFd {
    let (conn, _) = listener.accept().unwrap();
    integration_tests::recv_fd(std::os::fd::AsRawFd::as_raw_fd(&conn)).0
}

/// A bundle whose image /dev is used as it is (no tmpfs over it), so what the image plants
/// there is what tally meets.
fn image_dev_bundle(id: &str) -> Bundle {
    let mut b = Bundle::busybox(id);
    b.edit(|c| c["mounts"].as_array_mut().unwrap().retain(|m| m["destination"] != "/dev"));
    b
}

/// CVE-2025-31133 / CVE-2025-52565 classes: an image whose /dev/null and /dev/console are links
/// to a host path, whose /dev/zero is a regular file, and whose masked and read-only paths are
/// such links. The container gets real device nodes and a pty at /dev/console (a regular file
/// tally made, not the link: against the build before console.rs's `fresh_console` the pty
/// was bound wherever the link pointed inside the rootfs, and `stat` saw a symlink); masks use
/// the host's verified /dev/null; the host file is untouched.
#[test]
fn dev_null_and_dev_console_planted_as_links_redirect_nothing() {
    let host = std::env::temp_dir().join(unique("tally-escape-dev"));
    fs::create_dir_all(&host).unwrap();
    let canary = host.join("canary");
    fs::write(&canary, "canary\n").unwrap();
    let t = Tally::new();
    let id = "esc-devnull";
    let mut b = image_dev_bundle(id);
    let dev = b.rootfs().join("dev");
    std::os::unix::fs::symlink(&canary, dev.join("null")).unwrap();
    std::os::unix::fs::symlink(&canary, dev.join("console")).unwrap();
    fs::write(dev.join("zero"), "image\n").unwrap();
    std::os::unix::fs::symlink(&canary, b.rootfs().join("masked-link")).unwrap();
    std::os::unix::fs::symlink(format!("../../../../../../..{}", canary.display()), b.rootfs().join("ro-link"))
        .unwrap();
    b.edit(|c| {
        c["process"]["terminal"] = json!(true);
        c["linux"]["maskedPaths"].as_array_mut().unwrap().push(json!("/masked-link"));
        c["linux"]["readonlyPaths"].as_array_mut().unwrap().push(json!("/ro-link"));
    });
    b.sh("echo x > /dev/null; echo x > /dev/console; stat -c '%n %F %t:%T' /dev/null /dev/zero /dev/console > /seen 2>&1");
    let sock = b.dir.join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let bundle = b.dir.to_str().unwrap().to_string();
    let create = std::thread::spawn({
        let root = t.root.clone();
        let sock = sock.clone();
        move || {
            run(&tally_bin(), &root, &["create", "--bundle", &bundle, "--console-socket", sock.to_str().unwrap(), id])
        }
    });
    let master = accept_master(&listener);
    let (code, _, err) = create.join().unwrap();
    assert_eq!(code, 0, "{err}");
    t.run(&["start", id]).ok();
    t.wait_status(id, "stopped");
    drop(master);
    let seen = fs::read_to_string(b.rootfs().join("seen")).unwrap();
    let lines: Vec<&str> = seen.lines().collect();
    assert_eq!(lines[0], "/dev/null character special file 1:3", "{seen}");
    assert_eq!(lines[1], "/dev/zero character special file 1:5", "{seen}");
    assert!(lines[2].starts_with("/dev/console character special file 88:"), "a pty (major 136 = 0x88): {seen}");
    assert!(!b.rootfs().join(canary.strip_prefix("/").unwrap()).exists(), "a link's target was made in the rootfs");
    assert_eq!(fs::read_to_string(&canary).unwrap(), "canary\n", "the host file changed");
    assert_eq!(fs::read_dir(&host).unwrap().count(), 1, "the host directory changed");
    t.run(&["delete", id]).ok();
    t.assert_clean(id, &b);
    fs::remove_dir_all(&host).unwrap();
}

/// An image that ships its own /dev/pts/ptmx (a copy of the multiplexer node, with no devpts
/// mounted over it) and a `pts` link beside it to `/dev/pts`: the kernel finds the devpts of a
/// ptmx node outside devpts through that sibling, looked up in tally's (the host's) view, so
/// the container's console would be a pty of the host's devpts. Kernel 6.18 already refuses
/// that lookup through a link (the build before `check_ptmx` failed with a bare "No such
/// device", seen while writing this test); tally checks the ptmx is on devpts before any
/// ioctl, whatever the kernel, and says why.
#[test]
fn a_ptmx_that_is_not_on_devpts_is_refused() {
    let t = Tally::new();
    let id = "esc-ptmx";
    let mut b = image_dev_bundle(id);
    b.edit(|c| {
        c["mounts"].as_array_mut().unwrap().retain(|m| m["destination"] != "/dev/pts");
        c["process"]["terminal"] = json!(true);
    });
    fs::create_dir_all(b.rootfs().join("dev/pts")).unwrap();
    let node = b.rootfs().join("dev/pts/ptmx");
    nix::sys::stat::mknod(
        &node,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        libc::makedev(5, 2),
    )
    .unwrap();
    std::os::unix::fs::symlink("/dev/pts", b.rootfs().join("dev/pts/pts")).unwrap();
    let sock = b.dir.join("console.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let r = t.run_to_files(&[
        "create",
        "--bundle",
        b.dir.to_str().unwrap(),
        "--console-socket",
        sock.to_str().unwrap(),
        id,
    ]);
    let r = r.fails_with(&["/dev/ptmx", "devpts"]);
    assert_eq!(r.stderr.trim().lines().count(), 1, "one line: {}", r.stderr);
    t.assert_clean(id, &b);
}

/// CVE-2025-52881 class, and runc's rule for /proc: a mount over a file under the container's
/// /proc (here the sysctl and the oom_score_adj tally writes) is refused, naming it, as runc
/// refuses it; the build before `check_proc_destination` mounted the decoy and wrote the
/// sysctl into it. The writes themselves go through a private procfs instance (procfs.rs), so
/// even a mount that got there by a race would not take them.
#[test]
fn mounts_over_proc_files_are_refused_and_proc_writes_land_in_procfs() {
    let t = Tally::new();
    let id = "esc-proc";
    let mut b = Bundle::busybox(id);
    let decoy = b.dir.join("decoy");
    fs::write(&decoy, "decoy\n").unwrap();
    for dest in ["/proc/sys/net/ipv4/ip_forward", "/proc/1/oom_score_adj", "/proc/self/attr/exec"] {
        b.edit(|c| {
            c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
            c["process"]["oomScoreAdj"] = json!(500);
            c["mounts"].as_array_mut().unwrap().push(json!({
                "destination": dest, "type": "bind", "source": decoy, "options": ["bind"]
            }));
        });
        let r = t.create(id, &b);
        assert_eq!(fs::read_to_string(&decoy).unwrap(), "decoy\n", "{dest}: written through the decoy");
        r.fails_with(&["cannot be mounted because it is inside /proc"]);
        let _ = t.run(&["delete", "--force", id]);
        t.assert_clean(id, &b);
        b.edit(|c| {
            c["mounts"].as_array_mut().unwrap().pop();
        });
    }
    // /proc itself takes only a procfs.
    b.edit(|c| {
        c["mounts"].as_array_mut().unwrap().push(json!({"destination": "/proc", "type": "tmpfs", "source": "tmpfs"}))
    });
    t.create(id, &b).fails_with(&["/proc cannot be mounted because it is not of type proc"]);
    t.assert_clean(id, &b);
    b.edit(|c| {
        c["mounts"].as_array_mut().unwrap().pop();
    });
    // What lxcfs covers stays allowed, and the writes land where they belong.
    b.edit(|c| {
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/proc/uptime", "type": "bind", "source": decoy, "options": ["bind"]
        }));
    });
    b.sh("cat /proc/uptime /proc/sys/net/ipv4/ip_forward /proc/self/oom_score_adj");
    let r = t.run_container(id, &b).ok();
    assert_eq!(r.stdout.lines().collect::<Vec<_>>(), ["decoy", "1", "500"], "{}", r.stdout);
    t.assert_clean(id, &b);
}

/// CVE-2021-30465 class, raced: a second container shares a volume with the first and keeps
/// swapping the directory under the first one's mount destination for links out of it (an
/// absolute host path, a `..` chain, the container's /proc) while the first is created, 200
/// times. Every create either succeeds or names the mount; nothing outside the rootfs is made,
/// mounted on or changed. Destinations resolve through openat2 RESOLVE_IN_ROOT and are
/// mounted through the resolved fd, so there is no window between check and use to win.
/// Against a deliberately broken build (lookups without RESOLVE_IN_ROOT) the race made `new`
/// in the host directory.
#[test]
fn a_volume_swapped_for_links_by_a_second_container_never_redirects_a_mount() {
    let host = std::env::temp_dir().join(unique("tally-escape-race-host"));
    let volume = std::env::temp_dir().join(unique("tally-escape-race-vol"));
    fs::create_dir_all(&host).unwrap();
    fs::create_dir_all(volume.join("d")).unwrap();
    fs::write(host.join("secret"), "host\n").unwrap();
    let t = Tally::new();
    let mut racer = Bundle::busybox("esc-racer");
    let swap = format!(
        r#"cd /vol; i=0; while :; do
             mv d real; ln -s {h} d; rm d; ln -s ../../../../../../../..{h} d; rm d;
             ln -s /proc/sys/kernel d; rm d; mv real d; i=$((i+1)); echo $i > /vol/rounds
           done"#,
        h = host.display()
    );
    racer.edit(|c| {
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/vol", "type": "bind", "source": volume, "options": ["rbind"]
        }));
        c["process"]["args"] = json!(["sh", "-c", swap]);
    });
    t.run_to_files(&["run", "-d", "--bundle", racer.dir.to_str().unwrap(), "esc-racer"]).ok();
    wait_for_file(&volume.join("rounds"));

    let mut b = Bundle::busybox("esc-victim");
    b.edit(|c| {
        let mounts = c["mounts"].as_array_mut().unwrap();
        mounts.push(json!({"destination": "/vol", "type": "bind", "source": volume, "options": ["rbind"]}));
        mounts.push(json!({"destination": "/vol/d/new/m", "type": "tmpfs", "source": "tmpfs"}));
    });
    let before = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let (mut made, mut refused) = (0, 0);
    let n = rounds("a_volume_swapped_for_links_by_a_second_container_never_redirects_a_mount", 200, 20);
    for i in 0..n {
        let id = format!("esc-victim-{i}");
        let r = t.create(&id, &b);
        if r.code == 0 {
            made += 1;
            t.run(&["delete", "--force", &id]).ok();
        } else {
            refused += 1;
            assert!(r.stderr.contains("mounts["), "an error that is not the mount's: {}", r.stderr);
        }
        t.assert_clean(&id, &b);
    }
    let swapped = fs::read_to_string(volume.join("rounds")).unwrap();
    t.run(&["delete", "--force", "esc-racer"]).ok();
    t.assert_clean("esc-racer", &racer);
    let after = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert_eq!(before.lines().count(), after.lines().count(), "a mount reached the host");
    let entries: Vec<_> = fs::read_dir(&host).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(entries, vec![std::ffi::OsString::from("secret")], "the host directory changed");
    assert_eq!(fs::read_to_string(host.join("secret")).unwrap(), "host\n");
    eprintln!(
        "{n} creates under the race: {made} made, {refused} refused; the racer swapped {} rounds",
        swapped.trim()
    );
    fs::remove_dir_all(&host).unwrap();
    fs::remove_dir_all(&volume).unwrap();
}

/// CVE-2025-31133 class, raced: a second container that shares the first one's image keeps
/// swapping its /dev/null and a masked and a read-only path between links to a host file and
/// plain files while the first is created, 100 times. Each create succeeds or fails with an
/// error; the host file and its directory never change (device nodes are made in a directory
/// fd, masks bind the host's verified /dev/null, protected paths are resolved once, in the root).
#[test]
fn dev_null_and_protected_paths_swapped_during_create_redirect_nothing() {
    let host = std::env::temp_dir().join(unique("tally-escape-devrace"));
    fs::create_dir_all(&host).unwrap();
    let canary = host.join("canary");
    fs::write(&canary, "canary\n").unwrap();
    let t = Tally::new();
    let mut victim = image_dev_bundle("esc-devrace");
    victim.edit(|c| {
        c["linux"]["maskedPaths"].as_array_mut().unwrap().push(json!("/masked-x"));
        c["linux"]["readonlyPaths"].as_array_mut().unwrap().push(json!("/ro-x"));
    });
    let mut racer = Bundle::busybox("esc-devracer");
    let swap = format!(
        r#"cd /victim; i=0; while :; do
             for f in dev/null masked-x ro-x; do rm -rf $f; ln -s {c} $f; done
             for f in dev/null masked-x ro-x; do rm -rf $f; ln -s ../../../../../..{c} $f; done
             for f in dev/null masked-x ro-x; do rm -rf $f; echo plain > $f; done
             i=$((i+1)); echo $i > /rounds
           done"#,
        c = canary.display()
    );
    racer.edit(|c| {
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/victim", "type": "bind", "source": victim.rootfs(), "options": ["rbind"]
        }));
        c["process"]["args"] = json!(["sh", "-c", swap]);
    });
    t.run_to_files(&["run", "-d", "--bundle", racer.dir.to_str().unwrap(), "esc-devracer"]).ok();
    wait_for_file(&racer.rootfs().join("rounds"));
    let (mut made, mut refused) = (0, 0);
    let n = rounds("dev_null_and_protected_paths_swapped_during_create_redirect_nothing", 100, 10);
    for i in 0..n {
        let id = format!("esc-devrace-{i}");
        let r = t.create(&id, &victim);
        if r.code == 0 {
            made += 1;
            t.run(&["delete", "--force", &id]).ok();
        } else {
            refused += 1;
            assert!(r.stderr.starts_with("tally: error:"), "{}", r.stderr);
        }
        t.assert_clean(&id, &victim);
        assert_eq!(fs::read_to_string(&canary).unwrap(), "canary\n", "round {i}: the host file changed");
    }
    let swapped = fs::read_to_string(racer.rootfs().join("rounds")).unwrap();
    t.run(&["delete", "--force", "esc-devracer"]).ok();
    t.assert_clean("esc-devracer", &racer);
    assert_eq!(fs::read_dir(&host).unwrap().count(), 1, "the host directory changed");
    eprintln!("{n} creates under the /dev race: {made} made, {refused} refused; {} rounds of swaps", swapped.trim());
    fs::remove_dir_all(&host).unwrap();
}

/// The other two ways into the tally binary from inside (CVE-2019-5736 class): the created
/// init, still tally until `start`, seen from a process exec'd into the created container; and
/// a `#!/proc/self/exe` script run as the exec'd program, whose interpreter the kernel takes
/// from the exec'ing tally process. The init is not dumpable, so its /proc/1/exe cannot be
/// opened; the script gets tally run from the protected handle (its usage error proves it ran);
/// the host binary stays as it was.
/// Against a deliberately broken build without the init's PR_SET_DUMPABLE this still passed:
/// the init's capability change before it waits for `start` already resets its dumpability
/// (fs.suid_dumpable is 0), a second layer; the protected handle is the third.
#[test]
fn the_created_init_and_a_proc_self_exe_script_expose_no_host_binary() {
    let bin = binary_copy();
    let before = fs::read(&bin).unwrap();
    let t = Tally::new();
    let id = "esc-init-exe";
    let mut b = Bundle::busybox(id);
    b.edit(|c| c["process"]["args"] = json!(["sleep", "300"]));
    fs::write(b.rootfs().join("evil"), "#!/proc/self/exe\n").unwrap();
    fs::set_permissions(b.rootfs().join("evil"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let root = t.root.clone();
    let status = Command::new(&bin)
        .arg("--root")
        .arg(&root)
        .args(["create", "--bundle", b.dir.to_str().unwrap(), id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let probe =
        "readlink /proc/1/exe || echo no-link; cat /proc/1/exe > /dev/null 2>&1 && echo readable || echo closed";
    let (code, out, err) = run(&bin, &root, &["exec", id, "sh", "-c", probe]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("no-link") && out.contains("closed"), "the created init's exe is reachable: {out}");
    let (code, out, err) = run(&bin, &root, &["exec", id, "/evil"]);
    assert_ne!(code, 0, "tally as the script's interpreter exits with its usage error: {out}");
    assert!(err.contains("Usage") || err.contains("error"), "tally ran: {err}");
    assert!(fs::read(&bin).unwrap() == before, "the host's tally binary changed");
    let (code, _, err) = run(&bin, &root, &["delete", "--force", id]);
    assert_eq!(code, 0, "{err}");
    t.assert_clean(id, &b);
    fs::remove_file(&bin).unwrap();
}

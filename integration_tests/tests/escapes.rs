//! Escapes runc has had, run from inside a container against tally: each test performs the
//! attack and asserts the host is untouched.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use integration_tests::{tally_bin, unique, Bundle, Tally};
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
/// tally now runs container-side from a sealed memfd copy, and the host binary stays as it was.
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
    assert!(out.contains("memfd:tally"), "the program's exe is the sealed copy: {out}");
    // No tally process runs now: the writer loop gets its chance.
    for _ in 0..100 {
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

/// CVE-2024-21626 class: a cwd of `/proc/self/fd/N` must not land outside the container, at
/// create or at exec; and no fd of the init or of an exec'd process is a directory.
#[test]
fn a_cwd_through_proc_self_fd_never_leaves_the_container() {
    let t = Tally::new();
    let id = "esc-cwd";
    let mut b = Bundle::busybox(id);
    for n in 3..64 {
        b.edit(|c| {
            c["process"]["cwd"] = json!(format!("/proc/self/fd/{n}"));
            c["process"]["args"] = json!(["sh", "-c", "readlink /proc/self/cwd; ls .. >/dev/null && pwd"]);
        });
        let r = t.run_container(id, &b);
        assert!(!r.stdout.contains("unreachable") && !r.stdout.contains("/run/"), "cwd fd {n}: {}", r.stdout);
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
        let r = t.run(&["exec", "--cwd", &format!("/proc/self/fd/{n}"), id, "sh", "-c", "readlink /proc/self/cwd"]);
        assert!(!r.stdout.contains("unreachable") && !r.stdout.contains("/run/"), "exec cwd fd {n}: {}", r.stdout);
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

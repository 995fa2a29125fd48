//! Rootless mode: tally run by an unprivileged user (`tally-rootless`, made by
//! hack/rootless-user.sh on the host and by the VM's initramfs) puts the container in a user
//! namespace, keeps its state under `$XDG_RUNTIME_DIR/tally`, maps the user's own ids itself
//! and further ranges through newuidmap/newgidmap, and runs without a cgroup where none is
//! delegated: run, exec, ps, kill and delete work, limits and pause are errors that say why.
//! Where a cgroup v2 subtree is delegated to the user (the VM), limits are enforced there and
//! pause works. Every test leaves nothing: no state, no process, no mount, no cgroup.

use std::ffi::CString;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use integration_tests::{assert_host_clean, processes_under, skip, unique, Bundle, Ran};
use serde_json::{json, Value};

const USER: &str = "tally-rootless";

/// The unprivileged user and a runtime directory of its own.
struct User {
    uid: u32,
    gid: u32,
    xdg: PathBuf,
}

impl User {
    /// `None` (and a skip line) when the user does not exist here.
    fn get(test: &str) -> Option<User> {
        // /etc/passwd itself, not getpwnam: the static test binary has no NSS in the VM.
        let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
        let entry = passwd.lines().map(|l| l.split(':').collect::<Vec<_>>()).find(|f| f.len() > 3 && f[0] == USER);
        let Some((uid, gid)) = entry.and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?))) else {
            skip(test, &format!("no user {USER} here (hack/rootless-user.sh makes it; make test runs that)"));
            return None;
        };
        let xdg = std::env::temp_dir().join(unique("tally-it-xdg"));
        fs::create_dir(&xdg).unwrap();
        std::os::unix::fs::chown(&xdg, Some(uid), Some(gid)).unwrap();
        Some(User { uid, gid, xdg })
    }

    /// The state root rootless tally picks when given no `--root`.
    fn root(&self) -> PathBuf {
        self.xdg.join("tally")
    }

    /// `tally ARGS` as the user, with no --root, in cgroup `cgroup` (joined as root first) when
    /// given. Output through files: a detached container keeps no pipe open.
    fn tally_in(&self, cgroup: Option<&Path>, args: &[&str]) -> Ran {
        let base = std::env::temp_dir().join(unique("tally-it-rl-out"));
        let (out_path, err_path) = (base.with_extension("out"), base.with_extension("err"));
        let out = fs::File::create(&out_path).unwrap();
        let err = fs::File::create(&err_path).unwrap();
        let mut cmd = Command::new(integration_tests::tally_bin());
        cmd.args(args)
            .env("XDG_RUNTIME_DIR", &self.xdg)
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let (uid, gid) = (self.uid, self.gid);
        let procs = cgroup.map(|c| CString::new(c.join("cgroup.procs").to_str().unwrap()).unwrap());
        // SAFETY: between fork and exec only async-signal-safe calls (open, write, close,
        // setgroups, setresgid, setresuid) on memory prepared before the fork.
        unsafe {
            cmd.pre_exec(move || {
                if let Some(p) = &procs {
                    let fd = libc::open(p.as_ptr(), libc::O_WRONLY);
                    if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    libc::close(fd);
                }
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setresgid(gid, gid, gid) != 0
                    || libc::setresuid(uid, uid, uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let status = cmd.status().expect("spawn tally as the rootless user");
        let ran = Ran {
            code: status.code().unwrap_or(-1),
            stdout: fs::read_to_string(&out_path).unwrap_or_default(),
            stderr: fs::read_to_string(&err_path).unwrap_or_default(),
        };
        let _ = fs::remove_file(&out_path);
        let _ = fs::remove_file(&err_path);
        ran
    }

    fn tally(&self, args: &[&str]) -> Ran {
        self.tally_in(None, args)
    }

    /// A busybox bundle owned by the user, with the config `tally spec --rootless` writes for
    /// it (a user namespace mapping its own ids, no network namespace, /sys bound).
    fn bundle(&self, name: &str) -> Bundle {
        let mut b = Bundle::busybox(name);
        let spec_dir = std::env::temp_dir().join(unique("tally-it-rl-spec"));
        fs::create_dir(&spec_dir).unwrap();
        std::os::unix::fs::chown(&spec_dir, Some(self.uid), Some(self.gid)).unwrap();
        self.tally(&["spec", "--rootless", "--bundle", spec_dir.to_str().unwrap()]).ok();
        let mut config: Value = serde_json::from_slice(&fs::read(spec_dir.join("config.json")).unwrap()).unwrap();
        fs::remove_dir_all(&spec_dir).unwrap();
        config["process"]["terminal"] = json!(false);
        config["process"]["args"] = json!(["true"]);
        config["root"]["readonly"] = json!(false);
        b.config = config;
        b.save();
        chown_tree(&b.dir, self.uid, self.gid);
        b
    }

    /// Nothing of container `id` is left: the host checks, and no state under the user's root.
    #[track_caller]
    fn assert_clean(&self, id: &str, b: &Bundle) {
        assert_host_clean(&self.root(), id, &b.dir);
        assert!(!self.root().join(id).exists(), "state of {id} remains under {}", self.root().display());
    }

    #[track_caller]
    fn wait_stopped(&self, id: &str) {
        let end = Instant::now() + Duration::from_secs(30);
        while Instant::now() < end {
            let r = self.tally(&["state", id]).ok();
            if r.stdout.contains("\"stopped\"") {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("{id} never stopped");
    }
}

impl Drop for User {
    fn drop(&mut self) {
        // A failed test must not leave containers running.
        for e in fs::read_dir(self.root()).into_iter().flatten().flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            let _ = self.tally(&["delete", "--force", &id]);
        }
        let _ = fs::remove_dir_all(&self.xdg);
    }
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
    if fs::symlink_metadata(path).unwrap().is_dir() {
        for e in fs::read_dir(path).unwrap().flatten() {
            chown_tree(&e.path(), uid, gid);
        }
    }
}

fn host_is_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

#[test]
fn a_user_runs_a_container_as_root_of_its_own_user_namespace_with_state_under_xdg_runtime_dir() {
    let Some(u) = User::get("a_user_runs_a_container_as_root_of_its_own_user_namespace") else { return };
    let id = "rl-run";
    let mut b = u.bundle(id);
    b.sh("id -u; cat /proc/self/uid_map; cat /proc/self/setgroups; echo x > /written && echo write-ok");
    let r = u.tally(&["run", "--bundle", b.dir.to_str().unwrap(), id]).ok();
    let mut lines = r.stdout.lines();
    assert_eq!(lines.next(), Some("0"), "root inside: {}", r.stdout);
    let map: Vec<String> = lines.next().unwrap().split_whitespace().map(String::from).collect();
    assert_eq!(map, ["0".to_string(), u.uid.to_string(), "1".to_string()], "only the user's own uid is mapped");
    assert_eq!(lines.next(), Some("deny"), "setgroups is denied where the user wrote its own gid_map");
    assert!(r.stdout.contains("write-ok"), "{}", r.stdout);
    // The file the container's root wrote belongs to the user on the host.
    let md = fs::metadata(b.rootfs().join("written")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&md), u.uid);
    u.assert_clean(id, &b);
}

#[test]
fn exec_ps_kill_and_delete_work_and_the_state_lives_under_the_users_runtime_dir() {
    let test = "exec_ps_kill_and_delete_work_and_the_state_lives_under_the_users_runtime_dir";
    let Some(u) = User::get(test) else { return };
    let id = "rl-life";
    let mut b = u.bundle(id);
    b.edit(|c| c["process"]["args"] = json!(["sleep", "300"]));
    u.tally(&["run", "-d", "--bundle", b.dir.to_str().unwrap(), id]).ok();
    assert!(u.root().join(id).join("state.json").exists(), "state under {}", u.root().display());
    let list = u.tally(&["list"]).ok();
    assert!(list.stdout.contains(id) && list.stdout.contains(USER), "{}", list.stdout);
    let r = u.tally(&["exec", id, "sh", "-c", "id -u; echo exec-ok"]).ok();
    assert_eq!(r.stdout, "0\nexec-ok\n");
    u.tally(&["exec", "-d", id, "sleep", "200"]).ok();
    let ps = u.tally(&["ps", "--format", "json", id]).ok();
    let pids: Vec<i32> = serde_json::from_str(&ps.stdout).unwrap();
    assert_eq!(pids.len(), 2, "the init and the exec'd sleep: {pids:?}");
    let init: Value = serde_json::from_str(&u.tally(&["state", id]).ok().stdout).unwrap();
    assert!(pids.contains(&(init["pid"].as_i64().unwrap() as i32)), "{pids:?}");
    if !host_is_v2() {
        // The host delegates no cgroup v1 hierarchy: no cgroup, so no freezer.
        u.tally(&["pause", id]).fails_with(&["has no cgroup", "pause needs one"]);
        let bc = u.tally(&["beancounters", "--format", "json", "--resources", "numproc,numfile", id]).ok();
        let rows: Value = serde_json::from_str(&bc.stdout).unwrap();
        let rows = rows[0]["resources"].as_array().unwrap();
        let numproc = rows.iter().find(|r| r["resource"] == "numproc").unwrap();
        assert!(numproc["source"].as_str().unwrap().contains("no cgroup"), "{numproc}");
        let numfile = rows.iter().find(|r| r["resource"] == "numfile").unwrap();
        assert!(numfile["held"].as_u64().is_some(), "sampled from the container's processes: {numfile}");
    }
    u.tally(&["kill", "--all", id, "KILL"]).ok();
    u.wait_stopped(id);
    assert!(processes_under(&b.dir).is_empty(), "kill --all reached every process");
    u.tally(&["delete", id]).ok();
    u.assert_clean(id, &b);
}

#[test]
fn a_limit_without_a_delegated_cgroup_is_an_error_that_says_why() {
    let test = "a_limit_without_a_delegated_cgroup_is_an_error_that_says_why";
    let Some(u) = User::get(test) else { return };
    let id = "rl-limit";
    let mut b = u.bundle(id);
    b.edit(|c| c["linux"]["resources"] = json!({"pids": {"limit": 16}}));
    u.tally(&["create", "--bundle", b.dir.to_str().unwrap(), id]).fails_with(&[
        "linux.resources.pids",
        "a rootless container gets a cgroup only where the caller may manage one",
        &format!("delegate a cgroup v2 subtree to uid {}", u.uid),
    ]);
    u.assert_clean(id, &b);
    // A cgroupsPath the user may not manage: the same, naming the path.
    b.edit(|c| {
        c["linux"]["resources"] = json!({});
        c["linux"]["cgroupsPath"] = json!("/tally-it/rl-limit");
    });
    u.tally(&["create", "--bundle", b.dir.to_str().unwrap(), id]).fails_with(&["linux.cgroupsPath"]);
    u.assert_clean(id, &b);
}

#[test]
fn more_ids_than_the_users_own_are_mapped_through_newuidmap_and_newgidmap() {
    let test = "more_ids_than_the_users_own_are_mapped_through_newuidmap_and_newgidmap";
    let Some(u) = User::get(test) else { return };
    if Command::new("newuidmap").arg("--help").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
        skip(test, "no newuidmap here (package uidmap; the VM's guest has no shadow tools)");
        return;
    }
    let id = "rl-ranges";
    let mut b = u.bundle(id);
    b.sh("cat /proc/self/uid_map /proc/self/gid_map; id -G; chown 1000:1000 /tmp && stat -c %u /tmp");
    b.edit(|c| {
        let (uid, gid) = (u.uid, u.gid);
        c["linux"]["uidMappings"] =
            json!([{"containerID": 0, "hostID": uid, "size": 1}, {"containerID": 1, "hostID": 200000, "size": 65536}]);
        c["linux"]["gidMappings"] =
            json!([{"containerID": 0, "hostID": gid, "size": 1}, {"containerID": 1, "hostID": 200000, "size": 65536}]);
        c["process"]["user"]["additionalGids"] = json!([5]);
        // The default spec's root has no CAP_CHOWN; the container's own ids need it.
        let caps = json!(["CAP_CHOWN", "CAP_KILL"]);
        c["process"]["capabilities"] = json!({"bounding": caps.clone(), "effective": caps.clone(), "permitted": caps});
    });
    let r = u.tally(&["run", "--bundle", b.dir.to_str().unwrap(), id]).ok();
    let rows: Vec<Vec<&str>> = r.stdout.lines().take(4).map(|l| l.split_whitespace().collect()).collect();
    let (uid, gid) = (u.uid.to_string(), u.gid.to_string());
    assert_eq!(rows[0], ["0", uid.as_str(), "1"]);
    assert_eq!(rows[1], ["1", "200000", "65536"]);
    assert_eq!(rows[2], ["0", gid.as_str(), "1"]);
    assert_eq!(rows[3], ["1", "200000", "65536"]);
    // newgidmap leaves setgroups allowed, so supplementary groups can be had (runc refuses
    // them in every rootless container; see docs/compatibility.md).
    assert!(r.stdout.lines().nth(4).unwrap().split_whitespace().any(|g| g == "5"), "{}", r.stdout);
    assert_eq!(r.stdout.lines().nth(5), Some("1000"), "{}", r.stdout);
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&fs::metadata(b.rootfs().join("tmp")).unwrap()), 200999);
    u.assert_clean(id, &b);

    // A range the user was not given: newuidmap's refusal, named.
    b.edit(|c| {
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 300000, "size": 10}]);
        c["process"]["user"]["additionalGids"] = json!([]);
    });
    u.tally(&["create", "--bundle", b.dir.to_str().unwrap(), id]).fails_with(&[
        "linux.uidMappings",
        "newuidmap",
        "/etc/subuid",
    ]);
    u.assert_clean(id, &b);
}

#[test]
fn with_only_its_own_ids_mapped_supplementary_groups_are_an_error_naming_them() {
    let test = "with_only_its_own_ids_mapped_supplementary_groups_are_an_error_naming_them";
    let Some(u) = User::get(test) else { return };
    let id = "rl-groups";
    let mut b = u.bundle(id);
    b.edit(|c| c["process"]["user"]["additionalGids"] = json!([5]));
    u.tally(&["create", "--bundle", b.dir.to_str().unwrap(), id])
        .fails_with(&["process.user.additionalGids [5]", "setgroups is denied"]);
    u.assert_clean(id, &b);
}

/// The VM: a cgroup v2 subtree delegated to the user, as systemd delegates user@.service.
struct Delegation {
    dir: PathBuf,
}

impl Delegation {
    fn new(test: &str, u: &User) -> Option<Delegation> {
        if !host_is_v2() {
            skip(test, "cgroup v1 here: no subtree can be delegated (the VM runs cgroup v2)");
            return None;
        }
        let dir = PathBuf::from("/sys/fs/cgroup").join(unique("tally-it-deleg"));
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("cgroup.subtree_control"), "+pids +memory").unwrap();
        fs::create_dir(dir.join("caller")).unwrap();
        for p in [dir.clone(), dir.join("cgroup.procs"), dir.join("cgroup.subtree_control"), dir.join("cgroup.threads")]
            .iter()
            .chain([dir.join("caller"), dir.join("caller/cgroup.procs")].iter())
        {
            std::os::unix::fs::chown(p, Some(u.uid), Some(u.gid)).unwrap();
        }
        Some(Delegation { dir })
    }
}

impl Drop for Delegation {
    fn drop(&mut self) {
        for sub in fs::read_dir(&self.dir).into_iter().flatten().flatten().filter(|e| e.path().is_dir()) {
            let _ = fs::remove_dir(sub.path());
        }
        let _ = fs::remove_dir(&self.dir);
    }
}

#[test]
fn in_a_delegated_cgroup_v2_subtree_pids_and_memory_limits_hold_and_pause_works() {
    let test = "in_a_delegated_cgroup_v2_subtree_pids_and_memory_limits_hold_and_pause_works";
    let Some(u) = User::get(test) else { return };
    let Some(d) = Delegation::new(test, &u) else { return };
    let caller = d.dir.join("caller");
    let id = "rl-deleg";
    let cg = d.dir.join(id);
    let rel = cg.strip_prefix("/sys/fs/cgroup").unwrap().to_str().unwrap().to_string();
    let mut b = u.bundle(id);
    b.edit(|c| {
        c["process"]["args"] = json!(["sleep", "300"]);
        c["linux"]["cgroupsPath"] = json!(format!("/{rel}"));
        c["linux"]["resources"] = json!({"pids": {"limit": 8}, "memory": {"limit": 33554432}});
    });
    let bundle = b.dir.to_str().unwrap().to_string();
    u.tally_in(Some(&caller), &["run", "-d", "--bundle", &bundle, id]).ok();
    assert_eq!(fs::read_to_string(cg.join("pids.max")).unwrap().trim(), "8");
    assert_eq!(fs::read_to_string(cg.join("memory.max")).unwrap().trim(), "33554432");
    // Exec'd from the delegated subtree: moving a process in from outside it needs write
    // access to cgroup.procs of the common ancestor, the host's root cgroup.
    let exec = |script: &str| u.tally_in(Some(&caller), &["exec", id, "sh", "-c", script]);
    // The memory limit: a 64 MiB tmpfs write ends in the OOM killer.
    let r = exec("dd if=/dev/zero of=/dev/shm/fill bs=1M count=64 2>/dev/null");
    assert_ne!(r.code, 0, "the write past memory.max must not succeed");
    let mem = fs::read_to_string(cg.join("memory.events")).unwrap();
    assert!(!mem.contains("oom_kill 0"), "memory.events: {mem}");
    // pause freezes the delegated cgroup.
    u.tally(&["pause", id]).ok();
    assert_eq!(fs::read_to_string(cg.join("cgroup.freeze")).unwrap().trim(), "1");
    let st: Value = serde_json::from_str(&u.tally(&["state", id]).ok().stdout).unwrap();
    assert_eq!(st["status"], "paused");
    u.tally(&["resume", id]).ok();
    // The pids limit: twelve background sleeps do not fit in eight processes.
    exec("i=0; while [ $i -lt 12 ]; do sleep 60 & i=$((i+1)); done");
    let events = fs::read_to_string(cg.join("pids.events")).unwrap();
    assert!(!events.contains("max 0"), "pids.events: {events}");
    assert!(fs::read_to_string(cg.join("pids.current")).unwrap().trim().parse::<u32>().unwrap() <= 8);
    u.tally(&["delete", "--force", id]).ok();
    assert!(!cg.exists(), "delete removes the container's cgroup");
    u.assert_clean(id, &b);
}

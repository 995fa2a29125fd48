//! Cgroup placement: the init joins `linux.cgroupsPath` (default `/<id>`, as runc's) from
//! `create` on, the container sees that cgroup as its own, and `delete` removes it.

use std::fs;
use std::path::{Path, PathBuf};

use integration_tests::{cgroup_dirs_named, cgroup_host, unique, Bundle, CgroupHost, Tally};
use serde_json::json;

/// The directory of cgroup `path` (e.g. `/<id>`) in the hierarchy the tests check: the
/// pids controller on v1 (always mounted in the sandbox), the unified tree on v2.
fn cgroup_dir(path: &str) -> PathBuf {
    let base = match cgroup_host() {
        CgroupHost::V1 => Path::new("/sys/fs/cgroup/pids"),
        CgroupHost::V2 => Path::new("/sys/fs/cgroup"),
    };
    base.join(path.trim_start_matches('/'))
}

fn procs(dir: &Path) -> Vec<i64> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_else(|e| panic!("{}/cgroup.procs: {e}", dir.display()))
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

#[test]
fn the_init_is_in_the_default_cgroup_from_create_until_delete() {
    let t = Tally::new();
    let mut b = Bundle::busybox("cg-default");
    b.sh("exec sleep 1000");
    t.create("cg-default", &b).ok();
    let pid = t.state("cg-default")["pid"].as_i64().unwrap();
    let dir = cgroup_dir("/cg-default");
    assert_eq!(procs(&dir), [pid], "a created container's init is already placed");
    t.run(&["start", "cg-default"]).ok();
    assert_eq!(procs(&dir), [pid]);
    // Every hierarchy has the container's cgroup with the init in it: the v1 ones, which the
    // init joins itself, and v2 (a hybrid host's unified one too), where clone3 starts it.
    let dirs = cgroup_dirs_named("cg-default");
    assert!(dirs.contains(&dir), "{dirs:?}");
    for d in &dirs {
        assert_eq!(procs(d), [pid], "{}", d.display());
    }
    let own = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for line in own.lines().filter(|l| !l.contains("memory")) {
        assert!(line.ends_with(":/cg-default"), "every hierarchy but the hidden memory one: {own}");
    }
    t.run(&["kill", "cg-default", "KILL"]).ok();
    t.wait_status("cg-default", "stopped");
    assert!(dir.exists(), "a stopped container keeps its cgroup until delete");
    t.run(&["delete", "cg-default"]).ok();
    assert!(!dir.exists());
    t.assert_clean("cg-default", &b);
}

/// Installs, in the process about to exec tally, a seccomp filter that fails clone3 with
/// ENOSYS, as the default profiles of Docker and containerd do: a runtime run inside such a
/// container has only clone(2).
fn refuse_clone3(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    let stmt = |code: u16, k: u32| libc::sock_filter { code, jt: 0, jf: 0, k };
    let jump = |k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    };
    let load = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    let ret = (libc::BPF_RET | libc::BPF_K) as u16;
    let filter = [
        stmt(load, 4), // seccomp_data.arch
        jump(AUDIT_ARCH_X86_64, 0, 3),
        stmt(load, 0), // seccomp_data.nr
        jump(libc::SYS_clone3 as u32, 0, 1),
        stmt(ret, libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
        stmt(ret, libc::SECCOMP_RET_ALLOW),
    ];
    // SAFETY: between fork and exec only prctl, which is async-signal-safe; the program and
    // its header live in this closure, which the child's copy keeps until exec.
    unsafe {
        cmd.pre_exec(move || {
            let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr() as *mut _ };
            if libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog as *const libc::sock_fprog) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[test]
fn without_clone3_the_init_and_an_exec_still_join_every_hierarchy() {
    let t = Tally::new();
    let id = "cg-noclone3";
    let mut b = Bundle::busybox(id);
    b.sh("exec sleep 1000");
    let mut create = t.command();
    create.args(["create", "--bundle", b.dir.to_str().unwrap(), id]);
    create.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null());
    refuse_clone3(&mut create);
    assert!(create.status().unwrap().success(), "create under a filter refusing clone3");
    let pid = t.state(id)["pid"].as_i64().unwrap();
    let dirs = cgroup_dirs_named(id);
    assert!(!dirs.is_empty());
    for d in &dirs {
        assert_eq!(procs(d), [pid], "{}", d.display());
    }
    t.run(&["start", id]).ok();
    let mut exec = t.command();
    exec.args(["exec", "-d", id, "sleep", "1000"]);
    exec.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null());
    refuse_clone3(&mut exec);
    assert!(exec.status().unwrap().success(), "exec under a filter refusing clone3");
    for d in &dirs {
        assert_eq!(procs(d).len(), 2, "the init and the exec'd sleep in {}", d.display());
    }
    t.run(&["delete", "--force", id]).ok();
    assert!(cgroup_dirs_named(id).is_empty());
    t.assert_clean(id, &b);
}

#[test]
fn the_container_sees_its_own_cgroup_at_sys_fs_cgroup() {
    let t = Tally::new();
    let mut b = Bundle::busybox("cg-inside");
    let file = match cgroup_host() {
        CgroupHost::V1 => "/sys/fs/cgroup/pids/cgroup.procs",
        CgroupHost::V2 => "/sys/fs/cgroup/cgroup.procs",
    };
    // The shell reads the file itself (no child process): only the init is in the cgroup.
    b.sh(&format!(
        "while read p; do echo $p; done < {file}; ls /sys/fs/cgroup/pids 2>/dev/null | grep -c '^cg-inside$'"
    ));
    let r = t.run_container("cg-inside", &b);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[0], "1", "stdout: {}\nstderr: {}", r.stdout, r.stderr);
    assert_eq!(lines[1], "0", "the host's tree above the container is not visible");
    t.assert_clean("cg-inside", &b);
}

#[test]
fn a_custom_cgroups_path_is_used_and_its_leaf_removed_on_delete() {
    let t = Tally::new();
    let mut b = Bundle::busybox("cg-custom");
    let parent = unique("tally-it-custom");
    let path = format!("/{parent}/cg-custom");
    b.edit(|c| {
        c["linux"]["cgroupsPath"] = json!(path);
        c["linux"]["resources"]["pids"] = json!({"limit": 10});
    });
    b.sh("exec sleep 1000");
    t.create("cg-custom", &b).ok();
    let pid = t.state("cg-custom")["pid"].as_i64().unwrap();
    let dir = cgroup_dir(&path);
    assert_eq!(procs(&dir), [pid]);
    // A level made for the path hands the controllers down (v2), a new v1 cpuset level has
    // its parent's CPUs: the limit lands in the leaf, and the init is in every hierarchy.
    assert_eq!(fs::read_to_string(dir.join("pids.max")).unwrap().trim(), "10");
    for d in cgroup_dirs_named("cg-custom") {
        assert_eq!(procs(&d), [pid], "{}", d.display());
    }
    assert!(!cgroup_dir("/cg-custom").exists(), "the default path is not used");
    t.run(&["start", "cg-custom"]).ok();
    t.run(&["delete", "--force", "cg-custom"]).ok();
    assert!(!dir.exists(), "the leaf is removed");
    t.assert_clean("cg-custom", &b);
    // The parent the config named belongs to whoever named it; tidy up after the test.
    for d in cgroup_dirs_named(&parent) {
        let _ = fs::remove_dir(d);
    }
}

#[test]
fn delete_force_kills_every_process_in_the_cgroup_and_removes_it() {
    let t = Tally::new();
    let mut b = Bundle::busybox("cg-force");
    b.sh("sleep 1000 & sleep 1000 & touch /tmp/ready; wait");
    t.create("cg-force", &b).ok();
    t.run(&["start", "cg-force"]).ok();
    integration_tests::wait_for_file(&b.rootfs().join("tmp/ready"));
    let dir = cgroup_dir("/cg-force");
    let pids = procs(&dir);
    // `touch` may not have exited yet when its file appears.
    assert!(pids.len() >= 3, "sh and two sleeps: {pids:?}");
    t.run(&["delete", "--force", "cg-force"]).ok();
    assert!(!dir.exists());
    for p in pids {
        let stat = fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        assert!(stat.is_empty() || stat.contains(") Z "), "process {p} survived: {stat}");
    }
    t.assert_clean("cg-force", &b);
}

/// `podman run --device /dev/fuse:/dev/fuse:r`: the node comes from `linux.devices` and the
/// access from the config's own rule, which is applied as given (v1 devices.list, the v2 eBPF
/// filter): reading gets through to the driver, writing is refused by the cgroup. A FIFO node
/// needs no rule, and a `p` rule is refused as runc refuses it.
#[test]
fn device_rules_grant_exactly_the_configured_access() {
    let t = Tally::new();
    let id = unique("cg-devaccess");
    let mut b = Bundle::busybox(&id);
    b.edit(|c| {
        c["linux"]["devices"] = json!([
            {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 438},
            {"path": "/dev/myfifo", "type": "p", "major": 0, "minor": 0, "fileMode": 438}
        ]);
        c["linux"]["resources"]["devices"] = json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 10, "minor": 229, "access": "r"}
        ]);
        c["process"]["args"] = json!(["sleep", "300"]);
    });
    t.run_to_files(&["run", "-d", "--bundle", b.dir.to_str().unwrap(), &id]).ok();
    if cgroup_host() == CgroupHost::V1 {
        let list = fs::read_to_string(Path::new("/sys/fs/cgroup/devices").join(&id).join("devices.list")).unwrap();
        let rules: Vec<&str> = list.lines().collect();
        assert!(rules.contains(&"c 10:229 r"), "{list}");
        assert!(!rules.iter().any(|r| r.starts_with("c 10:229 ") && *r != "c 10:229 r"), "{list}");
        assert!(!rules.iter().any(|r| r.starts_with("p ")), "{list}");
    }
    let probe = "echo x > /dev/fuse; head -c 1 /dev/fuse; stat -c %F /dev/myfifo";
    let r = t.run(&["exec", &id, "sh", "-c", probe]);
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert!(lines[0].contains("/dev/fuse") && lines[0].contains("Operation not permitted"), "write: {}", r.stderr);
    assert!(lines.len() < 2 || !lines[1].contains("Operation not permitted"), "read is allowed: {}", r.stderr);
    assert_eq!(r.stdout.trim(), "fifo", "stderr: {}", r.stderr);
    t.run(&["delete", "--force", &id]).ok();
    t.assert_clean(&id, &b);

    b.edit(|c| c["linux"]["resources"]["devices"][1]["type"] = json!("p"));
    t.create(&id, &b).fails_with(&["linux.resources.devices[1].type", "\"p\""]);
    t.assert_clean(&id, &b);
}

/// What Podman sends after discarding `--memory` on a host without the memory controller.
#[test]
fn an_empty_memory_section_needs_no_memory_controller() {
    let t = Tally::new();
    let id = unique("cg-memempty");
    let mut b = Bundle::busybox(&id);
    b.edit(|c| c["linux"]["resources"]["memory"] = json!({}));
    b.sh("echo ran");
    assert_eq!(t.run_container(&id, &b).ok().stdout, "ran\n");
    t.assert_clean(&id, &b);
}

/// Hybrid hosts: like runc, the container also gets a cgroup in `name=systemd` (systemd in a
/// container needs it, and sees it mounted at /sys/fs/cgroup/systemd) and in the unified
/// cgroup2 hierarchy; delete removes both.
#[test]
fn on_a_hybrid_host_the_container_joins_name_systemd_and_the_unified_hierarchy() {
    let systemd = Path::new("/sys/fs/cgroup/systemd");
    let unified = Path::new("/sys/fs/cgroup/unified");
    if cgroup_host() != CgroupHost::V1 || !systemd.join("cgroup.procs").exists() {
        return integration_tests::skip("hybrid name=systemd", "not a hybrid host with a name=systemd hierarchy");
    }
    let t = Tally::new();
    let id = unique("cg-hybrid");
    let mut b = Bundle::busybox(&id);
    b.edit(|c| c["process"]["args"] = json!(["sleep", "300"]));
    let handed_down = || fs::read_to_string(unified.join("cgroup.subtree_control")).ok();
    let before = handed_down();
    t.run_to_files(&["run", "-d", "--bundle", b.dir.to_str().unwrap(), &id]).ok();
    // The unified tree is the host's: joining it enables no controller there (the host's
    // root hands down what it did before), though its cgroup.controllers may offer some.
    assert_eq!(handed_down(), before, "the unified root's cgroup.subtree_control is unchanged");
    let pid = t.state(&id)["pid"].as_i64().unwrap();
    let own = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let path = format!("/{id}");
    assert!(own.lines().any(|l| l.ends_with(&format!(":name=systemd:{path}"))), "{own}");
    let mut hierarchies = vec![systemd];
    if unified.join("cgroup.procs").exists() {
        assert!(own.lines().any(|l| l == format!("0::{path}")), "{own}");
        hierarchies.push(unified);
    }
    for h in &hierarchies {
        let dir = h.join(path.trim_start_matches('/'));
        assert_eq!(procs(&dir), [pid], "{}", dir.display());
    }
    let r = t
        .run(&["exec", &id, "sh", "-c", "cat /sys/fs/cgroup/systemd/cgroup.procs; grep -c systemd /proc/self/cgroup"])
        .ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(lines.contains(&"1"), "the init is in the container's name=systemd cgroup: {}", r.stdout);
    t.run(&["delete", "--force", &id]).ok();
    for h in &hierarchies {
        assert!(!h.join(path.trim_start_matches('/')).exists(), "{} left behind", h.display());
    }
    t.assert_clean(&id, &b);
}

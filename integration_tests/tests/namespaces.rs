//! Namespaces: the container gets its own pid, uts, net, ipc, mount, cgroup (and, where the
//! kernel has it, time) namespaces, a user namespace with the configured id maps, and joins
//! an existing namespace when the config gives its path.

use std::fs;
use std::path::Path;

use integration_tests::{skip, Bundle, Tally};
use serde_json::json;

/// The host's (this test process's) namespace of `kind`, as `readlink /proc/self/ns/X`.
fn host_ns(kind: &str) -> String {
    fs::read_link(format!("/proc/self/ns/{kind}")).unwrap().to_string_lossy().into_owned()
}

#[test]
fn the_container_process_is_pid_1_in_its_own_pid_namespace() {
    let t = Tally::new();
    let mut b = Bundle::busybox("ns-pid");
    // The shell expands the glob itself: the only process it can see is its own.
    b.sh("echo pid=$$; echo /proc/[0-9]*; readlink /proc/self/ns/pid");
    let r = t.run_container("ns-pid", &b).ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[0], "pid=1", "{}", r.stdout);
    assert_eq!(lines[1], "/proc/1", "no host process is visible: {}", r.stdout);
    assert_ne!(lines[2], host_ns("pid"));
    t.assert_clean("ns-pid", &b);
}

#[test]
fn hostname_and_domainname_come_from_the_config() {
    let t = Tally::new();
    let mut b = Bundle::busybox("ns-uts");
    b.edit(|c| {
        c["hostname"] = json!("ns-host-name");
        c["domainname"] = json!("ns.example.org");
    });
    b.sh("hostname; cat /proc/sys/kernel/domainname; readlink /proc/self/ns/uts");
    let r = t.run_container("ns-uts", &b).ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", r.stdout);
    assert_eq!(lines[..2], ["ns-host-name", "ns.example.org"]);
    assert_ne!(lines[2], host_ns("uts"), "a new uts namespace");
    // The host's names are untouched.
    assert_ne!(nix::unistd::gethostname().unwrap().to_string_lossy(), "ns-host-name");
    t.assert_clean("ns-uts", &b);
}

#[test]
fn a_new_network_namespace_has_only_loopback() {
    let t = Tally::new();
    let mut b = Bundle::busybox("ns-net");
    // Each interface is a line "name: counters..."; the two header lines have no colon.
    b.sh("grep : /proc/net/dev; readlink /proc/self/ns/net");
    let r = t.run_container("ns-net", &b).ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", r.stdout);
    assert_eq!(lines[0].split(':').next().unwrap().trim(), "lo", "only lo: {}", r.stdout);
    assert_ne!(lines[1], host_ns("net"));
    t.assert_clean("ns-net", &b);
}

#[test]
fn ipc_uts_mount_cgroup_and_pid_namespaces_differ_from_the_hosts() {
    let t = Tally::new();
    let mut b = Bundle::busybox("ns-all");
    let kinds = ["ipc", "uts", "mnt", "cgroup", "pid", "net"];
    b.sh(&kinds.iter().map(|k| format!("readlink /proc/self/ns/{k}")).collect::<Vec<_>>().join("; "));
    let r = t.run_container("ns-all", &b).ok();
    let inside: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(inside.len(), kinds.len(), "{}", r.stdout);
    for (k, seen) in kinds.iter().zip(&inside) {
        assert!(seen.starts_with(&format!("{k}:[")), "{k}: {seen}");
        assert_ne!(*seen, host_ns(k), "the container shares the host's {k} namespace");
    }
    t.assert_clean("ns-all", &b);
}

#[test]
fn without_a_user_namespace_entry_the_container_shares_the_hosts() {
    let t = Tally::new();
    let mut b = Bundle::busybox("ns-nouser");
    b.sh("readlink /proc/self/ns/user; id -u");
    let r = t.run_container("ns-nouser", &b).ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines, [host_ns("user").as_str(), "0"]);
    t.assert_clean("ns-nouser", &b);
}

#[test]
fn a_user_namespace_maps_container_root_to_the_configured_host_ids() {
    let t = Tally::new();
    let mut b = Bundle::busybox("ns-user");
    // The container's root is host uid 100000: give it the rootfs, as an image unpacked for
    // a user namespace would be.
    chown_recursive(&b.rootfs(), 100000, 100000);
    b.edit(|c| {
        c["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "user"}));
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    });
    b.sh("touch /tmp/written-as-root");
    t.create("ns-user", &b).ok();
    // Seen from the host, the container's init runs as the mapped ids.
    let pid = t.state("ns-user")["pid"].as_i64().unwrap();
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(uid_line.split_whitespace().nth(1), Some("100000"), "{uid_line}");
    t.run(&["start", "ns-user"]).ok();
    t.wait_status("ns-user", "stopped");
    t.run(&["delete", "ns-user"]).ok();
    // A file the container's root made is owned by host uid 100000.
    let md = fs::metadata(b.rootfs().join("tmp/written-as-root")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&md), 100000);
    t.assert_clean("ns-user", &b);
}

#[test]
fn a_user_namespace_shows_uid_0_and_the_maps_inside() {
    let t = Tally::new();
    let mut b = Bundle::busybox("ns-user-out");
    chown_recursive(&b.rootfs(), 100000, 100000);
    b.edit(|c| {
        c["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "user"}));
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    });
    b.sh("id -u; id -g; cat /proc/self/uid_map; cat /proc/self/gid_map; readlink /proc/self/ns/user; hostname");
    let r = t.run_container("ns-user-out", &b).ok();
    let lines: Vec<String> = r.stdout.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
    assert_eq!(lines.len(), 6, "{}", r.stdout);
    assert_eq!(lines[0], "0");
    assert_eq!(lines[1], "0");
    assert_eq!(lines[2], "0 100000 65536");
    assert_eq!(lines[3], "0 100000 65536");
    assert_ne!(lines[4], host_ns("user"));
    assert_eq!(lines[5], "tally", "the other namespaces still work inside the user namespace");
    t.assert_clean("ns-user-out", &b);
}

fn chown_recursive(dir: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(dir, Some(uid), Some(gid)).unwrap();
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if e.file_type().unwrap().is_dir() {
            chown_recursive(&p, uid, gid);
        } else {
            std::os::unix::fs::lchown(&p, Some(uid), Some(gid)).unwrap();
        }
    }
}

#[test]
fn a_time_namespace_applies_the_configured_offsets() {
    if !Path::new("/proc/self/ns/time").exists() {
        skip("a_time_namespace_applies_the_configured_offsets", "this kernel has no time namespaces");
        return;
    }
    let t = Tally::new();
    let mut b = Bundle::busybox("ns-time");
    // Ten million seconds (~116 days) of extra boot time: far above this host's uptime.
    b.edit(|c| {
        c["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "time"}));
        c["linux"]["timeOffsets"] = json!({"boottime": {"secs": 10_000_000, "nanosecs": 0}});
    });
    b.sh("readlink /proc/self/ns/time; cat /proc/uptime");
    let r = t.run_container("ns-time", &b).ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", r.stdout);
    assert!(lines[0].starts_with("time:["), "{}", r.stdout);
    assert_ne!(lines[0], host_ns("time"));
    let uptime: f64 = lines[1].split_whitespace().next().unwrap().parse().unwrap();
    let host_uptime: f64 =
        fs::read_to_string("/proc/uptime").unwrap().split_whitespace().next().unwrap().parse().unwrap();
    assert!(uptime >= 10_000_000.0 + host_uptime - 5.0, "uptime inside {uptime}, host {host_uptime}");
    t.assert_clean("ns-time", &b);
}

#[test]
fn a_namespace_given_by_path_is_joined() {
    let t = Tally::new();
    let mut a = Bundle::busybox("ns-join-a");
    a.edit(|c| c["hostname"] = json!("aaa"));
    a.sh("exec sleep 1000");
    t.create("ns-join-a", &a).ok();
    let pid = t.state("ns-join-a")["pid"].as_i64().unwrap();
    let a_uts = fs::read_link(format!("/proc/{pid}/ns/uts")).unwrap().to_string_lossy().into_owned();
    let a_net = fs::read_link(format!("/proc/{pid}/ns/net")).unwrap().to_string_lossy().into_owned();

    let mut b = Bundle::busybox("ns-join-b");
    b.edit(|c| {
        c.as_object_mut().unwrap().remove("hostname");
        for ns in c["linux"]["namespaces"].as_array_mut().unwrap() {
            if ns["type"] == "uts" || ns["type"] == "network" {
                ns["path"] = json!(format!("/proc/{pid}/ns/{}", if ns["type"] == "uts" { "uts" } else { "net" }));
            }
        }
    });
    b.sh("hostname; readlink /proc/self/ns/uts; readlink /proc/self/ns/net; echo pid=$$");
    let r = t.run_container("ns-join-b", &b).ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines, ["aaa", a_uts.as_str(), a_net.as_str(), "pid=1"], "{}", r.stderr);
    t.assert_clean("ns-join-b", &b);

    assert_eq!(t.status("ns-join-a"), "created", "the joined container is unaffected");
    t.run(&["delete", "ns-join-a"]).ok();
    t.assert_clean("ns-join-a", &a);
}

#[test]
fn a_cgroup_namespace_shows_the_container_its_cgroup_as_the_root() {
    let t = Tally::new();
    let mut b = Bundle::busybox("ns-cgroup");
    b.sh("cat /proc/self/cgroup");
    let r = t.run_container("ns-cgroup", &b).ok();
    assert!(!r.stdout.trim().is_empty());
    for line in r.stdout.lines() {
        let path = line.splitn(3, ':').nth(2).unwrap();
        assert_eq!(path, "/", "every hierarchy is rooted at the container's cgroup: {}", r.stdout);
    }
    // Without one, the same file shows where the host put it.
    let mut b2 = Bundle::busybox("ns-nocgroup");
    b2.edit(|c| c["linux"]["namespaces"].as_array_mut().unwrap().retain(|ns| ns["type"] != "cgroup"));
    b2.sh("cat /proc/self/cgroup");
    let r2 = t.run_container("ns-nocgroup", &b2).ok();
    assert!(r2.stdout.lines().any(|l| l.ends_with(":/ns-nocgroup")), "{}", r2.stdout);
    t.assert_clean("ns-cgroup", &b);
    t.assert_clean("ns-nocgroup", &b2);
}

fn mount_count() -> usize {
    fs::read_to_string("/proc/self/mountinfo").unwrap().lines().count()
}

/// runtime-tools' `linux_ns_itype`: without a `mount` entry the container shares the caller's
/// mount namespace. tally then mounts nothing (a mount would land in the caller's namespace
/// and outlive the container), says what it does not apply, and chroots into root.path; an
/// exec lands in the same root.
#[test]
fn without_a_mount_namespace_the_container_shares_the_callers_and_is_chrooted_into_its_root() {
    let t = Tally::new();
    let id = "ns-nomnt";
    let mut b = Bundle::busybox(id);
    fs::write(b.rootfs().join("marker"), "in the rootfs\n").unwrap();
    b.edit(|c| {
        let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != "mount");
        c["process"]["args"] = json!(["sleep", "300"]);
    });
    let before = mount_count();
    let r = t.run_to_files(&["run", "-d", "--bundle", b.dir.to_str().unwrap(), id]).ok();
    assert!(r.stderr.contains("no mount namespace") && r.stderr.contains("mounts, linux.devices"), "{}", r.stderr);
    let pid = t.state(id)["pid"].as_i64().unwrap();
    assert_eq!(fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap().to_string_lossy(), host_ns("mnt"));
    assert_eq!(fs::read_link(format!("/proc/{pid}/root")).unwrap(), fs::canonicalize(b.rootfs()).unwrap());
    assert_eq!(mount_count(), before, "nothing was mounted in the caller's namespace");
    let r = t.run(&["exec", id, "cat", "/marker"]).ok();
    assert_eq!(r.stdout, "in the rootfs\n");
    t.run(&["delete", "--force", id]).ok();
    assert_eq!(mount_count(), before);
    t.assert_clean(id, &b);
}

//! OpenVZ's first-level disk quota as project quotas: `org.tally.beancounter.diskspace` and
//! `diskinodes` limit what the container's rootfs tree may hold; writes past the hard limit
//! fail with EDQUOT inside; `beancounters` has the rows; `delete` removes the limits; a
//! filesystem without project quotas is an error naming the annotation, with nothing left.
//! The enforcing tests need the VM's scratch disk (ext4 with project quotas, mounted at
//! $TALLY_VM_DISK_MNT); the host's kernel has no quota support at all.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use integration_tests::{skip, Bundle, Tally};
use serde_json::{json, Value};
use tally_beancounters::diskquota;

/// The filesystem with project quotas, or `None` (and a skip line) when there is none here.
fn quota_fs(test: &str) -> Option<PathBuf> {
    match std::env::var_os("TALLY_VM_DISK_MNT") {
        Some(m) => Some(PathBuf::from(m)),
        None => {
            skip(
                test,
                "no filesystem with project quotas here (the host kernel has no CONFIG_QUOTA; the VM's disk has)",
            );
            None
        }
    }
}

fn row(t: &Tally, id: &str, resource: &str) -> Value {
    let r = t.run(&["beancounters", "--format", "json", "--resources", resource, id]).ok();
    let all: Value = serde_json::from_str(&r.stdout).unwrap();
    all[0]["resources"][0].clone()
}

/// The project create allocated, from the record in the container's state directory.
fn project_of(t: &Tally, id: &str) -> u32 {
    let rec: Value = serde_json::from_slice(&fs::read(t.root.join(id).join("disk-quota.json")).unwrap()).unwrap();
    rec["project"].as_u64().unwrap() as u32
}

#[track_caller]
fn wait_for_marker(dir: &Path, prefix: &str) -> String {
    let end = Instant::now() + Duration::from_secs(60);
    while Instant::now() < end {
        if let Some(name) = fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| n.starts_with(prefix))
        {
            return name[prefix.len()..].to_string();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no {prefix}* marker in {}", dir.display());
}

#[test]
fn a_diskspace_hard_limit_stops_a_writer_with_edquot_at_the_limit() {
    let Some(mnt) = quota_fs("a_diskspace_hard_limit_stops_a_writer_with_edquot_at_the_limit") else { return };
    let t = Tally::new();
    let id = "dq-space";
    let mut b = Bundle::busybox_in(&mnt, id);
    b.edit(|c| c["annotations"] = json!({"org.tally.beancounter.diskspace": "8M:10M"}));
    // The markers are empty files: they need an inode, not a block, so they can still be made
    // once the blocks are exhausted.
    // The rc marker, which the test waits for, is made last: made first, the test could look
    // for the EDQUOT marker before grep had run.
    b.sh("dd if=/dev/zero of=/big bs=64k count=400 2>/tmp/dd.err; rc=$?; \
          grep -q 'quota exceeded' /tmp/dd.err && touch /tmp/edquot; touch /tmp/rc-$rc; exec sleep 300");
    t.create(id, &b).ok();
    let project = project_of(&t, id);
    assert_eq!(diskquota::project_of(&b.rootfs().join("bin/busybox")).unwrap(), project, "the tree is tagged");
    let before = row(&t, id, "diskspace");
    assert_eq!((before["barrier"].as_u64(), before["limit"].as_u64()), (Some(8192), Some(10240)), "{before}");
    let start = before["held"].as_u64().unwrap();
    assert!(start >= 1024, "busybox itself is charged: {before}");
    t.run(&["start", id]).ok();
    let rc = wait_for_marker(&b.rootfs().join("tmp"), "rc-");
    assert_ne!(rc, "0", "dd must fail at the limit");
    let big = fs::metadata(b.rootfs().join("big")).unwrap().len();
    let r = row(&t, id, "diskspace");
    let held = r["held"].as_u64().unwrap();
    eprintln!("diskspace: {start} KiB before, dd wrote {} KiB, held {held} KiB of 10240", big / 1024);
    assert!((10240 - 256..=10240).contains(&held), "held stops at the hard limit: {r}");
    assert!(big / 1024 + start >= 10240 - 256, "dd wrote up to the limit: {big} bytes");
    // dd's stderr said EDQUOT; writing /tmp/dd.err itself may have failed for the same reason.
    let dd_err = fs::read_to_string(b.rootfs().join("tmp/dd.err")).unwrap_or_default();
    assert!(b.rootfs().join("tmp/edquot").exists() || dd_err.is_empty(), "dd: {dd_err}");
    assert_eq!(r["maxheld"].as_u64(), Some(held));
    assert!(r["failcnt"].is_null(), "the kernel counts no refusals: {r}");
    let rootfs = b.rootfs();
    t.run(&["delete", "--force", id]).ok();
    let u = diskquota::usage(&rootfs, project).unwrap();
    assert_eq!(u.limits, diskquota::Limits::default(), "delete removes the limits");
    assert!(u.space_bytes > 0, "and leaves the files");
    assert!(fs::read_dir(t.root.join(".projects")).unwrap().next().is_none(), "the id is free again");
    t.assert_clean(id, &b);
}

#[test]
fn diskinodes_100_stops_the_101st_inode() {
    let Some(mnt) = quota_fs("diskinodes_100_stops_the_101st_inode") else { return };
    let t = Tally::new();
    let id = "dq-inodes";
    let mut b = Bundle::busybox_in(&mnt, id);
    b.edit(|c| c["annotations"] = json!({"org.tally.beancounter.diskinodes": "100"}));
    // Make files until refused; then free one inode for the marker that says how many.
    b.sh("i=0; while touch /tmp/f$i 2>/dev/null; do i=$((i+1)); done; \
          touch /tmp/x 2>/tmp/why || true; rm /tmp/f0; touch /tmp/made-$i; exec sleep 300");
    t.create(id, &b).ok();
    let before = row(&t, id, "diskinodes");
    let start = before["held"].as_u64().unwrap();
    assert_eq!(before["limit"].as_u64(), Some(100), "{before}");
    t.run(&["start", id]).ok();
    let made: u64 = wait_for_marker(&b.rootfs().join("tmp"), "made-").parse().unwrap();
    eprintln!("diskinodes: {start} charged at create, the container made {made} more");
    assert_eq!(start + made, 100, "exactly up to the limit: {start} + {made}");
    let r = row(&t, id, "diskinodes");
    assert_eq!(r["held"].as_u64(), Some(100), "{r}");
    t.run(&["delete", "--force", id]).ok();
    t.assert_clean(id, &b);
}

#[test]
fn a_disk_quota_on_a_filesystem_without_project_quotas_is_refused_by_name() {
    let t = Tally::new();
    let id = "dq-nofs";
    // The default bundle place: the host's /tmp (a kernel without quotas) or the VM's tmpfs.
    let mut b = Bundle::busybox(id);
    b.edit(|c| c["annotations"] = json!({"org.tally.beancounter.diskspace": "10M"}));
    let r = t.create(id, &b).fails_with(&["org.tally.beancounter.diskspace", "no project quotas"]);
    assert!(r.stderr.contains(b.rootfs().to_str().unwrap()), "names the rootfs: {}", r.stderr);
    t.assert_clean(id, &b);
    let registry = t.root.join(".projects");
    assert!(!registry.exists() || fs::read_dir(&registry).unwrap().next().is_none(), "no project id kept");
    // And without a quota asked for, nothing is touched: the same bundle creates.
    b.edit(|c| c["annotations"] = json!({}));
    t.create(id, &b).ok();
    assert!(!t.root.join(id).join("disk-quota.json").exists());
    t.run(&["delete", "--force", id]).ok();
    t.assert_clean(id, &b);
}

#[test]
fn malformed_disk_quota_values_are_errors_naming_the_annotation() {
    let t = Tally::new();
    for (i, (key, value, why)) in [
        ("diskspace", "lots", "not a number"),
        ("diskspace", "10M:5M", "above the limit"),
        ("diskinodes", "0", "limit of 0"),
        ("diskinodes", "1K", "not a number"),
    ]
    .iter()
    .enumerate()
    {
        let id = format!("dq-bad{i}");
        let mut b = Bundle::busybox(&id);
        b.edit(|c| c["annotations"] = json!({format!("org.tally.beancounter.{key}"): value}));
        t.create(&id, &b).fails_with(&[&format!("org.tally.beancounter.{key}"), why]);
        t.assert_clean(&id, &b);
    }
}

/// The second level: with a user namespace, a container's uid U is host uid hostID + U, so the
/// host's user quota for that uid is the quota of the container's user U.
#[test]
fn a_host_user_quota_on_the_mapped_uid_is_a_quota_of_the_container_user() {
    let Some(mnt) = quota_fs("a_host_user_quota_on_the_mapped_uid_is_a_quota_of_the_container_user") else { return };
    let t = Tally::new();
    let id = "dq-user";
    let mut b = Bundle::busybox_in(&mnt, id);
    let tmp = b.rootfs().join("tmp");
    fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();
    b.edit(|c| {
        c["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "user"}));
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
        c["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    });
    // 4 MiB against a 1 MiB quota for host uid 201000.
    b.sh("dd if=/dev/zero of=/tmp/u bs=64k count=64 2>/dev/null; touch /tmp/rc-$?");
    let host_uid = 201000;
    let limit = diskquota::Limits { blocks_soft: Some(1024), blocks_hard: Some(1024), ..Default::default() };
    diskquota::set_user_limits(&mnt, host_uid, &limit).unwrap();
    let r = t.run_container(id, &b);
    let rc = wait_for_marker(&tmp, "rc-");
    let file = fs::metadata(tmp.join("u")).unwrap();
    let used = diskquota::user_usage(&mnt, host_uid).unwrap();
    diskquota::set_user_limits(&mnt, host_uid, &diskquota::Limits::default()).unwrap();
    eprintln!("container uid 1000 (host {host_uid}) wrote {} KiB of a 1024 KiB user quota", file.len() / 1024);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_ne!(rc, "0", "dd stops at the user quota");
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&file), host_uid, "the file is the mapped uid's");
    assert!(file.len() <= 1024 * 1024 && file.len() >= 900 * 1024, "{} bytes", file.len());
    assert!(used.space_bytes <= 1024 * 1024, "{used:?}");
    t.assert_clean(id, &b);
}

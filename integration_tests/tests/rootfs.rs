//! The root filesystem: mounts in config order with their options, bind mounts, the standard
//! kernel filesystems, propagation, a read-only root, masked and read-only paths, device
//! nodes and /dev symlinks, `--no-pivot`, and mount destinations that cannot escape the rootfs
//! through symlinks planted in it.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use integration_tests::{cgroup_host, unique, Bundle, CgroupHost, Tally};
use serde_json::{json, Value};

fn add_mount(b: &mut Bundle, m: Value) {
    b.edit(|c| c["mounts"].as_array_mut().unwrap().push(m));
}

/// `/proc/mounts` lines as (mount point, type, options), in order.
fn mounts_of(text: &str) -> Vec<(String, String, String)> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4).then(|| (f[1].to_string(), f[2].to_string(), f[3].to_string()))
        })
        .collect()
}

/// A host directory (outside the rootfs) for bind mounts, removed with the bundle.
fn host_dir(b: &Bundle, name: &str) -> PathBuf {
    let d = b.dir.join(name);
    fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn mounts_are_made_in_config_order() {
    let t = Tally::new();
    let mut b = Bundle::busybox("rfs-order");
    add_mount(&mut b, json!({"destination": "/mnt", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]}));
    add_mount(&mut b, json!({"destination": "/mnt/inner", "type": "tmpfs", "source": "tmpfs", "options": ["size=2m"]}));
    b.sh("cat /proc/mounts; touch /mnt/inner/f && echo inner-writable");
    let r = t.run_container("rfs-order", &b).ok();
    let m = mounts_of(&r.stdout);
    let pos = |p: &str| m.iter().position(|(mp, ty, _)| mp == p && ty == "tmpfs");
    let (outer, inner) = (pos("/mnt").expect(&r.stdout), pos("/mnt/inner").expect(&r.stdout));
    assert!(outer < inner, "/mnt is mounted before /mnt/inner: {}", r.stdout);
    assert!(r.stdout.contains("inner-writable"));
    // The inner mount point was made on the outer tmpfs, not in the image.
    assert!(b.rootfs().join("mnt").is_dir() && !b.rootfs().join("mnt/inner").exists());
    t.assert_clean("rfs-order", &b);
}

#[test]
fn tmpfs_options_reach_the_kernel() {
    let t = Tally::new();
    let mut b = Bundle::busybox("rfs-tmpfs");
    add_mount(
        &mut b,
        json!({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "noexec", "size=1m", "mode=1750"]}),
    );
    b.sh("grep ' /scratch ' /proc/mounts; stat -c %a /scratch");
    let r = t.run_container("rfs-tmpfs", &b).ok();
    let m = mounts_of(&r.stdout);
    let (_, ty, opts) = &m[0];
    assert_eq!(ty, "tmpfs");
    let opts: Vec<&str> = opts.split(',').collect();
    for o in ["nosuid", "nodev", "noexec", "size=1024k", "mode=1750"] {
        assert!(opts.contains(&o), "{o} missing from {opts:?}");
    }
    assert_eq!(r.stdout.lines().nth(1), Some("1750"));
    t.assert_clean("rfs-tmpfs", &b);
}

#[test]
fn a_bind_mount_shows_the_host_directory() {
    let t = Tally::new();
    let mut b = Bundle::busybox("rfs-bind");
    let src = host_dir(&b, "shared");
    fs::write(src.join("hello.txt"), "from the host\n").unwrap();
    add_mount(&mut b, json!({"destination": "/data", "type": "bind", "source": src, "options": ["bind"]}));
    b.sh("cat /data/hello.txt; echo from the container > /data/back.txt");
    let r = t.run_container("rfs-bind", &b).ok();
    assert_eq!(r.stdout, "from the host\n");
    assert_eq!(fs::read_to_string(src.join("back.txt")).unwrap(), "from the container\n", "a rw bind writes through");
    t.assert_clean("rfs-bind", &b);
}

#[test]
fn a_relative_bind_source_is_taken_from_the_bundle() {
    let t = Tally::new();
    let mut b = Bundle::busybox("rfs-bind-rel");
    let src = host_dir(&b, "relsrc");
    fs::write(src.join("f"), "relative\n").unwrap();
    add_mount(&mut b, json!({"destination": "/data", "type": "bind", "source": "relsrc", "options": ["rbind"]}));
    b.sh("cat /data/f");
    let r = t.run_container("rfs-bind-rel", &b).ok();
    assert_eq!(r.stdout, "relative\n");
    t.assert_clean("rfs-bind-rel", &b);
}

#[test]
fn a_read_only_bind_mount_refuses_writes() {
    let t = Tally::new();
    let mut b = Bundle::busybox("rfs-bind-ro");
    let src = host_dir(&b, "ro-src");
    fs::write(src.join("f"), "readable\n").unwrap();
    add_mount(&mut b, json!({"destination": "/data", "type": "bind", "source": src, "options": ["bind", "ro"]}));
    b.sh("cat /data/f; touch /data/new; echo rc=$?; grep ' /data ' /proc/mounts");
    let r = t.run_container("rfs-bind-ro", &b).ok();
    assert!(r.stdout.starts_with("readable\nrc=1\n"), "{}", r.stdout);
    assert!(r.stderr.contains("Read-only file system"), "{}", r.stderr);
    let (_, _, opts) = &mounts_of(r.stdout.lines().last().unwrap())[0];
    assert!(opts.split(',').any(|o| o == "ro"), "{opts}");
    assert!(!src.join("new").exists());
    t.assert_clean("rfs-bind-ro", &b);
}

/// A tmpfs mounted under a host directory, for the bind/rbind difference; unmounted on drop.
struct SubMount(PathBuf);

impl SubMount {
    fn new(dir: &Path) -> SubMount {
        fs::create_dir_all(dir).unwrap();
        nix::mount::mount(Some("tmpfs"), dir, Some("tmpfs"), nix::mount::MsFlags::empty(), Some("size=1m")).unwrap();
        fs::write(dir.join("in-submount"), "sub\n").unwrap();
        SubMount(dir.into())
    }
}

impl Drop for SubMount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[test]
fn rbind_carries_submounts_and_bind_does_not() {
    let t = Tally::new();
    let mut b = Bundle::busybox("rfs-rbind");
    let src = host_dir(&b, "tree");
    let sub = SubMount::new(&src.join("sub"));
    add_mount(&mut b, json!({"destination": "/rec", "type": "bind", "source": src, "options": ["rbind"]}));
    add_mount(&mut b, json!({"destination": "/flat", "type": "bind", "source": src, "options": ["bind"]}));
    b.sh("cat /rec/sub/in-submount; ls -A /flat/sub | wc -l");
    let r = t.run_container("rfs-rbind", &b).ok();
    assert_eq!(r.stdout, "sub\n0\n", "rbind shows the submount, bind the empty directory under it");
    drop(sub);
    t.assert_clean("rfs-rbind", &b);
}

#[test]
fn proc_sysfs_devpts_mqueue_and_cgroup_are_mounted() {
    let t = Tally::new();
    let mut b = Bundle::busybox("rfs-kernfs");
    b.sh("cat /proc/mounts; ls /sys/kernel >/dev/null && echo sys-ok; ls /sys/fs/cgroup");
    let r = t.run_container("rfs-kernfs", &b).ok();
    let m = mounts_of(&r.stdout);
    let ty = |p: &str| {
        m.iter()
            .find(|(mp, _, _)| mp == p)
            .map(|(_, t, o)| (t.clone(), o.clone()))
            .unwrap_or_else(|| panic!("{p} not mounted: {}", r.stdout))
    };
    assert_eq!(ty("/proc").0, "proc");
    let (sys_t, sys_o) = ty("/sys");
    assert_eq!(sys_t, "sysfs");
    assert!(sys_o.starts_with("ro,"), "sysfs is read-only as configured: {sys_o}");
    assert_eq!(ty("/dev").0, "tmpfs");
    assert_eq!(ty("/dev/pts").0, "devpts");
    assert_eq!(ty("/dev/shm").0, "tmpfs");
    assert_eq!(ty("/dev/mqueue").0, "mqueue");
    assert!(r.stdout.contains("sys-ok"));
    match cgroup_host() {
        CgroupHost::V2 => assert_eq!(ty("/sys/fs/cgroup").0, "cgroup2"),
        CgroupHost::V1 => {
            assert_eq!(ty("/sys/fs/cgroup").0, "tmpfs");
            assert_eq!(ty("/sys/fs/cgroup/pids").0, "cgroup", "each host hierarchy is bound in");
            assert!(r.stdout.lines().any(|l| l == "pids"), "{}", r.stdout);
        }
    }
    t.assert_clean("rfs-kernfs", &b);
}

/// The propagation tags of the mount at `/` in a mountinfo text.
fn root_propagation(mountinfo: &str) -> String {
    let line = mountinfo.lines().find(|l| l.split_whitespace().nth(4) == Some("/")).expect("a / mount");
    let (left, _) = line.split_once(" - ").unwrap();
    left.split_whitespace().skip(6).collect::<Vec<_>>().join(" ")
}

#[test]
fn rootfs_propagation_shared_makes_root_a_shared_mount() {
    let t = Tally::new();
    let mut b = Bundle::busybox("rfs-prop-shared");
    b.edit(|c| c["linux"]["rootfsPropagation"] = json!("shared"));
    b.sh("cat /proc/self/mountinfo");
    let r = t.run_container("rfs-prop-shared", &b).ok();
    assert!(root_propagation(&r.stdout).contains("shared:"), "{}", r.stdout);
    t.assert_clean("rfs-prop-shared", &b);
}

#[test]
fn rootfs_propagation_private_makes_root_a_private_mount() {
    let t = Tally::new();
    let mut b = Bundle::busybox("rfs-prop-private");
    b.edit(|c| c["linux"]["rootfsPropagation"] = json!("rprivate"));
    b.sh("cat /proc/self/mountinfo");
    let r = t.run_container("rfs-prop-private", &b).ok();
    assert_eq!(root_propagation(&r.stdout), "", "no shared or master tag: {}", r.stdout);
    t.assert_clean("rfs-prop-private", &b);
}

#[test]
fn an_unknown_rootfs_propagation_is_refused() {
    let t = Tally::new();
    let mut b = Bundle::busybox("rfs-prop-bad");
    b.edit(|c| c["linux"]["rootfsPropagation"] = json!("sideways"));
    t.create("rfs-prop-bad", &b).fails_with(&["linux.rootfsPropagation", "sideways"]);
    t.assert_clean("rfs-prop-bad", &b);
}

#[test]
fn a_read_only_root_refuses_writes_but_dev_and_tmpfs_mounts_stay_writable() {
    let t = Tally::new();
    let mut b = Bundle::busybox("rfs-ro-root");
    b.edit(|c| c["root"]["readonly"] = json!(true));
    add_mount(&mut b, json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]}));
    b.sh("touch /x; echo rc=$?; touch /dev/ok /dev/shm/ok /tmp/ok && echo writable; grep ' / ' /proc/mounts");
    let r = t.run_container("rfs-ro-root", &b).ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[..2], ["rc=1", "writable"], "stdout: {}\nstderr: {}", r.stdout, r.stderr);
    assert!(r.stderr.contains("Read-only file system"), "{}", r.stderr);
    assert!(mounts_of(lines[2])[0].2.split(',').any(|o| o == "ro"), "{}", lines[2]);
    assert!(!b.rootfs().join("x").exists());
    t.assert_clean("rfs-ro-root", &b);
}

#[test]
fn masked_paths_read_as_empty() {
    let t = Tally::new();
    let mut b = Bundle::busybox("rfs-masked");
    fs::create_dir_all(b.rootfs().join("secret-dir")).unwrap();
    fs::write(b.rootfs().join("secret-dir/key"), "hidden\n").unwrap();
    fs::write(b.rootfs().join("etc/secret-file"), "hidden\n").unwrap();
    b.edit(|c| {
        let masked = c["linux"]["maskedPaths"].as_array_mut().unwrap();
        masked.push(json!("/secret-dir"));
        masked.push(json!("/etc/secret-file"));
        masked.push(json!("/does/not/exist"));
    });
    // /proc/kcore, masked by the default config, only exists on some kernels.
    b.sh("grep ' /secret-dir ' /proc/self/mounts >&2; ls -A /secret-dir | wc -l; wc -c < /etc/secret-file; touch /secret-dir/x; echo rc=$?; test -e /proc/kcore && wc -c < /proc/kcore");
    let r = t.run_container("rfs-masked", &b);
    // A directory gets runc's mask: a read-only tmpfs with no options of its own.
    let mask = r.stderr.lines().find(|l| l.contains(" /secret-dir ")).unwrap_or_else(|| panic!("{}", r.stderr));
    let opts: Vec<&str> = mask.split(' ').nth(3).unwrap().split(',').collect();
    assert!(mask.starts_with("tmpfs /secret-dir tmpfs ") && opts.contains(&"ro"), "{mask}");
    assert!(!opts.iter().any(|o| o.starts_with("size=") || o.starts_with("mode=")), "{mask}");
    let mut lines: Vec<&str> = r.stdout.lines().map(str::trim).collect();
    if Path::new("/proc/kcore").exists() {
        assert_eq!(lines.pop(), Some("0"), "/proc/kcore reads empty");
    }
    assert_eq!(lines, ["0", "0", "rc=1"], "stderr: {}", r.stderr);
    assert!(r.stderr.contains("Read-only file system"), "{}", r.stderr);
    // The image itself is untouched.
    assert_eq!(fs::read_to_string(b.rootfs().join("secret-dir/key")).unwrap(), "hidden\n");
    t.assert_clean("rfs-masked", &b);
}

#[test]
fn readonly_paths_refuse_writes_even_by_root() {
    let t = Tally::new();
    let mut b = Bundle::busybox("rfs-ropaths");
    fs::create_dir_all(b.rootfs().join("frozen")).unwrap();
    b.edit(|c| c["linux"]["readonlyPaths"].as_array_mut().unwrap().push(json!("/frozen")));
    b.sh("echo h > /proc/sys/kernel/hostname; echo rc=$?; touch /frozen/x; echo rc=$?; \
         touch /elsewhere && echo rest-writable; hostname");
    let r = t.run_container("rfs-ropaths", &b).ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines, ["rc=1", "rc=1", "rest-writable", "tally"], "stderr: {}", r.stderr);
    assert_eq!(r.stderr.matches("Read-only file system").count(), 2, "{}", r.stderr);
    t.assert_clean("rfs-ropaths", &b);
}

#[test]
fn the_default_devices_exist_with_their_numbers_and_mode_666() {
    let t = Tally::new();
    let mut b = Bundle::busybox("rfs-devices");
    b.sh("stat -c '%n %F %t:%T %a %u:%g' /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty; head -c 4 /dev/zero | wc -c; echo x > /dev/null && echo null-ok");
    let r = t.run_container("rfs-devices", &b).ok();
    let lines: Vec<&str> = r.stdout.lines().map(str::trim).collect();
    let expected = [
        "/dev/null character special file 1:3 666 0:0",
        "/dev/zero character special file 1:5 666 0:0",
        "/dev/full character special file 1:7 666 0:0",
        "/dev/random character special file 1:8 666 0:0",
        "/dev/urandom character special file 1:9 666 0:0",
        "/dev/tty character special file 5:0 666 0:0",
        "4",
        "null-ok",
    ];
    assert_eq!(lines, expected, "stderr: {}", r.stderr);
    t.assert_clean("rfs-devices", &b);
}

#[test]
fn linux_devices_adds_nodes_with_the_configured_mode_and_owner() {
    let t = Tally::new();
    let mut b = Bundle::busybox("rfs-mydev");
    b.edit(|c| {
        c["linux"]["devices"] = json!([
            {"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 0o620, "uid": 0, "gid": 0},
            {"path": "/dev/sub/myzero", "type": "c", "major": 1, "minor": 5, "fileMode": 0o640, "uid": 1000, "gid": 5},
        ])
    });
    b.sh("stat -c '%n %F %t:%T %a %u:%g' /dev/mynull /dev/sub/myzero; echo x > /dev/mynull && echo written");
    let r = t.run_container("rfs-mydev", &b).ok();
    let lines: Vec<&str> = r.stdout.lines().map(str::trim).collect();
    assert_eq!(
        lines,
        [
            "/dev/mynull character special file 1:3 620 0:0",
            "/dev/sub/myzero character special file 1:5 640 1000:5",
            "written"
        ],
        "stderr: {}",
        r.stderr
    );
    t.assert_clean("rfs-mydev", &b);
}

#[test]
fn the_standard_dev_symlinks_exist() {
    let t = Tally::new();
    let mut b = Bundle::busybox("rfs-devlinks");
    b.sh(
        "for l in fd stdin stdout stderr ptmx; do echo $l=$(readlink /dev/$l); done; echo via-dev-stdout > /dev/stdout",
    );
    let r = t.run_container("rfs-devlinks", &b).ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "fd=/proc/self/fd",
            "stdin=/proc/self/fd/0",
            "stdout=/proc/self/fd/1",
            "stderr=/proc/self/fd/2",
            "ptmx=pts/ptmx",
            "via-dev-stdout"
        ]
    );
    t.assert_clean("rfs-devlinks", &b);
}

/// A directory on the host, outside any bundle, that a planted symlink points at.
struct HostTarget(PathBuf);

impl HostTarget {
    fn new() -> HostTarget {
        let d = PathBuf::from("/tmp").join(unique("tally-it-escape"));
        fs::create_dir_all(d.join("existing")).unwrap();
        HostTarget(d)
    }

    fn name(&self) -> String {
        self.0.file_name().unwrap().to_string_lossy().into_owned()
    }

    /// Asserts nothing was created in it and nothing is mounted on or under it.
    #[track_caller]
    fn assert_untouched(&self) {
        let entries: Vec<_> = fs::read_dir(&self.0).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(entries, ["existing"], "something was made through the symlink on the host");
        assert_eq!(fs::read_dir(self.0.join("existing")).unwrap().count(), 0);
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mountinfo.contains(&self.name()), "mounted on the host: {mountinfo}");
    }
}

impl Drop for HostTarget {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Plants `/abs-link` (absolute) and `/rel-link` (`../..`-relative), both aimed at the host
/// directory, and bind-mounts a payload (with a `marker` file) through `/abs-link/existing`.
/// Inside the rootfs both links must resolve as if the rootfs were `/`: to /tmp/<name>, which
/// the image also has. Returns <name>.
fn plant_links(b: &mut Bundle, host: &HostTarget) -> String {
    let name = host.name();
    fs::create_dir_all(b.rootfs().join("tmp").join(&name).join("existing")).unwrap();
    symlink(&host.0, b.rootfs().join("abs-link")).unwrap();
    symlink(format!("../../../../../../../../tmp/{name}"), b.rootfs().join("rel-link")).unwrap();
    let src = host_dir(b, "payload");
    fs::write(src.join("marker"), "payload\n").unwrap();
    add_mount(b, json!({"destination": "/abs-link/existing", "type": "bind", "source": src, "options": ["bind"]}));
    name
}

#[test]
fn a_symlink_in_the_rootfs_cannot_send_a_mount_outside_it() {
    let t = Tally::new();
    let mut b = Bundle::busybox("rfs-symlink");
    let host = HostTarget::new();
    let name = plant_links(&mut b, &host);
    add_mount(&mut b, json!({"destination": "/abs-link/made", "type": "tmpfs", "source": "tmpfs"}));
    add_mount(&mut b, json!({"destination": "/rel-link/made-rel/deeper", "type": "tmpfs", "source": "tmpfs"}));
    b.sh("true");
    t.create("rfs-symlink", &b).ok();
    // The container's mounts are all made by now: none reached the host directory.
    host.assert_untouched();
    t.run(&["start", "rfs-symlink"]).ok();
    t.wait_status("rfs-symlink", "stopped");
    t.run(&["delete", "rfs-symlink"]).ok();
    host.assert_untouched();
    // Everything landed inside the rootfs.
    let inside = b.rootfs().join("tmp").join(&name);
    assert!(inside.join("made").is_dir() && inside.join("made-rel/deeper").is_dir());
    t.assert_clean("rfs-symlink", &b);
}

#[test]
fn the_container_sees_mounts_made_through_planted_symlinks_at_their_resolved_paths() {
    let t = Tally::new();
    let mut b = Bundle::busybox("rfs-symlink-out");
    let host = HostTarget::new();
    let name = plant_links(&mut b, &host);
    add_mount(&mut b, json!({"destination": "/rel-link/made", "type": "tmpfs", "source": "tmpfs"}));
    b.sh(&format!("cat /abs-link/existing/marker; grep ' /tmp/{name}/' /proc/mounts"));
    let r = t.run_container("rfs-symlink-out", &b).ok();
    let (marker, mounts) = r.stdout.split_once('\n').unwrap();
    assert_eq!(marker, "payload", "stderr: {}", r.stderr);
    let points: Vec<String> = mounts_of(mounts).into_iter().map(|(mp, _, _)| mp).collect();
    assert_eq!(points, [format!("/tmp/{name}/existing"), format!("/tmp/{name}/made")]);
    host.assert_untouched();
    t.assert_clean("rfs-symlink-out", &b);
}

#[test]
fn a_dangling_symlink_as_mount_destination_is_created_inside_the_rootfs() {
    let t = Tally::new();
    let mut b = Bundle::busybox("rfs-dangling");
    let host = HostTarget::new();
    let name = host.name();
    // /tmp/<name> does not exist in the image: the link dangles inside the rootfs and points
    // at an existing directory outside it.
    symlink(&host.0, b.rootfs().join("abs-link")).unwrap();
    add_mount(&mut b, json!({"destination": "/abs-link/new", "type": "tmpfs", "source": "tmpfs"}));
    b.sh(&format!("grep ' /tmp/{name}/new ' /proc/mounts"));
    let r = t.run_container("rfs-dangling", &b);
    host.assert_untouched();
    let r = r.ok();
    let m = mounts_of(&r.stdout);
    assert_eq!(m.len(), 1, "{}", r.stdout);
    assert_eq!((m[0].0.as_str(), m[0].1.as_str()), (format!("/tmp/{name}/new").as_str(), "tmpfs"));
    assert!(b.rootfs().join("tmp").join(&name).join("new").is_dir());
    t.assert_clean("rfs-dangling", &b);
}

#[test]
fn no_pivot_runs_the_container_in_its_rootfs() {
    let t = Tally::new();
    let mut b = Bundle::busybox("rfs-nopivot");
    fs::write(b.rootfs().join("etc/image-marker"), "in the image\n").unwrap();
    add_mount(&mut b, json!({"destination": "/mnt", "type": "tmpfs", "source": "tmpfs"}));
    b.sh("cat /etc/image-marker; hostname; grep -c ' /mnt tmpfs ' /proc/mounts; ls /proc/1/root/etc/image-marker");
    let r = t.run(&["run", "--no-pivot", "--bundle", b.dir.to_str().unwrap(), "rfs-nopivot"]).ok();
    assert_eq!(r.stdout, "in the image\ntally\n1\n/proc/1/root/etc/image-marker\n", "stderr: {}", r.stderr);
    t.assert_clean("rfs-nopivot", &b);
}

/// `tmpcopyup` (Podman's `--read-only`, `--tmpfs`, `--mount type=tmpfs`): the tmpfs starts with
/// what the image has at its destination, writable there while the image stays untouched; a
/// read-only one is filled, then made read-only.
#[test]
fn tmpcopyup_fills_a_new_tmpfs_with_the_images_content() {
    use std::os::unix::fs::PermissionsExt;
    let t = Tally::new();
    let id = "rfs-copyup";
    let mut b = Bundle::busybox(id);
    fs::create_dir_all(b.rootfs().join("opt/app")).unwrap();
    fs::write(b.rootfs().join("opt/app/conf"), "setting=1\n").unwrap();
    fs::set_permissions(b.rootfs().join("opt/app/conf"), fs::Permissions::from_mode(0o604)).unwrap();
    std::os::unix::fs::chown(b.rootfs().join("opt/app/conf"), Some(12), Some(34)).unwrap();
    std::os::unix::fs::symlink("/etc/shadow-on-host", b.rootfs().join("opt/link")).unwrap();
    b.edit(|c| {
        c["root"]["readonly"] = json!(true);
        let mounts = c["mounts"].as_array_mut().unwrap();
        mounts.push(json!({"destination": "/etc", "type": "tmpfs", "source": "tmpfs",
                           "options": ["rw", "nosuid", "nodev", "tmpcopyup", "mode=755"]}));
        mounts.push(json!({"destination": "/opt", "type": "tmpfs", "source": "tmpfs",
                           "options": ["ro", "tmpcopyup"]}));
    });
    b.sh("head -1 /etc/passwd; echo new > /etc/new && cat /etc/new; \
         stat -c '%a %u:%g' /opt/app/conf; cat /opt/app/conf; readlink /opt/link; \
         touch /opt/x 2>&1 | grep -o 'Read-only file system'; \
         grep -E ' /(etc|opt) ' /proc/self/mounts | cut -d' ' -f2,3");
    let r = t.run_container(id, &b).ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "root:x:0:0:root:/root:/bin/sh",
            "new",
            "604 12:34",
            "setting=1",
            "/etc/shadow-on-host",
            "Read-only file system",
            "/etc tmpfs",
            "/opt tmpfs"
        ],
        "stderr: {}",
        r.stderr
    );
    assert!(!b.rootfs().join("etc/new").exists(), "the image is untouched");
    t.assert_clean(id, &b);

    b.edit(|c| {
        let mounts = c["mounts"].as_array_mut().unwrap();
        mounts
            .push(json!({"destination": "/data", "type": "bind", "source": "/tmp", "options": ["rbind", "tmpcopyup"]}));
    });
    t.create(id, &b).fails_with(&["/data", "tmpcopyup applies to tmpfs mounts only"]);
    t.assert_clean(id, &b);
}

fn mounted_at(path: &Path) -> bool {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines().any(|l| l.split(' ').nth(4) == Some(path.to_str().unwrap()))
}

/// `podman run -v SRC:/data:rshared` sends `rootfsPropagation: shared` and an `rshared` bind:
/// a mount made under /data in the container appears on the host, as under runc. Without
/// them (the default, rslave) it does not.
#[test]
fn an_rshared_volume_propagates_mounts_back_to_a_shared_source() {
    let t = Tally::new();
    let src = std::env::temp_dir().join(unique("tally-shared-src"));
    fs::create_dir_all(&src).unwrap();
    let run =
        |cmd: &str| assert!(std::process::Command::new("sh").arg("-c").arg(cmd).status().unwrap().success(), "{cmd}");
    run(&format!("mount -t tmpfs tally-shared {0} && mount --make-shared {0}", src.display()));
    for (id, shared) in [("rfs-rshared", true), ("rfs-rslave", false)] {
        let mut b = Bundle::busybox(id);
        b.edit(|c| {
            for set in ["bounding", "effective", "permitted"] {
                c["process"]["capabilities"][set].as_array_mut().unwrap().push(json!("CAP_SYS_ADMIN"));
            }
            let options = if shared { json!(["rshared", "rw", "rbind"]) } else { json!(["rw", "rbind"]) };
            c["mounts"].as_array_mut().unwrap().push(json!({"destination": "/data", "type": "bind",
                "source": src, "options": options}));
            if shared {
                c["linux"]["rootfsPropagation"] = json!("shared");
            }
        });
        b.sh("mkdir -p /data/sub && mount -t tmpfs from-container /data/sub && echo mounted");
        assert_eq!(t.run_container(id, &b).ok().stdout, "mounted\n");
        let sub = src.join("sub");
        assert_eq!(mounted_at(&sub), shared, "{id}: the container's mount under /data on the host");
        if shared {
            run(&format!("umount {}", sub.display()));
        }
        t.assert_clean(id, &b);
        // Nothing else of the container (its proc, dev, rootfs) reached the host.
        let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!info.contains(b.rootfs().to_str().unwrap()), "{info}");
    }
    run(&format!("umount {0} && rmdir {0}", src.display()));
}

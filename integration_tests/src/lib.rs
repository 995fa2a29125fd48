//! The harness for tally's integration tests: busybox bundles in temporary directories, a
//! private state root per test, the `tally` binary under test, and the checks that the host
//! kept nothing (no state directory, cgroup, mount or process) once a container is deleted.
//!
//! Environment:
//! - `TALLY_BIN`: the binary under test (default: the workspace's target/debug/tally).
//! - `TALLY_BUSYBOX`: a static busybox (default: /bin/busybox from busybox-static).
//! - `TALLY_SKIP_LOG`: a file that collects "test: reason" for every skipped test.

use std::fs;
use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{json, Value};

pub fn tally_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("TALLY_BIN") {
        return PathBuf::from(p);
    }
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.join("../target/debug/tally")
}

fn busybox() -> PathBuf {
    std::env::var_os("TALLY_BUSYBOX").map(PathBuf::from).unwrap_or_else(|| "/bin/busybox".into())
}

/// Where the tests run, which decides what they can check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupHost {
    /// Pure cgroup v2 with every controller (the test VM).
    V2,
    /// cgroup v1 hierarchies, possibly with an empty v2 "unified" mount (the host sandbox,
    /// where the memory controller is deliberately absent).
    V1,
}

pub fn cgroup_host() -> CgroupHost {
    let st = nix::sys::statfs::statfs("/sys/fs/cgroup").expect("statfs /sys/fs/cgroup");
    if st.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC {
        CgroupHost::V2
    } else {
        CgroupHost::V1
    }
}

/// Records a skipped test with its reason; the test then returns. Make shows the list, so a
/// skip is never mistaken for a pass.
pub fn skip(test: &str, reason: &str) {
    eprintln!("SKIPPED {test}: {reason}");
    if let Some(p) = std::env::var_os("TALLY_SKIP_LOG") {
        if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(p) {
            let _ = writeln!(f, "{test}: {reason}");
        }
    }
}

/// How many rounds a stress test runs: `full` on the host; `vm` in the software-emulated test
/// VM (hack/vm-test.sh sets TALLY_IN_VM), where each container costs about ten times as much
/// and memory is small. The reduction is logged with the skipped tests, so it is never silent.
pub fn rounds(test: &str, full: usize, vm: usize) -> usize {
    if std::env::var_os("TALLY_IN_VM").is_none() {
        return full;
    }
    skip(test, &format!("ran {vm} of its {full} rounds in the emulated VM (the full count runs on the host)"));
    vm
}

/// Receives one fd and its payload (up to 64 KiB) sent with SCM_RIGHTS on `sock`: the pty
/// master of `--console-socket`, the seccomp listener with the state.
pub fn recv_fd(sock: std::os::fd::RawFd) -> (std::os::fd::OwnedFd, Vec<u8>) {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::FromRawFd;
    let mut buf = vec![0u8; 65536];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(sock, &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC).unwrap();
    let mut fd = None;
    for c in msg.cmsgs().unwrap() {
        if let ControlMessageOwned::ScmRights(fds) = c {
            fd = fds.first().copied();
        }
    }
    let n = msg.bytes;
    let fd = fd.expect("an fd sent with SCM_RIGHTS");
    buf.truncate(n);
    // SAFETY: the kernel just installed this fd in our table; nothing else owns it.
    (unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }, buf)
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique name for this test process and call: container IDs, temp dirs.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst))
}

/// A bundle directory with a busybox rootfs and a config.json made by `tally spec`.
pub struct Bundle {
    pub dir: PathBuf,
    pub config: Value,
}

const APPLETS: &[&str] = &[
    "sh", "ls", "cat", "echo", "id", "hostname", "sleep", "ps", "mount", "true", "false", "touch", "mkdir", "stat",
    "grep", "env", "pwd", "readlink", "tty", "wc", "head", "test", "umask", "dd", "ln", "rm", "sysctl", "kill",
    "nproc", "seq", "tail", "nc",
];

impl Bundle {
    pub fn busybox(name: &str) -> Bundle {
        Bundle::busybox_in(&std::env::temp_dir(), name)
    }

    /// A busybox bundle under `parent` (e.g. on a filesystem with quotas).
    pub fn busybox_in(parent: &Path, name: &str) -> Bundle {
        let dir = parent.join(unique(&format!("tally-it-{name}")));
        let rootfs = dir.join("rootfs");
        for d in ["bin", "proc", "sys", "dev", "etc", "tmp", "root"] {
            fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        fs::copy(busybox(), rootfs.join("bin/busybox")).expect("copy busybox (install busybox-static)");
        for a in APPLETS {
            symlink("busybox", rootfs.join("bin").join(a)).unwrap();
        }
        fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n",
        )
        .unwrap();
        fs::write(rootfs.join("etc/group"), "root:x:0:\n").unwrap();
        let out = Command::new(tally_bin()).args(["spec", "--bundle"]).arg(&dir).output().expect("run tally spec");
        assert!(out.status.success(), "tally spec: {}", String::from_utf8_lossy(&out.stderr));
        let mut config: Value = serde_json::from_slice(&fs::read(dir.join("config.json")).unwrap()).unwrap();
        config["process"]["terminal"] = json!(false);
        config["process"]["args"] = json!(["true"]);
        // Tests write markers into the rootfs; the few that test root.readonly set it.
        config["root"]["readonly"] = json!(false);
        let mut b = Bundle { dir, config };
        b.save();
        b
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// Sets the container's command to `sh -c script`.
    pub fn sh(&mut self, script: &str) -> &mut Self {
        self.config["process"]["args"] = json!(["sh", "-c", script]);
        self.save();
        self
    }

    pub fn edit(&mut self, f: impl FnOnce(&mut Value)) -> &mut Self {
        f(&mut self.config);
        self.save();
        self
    }

    pub fn save(&mut self) {
        fs::write(self.dir.join("config.json"), serde_json::to_vec_pretty(&self.config).unwrap()).unwrap();
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The binary under test with a private state root.
pub struct Tally {
    pub root: PathBuf,
}

/// What a tally command did.
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    fn from(out: Output) -> Ran {
        Ran {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    #[track_caller]
    pub fn ok(self) -> Ran {
        assert_eq!(self.code, 0, "expected success; stdout: {}\nstderr: {}", self.stdout, self.stderr);
        self
    }

    /// Asserts failure with an error that mentions every one of `needles`.
    #[track_caller]
    pub fn fails_with(self, needles: &[&str]) -> Ran {
        assert_ne!(self.code, 0, "expected failure; stdout: {}\nstderr: {}", self.stdout, self.stderr);
        for n in needles {
            assert!(self.stderr.contains(n), "error should mention {n:?}; stderr: {}", self.stderr);
        }
        self
    }
}

impl Default for Tally {
    fn default() -> Self {
        Self::new()
    }
}

impl Tally {
    pub fn new() -> Tally {
        Tally { root: PathBuf::from("/run").join(unique("tally-it")) }
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(tally_bin());
        c.arg("--root").arg(&self.root);
        c
    }

    /// Runs `tally --root R args...` and captures its output. Container commands that leave a
    /// process behind (create, run -d) must not use pipes: use `run_to_files`.
    pub fn run(&self, args: &[&str]) -> Ran {
        let out = self.command().args(args).stdin(Stdio::null()).output().expect("spawn tally");
        Ran::from(out)
    }

    /// Like `run`, with every fd above stderr closed in tally: for tests of what a container
    /// inherits, which must not depend on what the test's own caller left open.
    pub fn run_with_only_stdio(&self, args: &[&str]) -> Ran {
        use std::os::unix::process::CommandExt;
        let mut cmd = self.command();
        cmd.args(args).stdin(Stdio::null());
        // SAFETY: between fork and exec only close_range, which is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
                Ok(())
            });
        }
        Ran::from(cmd.output().expect("spawn tally"))
    }

    /// Like `run`, but the output goes through files, so a container process that inherits
    /// stdout cannot keep this call waiting for end-of-file.
    pub fn run_to_files(&self, args: &[&str]) -> Ran {
        let base = std::env::temp_dir().join(unique("tally-it-out"));
        let out = fs::File::create(base.with_extension("out")).unwrap();
        let err = fs::File::create(base.with_extension("err")).unwrap();
        let status =
            self.command().args(args).stdin(Stdio::null()).stdout(out).stderr(err).status().expect("spawn tally");
        let ran = Ran {
            code: status.code().unwrap_or(-1),
            stdout: fs::read_to_string(base.with_extension("out")).unwrap_or_default(),
            stderr: fs::read_to_string(base.with_extension("err")).unwrap_or_default(),
        };
        let _ = fs::remove_file(base.with_extension("out"));
        let _ = fs::remove_file(base.with_extension("err"));
        ran
    }

    /// `tally run --bundle B ID`: the container's output and exit code.
    pub fn run_container(&self, id: &str, bundle: &Bundle) -> Ran {
        self.run(&["run", "--bundle", bundle.dir.to_str().unwrap(), id])
    }

    /// A running container (`run -d`) whose init sleeps, with the given config changes.
    pub fn sleeping(&self, id: &str, edit: impl FnOnce(&mut Value)) -> Bundle {
        let mut b = Bundle::busybox(id);
        b.edit(|c| {
            c["process"]["args"] = json!(["sleep", "300"]);
            edit(c);
        });
        self.run_to_files(&["run", "-d", "--bundle", b.dir.to_str().unwrap(), id]).ok();
        b
    }

    pub fn create(&self, id: &str, bundle: &Bundle) -> Ran {
        self.run_to_files(&["create", "--bundle", bundle.dir.to_str().unwrap(), id])
    }

    /// The parsed `tally state ID`.
    pub fn state(&self, id: &str) -> Value {
        let r = self.run(&["state", id]).ok();
        serde_json::from_str(&r.stdout).expect("state is JSON")
    }

    pub fn status(&self, id: &str) -> String {
        self.state(id)["status"].as_str().unwrap().to_string()
    }

    /// Waits (bounded) until the container reports `status`.
    #[track_caller]
    pub fn wait_status(&self, id: &str, status: &str) {
        for _ in 0..500 {
            if self.status(id) == status {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("container {id} never reached {status}; it is {}", self.status(id));
    }

    /// Asserts that nothing of container `id` is left on the host.
    #[track_caller]
    pub fn assert_clean(&self, id: &str, bundle: &Bundle) {
        assert_host_clean(&self.root, id, &bundle.dir);
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        // A failed test must not leave containers running: force-delete whatever remains.
        if let Ok(entries) = fs::read_dir(&self.root) {
            for e in entries.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                let _ = self
                    .command()
                    .args(["delete", "--force", &id])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        // The root may also hold tally's own entries (the seccomp cache).
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// Waits (bounded, 5 s) until `path` exists.
#[track_caller]
pub fn wait_for_file(path: &Path) {
    for _ in 0..500 {
        if path.exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("{} never appeared", path.display());
}

/// Every cgroup directory on this host whose path ends in `/<id>`.
pub fn cgroup_dirs_named(id: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    fn walk(dir: &Path, id: &str, depth: usize, found: &mut Vec<PathBuf>) {
        if depth > 4 {
            return;
        }
        let Ok(entries) = fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                let p = e.path();
                if p.file_name().map(|n| n == id).unwrap_or(false) {
                    found.push(p.clone());
                }
                walk(&p, id, depth + 1, found);
            }
        }
    }
    walk(Path::new("/sys/fs/cgroup"), id, 0, &mut found);
    found
}

/// Nothing of the container remains: state directory, cgroups, mounts under the bundle, or
/// processes started from the bundle's rootfs.
#[track_caller]
pub fn assert_host_clean(root: &Path, id: &str, bundle: &Path) {
    assert!(!root.join(id).exists(), "state directory {} remains", root.join(id).display());
    let cgs = cgroup_dirs_named(id);
    assert!(cgs.is_empty(), "cgroup directories remain: {cgs:?}");
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let bundle_s = bundle.to_string_lossy();
    let leaked: Vec<&str> = mountinfo.lines().filter(|l| l.contains(bundle_s.as_ref())).collect();
    assert!(leaked.is_empty(), "mounts remain on the host: {leaked:?}");
    let procs = processes_under(bundle);
    assert!(procs.is_empty(), "processes remain: {procs:?}");
}

/// Host PIDs of the container made from bundle `dir`: processes whose root is inside it, or
/// (after pivot_root, when /proc/<pid>/root reads "/") whose mount namespace's root mount
/// comes from it.
pub fn processes_under(dir: &Path) -> Vec<i32> {
    let own_ns = fs::read_link("/proc/self/ns/mnt").ok();
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        // Zombies have no root link; a live process in the rootfs is a leak.
        let Ok(root) = fs::read_link(format!("/proc/{pid}/root")) else { continue };
        if root.starts_with(dir) {
            out.push(pid);
            continue;
        }
        if name.is_empty() || fs::read_link(format!("/proc/{pid}/ns/mnt")).ok() == own_ns {
            continue;
        }
        let mountinfo = fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
        let root_from_bundle = mountinfo.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 4 && f[4] == "/" && f[3].contains(&name)
        });
        if root_from_bundle {
            out.push(pid);
        }
    }
    out
}

//! CRIU, driven through its command line (`criu dump`, `criu pre-dump`, `criu restore`): the
//! arguments a container needs, and the run with its log. The command line rather than the
//! RPC (swrk): the RPC needs CRIU's protobuf schema compiled into tally for what the CLI gives
//! in plain words, and the CLI's log file is what an operator reads when it fails either way.
//!
//! Mounts CRIU cannot rebuild from inside the container (bind mounts from the host, the
//! masking `/dev/null` binds, device nodes bound in a user namespace) are declared external:
//! at dump each is keyed by its destination, and restore maps the key back to a host path.

use std::ffi::OsString;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

pub mod netlock;

#[derive(Debug, thiserror::Error)]
pub enum CriuError {
    #[error("criu {op}: cannot run {bin}: {source} (install criu, or name it with --criu)")]
    Spawn { op: &'static str, bin: PathBuf, source: io::Error },
    #[error("criu {op} failed ({status}); its log is {log}{tail}")]
    Failed { op: &'static str, status: String, log: PathBuf, tail: String },
    #[error("{what} {path}: {source}")]
    Path { what: &'static str, path: PathBuf, source: io::Error },
}

/// What dump and restore both take (runc's flags of the same names), and all `restore` takes.
#[derive(Debug, Default, Clone)]
pub struct Options {
    pub image: PathBuf,
    pub work: PathBuf,
    pub tcp_established: bool,
    pub ext_unix_sk: bool,
    pub shell_job: bool,
    pub file_locks: bool,
    pub manage_cgroups_mode: Option<String>,
    pub empty_ns: Vec<String>,
    pub auto_dedup: bool,
    pub lazy_pages: bool,
}

/// The flags `restore` passes on.
pub type RestoreOptions = Options;

/// The flags `checkpoint` passes on: the shared ones and the dump's own.
#[derive(Debug, Default, Clone)]
pub struct DumpOptions {
    pub common: Options,
    /// `--parent-path`: the previous (pre-)dump's images, relative to `image` or absolute.
    pub parent: Option<PathBuf>,
    pub leave_running: bool,
    pub pre_dump: bool,
    pub page_server: Option<String>,
    pub status_fd: Option<i32>,
}

/// A mount CRIU must not rebuild itself: where it is in the container, and what backs it on
/// the host (for restore).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct External {
    pub destination: PathBuf,
    pub source: PathBuf,
}

/// CRIU's key for a network namespace the container joined by path (`linux.namespaces`
/// network with a `path`: Podman's, CNI's, a pod's). It is not the container's to dump or
/// rebuild: the dump declares it external under this key, the restore hands in the namespace
/// the bundle's config names. runc uses the same key.
pub const EXTERNAL_NETNS: &str = "extRootNetNS";

/// The network namespace a config joins by path, if it joins one.
pub fn joined_netns(spec: &oci_spec::runtime::Spec) -> Option<PathBuf> {
    let namespaces = spec.linux().as_ref()?.namespaces().as_ref()?;
    namespaces.iter().find(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Network).and_then(|n| n.path().clone())
}

/// The recorded source of a `cgroup` mount: the container's cgroup, whichever it is.
pub const CGROUP_SOURCE: &str = "<the container's cgroup>";

/// The `--manage-cgroups` modes CRIU knows; tally's default is `ignore`: the restored
/// processes stay in the cgroup tally put CRIU in, the new container's (which may be another
/// path than the checkpointed one's), and the bundle's limits are what apply.
pub const CGROUP_MODES: &[&str] = &["none", "props", "soft", "full", "strict", "ignore"];

/// How CRIU locks the container's network while it dumps and restores: its default is
/// iptables, which a host may lack (the test VM has no iptables at all); nftables, through the
/// library CRIU links, then.
pub fn network_lock() -> Option<&'static str> {
    let on_path =
        |name: &str| std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).exists()));
    match on_path("iptables-restore") && on_path("ip6tables-restore") {
        true => None,
        false => Some("nftables"),
    }
}

/// The arguments both take, `lazy_pages` included (CRIU's flag is the same on both sides).
fn common(args: &mut Vec<OsString>, o: &Options, log: &str) {
    args.extend(["--images-dir".into(), o.image.clone().into(), "--work-dir".into(), o.work.clone().into()]);
    args.extend(["--log-file".into(), log.into(), "-v4".into()]);
    let flags = [
        (o.tcp_established, "--tcp-established"),
        (o.ext_unix_sk, "--ext-unix-sk"),
        (o.shell_job, "--shell-job"),
        (o.file_locks, "--file-locks"),
        (o.auto_dedup, "--auto-dedup"),
        (o.lazy_pages, "--lazy-pages"),
    ];
    for (on, flag) in flags {
        if on {
            args.push(flag.into());
        }
    }
    args.push(format!("--manage-cgroups={}", o.manage_cgroups_mode.as_deref().unwrap_or("ignore")).into());
    if let Some(lock) = network_lock() {
        args.push(format!("--network-lock={lock}").into());
    }
    for ns in &o.empty_ns {
        args.extend(["--empty-ns".into(), ns.into()]);
    }
}

/// `criu dump` (or `pre-dump`) of the process tree rooted at `pid`.
pub fn dump_args(pid: i32, externals: &[External], o: &DumpOptions) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![if o.pre_dump { "pre-dump" } else { "dump" }.into()];
    args.extend(["--tree".into(), pid.to_string().into()]);
    common(&mut args, &o.common, if o.pre_dump { "pre-dump.log" } else { "dump.log" });
    if o.leave_running && !o.pre_dump {
        args.push("--leave-running".into());
    }
    if o.pre_dump {
        args.push("--track-mem".into());
    }
    if let Some(parent) = &o.parent {
        args.push("--prev-images-dir".into());
        args.push(parent.into());
        args.push("--track-mem".into());
    }
    if let Some(addr) = &o.page_server {
        let (host, port) = addr.rsplit_once(':').unwrap_or((addr.as_str(), "27"));
        // A lazy dump serves its pages itself, on this address, to the restoring side's
        // `criu lazy-pages`; `--page-server` would make it send them to one instead (runc's
        // RPC request means the same: the address, and a page server only without lazy pages).
        if !o.common.lazy_pages {
            args.push("--page-server".into());
        }
        args.extend(["--address".into(), host.into(), "--port".into(), port.into()]);
    }
    if let Some(fd) = o.status_fd {
        args.extend(["--status-fd".into(), fd.to_string().into()]);
    }
    for e in externals {
        let key = e.destination.to_string_lossy();
        args.extend(["--ext-mount-map".into(), format!("{key}:{key}").into()]);
    }
    args
}

/// `criu restore` into `root` (the rootfs, bound onto itself), detached, the restored init's
/// host PID written to `pidfile`.
pub fn restore_args(root: &Path, pidfile: &Path, externals: &[External], o: &RestoreOptions) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["restore".into(), "--root".into(), root.into()];
    args.extend(["--restore-detached".into(), "--pidfile".into(), pidfile.into()]);
    common(&mut args, o, "restore.log");
    for e in externals {
        let key = e.destination.to_string_lossy();
        args.push("--ext-mount-map".into());
        let mut map = OsString::from(format!("{key}:"));
        map.push(&e.source);
        args.push(map);
    }
    args
}

/// What the init's stdio was at dump, as CRIU names it: `pipe:[4242]` for a pipe, and for a
/// file opened outside the container (conmon's and a shim's `/dev/null`, a log file) on a mount
/// the container's `mountinfo` does not have, `file[MNT_ID:INODE]` (both hex): CRIU cannot
/// reopen such a file by path inside the container (its dump fails with "Can't lookup mount"), so
/// the dump declares it `--external` and the restore hands in its caller's own fd instead.
/// Anything else is its path as `/proc/PID/fd/N` shows it; empty where the fd was closed.
pub fn stdio_of(pid: i32, mountinfo: &str) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mounted: std::collections::HashSet<&str> =
        mountinfo.lines().filter_map(|l| l.split_whitespace().next()).collect();
    (0..3)
        .map(|fd| {
            let link = format!("/proc/{pid}/fd/{fd}");
            let Ok(name) = std::fs::read_link(&link) else { return String::new() };
            let name = name.to_string_lossy().into_owned();
            if !name.starts_with('/') {
                return name;
            }
            let mnt_id = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).ok().and_then(|info| {
                info.lines().find_map(|l| l.strip_prefix("mnt_id:").and_then(|v| v.trim().parse::<u64>().ok()))
            });
            match (mnt_id, std::fs::metadata(&link)) {
                (Some(m), Ok(meta)) if !mounted.contains(m.to_string().as_str()) => {
                    format!("file[{m:x}:{:x}]", meta.ino())
                }
                _ => name,
            }
        })
        .collect()
}

/// `--external` for each recorded stdio that is a file from outside the container.
pub fn external_stdio(recorded: &[String]) -> Vec<OsString> {
    let mut args = Vec::new();
    for (i, key) in recorded.iter().enumerate().filter(|(_, k)| k.starts_with("file[")) {
        // stdout and stderr are often the one file: declared once.
        if recorded[..i].contains(key) {
            continue;
        }
        args.push("--external".into());
        args.push(key.into());
    }
    args
}

/// For a restore: each of the init's stdio that was a pipe to its caller (a shim's, conmon's)
/// or a file from outside the container is the restoring tally's own fd of the same number,
/// handed to CRIU with `--inherit-fd`, so the restored process writes to its new caller's pipe
/// or file, as runc does it for pipes. A pipe CRIU would rebuild with no reader on the other end
/// otherwise, and an outside file it could not reopen at all.
pub fn inherit_stdio(recorded: &[String]) -> Vec<OsString> {
    let mut args = Vec::new();
    for (fd, key) in recorded.iter().enumerate().take(3) {
        if key.starts_with("pipe:[") || key.starts_with("file[") {
            args.push("--inherit-fd".into());
            args.push(format!("fd[{fd}]:{key}").into());
        }
    }
    args
}

/// The mounts of a running container CRIU cannot rebuild on its own, from its init's
/// mountinfo: a bind mount whose filesystem the container has no whole mount of (nor the rootfs
/// mount) from a root that contains it (a config's bind from the host, a mask bound from the host's /dev/null, a
/// device node bound in a user namespace). Binds inside the container's own filesystems (the
/// read-only /proc/sys) CRIU resolves itself. Each gets its host source: the config's bind
/// source, /dev/null for a masked path, the same path for a device node.
pub fn externals(mountinfo: &str, spec: &oci_spec::runtime::Spec, bundle: &Path) -> Result<Vec<External>, String> {
    struct M<'a> {
        dev: &'a str,
        root: &'a str,
        point: &'a str,
    }
    let mounts: Vec<M> = mountinfo
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 4).then(|| M { dev: f[2], root: f[3], point: f[4] })
        })
        .collect();
    let contains = |outer: &str, inner: &str| {
        outer == "/" || inner == outer || inner.starts_with(&format!("{}/", outer.trim_end_matches('/')))
    };
    let linux = spec.linux().as_ref();
    let masked: Vec<&String> = linux.and_then(|l| l.masked_paths().as_ref()).into_iter().flatten().collect();
    let mut out = Vec::new();
    for (i, m) in mounts.iter().enumerate() {
        if m.point == "/" || m.root == "/" {
            continue;
        }
        // Whole filesystems mounted in the container (root "/") and the rootfs itself are what
        // CRIU can take a bind's source from; two binds of the same outside file (the masks)
        // do not vouch for each other.
        let covered = mounts
            .iter()
            .enumerate()
            .any(|(j, o)| j != i && o.dev == m.dev && (o.root == "/" || o.point == "/") && contains(o.root, m.root));
        if covered {
            continue;
        }
        let point = PathBuf::from(m.point.replace("\\040", " "));
        let bind = spec.mounts().iter().flatten().find(|c| c.destination() == &point);
        let is_cgroup = |c: &oci_spec::runtime::Mount| matches!(c.typ().as_deref(), Some("cgroup" | "cgroup2"));
        let source = if bind.is_some_and(is_cgroup) {
            // The container's own cgroup, seen through its cgroup namespace: on restore, the
            // new container's (restore_externals).
            PathBuf::from(CGROUP_SOURCE)
        } else if let Some(c) = bind {
            let src = c.source().clone().unwrap_or_default();
            if src.is_absolute() {
                src
            } else {
                bundle.join(src)
            }
        } else if masked.iter().any(|p| Path::new(p.as_str()) == point) {
            PathBuf::from("/dev/null")
        } else if point.starts_with("/dev") {
            point.clone()
        } else {
            return Err(format!("mount {}: bound from outside the container, and not by its config", point.display()));
        };
        out.push(External { destination: point, source });
    }
    Ok(out)
}

/// Runs CRIU with `args`; before its exec, `pre_exec` runs in the child (to join a cgroup or
/// a mount namespace). The log is in `work` under the name the arguments gave it.
pub fn run(
    bin: &Path,
    op: &'static str,
    args: &[OsString],
    log: PathBuf,
    pre_exec: Option<Box<dyn FnMut() -> io::Result<()> + Send + Sync>>,
) -> Result<(), CriuError> {
    let mut cmd = Command::new(bin);
    cmd.args(args);
    if let Some(f) = pre_exec {
        // SAFETY: the closures tally passes make only async-signal-safe system calls.
        unsafe { cmd.pre_exec(f) };
    }
    let out = cmd.output().map_err(|source| CriuError::Spawn { op, bin: bin.into(), source })?;
    if out.status.success() {
        return Ok(());
    }
    let status = match out.status.code() {
        Some(c) => format!("exit status {c}"),
        None => "killed by a signal".into(),
    };
    let mut err = failed(op, status, log);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if let CriuError::Failed { tail, .. } = &mut err {
        if tail.is_empty() && !stderr.trim().is_empty() {
            *tail = format!("; it said: {}", stderr.trim().lines().rev().take(3).collect::<Vec<_>>().join(" / "));
        }
    }
    Err(err)
}

/// A failed CRIU run, with the last error lines of its log.
pub fn failed(op: &'static str, status: String, log: PathBuf) -> CriuError {
    let tail = log_errors(&log);
    CriuError::Failed { op, status, log, tail }
}

/// The last error lines of a CRIU log, for the error message.
fn log_errors(log: &Path) -> String {
    let Ok(text) = std::fs::read_to_string(log) else { return String::new() };
    let errors: Vec<&str> = text.lines().filter(|l| l.contains("Error")).collect();
    let last: Vec<&str> = errors.iter().rev().take(3).rev().map(|l| l.trim()).collect();
    match last.is_empty() {
        true => String::new(),
        false => format!("; last errors: {}", last.join(" / ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(args: &[OsString]) -> Vec<String> {
        args.iter().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn only_stdio_pipes_are_inherited_from_the_restoring_caller() {
        let rec: Vec<String> = ["/dev/null", "pipe:[4242]", "pipe:[77]"].iter().map(|s| s.to_string()).collect();
        assert_eq!(s(&inherit_stdio(&rec)), ["--inherit-fd", "fd[1]:pipe:[4242]", "--inherit-fd", "fd[2]:pipe:[77]"]);
        assert!(external_stdio(&rec).is_empty());
        let outside: Vec<String> = ["file[1a:5]", "pipe:[9]", ""].iter().map(|s| s.to_string()).collect();
        assert_eq!(s(&inherit_stdio(&outside)), ["--inherit-fd", "fd[0]:file[1a:5]", "--inherit-fd", "fd[1]:pipe:[9]"]);
        assert_eq!(s(&external_stdio(&outside)), ["--external", "file[1a:5]"]);
        let same: Vec<String> = ["file[1a:4]", "file[1a:4]", "file[1a:4]"].iter().map(|s| s.to_string()).collect();
        assert_eq!(s(&external_stdio(&same)), ["--external", "file[1a:4]"], "one file, declared once");
        assert_eq!(inherit_stdio(&same).len(), 6, "but handed in for each fd");
        assert!(inherit_stdio(&["socket:[1]".to_string(), String::new()]).is_empty());
    }

    #[test]
    fn a_dump_names_the_tree_the_images_and_each_external_mount_by_its_destination() {
        let o = DumpOptions {
            common: Options { image: "/img".into(), work: "/work".into(), tcp_established: true, ..Default::default() },
            leave_running: true,
            ..Default::default()
        };
        let ext = [External { destination: "/data".into(), source: "/srv/data".into() }];
        let a = s(&dump_args(42, &ext, &o));
        assert_eq!(a[..3], ["dump", "--tree", "42"]);
        for want in ["--tcp-established", "--leave-running", "--manage-cgroups=ignore", "/data:/data"] {
            assert!(a.iter().any(|x| x == want), "{want} in {a:?}");
        }
        assert!(!a.iter().any(|x| x == "--shell-job"), "{a:?}");
    }

    #[test]
    fn a_lazy_dump_serves_its_pages_on_the_address_and_a_plain_one_sends_them_there() {
        let mut o = DumpOptions { page_server: Some("127.0.0.1:2700".into()), ..Default::default() };
        let a = s(&dump_args(1, &[], &o));
        let i = a.iter().position(|x| x == "--page-server").expect("a page server to send to");
        assert_eq!(a[i + 1..i + 5], ["--address", "127.0.0.1", "--port", "2700"]);
        o.common.lazy_pages = true;
        let a = s(&dump_args(1, &[], &o));
        assert!(!a.contains(&"--page-server".to_string()), "{a:?}");
        assert!(a.contains(&"--lazy-pages".to_string()) && a.contains(&"2700".to_string()), "{a:?}");
    }

    #[test]
    fn only_a_network_namespace_joined_by_path_is_external() {
        let spec = |ns: serde_json::Value| -> oci_spec::runtime::Spec {
            serde_json::from_value(serde_json::json!({
                "ociVersion": "1.0.2", "root": {"path": "rootfs"}, "linux": {"namespaces": ns}
            }))
            .unwrap()
        };
        let joined = spec(serde_json::json!([{"type": "pid"}, {"type": "network", "path": "/run/netns/a"}]));
        assert_eq!(joined_netns(&joined), Some(PathBuf::from("/run/netns/a")));
        assert_eq!(joined_netns(&spec(serde_json::json!([{"type": "network"}]))), None);
        assert_eq!(joined_netns(&spec(serde_json::json!([{"type": "pid", "path": "/proc/1/ns/pid"}]))), None);
    }

    #[test]
    fn a_pre_dump_tracks_memory_and_a_dump_after_it_names_its_parent() {
        let images = |d: &str| Options { image: d.into(), work: d.into(), ..Default::default() };
        let pre = DumpOptions { common: images("/p1"), pre_dump: true, ..Default::default() };
        let a = s(&dump_args(1, &[], &pre));
        assert_eq!(a[0], "pre-dump");
        assert!(a.contains(&"--track-mem".to_string()) && a.contains(&"pre-dump.log".to_string()));
        let fin = DumpOptions { common: images("/d"), parent: Some("../p1".into()), ..Default::default() };
        let a = s(&dump_args(1, &[], &fin));
        let i = a.iter().position(|x| x == "--prev-images-dir").unwrap();
        assert_eq!(a[i + 1], "../p1");
    }

    #[test]
    fn a_restore_maps_each_external_mount_back_to_its_host_source() {
        let o = RestoreOptions { image: "/img".into(), work: "/w".into(), ..Default::default() };
        let ext = [External { destination: "/data".into(), source: "/srv/data".into() }];
        let a = s(&restore_args(Path::new("/root"), Path::new("/pid"), &ext, &o));
        assert_eq!(a[..3], ["restore", "--root", "/root"]);
        assert!(a.iter().any(|x| x == "/data:/srv/data"), "{a:?}");
        assert!(a.iter().any(|x| x == "--restore-detached"), "{a:?}");
    }

    #[test]
    fn binds_from_outside_are_external_and_binds_within_the_container_are_not() {
        let spec: oci_spec::runtime::Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "mounts": [{"destination": "/data", "type": "bind", "source": "vol", "options": ["rbind"]}],
            "linux": {"maskedPaths": ["/proc/kcore", "/proc/keys"]}
        }))
        .unwrap();
        // The rootfs, its /proc, the read-only /proc/sys (a bind within /proc), a config bind
        // from the same disk as the rootfs, a mask from the host's devtmpfs, a tmpfs /dev and
        // a device node bound from the host into it.
        let mountinfo = "\
            100 90 8:1 /b/rootfs / rw - ext4 /dev/sda1 rw
            101 100 0:50 / /proc rw - proc proc rw
            102 101 0:50 /sys /proc/sys ro - proc proc rw
            103 100 8:1 /srv/vol /data rw - ext4 /dev/sda1 rw
            104 101 0:5 /null /proc/kcore ro - devtmpfs udev rw
            107 101 0:5 /null /proc/keys ro - devtmpfs udev rw
            105 100 0:51 / /dev rw - tmpfs tmpfs rw
            106 105 0:5 /zero /dev/zero rw - devtmpfs udev rw";
        let e = externals(mountinfo, &spec, Path::new("/b")).unwrap();
        assert_eq!(
            e,
            [
                External { destination: "/data".into(), source: "/b/vol".into() },
                External { destination: "/proc/kcore".into(), source: "/dev/null".into() },
                External { destination: "/proc/keys".into(), source: "/dev/null".into() },
                External { destination: "/dev/zero".into(), source: "/dev/zero".into() },
            ]
        );
        let stray = "100 90 8:1 /b/rootfs / rw - ext4 /dev/sda1 rw\n103 100 8:1 /home /mnt rw - ext4 /dev/sda1 rw";
        assert!(externals(stray, &spec, Path::new("/b")).unwrap_err().contains("mount /mnt"));
    }
}

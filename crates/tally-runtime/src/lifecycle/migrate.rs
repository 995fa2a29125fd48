//! `migrate`: a running container moved to another state root by iterative pre-copy, as
//! OpenVZ's vzmigrate did it. Each round runs CRIU's page server for the destination and a
//! dump that sends it the container's memory over loopback: pre-dump rounds while the
//! container keeps running (each sends only what was dirtied since the one before), then the
//! final dump, which freezes it and sends what is left; the other images are copied next to
//! the pages, and the container is restored under the destination root with the same ID and
//! bundle. Downtime is from the final dump's start to the restore's end.
//!
//! A failed round before the final dump leaves the container running where it was. A failed
//! restore at the destination restores it where it was from the same images.

use std::fs;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::checkpoint::{self, CheckpointOptions, RestoreOptions};
use super::LifecycleError;
use crate::criu::{self, CriuError};
use crate::state::{ContainerDir, Lock, StateRoot, Status};

pub struct MigrateOptions<'a> {
    pub criu: PathBuf,
    pub to_root: &'a StateRoot,
    pub pre_dump_rounds: u32,
    /// Where the rounds' images go (`src/` as dumped, `dst/` as the page server received them);
    /// removed after a migration that worked unless the caller named it.
    pub images: Option<PathBuf>,
    pub tcp_established: bool,
    pub ext_unix_sk: bool,
    pub file_locks: bool,
    pub shell_job: bool,
    /// The global `--systemd-cgroup`: how the cgroup path of the restored container is read.
    pub systemd_cgroup: bool,
}

/// One round as measured.
#[derive(Debug, serde::Serialize)]
pub struct Round {
    /// `pre-dump` or `dump`.
    pub kind: &'static str,
    pub ms: f64,
    /// What the page server received: the size of its `pages-*.img`.
    pub page_bytes: u64,
}

#[derive(Debug, serde::Serialize)]
pub struct MigrateReport {
    pub id: String,
    pub to_root: PathBuf,
    pub rounds: Vec<Round>,
    /// The copy of the final dump's other images next to its pages.
    pub copy_ms: f64,
    pub restore_ms: f64,
    /// From the start of the final dump (CRIU freezes the container as it begins) to the end of
    /// the restore (the container runs again under the destination root).
    pub downtime_ms: f64,
    pub pid: i32,
}

fn err(message: String) -> LifecycleError {
    LifecycleError::Checkpoint(message)
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// A free TCP port on loopback for one page server (asked of the kernel, then released).
fn free_port() -> Result<u16, LifecycleError> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| err(format!("a loopback port: {e}")))?;
    l.local_addr().map(|a| a.port()).map_err(|e| err(format!("a loopback port: {e}")))
}

/// CRIU's page server, listening on loopback once this returns (`--daemon` forks only after
/// the socket listens); it ends after one dump has sent it its pages.
struct PageServer {
    pid: i32,
    log: PathBuf,
}

impl PageServer {
    fn start(bin: &Path, dir: &Path, parent: Option<&str>, port: u16) -> Result<Self, LifecycleError> {
        fs::create_dir_all(dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
        let pidfile = dir.join("page-server.pid");
        let log = dir.join("page-server.log");
        let mut cmd = Command::new(bin);
        cmd.arg("page-server").arg("--images-dir").arg(dir).arg("--work-dir").arg(dir);
        cmd.args(["--address", "127.0.0.1", "--port", &port.to_string(), "--daemon", "-v4"]);
        cmd.arg("--pidfile").arg(&pidfile).arg("--log-file").arg(&log);
        if let Some(p) = parent {
            cmd.args(["--prev-images-dir", p]);
        }
        let out = cmd.output().map_err(|source| CriuError::Spawn { op: "page-server", bin: bin.into(), source })?;
        if !out.status.success() {
            return Err(criu::failed("page-server", format!("{}", out.status), log).into());
        }
        let pid = fs::read_to_string(&pidfile)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .ok_or_else(|| err(format!("criu page-server wrote no pid to {}", pidfile.display())))?;
        let _ = fs::remove_file(&pidfile);
        Ok(PageServer { pid, log })
    }

    /// Waits for the server to end (it has written the pages when the dump's connection
    /// closes); one that is still there after `limit` is killed.
    fn finish(self, limit: Duration) -> Result<(), LifecycleError> {
        let end = Instant::now() + limit;
        // SAFETY: kill with signal 0 only probes whether the process exists.
        while unsafe { libc::kill(self.pid, 0) } == 0 {
            if Instant::now() > end {
                crate::spawn::kill_and_wait(self.pid);
                return Err(err(format!(
                    "criu page-server (pid {}) did not end after the dump; its log is {}",
                    self.pid,
                    self.log.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    }

    fn kill(self) {
        crate::spawn::kill_and_wait(self.pid);
    }
}

fn page_bytes(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("pages-"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// The final dump's images that the page server did not write, copied next to its pages.
fn copy_images(from: &Path, to: &Path) -> Result<(), LifecycleError> {
    let io = |p: &Path, e: std::io::Error| err(format!("copy the images {}: {e}", p.display()));
    for entry in fs::read_dir(from).map_err(|e| io(from, e))? {
        let entry = entry.map_err(|e| io(from, e))?;
        let target = to.join(entry.file_name());
        let kind = entry.file_type().map_err(|e| io(&entry.path(), e))?;
        if kind.is_file() && !target.exists() {
            // Under another name first: a copy cut short must not pass for an image when the
            // restore-back copies again.
            let part = to.join(format!(".{}.part", entry.file_name().to_string_lossy()));
            fs::copy(entry.path(), &part).map_err(|e| io(&entry.path(), e))?;
            fs::rename(&part, &target).map_err(|e| io(&target, e))?;
        }
    }
    Ok(())
}

/// Moves container `id` from `root` to `opts.to_root`.
pub fn migrate(root: &StateRoot, id: &str, opts: &MigrateOptions) -> Result<MigrateReport, LifecycleError> {
    let canonical = |p: &Path| fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    if canonical(root.path()) == canonical(opts.to_root.path()) {
        return Err(err(format!("--to-root {}: that is the container's own root", opts.to_root.path().display())));
    }
    let (bundle, status) = {
        let dir = ContainerDir::open(root, id, Lock::Shared)?;
        let state = dir.load()?.ok_or_else(|| LifecycleError::Creating(id.into()))?;
        (state.bundle.clone(), dir.status(Some(&state)))
    };
    if status != Status::Running {
        return Err(LifecycleError::WrongStatus {
            id: id.into(),
            status,
            message: "only a running container can be migrated",
        });
    }
    if opts.to_root.path().join(id).exists() {
        return Err(err(format!("--to-root {}: a container {id} is already there", opts.to_root.path().display())));
    }
    let base = opts.images.clone().unwrap_or_else(|| opts.to_root.path().join(format!(".migrate-{id}")));
    if base.exists() && fs::read_dir(&base).map(|mut d| d.next().is_some()).unwrap_or(true) {
        return Err(err(format!("{}: the images directory is not empty", base.display())));
    }
    opts.to_root.ensure()?;
    let report = run_rounds(root, id, &bundle, &base, opts)?;
    if opts.images.is_none() {
        let _ = fs::remove_dir_all(&base);
    }
    Ok(report)
}

fn run_rounds(
    root: &StateRoot,
    id: &str,
    bundle: &Path,
    base: &Path,
    opts: &MigrateOptions,
) -> Result<MigrateReport, LifecycleError> {
    let names: Vec<String> = (0..opts.pre_dump_rounds).map(|i| format!("r{i}")).chain(["final".to_string()]).collect();
    // The flags every round's dump and the restore share; each sets its own images.
    let flags = criu::Options {
        tcp_established: opts.tcp_established,
        ext_unix_sk: opts.ext_unix_sk,
        file_locks: opts.file_locks,
        shell_job: opts.shell_job,
        ..Default::default()
    };
    let (final_src, final_dst) = (base.join("src/final"), base.join("dst/final"));
    let restore_into = |to: &StateRoot| {
        let ro = RestoreOptions {
            criu: opts.criu.clone(),
            bundle,
            restore: criu::Options { image: final_dst.clone(), work: final_dst.clone(), ..flags.clone() },
            detach: true,
            pid_file: None,
            systemd_cgroup: opts.systemd_cgroup,
        };
        checkpoint::restore(to, id, &ro)
    };
    // After the final dump the container is gone from its root: whatever fails from there on
    // (the page server's end, the copy, the restore under the other root) brings it back where
    // it was, from the same images, and says so.
    let back = |what: String| -> LifecycleError {
        match copy_images(&final_src, &final_dst).and_then(|()| restore_into(root)) {
            Ok(_) => err(format!("migrate {id}: {what}; it runs again where it was")),
            Err(back) => err(format!(
                "migrate {id}: {what}; and back where it was: {back}; the images are in {}",
                base.display()
            )),
        }
    };
    let mut rounds = Vec::new();
    let mut frozen = Instant::now();
    for (i, name) in names.iter().enumerate() {
        let final_dump = i + 1 == names.len();
        let parent = (i > 0).then(|| format!("../{}", names[i - 1]));
        let (src, dst) = (base.join("src").join(name), base.join("dst").join(name));
        fs::create_dir_all(&src).map_err(|e| err(format!("{}: {e}", src.display())))?;
        let port = free_port()?;
        let server = PageServer::start(&opts.criu, &dst, parent.as_deref(), port)?;
        let dump = criu::DumpOptions {
            common: criu::Options { image: src.clone(), work: src.clone(), ..flags.clone() },
            parent: parent.as_ref().map(PathBuf::from),
            pre_dump: !final_dump,
            page_server: Some(format!("127.0.0.1:{port}")),
            ..Default::default()
        };
        let started = Instant::now();
        if final_dump {
            frozen = started;
        }
        if let Err(e) = checkpoint::checkpoint(root, id, &CheckpointOptions { criu: opts.criu.clone(), dump }) {
            server.kill();
            return Err(e);
        }
        match server.finish(Duration::from_secs(60)) {
            Err(e) if final_dump => return Err(back(format!("the page server: {e}"))),
            other => other?,
        }
        rounds.push(Round {
            kind: if final_dump { "dump" } else { "pre-dump" },
            ms: ms(started.elapsed()),
            page_bytes: page_bytes(&dst),
        });
    }
    let copied = Instant::now();
    if let Err(e) = copy_images(&final_src, &final_dst) {
        return Err(back(e.to_string()));
    }
    let copy_ms = ms(copied.elapsed());
    let restoring = Instant::now();
    let pid = match restore_into(opts.to_root) {
        Ok(pid) => pid,
        Err(e) => return Err(back(format!("restore under {}: {e}", opts.to_root.path().display()))),
    };
    let restore_ms = ms(restoring.elapsed());
    Ok(MigrateReport {
        id: id.into(),
        to_root: opts.to_root.path().to_path_buf(),
        rounds,
        copy_ms,
        restore_ms,
        downtime_ms: ms(frozen.elapsed()),
        pid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_images_the_page_server_lacks_are_copied_and_pages_are_counted() {
        let d = std::env::temp_dir().join(format!("tally-migrate-unit-{}", std::process::id()));
        let (src, dst) = (d.join("src"), d.join("dst"));
        fs::create_dir_all(&src).unwrap();
        fs::create_dir_all(&dst).unwrap();
        fs::write(src.join("core-1.img"), "core").unwrap();
        fs::write(src.join("pagemap-1.img"), "local").unwrap();
        fs::write(dst.join("pagemap-1.img"), "served").unwrap();
        fs::write(dst.join("pages-1.img"), vec![0u8; 8192]).unwrap();
        std::os::unix::fs::symlink("../r0", src.join("parent")).unwrap();
        copy_images(&src, &dst).unwrap();
        assert_eq!(fs::read_to_string(dst.join("core-1.img")).unwrap(), "core");
        assert_eq!(fs::read_to_string(dst.join("pagemap-1.img")).unwrap(), "served");
        assert!(fs::symlink_metadata(dst.join("parent")).is_err(), "links are the page server's to make");
        assert_eq!(page_bytes(&dst), 8192);
        fs::remove_dir_all(&d).unwrap();
    }
}

//! The container lifecycle, one operation per file, each a small function over `state` and
//! the modules that do the work.

mod beancounters;
mod checkpoint;
mod create;
mod delete;
mod events;
mod exec;
mod foreground;
mod kill;
mod migrate;
mod pause;
mod ps;
mod query;
mod run;
mod start;
mod terminal;
mod update;

pub use beancounters::{beancounters, ledger};
pub use checkpoint::{checkpoint, restore, CheckpointOptions, RestoreOptions};
pub use create::{create, CreateOptions};
pub use delete::delete;
pub use events::{runc_stats, stats_event, watch as watch_events};
pub use exec::{exec, ExecError, ExecOptions};
pub use kill::kill;
pub use migrate::{migrate, MigrateOptions, MigrateReport};
pub use pause::{pause, resume};
pub use ps::{filter_ps_output, pids};
pub use query::{list, state, ListEntry};
pub use run::{run, RunOptions};
pub use start::start;
pub use update::{parse_size, update, UpdateError, UpdateFlags};

use crate::bundle::BundleError;
use crate::cgroups::CgroupError;
use crate::id::IdError;
use crate::rootfs::RootfsError;
use crate::spawn::SpawnError;
use crate::state::{StateError, Status};

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error(transparent)]
    Id(#[from] IdError),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error(transparent)]
    Update(#[from] UpdateError),
    #[error(transparent)]
    Seccomp(#[from] crate::security::seccomp::SeccompError),
    #[error(transparent)]
    Lsm(#[from] crate::security::lsm::LsmError),
    #[error(transparent)]
    Rootless(#[from] crate::rootless::RootlessError),
    #[error(transparent)]
    Criu(#[from] crate::criu::CriuError),
    #[error("{0}")]
    Checkpoint(String),
    #[error(transparent)]
    DiskQuota(#[from] crate::disk_quota::DiskQuotaError),
    #[error("container {id} is {status}: {message}")]
    WrongStatus { id: String, status: Status, message: &'static str },
    #[error("container {0} is still being created")]
    Creating(String),
    #[error("container {id}: signal {signal}: {source}")]
    Signal { id: String, signal: i32, source: std::io::Error },
    #[error("--pid-file {path}: {source}")]
    PidFile { path: std::path::PathBuf, source: std::io::Error },
    #[error("container {id}: start: {source}")]
    Start { id: String, source: std::io::Error },
    /// The process could not join the container: often because the container ended meanwhile
    /// (a concurrent kill or delete), which then closes the setup channel.
    #[error("container {id}: exec: {source}{}", if *.stopped { " (the container stopped meanwhile)" } else { "" })]
    ExecInto { id: String, source: SpawnError, stopped: bool },
}

/// A document named on the command line: a file, or standard input for `-` (as containerd
/// sends `update --resources -`).
fn read_input(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    if path == std::path::Path::new("-") {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
        Ok(buf)
    } else {
        std::fs::read(path)
    }
}

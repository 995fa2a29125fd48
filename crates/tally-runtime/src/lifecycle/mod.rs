//! The container lifecycle, one operation per file, each a small function over `state` and
//! the modules that do the work.

mod create;
mod delete;
mod kill;
mod query;
mod run;
mod start;

pub use create::{create, CreateOptions};
pub use delete::delete;
pub use kill::kill;
pub use query::{list, state, ListEntry};
pub use run::{run, RunOptions};
pub use start::start;

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
    Seccomp(#[from] crate::security::seccomp::SeccompError),
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
}

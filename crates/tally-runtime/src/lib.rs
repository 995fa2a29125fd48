//! tally's container library. Each module holds one concern of an OCI runtime; the `tally`
//! binary only parses the command line and calls `lifecycle`.

pub mod bundle;
pub mod cgroups;
pub mod channel;
pub mod console;
pub mod criu;
pub mod default_spec;
pub mod disk_quota;
pub mod features;
pub mod hooks;
pub mod id;
pub mod lifecycle;
pub mod namespaces;
pub mod proc_info;
pub mod process;
pub mod procfs;
pub mod rootfs;
pub mod rootless;
pub mod security;
pub mod signal;
pub mod spawn;
pub mod state;
pub mod sys;
pub mod timefmt;

/// The OCI runtime-spec version tally implements.
pub const OCI_VERSION: &str = "1.3.0";

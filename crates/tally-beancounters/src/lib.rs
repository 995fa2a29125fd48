//! Beancounters: OpenVZ's per-container resource accounting (held, maxheld, barrier, limit,
//! failcnt per resource) on a stock kernel, read from the container's cgroup (v2, or v1's own
//! files) and sampled from /proc where no cgroup file counts the resource.

pub mod annotations;
pub mod collect;
pub mod diskquota;
pub mod kfile;
pub mod ledger;
pub mod model;
pub mod sampler;
pub mod table;
pub mod vz;

pub use collect::{cgroup_rows, collect, FilterError, Layout, MaxHeld, Target, Wanted};
pub use model::{Beancounters, Row, Value};

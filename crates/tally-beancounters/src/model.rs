//! The beancounter model: per resource the five numbers OpenVZ reported, with the unit, how
//! the limit is enforced on this kernel, and where each number came from.

use serde::{Serialize, Serializer};

/// How OpenVZ printed "no limit", and how tally prints it.
pub const UNLIMITED: u64 = i64::MAX as u64;

/// cgroup v1's "no limit" for byte counters (PAGE_COUNTER_MAX pages of 4 KiB).
const V1_UNLIMITED: u64 = 9223372036854771712;

/// One of the five numbers: a value, no limit, or nothing to report (JSON `null`; never faked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Value {
    Num(u64),
    Unlimited,
    #[default]
    Absent,
}

impl Value {
    pub fn num(&self) -> Option<u64> {
        match self {
            Value::Num(n) => Some(*n),
            Value::Unlimited => Some(UNLIMITED),
            Value::Absent => None,
        }
    }

    /// A cgroup limit file's value: `max` is no limit.
    pub fn from_limit(text: &str) -> Value {
        match text.trim() {
            "max" => Value::Unlimited,
            // cgroup v1 writes "no limit" as the largest page-aligned counter value.
            t => match t.parse::<u64>() {
                Ok(n) if n >= V1_UNLIMITED => Value::Unlimited,
                Ok(n) => Value::Num(n),
                Err(_) if t == "-1" => Value::Unlimited,
                Err(_) => Value::Absent,
            },
        }
    }

    /// Bytes to pages (rounded up, as the kernel charges whole pages); no limit stays so.
    pub fn to_pages(self, page: u64) -> Value {
        match self {
            Value::Num(n) if n >= UNLIMITED => Value::Unlimited,
            Value::Num(n) => Value::Num(n.div_ceil(page)),
            v => v,
        }
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.num() {
            Some(n) => s.serialize_u64(n),
            None => s.serialize_none(),
        }
    }
}

/// The unit of a resource's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    Bytes,
    Pages,
    Items,
    /// CPU time (cpu row) or stall time (pressure rows).
    Usec,
    /// 1 KiB blocks (diskspace, as vzquota counted).
    Kib,
}

/// Who stops a container at the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Enforced {
    /// A cgroup limit: the kernel refuses or reclaims past it for the whole container.
    Kernel,
    /// Only as part of memory.max's aggregate limit.
    Aggregate,
    /// A resource limit each process has on its own, not the container's total.
    RlimitPerProcess,
    /// A mount option (devpts `max=`).
    MountOption,
    /// A namespaced sysctl.
    Sysctl,
    /// Accounted, never enforced.
    None,
}

/// One row.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub resource: String,
    pub held: Value,
    pub maxheld: Value,
    pub barrier: Value,
    pub limit: Value,
    pub failcnt: Value,
    pub unit: Unit,
    pub enforced: Enforced,
    /// Which file or sampler each number came from.
    pub source: String,
}

impl Row {
    pub fn new(resource: &str, unit: Unit, enforced: Enforced, source: impl Into<String>) -> Row {
        Row {
            resource: resource.into(),
            held: Value::Absent,
            maxheld: Value::Absent,
            barrier: Value::Absent,
            limit: Value::Absent,
            failcnt: Value::Absent,
            unit,
            enforced,
            source: source.into(),
        }
    }
}

/// A container's beancounters.
#[derive(Debug, Clone, Serialize)]
pub struct Beancounters {
    pub id: String,
    pub cgroup: String,
    /// The cgroup directory's inode: the numeric uid of the /proc/user_beancounters table.
    pub cgroup_id: u64,
    pub page_size: u64,
    pub resources: Vec<Row>,
}

impl Beancounters {
    pub fn row(&self, resource: &str) -> Option<&Row> {
        self.resources.iter().find(|r| r.resource == resource)
    }
}

/// The original resources in kernel index order (`dummy` rows included, as the file had
/// them). swappages (index 24) was only in the per-container view.
pub const UBC_ORDER: &[&str] = &[
    "kmemsize",
    "lockedpages",
    "privvmpages",
    "shmpages",
    "dummy",
    "numproc",
    "physpages",
    "vmguarpages",
    "oomguarpages",
    "numtcpsock",
    "numflock",
    "numpty",
    "numsiginfo",
    "tcpsndbuf",
    "tcprcvbuf",
    "othersockbuf",
    "dgramrcvbuf",
    "numothersock",
    "dcachesize",
    "numfile",
    "dummy",
    "dummy",
    "dummy",
    "numiptent",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_pages() {
        assert_eq!(Value::from_limit("max\n"), Value::Unlimited);
        assert_eq!(Value::from_limit("33554432"), Value::Num(33554432));
        assert_eq!(Value::from_limit("9223372036854771712"), Value::Unlimited);
        assert_eq!(Value::from_limit("-1"), Value::Unlimited);
        assert_eq!(Value::Num(33554432).to_pages(4096), Value::Num(8192));
        assert_eq!(Value::Num(1).to_pages(4096), Value::Num(1));
        assert_eq!(serde_json::to_string(&Value::Absent).unwrap(), "null");
        assert_eq!(serde_json::to_string(&Value::Unlimited).unwrap(), "9223372036854775807");
    }
}

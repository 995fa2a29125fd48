//! Reading a container's beancounters: the cgroup v2 files of the mapping table (or cgroup
//! v1's own files where that is what the host has), the /proc samplers, and the sampled
//! high-water marks kept between reads. Features are detected by file existence, never by
//! kernel version; a number the host does not have stays `Absent`.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::model::{Beancounters, Enforced, Row, Unit, Value};
use crate::sampler;

/// What the runtime knows about the container.
pub struct Target<'a> {
    pub id: &'a str,
    /// The cgroup path as the runtime's cgroup manager uses it, e.g. `/tally/c1`; `None` for
    /// a container without a cgroup (rootless without delegation).
    pub cgroup_path: Option<&'a Path>,
    /// The container's processes when no cgroup lists them (its pid namespace's).
    pub processes: Option<Vec<i32>>,
    /// The init's host PID while the container runs.
    pub init_pid: Option<i32>,
    /// `kernel.shmall` as configured for the container's IPC namespace (pages).
    pub shmall: Option<u64>,
    /// Only these resources (`--resources`); `None` is every one.
    pub wanted: Option<&'a Wanted>,
    /// The disk quota's project id and a path on its filesystem (the rootfs), when it has one.
    pub disk: Option<(&'a Path, u32)>,
}

/// A `--resources` filter: row names, where `io`, `pressure` and `hugetlb` stand for all of
/// their rows (`io.8:0`, ...).
#[derive(Debug, Clone, Default)]
pub struct Wanted(Vec<String>);

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("--resources: unknown resource '{0}' (known: the /proc/user_beancounters names, swappages, cpu, sockbuf, diskspace, diskinodes, io, pressure, hugetlb)")]
    Unknown(String),
    #[error("--resources: no resource named")]
    Empty,
}

/// The resources no cgroup file counts: only a walk over the container's processes gives them.
const SAMPLED: &[&str] =
    &["numfile", "numflock", "lockedpages", "privvmpages", "numsiginfo", "numtcpsock", "numothersock", "numpty"];
const FAMILIES: &[&str] = &["io", "pressure", "hugetlb"];

impl Wanted {
    /// Parses `numproc,physpages,io`; an unknown name is an error naming it.
    pub fn parse(list: &str) -> Result<Wanted, FilterError> {
        let mut names = Vec::new();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let known = crate::model::UBC_ORDER.contains(&name) && name != "dummy"
                || ["swappages", "cpu", "sockbuf", "diskspace", "diskinodes"].contains(&name)
                || FAMILIES.contains(&name)
                || FAMILIES.iter().any(|f| name.strip_prefix(f).is_some_and(|r| r.starts_with('.')));
            if !known {
                return Err(FilterError::Unknown(name.to_string()));
            }
            names.push(name.to_string());
        }
        if names.is_empty() {
            return Err(FilterError::Empty);
        }
        Ok(Wanted(names))
    }

    pub fn wants(&self, row: &str) -> bool {
        self.0.iter().any(|n| {
            n == row
                || FAMILIES.contains(&n.as_str()) && row.strip_prefix(n.as_str()).is_some_and(|r| r.starts_with('.'))
        })
    }
}

impl Target<'_> {
    fn wants(&self, row: &str) -> bool {
        self.wanted.is_none_or(|w| w.wants(row))
    }
}

/// Sampled maxheld values, kept in the state directory between reads.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MaxHeld(pub HashMap<String, u64>);

impl MaxHeld {
    pub fn load(path: &Path) -> MaxHeld {
        crate::kfile::read_bytes(path)
            .ok()
            .and_then(|d| serde_json::from_slice(&d).ok())
            .map(MaxHeld)
            .unwrap_or_default()
    }

    /// Written to a temporary file and renamed, so a concurrent reader never sees half.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        // Readers run concurrently (beancounters, events): each its own temporary name.
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        fs::write(&tmp, serde_json::to_vec(&self.0).expect("map serializes"))?;
        fs::rename(tmp, path)
    }

    /// The high-water mark of `resource` including `held` now.
    fn observe(&mut self, resource: &str, held: Value) -> Value {
        let Some(h) = held.num() else { return Value::Absent };
        let m = self.0.entry(resource.to_string()).or_insert(0);
        *m = (*m).max(h);
        Value::Num(*m)
    }
}

fn read(path: &Path) -> Option<String> {
    crate::kfile::read(path)
}

fn keyed_in(text: &str, key: &str) -> Value {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
        .map(Value::Num)
        .unwrap_or(Value::Absent)
}

pub(crate) fn page_size() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as u64
    } else {
        4096
    }
}

/// Where the container's cgroup files are.
pub enum Layout {
    /// The v2 directory.
    V2(PathBuf),
    /// Per v1 controller, its directory (only the controllers the host mounts).
    V1(HashMap<String, PathBuf>),
    /// The container has no cgroup.
    None,
}

impl Layout {
    pub fn find(cgroup_path: &Path) -> Layout {
        let rel = cgroup_path.strip_prefix("/").unwrap_or(cgroup_path);
        // Which kind the host has does not change under a running command: asked once, as
        // the v1 mount table is read once.
        static PURE_V2: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        if *PURE_V2.get_or_init(|| Path::new("/sys/fs/cgroup/cgroup.controllers").exists()) {
            return Layout::V2(Path::new("/sys/fs/cgroup").join(rel));
        }
        Layout::V1(v1_mounts().iter().map(|(opt, mount)| (opt.clone(), mount.join(rel))).collect())
    }

    /// The directory whose inode identifies the container (its uid in the table).
    fn id_dir(&self) -> Option<&Path> {
        match self {
            Layout::V2(d) => Some(d),
            Layout::V1(m) => m.get("pids").or_else(|| m.get("memory")).or_else(|| m.get("cpu")).map(|p| p.as_path()),
            Layout::None => None,
        }
    }

    /// Every process in the cgroup and its descendants (host PIDs). `top` is the metadata of
    /// the cgroup's directory when the caller has it already.
    pub fn pids(&self, top: Option<&fs::Metadata>) -> Vec<i32> {
        let Some(dir) = self.id_dir() else { return Vec::new() };
        let mut out = Vec::new();
        // cgroupfs (kernfs) counts a directory's subdirectories in its link count, as a
        // filesystem does: 2 is a leaf, the usual container, whose directory needs no listing
        // (on v1, which has no cgroup.stat, the listing was a fifth of a container's calls).
        fn has_children(meta: Option<&fs::Metadata>, dir: &Path) -> bool {
            match meta {
                Some(m) => m.nlink() > 2,
                None => fs::metadata(dir).map_or(true, |m| m.nlink() > 2),
            }
        }
        fn walk(dir: &Path, meta: Option<&fs::Metadata>, out: &mut Vec<i32>, depth: usize) {
            if let Some(t) = read(&dir.join("cgroup.procs")) {
                out.extend(t.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            }
            if depth < 8 && has_children(meta, dir) {
                for e in fs::read_dir(dir).into_iter().flatten().flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        walk(&e.path(), None, out, depth + 1);
                    }
                }
            }
        }
        walk(dir, top, &mut out, 0);
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The `*.events` files whose counters are failcnts (for `events` to watch).
    pub fn events_files(&self) -> Vec<PathBuf> {
        let candidates: Vec<PathBuf> = match self {
            Layout::V2(d) => {
                let mut v: Vec<PathBuf> =
                    ["pids.events", "memory.events", "memory.swap.events"].iter().map(|f| d.join(f)).collect();
                v.extend(
                    hugetlb_sizes(&CgroupFiles::new(d)).into_iter().map(|s| d.join(format!("hugetlb.{s}.events"))),
                );
                v
            }
            Layout::V1(m) => m.get("pids").map(|d| vec![d.join("pids.events")]).unwrap_or_default(),
            Layout::None => Vec::new(),
        };
        candidates.into_iter().filter(|p| p.exists()).collect()
    }
}

/// Each v1 mount option (controller name) and where it is mounted: read once per process,
/// since a listing of every container would otherwise parse the mount table per container.
fn v1_mounts() -> &'static [(String, PathBuf)] {
    static MOUNTS: std::sync::OnceLock<Vec<(String, PathBuf)>> = std::sync::OnceLock::new();
    MOUNTS.get_or_init(|| {
        let mut out = Vec::new();
        let info = crate::kfile::read_all(Path::new("/proc/self/mountinfo")).unwrap_or_default();
        for line in info.lines() {
            let Some((left, right)) = line.split_once(" - ") else { continue };
            let mut f = right.split_whitespace();
            if f.next() != Some("cgroup") {
                continue;
            }
            let Some(mount) = left.split_whitespace().nth(4) else { continue };
            for opt in f.nth(1).unwrap_or_default().split(',') {
                out.push((opt.to_string(), PathBuf::from(mount)));
            }
        }
        out
    })
}

/// The hugetlb page sizes the cgroup has files for. The sizes are the host's
/// (/sys/kernel/mm/hugepages, read once), named as the controller names them (2048kB is
/// `2MB`): a directory listing of every container's cgroup would cost more than the rows.
fn hugetlb_sizes(c: &CgroupFiles) -> Vec<String> {
    static SIZES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let host = SIZES.get_or_init(|| {
        let mut kib: Vec<u64> = fs::read_dir("/sys/kernel/mm/hugepages")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_prefix("hugepages-")?.strip_suffix("kB")?.parse().ok())
            .collect();
        kib.sort_unstable();
        kib.into_iter().map(hugetlb_name).collect()
    });
    host.iter().filter(|s| c.has(&format!("hugetlb.{s}.max"))).cloned().collect()
}

/// The cgroup's name for a huge page size: the largest unit (KB, MB, GB) that divides it.
fn hugetlb_name(kib: u64) -> String {
    if kib.is_multiple_of(1 << 20) {
        format!("{}GB", kib >> 20)
    } else if kib.is_multiple_of(1 << 10) {
        format!("{}MB", kib >> 10)
    } else {
        format!("{kib}KB")
    }
}

/// The files of one cgroup directory, each read at most once per collection (memory.stat
/// alone feeds five rows).
/// The directory is opened once and its files read relative to it: a path walk of
/// /sys/fs/cgroup/... per file was a good part of a listing's system time.
struct CgroupFiles {
    dir: Option<fs::File>,
    cache: std::cell::RefCell<HashMap<String, Option<String>>>,
}

impl CgroupFiles {
    fn new(dir: &Path) -> Self {
        let dir = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
            .ok()
            .and_then(|d| crate::kfile::open_dir(None, &d));
        CgroupFiles { dir, cache: Default::default() }
    }

    fn text(&self, name: &str) -> Option<String> {
        let read_one = || {
            let dir = self.dir.as_ref()?;
            crate::kfile::read_at(dir, &std::ffi::CString::new(name).ok()?)
        };
        self.cache.borrow_mut().entry(name.to_string()).or_insert_with(read_one).clone()
    }

    fn has(&self, name: &str) -> bool {
        self.text(name).is_some()
    }

    fn value(&self, name: &str) -> Value {
        self.text(name).map(|t| Value::from_limit(&t)).unwrap_or(Value::Absent)
    }

    /// A `key value` line of a flat-keyed file (memory.stat, memory.events, pids.events).
    fn keyed(&self, name: &str, key: &str) -> Value {
        self.text(name).map(|t| keyed_in(&t, key)).unwrap_or(Value::Absent)
    }
}

/// Reads every row. `maxheld` is updated with this sample's values.
pub fn collect(t: &Target, maxheld: &mut MaxHeld) -> Beancounters {
    let page = page_size();
    let layout = t.cgroup_path.map(Layout::find).unwrap_or(Layout::None);
    let id_meta = layout.id_dir().and_then(|d| fs::metadata(d).ok());
    let cgroup_id = id_meta.as_ref().map(|m| m.ino()).unwrap_or(0);
    let mut rows = cgroup_rows_into(&layout, page, maxheld);
    if SAMPLED.iter().any(|r| t.wants(r)) {
        let pids = t.processes.clone().unwrap_or_else(|| layout.pids(id_meta.as_ref()));
        rows.extend(sampled_rows(t, &pids, page, maxheld));
    }
    if t.wants("diskspace") || t.wants("diskinodes") {
        rows.extend(disk_rows(t, maxheld));
    }
    // shmpages' limit is the container's kernel.shmall, which only its IPC namespace shows:
    // the configured value.
    if let Some(r) = rows.iter_mut().find(|r| r.resource == "shmpages") {
        r.limit = t.shmall.map(Value::Num).unwrap_or(Value::Absent);
    }
    let order =
        |name: &str| crate::model::UBC_ORDER.iter().position(|n| *n == name).unwrap_or(crate::model::UBC_ORDER.len());
    // Every UBC resource has a row: one this host cannot give is there, with null values.
    for name in crate::model::UBC_ORDER.iter().chain(["swappages"].iter()) {
        if *name != "dummy" && t.wants(name) && !rows.iter().any(|r| r.resource == *name) {
            rows.push(Row::new(name, unit_of(name), Enforced::None, unavailable(&layout, name)));
        }
    }
    rows.retain(|r| t.wants(&r.resource));
    // UBC rows in kernel order first, then swappages and the extensions as read (stable sort).
    rows.sort_by_key(|r| order(&r.resource));
    Beancounters {
        id: t.id.to_string(),
        cgroup: t.cgroup_path.map(|p| p.display().to_string()).unwrap_or_default(),
        cgroup_id,
        page_size: page,
        resources: rows,
    }
}

/// Only the rows read from cgroup files (no /proc walk): cheap enough to run on every change
/// of an `*.events` file. High-water marks are not tracked here.
pub fn cgroup_rows(layout: &Layout) -> Vec<Row> {
    cgroup_rows_into(layout, page_size(), &mut MaxHeld::default())
}

fn cgroup_rows_into(layout: &Layout, page: u64, maxheld: &mut MaxHeld) -> Vec<Row> {
    match layout {
        Layout::V2(d) => v2_rows(d, page, maxheld),
        Layout::V1(m) => v1_rows(m, page, maxheld),
        Layout::None => Vec::new(),
    }
}

fn unit_of(name: &str) -> Unit {
    match name {
        "kmemsize" | "tcpsndbuf" | "tcprcvbuf" | "othersockbuf" | "dgramrcvbuf" | "dcachesize" => Unit::Bytes,
        n if n.ends_with("pages") => Unit::Pages,
        _ => Unit::Items,
    }
}

fn unavailable(layout: &Layout, name: &str) -> String {
    if matches!(name, "numpty") {
        return "unavailable: no running init to sample the container's devpts through".into();
    }
    if name == "swappages" {
        return "unavailable: no memory.swap.* files (no swap accounting for this cgroup)".into();
    }
    let controller = if name == "numproc" { "pids" } else { "memory" };
    match layout {
        Layout::V2(_) => {
            format!("unavailable: the container's cgroup has no {controller} files (controller not enabled)")
        }
        Layout::V1(_) => format!("unavailable: not read from cgroup v1 (or no v1 {controller} hierarchy here)"),
        Layout::None => "unavailable: the container has no cgroup (rootless, with no cgroup delegated)".into(),
    }
}

/// A peak file's value, or the sampled high-water mark when the kernel has no peak file.
fn peak(
    c: &CgroupFiles,
    file: &str,
    resource: &str,
    held: Value,
    maxheld: &mut MaxHeld,
    to_pages: Option<u64>,
) -> (Value, String) {
    let v = c.value(file);
    let v = match to_pages {
        Some(p) => v.to_pages(p),
        None => v,
    };
    let sampled = maxheld.observe(resource, held);
    if v != Value::Absent {
        (v, file.to_string())
    } else {
        (sampled, "sampled".into())
    }
}

fn v2_rows(d: &Path, page: u64, mh: &mut MaxHeld) -> Vec<Row> {
    let mut rows = Vec::new();
    let c = CgroupFiles::new(d);

    if c.has("pids.current") {
        let mut r = Row::new("numproc", Unit::Items, Enforced::Kernel, "");
        r.held = c.value("pids.current");
        let (m, msrc) = peak(&c, "pids.peak", "numproc", r.held, mh, None);
        r.maxheld = m;
        r.limit = c.value("pids.max");
        r.barrier = r.limit;
        r.failcnt = c.keyed("pids.events", "max");
        r.source = format!("held pids.current, maxheld {msrc}, barrier/limit pids.max, failcnt pids.events max");
        rows.push(r);
    }
    if c.has("memory.current") {
        let mut r = Row::new("physpages", Unit::Pages, Enforced::Kernel, "");
        r.held = c.value("memory.current").to_pages(page);
        let (m, msrc) = peak(&c, "memory.peak", "physpages", r.held, mh, Some(page));
        r.maxheld = m;
        r.barrier = match c.value("memory.high") {
            Value::Unlimited => Value::Num(0),
            v => v.to_pages(page),
        };
        r.limit = c.value("memory.max").to_pages(page);
        r.failcnt = c.keyed("memory.events", "max");
        r.source = format!(
            "held memory.current, maxheld {msrc}, barrier memory.high (0 when unset), limit memory.max, failcnt memory.events max"
        );
        rows.push(r);

        if c.has("memory.swap.current") {
            let mut r = Row::new("swappages", Unit::Pages, Enforced::Kernel, "");
            r.held = c.value("memory.swap.current").to_pages(page);
            let (m, msrc) = peak(&c, "memory.swap.peak", "swappages", r.held, mh, Some(page));
            r.maxheld = m;
            r.barrier = c.value("memory.swap.high").to_pages(page);
            r.limit = c.value("memory.swap.max").to_pages(page);
            r.failcnt = c.keyed("memory.swap.events", "max");
            r.source = format!(
                "held memory.swap.current, maxheld {msrc}, barrier memory.swap.high, limit memory.swap.max, failcnt memory.swap.events max"
            );
            rows.push(r);
        }

        let mut r = Row::new("kmemsize", Unit::Bytes, Enforced::Aggregate, "");
        let kernel = c.keyed("memory.stat", "kernel");
        r.held = if kernel != Value::Absent {
            r.source = "held memory.stat kernel, maxheld sampled; bounded by memory.max".into();
            kernel
        } else {
            // Before memory.stat had `kernel` (5.18): its parts.
            r.source =
                "held memory.stat kernel_stack+pagetables+percpu+slab, maxheld sampled; bounded by memory.max".into();
            let parts = ["kernel_stack", "pagetables", "percpu", "slab"].map(|k| c.keyed("memory.stat", k).num());
            if parts.iter().all(|p| p.is_none()) {
                Value::Absent
            } else {
                Value::Num(parts.iter().flatten().sum())
            }
        };
        r.maxheld = mh.observe("kmemsize", r.held);
        r.barrier = Value::Unlimited;
        r.limit = Value::Unlimited;
        rows.push(r);

        let mut r = Row::new("shmpages", Unit::Pages, Enforced::Sysctl, "");
        r.held = c.keyed("memory.stat", "shmem").to_pages(page);
        r.maxheld = mh.observe("shmpages", r.held);
        r.source = "held memory.stat shmem, maxheld sampled, limit kernel.shmall of the container".into();
        rows.push(r);

        let swap = c.value("memory.swap.current").num().unwrap_or(0);
        let mut r = Row::new("oomguarpages", Unit::Pages, Enforced::None, "");
        r.held = c.value("memory.current").num().map(|m| Value::Num(m + swap)).unwrap_or_default().to_pages(page);
        // The kernel's peaks, where it has them, bound the sampled mark from below.
        let peaks: u64 = ["memory.peak", "memory.swap.peak"].iter().map(|p| c.value(p).num().unwrap_or(0)).sum();
        r.maxheld = match mh.observe("oomguarpages", r.held) {
            Value::Num(m) => Value::Num(m.max(peaks.div_ceil(page))),
            v => v,
        };
        r.barrier = c.value("memory.min").to_pages(page);
        r.limit = Value::Unlimited;
        r.failcnt = c.keyed("memory.events", "oom_kill");
        r.source =
            "held memory.current+memory.swap.current, maxheld sampled, barrier memory.min, failcnt memory.events oom_kill (approximate)"
                .into();
        rows.push(r);

        let mut r = Row::new("vmguarpages", Unit::Pages, Enforced::None, "");
        r.held = Value::Num(0);
        r.barrier = c.value("memory.low").to_pages(page);
        r.limit = Value::Unlimited;
        r.failcnt = c.keyed("memory.events", "low");
        r.source = "held not accounted (0), barrier memory.low, failcnt memory.events low (approximate)".into();
        rows.push(r);

        let mut r = Row::new("dcachesize", Unit::Bytes, Enforced::Aggregate, "");
        r.held = c.keyed("memory.stat", "slab_reclaimable");
        r.maxheld = mh.observe("dcachesize", r.held);
        r.source = "held memory.stat slab_reclaimable, maxheld sampled; bounded by memory.max".into();
        rows.push(r);

        // The kernel counts socket buffer memory only as one total.
        for name in ["tcpsndbuf", "tcprcvbuf", "othersockbuf", "dgramrcvbuf"] {
            rows.push(Row::new(name, Unit::Bytes, Enforced::Aggregate, "not accounted separately: see sockbuf"));
        }
        let mut r = Row::new("sockbuf", Unit::Bytes, Enforced::Aggregate, "");
        r.held = c.keyed("memory.stat", "sock");
        r.maxheld = mh.observe("sockbuf", r.held);
        r.source = "held memory.stat sock (all socket buffers), maxheld sampled; bounded by memory.max".into();
        rows.push(r);
    }
    if c.has("cpu.stat") {
        let mut r = Row::new("cpu", Unit::Usec, Enforced::Kernel, "");
        r.held = c.keyed("cpu.stat", "usage_usec");
        r.barrier = c.value("cpu.weight");
        r.limit =
            c.text("cpu.max").map(|t| Value::from_limit(t.split_whitespace().next().unwrap_or(""))).unwrap_or_default();
        r.failcnt = c.keyed("cpu.stat", "nr_throttled");
        r.source =
            "held cpu.stat usage_usec, barrier cpu.weight, limit cpu.max quota, failcnt cpu.stat nr_throttled".into();
        rows.push(r);
    }
    if let Some(stat) = c.text("io.stat") {
        let max = c.text("io.max").unwrap_or_default();
        for line in stat.lines() {
            let mut it = line.split_whitespace();
            let Some(dev) = it.next() else { continue };
            let kv: HashMap<&str, u64> =
                it.filter_map(|p| p.split_once('=')).filter_map(|(k, v)| Some((k, v.parse().ok()?))).collect();
            let mut r = Row::new(&format!("io.{dev}"), Unit::Bytes, Enforced::Kernel, "");
            r.held = Value::Num(kv.get("rbytes").unwrap_or(&0) + kv.get("wbytes").unwrap_or(&0));
            r.barrier = c.keyed("io.weight", "default");
            r.limit = max
                .lines()
                .find(|l| l.starts_with(&format!("{dev} ")))
                .and_then(|l| l.split_whitespace().find_map(|p| p.strip_prefix("wbps=")))
                .map(Value::from_limit)
                .unwrap_or(Value::Unlimited);
            r.source = "held io.stat rbytes+wbytes, barrier io.weight, limit io.max wbps".into();
            rows.push(r);
        }
    }
    for size in hugetlb_sizes(&c) {
        let mut r = Row::new(&format!("hugetlb.{size}"), Unit::Bytes, Enforced::Kernel, "");
        r.held = c.value(&format!("hugetlb.{size}.current"));
        r.maxheld = mh.observe(&r.resource.clone(), r.held);
        r.limit = c.value(&format!("hugetlb.{size}.max"));
        r.barrier = r.limit;
        r.failcnt = c.keyed(&format!("hugetlb.{size}.events"), "max");
        r.source = format!("hugetlb.{size}.current/.max/.events max; maxheld sampled");
        rows.push(r);
    }
    for res in ["cpu", "memory", "io"] {
        let Some(text) = c.text(&format!("{res}.pressure")) else { continue };
        let total = |kind: &str| {
            text.lines()
                .find(|l| l.starts_with(kind))
                .and_then(|l| l.split_whitespace().find_map(|p| p.strip_prefix("total=")?.parse().ok()))
                .map(Value::Num)
                .unwrap_or_default()
        };
        let mut r = Row::new(&format!("pressure.{res}"), Unit::Usec, Enforced::None, "");
        r.held = total("some");
        r.failcnt = total("full");
        r.source = format!("{res}.pressure: held some total, failcnt full total (stall time)");
        rows.push(r);
    }
    rows
}

fn v1_rows(m: &HashMap<String, PathBuf>, page: u64, mh: &mut MaxHeld) -> Vec<Row> {
    let mut rows = Vec::new();
    let files: HashMap<&str, CgroupFiles> =
        ["pids", "memory", "cpuacct", "cpu"].iter().filter_map(|c| Some((*c, CgroupFiles::new(m.get(*c)?)))).collect();
    if let Some(d) = files.get("pids").filter(|d| d.has("pids.current")) {
        let mut r = Row::new("numproc", Unit::Items, Enforced::Kernel, "");
        r.held = d.value("pids.current");
        r.maxheld = mh.observe("numproc", r.held);
        r.limit = d.value("pids.max");
        r.barrier = r.limit;
        r.failcnt = d.keyed("pids.events", "max");
        r.source =
            "cgroup v1: held pids.current, maxheld sampled, barrier/limit pids.max, failcnt pids.events max".into();
        rows.push(r);
    }
    match files.get("memory").filter(|d| d.has("memory.usage_in_bytes")) {
        Some(d) => {
            let mut r = Row::new("physpages", Unit::Pages, Enforced::Kernel, "");
            r.held = d.value("memory.usage_in_bytes").to_pages(page);
            r.maxheld = d.value("memory.max_usage_in_bytes").to_pages(page);
            r.barrier = d.value("memory.soft_limit_in_bytes").to_pages(page);
            r.limit = d.value("memory.limit_in_bytes").to_pages(page);
            r.failcnt = d.value("memory.failcnt");
            r.source =
                "cgroup v1: memory.usage_in_bytes, max_usage_in_bytes, soft_limit_in_bytes, limit_in_bytes, failcnt"
                    .into();
            rows.push(r);
        }
        None => {
            for (name, unit) in [
                ("physpages", Unit::Pages),
                ("kmemsize", Unit::Bytes),
                ("shmpages", Unit::Pages),
                ("oomguarpages", Unit::Pages),
                ("vmguarpages", Unit::Pages),
                ("dcachesize", Unit::Bytes),
            ] {
                rows.push(Row::new(
                    name,
                    unit,
                    Enforced::None,
                    "unavailable: this host has no cgroup v1 memory controller for the container",
                ));
            }
        }
    }
    if let Some(d) = files.get("cpuacct") {
        let mut r = Row::new("cpu", Unit::Usec, Enforced::Kernel, "");
        r.held = d.value("cpuacct.usage").num().map(|ns| Value::Num(ns / 1000)).unwrap_or_default();
        if let Some(c) = files.get("cpu") {
            r.barrier = c.value("cpu.shares");
            r.limit = match c.value("cpu.cfs_quota_us") {
                v @ Value::Num(_) => v,
                _ => Value::Unlimited,
            };
            r.failcnt = c.keyed("cpu.stat", "nr_throttled");
        }
        r.source =
            "cgroup v1: held cpuacct.usage, barrier cpu.shares, limit cpu.cfs_quota_us, failcnt cpu.stat nr_throttled"
                .into();
        rows.push(r);
    }
    rows
}

/// diskspace (1 KiB blocks) and diskinodes from the container's project quota. The kernel
/// counts no refusals (EDQUOT leaves no trace in the quota): failcnt stays null.
fn disk_rows(t: &Target, mh: &mut MaxHeld) -> Vec<Row> {
    let mut space = Row::new("diskspace", Unit::Kib, Enforced::Kernel, "");
    let mut inodes = Row::new("diskinodes", Unit::Items, Enforced::Kernel, "");
    let Some((path, project)) = t.disk else {
        for r in [&mut space, &mut inodes] {
            r.enforced = Enforced::None;
            r.source =
                "unavailable: no disk quota (org.tally.beancounter.diskspace / diskinodes) for this container".into();
        }
        return vec![space, inodes];
    };
    match crate::diskquota::usage(path, project) {
        Ok(u) => {
            let lim = |v: Option<u64>| v.map(Value::Num).unwrap_or(Value::Unlimited);
            space.held = Value::Num(u.space_bytes.div_ceil(1024));
            space.maxheld = mh.observe("diskspace", space.held);
            space.barrier = lim(u.limits.blocks_soft);
            space.limit = lim(u.limits.blocks_hard);
            inodes.held = Value::Num(u.inodes);
            inodes.maxheld = mh.observe("diskinodes", inodes.held);
            inodes.barrier = lim(u.limits.inodes_soft);
            inodes.limit = lim(u.limits.inodes_hard);
            let src = |what: &str| {
                format!("held {what} of project quota {project} (quotactl Q_GETQUOTA on {}), maxheld sampled, barrier/limit its soft/hard limits; failcnt not counted by the kernel", path.display())
            };
            space.source = src("space in 1 KiB blocks");
            inodes.source = src("inodes");
        }
        Err(e) => {
            for r in [&mut space, &mut inodes] {
                r.source = format!("unavailable: {e}");
            }
        }
    }
    vec![space, inodes]
}

/// The rows the samplers fill: processes' files, sockets, locks, pages, signals, ptys.
fn sampled_rows(t: &Target, pids: &[i32], page: u64, mh: &mut MaxHeld) -> Vec<Row> {
    let s = sampler::sample(pids, t.init_pid);
    let bound = if s.truncated { " (bounded sample: a lower bound)" } else { "" };
    let limits = |name: &str| {
        s.init_limits.as_deref().and_then(|text| sampler::parse_limit(text, name)).map(|(soft, hard)| {
            let v = |x: Option<u64>| x.map(Value::Num).unwrap_or(Value::Unlimited);
            (v(soft), v(hard))
        })
    };
    let mut rows = Vec::new();
    let mut add =
        |name: &str, unit: Unit, enforced: Enforced, held: u64, rl: Option<(Value, Value)>, source: String| {
            let mut r = Row::new(name, unit, enforced, source + bound);
            r.held = Value::Num(held);
            r.maxheld = mh.observe(name, r.held);
            if let Some((b, l)) = rl {
                r.barrier = b;
                r.limit = l;
            }
            rows.push(r);
        };
    add(
        "numfile",
        Unit::Items,
        Enforced::RlimitPerProcess,
        s.files,
        limits("Max open files"),
        "held open fds of the container's processes (/proc/<pid>/fd), barrier/limit RLIMIT_NOFILE of the init".into(),
    );
    add(
        "numflock",
        Unit::Items,
        Enforced::None,
        s.flocks,
        None,
        "held locks on the container's open files (/proc/<pid>/fdinfo lock: lines)".into(),
    );
    let to_pages = |(b, l): (Value, Value)| (b.to_pages(page), l.to_pages(page));
    add(
        "lockedpages",
        Unit::Pages,
        Enforced::RlimitPerProcess,
        (s.locked_kib * 1024).div_ceil(page),
        limits("Max locked memory").map(to_pages),
        "held VmLck of the container's processes, barrier/limit RLIMIT_MEMLOCK of the init".into(),
    );
    add(
        "privvmpages",
        Unit::Pages,
        Enforced::RlimitPerProcess,
        s.private_pages,
        limits("Max address space").map(to_pages),
        "held data+stack pages (VmData+VmStk) of the container's processes, barrier/limit RLIMIT_AS of the init".into(),
    );
    add(
        "numsiginfo",
        Unit::Items,
        Enforced::RlimitPerProcess,
        s.max_sigq,
        limits("Max pending signals"),
        "held largest SigQ of the container's processes (counted per user), barrier/limit RLIMIT_SIGPENDING".into(),
    );
    add(
        "numtcpsock",
        Unit::Items,
        Enforced::None,
        s.tcp_sockets,
        None,
        "held TCP sockets among the container's fds (their sockfs system.sockprotoname)".into(),
    );
    add(
        "numothersock",
        Unit::Items,
        Enforced::None,
        s.other_sockets,
        None,
        "held non-TCP sockets among the container's fds".into(),
    );
    if let Some(pid) = t.init_pid.filter(|_| t.wants("numpty")) {
        let (held, max) = sampler::ptys(pid);
        let mut r = Row::new(
            "numpty",
            Unit::Items,
            Enforced::MountOption,
            "held entries of the container's devpts, barrier/limit its max= mount option",
        );
        r.held = held.map(Value::Num).unwrap_or_default();
        r.maxheld = mh.observe("numpty", r.held);
        let lim = max.map(Value::Num).unwrap_or(Value::Unlimited);
        r.barrier = lim;
        r.limit = lim;
        rows.push(r);
    }
    rows.push(Row::new(
        "numiptent",
        Unit::Items,
        Enforced::None,
        "not sampled: counting netfilter rules needs nf_tables netlink in the container's network namespace",
    ));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_page_sizes_are_named_as_the_controller_names_them() {
        assert_eq!(hugetlb_name(2048), "2MB");
        assert_eq!(hugetlb_name(1 << 20), "1GB");
        assert_eq!(hugetlb_name(64), "64KB");
    }

    #[test]
    fn a_resource_filter_names_what_it_does_not_know() {
        let w = Wanted::parse("numproc, io,physpages").unwrap();
        assert!(w.wants("numproc") && w.wants("io.8:0") && w.wants("physpages"));
        assert!(!w.wants("numfile") && !w.wants("iolimit"));
        assert!(Wanted::parse("io.8:0").unwrap().wants("io.8:0"));
        let e = Wanted::parse("numproc,bogus").unwrap_err().to_string();
        assert!(e.contains("'bogus'"), "{e}");
        assert!(Wanted::parse(" , ").is_err());
    }
}

//! Beancounter settings as annotations: `org.tally.beancounter.<resource>` = `barrier[:limit]`
//! in config.json, translated at `create` into the OCI fields that enforce them (pids, memory,
//! unified cgroup v2 keys, the devpts `max=` option, kernel.shmall, rlimits). The translation
//! works on the config's JSON before it is parsed, so the rest of the runtime only ever sees
//! standard OCI fields. A malformed value, an unknown resource, or a value that contradicts an
//! explicit OCI field is an error naming the annotation.

use serde_json::{json, Map, Value as Json};

pub const PREFIX: &str = "org.tally.beancounter.";

/// The resources that can be set, with their unit ("pages", "items").
pub const RESOURCES: &[(&str, &str)] = &[
    ("numproc", "items"),
    ("physpages", "pages"),
    ("swappages", "pages"),
    ("vmguarpages", "pages"),
    ("oomguarpages", "pages"),
    ("numpty", "items"),
    ("shmpages", "pages"),
    ("numfile", "items"),
    ("lockedpages", "pages"),
    ("numsiginfo", "items"),
    ("privvmpages", "pages"),
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("annotation {annotation}: {message}")]
pub struct AnnotationError {
    pub annotation: String,
    pub message: String,
}

/// A parsed `barrier[:limit]`; `None` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub barrier: Option<u64>,
    pub limit: Option<u64>,
}

/// Parses one value. Page resources take K/M/G/T suffixes meaning bytes, converted to pages
/// (rounded up), as vzctl did; item resources take plain numbers.
pub fn parse(unit: &str, text: &str, page: u64) -> Result<Setting, String> {
    let one = |s: &str| -> Result<Option<u64>, String> {
        let s = s.trim();
        if s == "unlimited" || s == "max" {
            return Ok(None);
        }
        let (num, mult) = match s.chars().last() {
            Some(c @ ('k' | 'K' | 'm' | 'M' | 'g' | 'G' | 't' | 'T')) if unit == "pages" => {
                let shift = match c.to_ascii_lowercase() {
                    'k' => 10,
                    'm' => 20,
                    'g' => 30,
                    _ => 40,
                };
                (&s[..s.len() - 1], Some(1u64 << shift))
            }
            _ => (s, None),
        };
        let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a number, \"unlimited\" or a size"))?;
        let v = match mult {
            Some(m) => n.checked_mul(m).ok_or("too large")?.div_ceil(page),
            None => n,
        };
        // Pages become bytes and items become signed cgroup values: both must fit an i64.
        let max = i64::MAX as u64 / if unit == "pages" { page } else { 1 };
        if v > max {
            return Err(format!("{s:?} is too large (at most {max})"));
        }
        Ok(Some(v))
    };
    let (b, l) = match text.split_once(':') {
        Some((b, l)) => (one(b)?, one(l)?),
        None => {
            let v = one(text)?;
            (v, v)
        }
    };
    if let (Some(b), Some(l)) = (b, l) {
        if b > l {
            return Err(format!("the barrier {b} is above the limit {l}"));
        }
    }
    if l == Some(0) {
        return Err("a limit of 0 would refuse everything".into());
    }
    Ok(Setting { barrier: b, limit: l })
}

/// Whether a config's raw bytes may hold beancounter annotations (a cheap test first, so
/// configs without them are never re-serialized).
pub fn mentioned(raw: &[u8]) -> bool {
    raw.windows(PREFIX.len()).any(|w| w == PREFIX.as_bytes())
}

/// Translates every beancounter annotation of `config` into OCI fields. `v2` says whether the
/// host has pure cgroup v2 (memory.high, swap, memory.min need it).
pub fn apply(config: &mut Json, v2: bool, page: u64) -> Result<(), AnnotationError> {
    let annotations = with_prefix(config, PREFIX);
    for (key, value) in annotations {
        let err = |message: String| AnnotationError { annotation: key.clone(), message };
        let resource = &key[PREFIX.len()..];
        // The disk quota is no OCI field: the runtime sets it on the rootfs at create
        // (crate::diskquota::requested reads and checks these).
        if resource == crate::diskquota::DISKSPACE || resource == crate::diskquota::DISKINODES {
            continue;
        }
        let Some((_, unit)) = RESOURCES.iter().find(|(r, _)| *r == resource) else {
            let mut known: Vec<&str> = RESOURCES.iter().map(|(r, _)| *r).collect();
            known.extend([crate::diskquota::DISKSPACE, crate::diskquota::DISKINODES]);
            return Err(err(format!("unknown beancounter resource {resource:?} (known: {})", known.join(", "))));
        };
        let s = parse(unit, &value, page).map_err(|m| err(format!("{value:?}: {m}")))?;
        translate(config, resource, s, v2, page).map_err(err)?;
    }
    Ok(())
}

/// The config's annotations whose keys start with `prefix`, as (key, value); a value that is
/// not a string reads as empty, which every parser refuses by name.
pub(crate) fn with_prefix(config: &Json, prefix: &str) -> Vec<(String, String)> {
    let Some(map) = config.get("annotations").and_then(|a| a.as_object()) else { return Vec::new() };
    map.iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect()
}

/// The object at `path`, made when missing; a value of another type there is an error (the
/// config would not parse anyway, and it must not be silently replaced).
pub(crate) fn obj<'a>(v: &'a mut Json, path: &[&str]) -> Result<&'a mut Map<String, Json>, String> {
    let mut cur = v;
    for (i, p) in path.iter().enumerate() {
        let map =
            cur.as_object_mut().ok_or_else(|| format!("{} in the config is not an object", path[..i].join(".")))?;
        cur = map.entry(p.to_string()).or_insert_with(|| json!({}));
    }
    cur.as_object_mut().ok_or_else(|| format!("{} in the config is not an object", path.join(".")))
}

/// Sets `map[key]` to `value` unless the config already has a different one.
pub(crate) fn set(map: &mut Map<String, Json>, key: &str, value: Json, field: &str) -> Result<(), String> {
    match map.get(key) {
        Some(old) if *old != value => Err(format!("contradicts {field} = {old} in the config (it would be {value})")),
        _ => {
            map.insert(key.to_string(), value);
            Ok(())
        }
    }
}

fn bytes(pages: Option<u64>, page: u64) -> Option<u64> {
    pages.map(|p| p.saturating_mul(page))
}

fn translate(config: &mut Json, resource: &str, s: Setting, v2: bool, page: u64) -> Result<(), String> {
    let needs_v2 = |what: &str| format!("needs cgroup v2 ({what}); this host does not use cgroup v2");
    let unified_max = |v: Option<u64>| json!(v.map(|n| n.to_string()).unwrap_or_else(|| "max".into()));
    match resource {
        "numproc" => {
            let limit = s.limit.map(|l| l as i64).unwrap_or(-1);
            set(obj(config, &["linux", "resources", "pids"])?, "limit", json!(limit), "linux.resources.pids.limit")
        }
        "physpages" => {
            if let Some(l) = bytes(s.limit, page) {
                set(
                    obj(config, &["linux", "resources", "memory"])?,
                    "limit",
                    json!(l),
                    "linux.resources.memory.limit",
                )?;
            }
            match s.barrier.filter(|b| *b > 0 && s.barrier != s.limit) {
                Some(b) if v2 => set(
                    obj(config, &["linux", "resources", "unified"])?,
                    "memory.high",
                    json!((b * page).to_string()),
                    "linux.resources.unified[\"memory.high\"]",
                ),
                Some(_) => Err(needs_v2("memory.high for the barrier")),
                None => Ok(()),
            }
        }
        "swappages" => {
            if !v2 {
                return Err(needs_v2("memory.swap.high and memory.swap.max"));
            }
            let u = obj(config, &["linux", "resources", "unified"])?;
            set(
                u,
                "memory.swap.max",
                unified_max(bytes(s.limit, page)),
                "linux.resources.unified[\"memory.swap.max\"]",
            )?;
            // As for physpages, a barrier of 0 is OpenVZ's "none" (memory.swap.high 0 would
            // throttle the first swap-out).
            if s.barrier != s.limit && s.barrier != Some(0) {
                set(
                    u,
                    "memory.swap.high",
                    unified_max(bytes(s.barrier, page)),
                    "linux.resources.unified[\"memory.swap.high\"]",
                )?;
            }
            Ok(())
        }
        "vmguarpages" => {
            if !v2 {
                return Err(needs_v2("memory.low"));
            }
            let b = bytes(s.barrier, page).ok_or("the barrier (memory.low) must be a number")?;
            set(
                obj(config, &["linux", "resources", "memory"])?,
                "reservation",
                json!(b),
                "linux.resources.memory.reservation",
            )
        }
        "oomguarpages" => {
            if !v2 {
                return Err(needs_v2("memory.min"));
            }
            let b = bytes(s.barrier, page).ok_or("the barrier (memory.min) must be a number")?;
            set(
                obj(config, &["linux", "resources", "unified"])?,
                "memory.min",
                json!(b.to_string()),
                "linux.resources.unified[\"memory.min\"]",
            )
        }
        "numpty" => {
            let l = s.limit.ok_or("devpts needs a numeric max=")?;
            let mounts = config.get_mut("mounts").and_then(|m| m.as_array_mut()).ok_or("the config has no mounts")?;
            let pts = mounts
                .iter_mut()
                .find(|m| m.get("destination").and_then(|d| d.as_str()) == Some("/dev/pts"))
                .ok_or("the config has no /dev/pts mount to limit")?;
            let opts = pts.as_object_mut().expect("a mount is an object").entry("options").or_insert(json!([]));
            let list = opts.as_array_mut().ok_or("mounts[/dev/pts].options is not a list")?;
            if let Some(old) = list.iter().filter_map(|o| o.as_str()).find(|o| o.starts_with("max=")) {
                if old != format!("max={l}") {
                    return Err(format!("contradicts the /dev/pts mount option {old}"));
                }
                return Ok(());
            }
            list.push(json!(format!("max={l}")));
            Ok(())
        }
        "shmpages" => {
            let l = s.limit.ok_or("kernel.shmall needs a number")?;
            let own_ipc = config["linux"]["namespaces"]
                .as_array()
                .is_some_and(|n| n.iter().any(|ns| ns["type"] == "ipc" && ns.get("path").is_none()));
            if !own_ipc {
                return Err("kernel.shmall can only be set for a container with its own ipc namespace".into());
            }
            set(
                obj(config, &["linux", "sysctl"])?,
                "kernel.shmall",
                json!(l.to_string()),
                "linux.sysctl[\"kernel.shmall\"]",
            )
        }
        "numfile" => {
            if s.limit.is_none() || s.barrier.is_none() {
                return Err("cannot be unlimited: the kernel caps RLIMIT_NOFILE at fs.nr_open".into());
            }
            rlimit(config, "RLIMIT_NOFILE", s, 1)
        }
        "lockedpages" => rlimit(config, "RLIMIT_MEMLOCK", s, page),
        "numsiginfo" => rlimit(config, "RLIMIT_SIGPENDING", s, 1),
        "privvmpages" => rlimit(config, "RLIMIT_AS", s, page),
        _ => unreachable!("resources are checked against RESOURCES"),
    }
}

/// An rlimit with soft = barrier and hard = limit (unlimited as the kernel's RLIM_INFINITY).
fn rlimit(config: &mut Json, typ: &str, s: Setting, scale: u64) -> Result<(), String> {
    let v = |x: Option<u64>| x.map(|n| n.saturating_mul(scale)).unwrap_or(u64::MAX);
    let want = json!({"type": typ, "soft": v(s.barrier), "hard": v(s.limit)});
    let process = obj(config, &["process"])?;
    let list = process.entry("rlimits").or_insert(json!([]));
    let list = list.as_array_mut().ok_or("process.rlimits is not a list")?;
    match list.iter().find(|r| r["type"] == typ) {
        Some(old) if old["soft"] != want["soft"] || old["hard"] != want["hard"] => {
            Err(format!("contradicts process.rlimits {typ} soft {} hard {} in the config", old["soft"], old["hard"]))
        }
        Some(_) => Ok(()),
        None => {
            list.push(want);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(annotations: Json) -> Json {
        json!({
            "annotations": annotations,
            "process": {"rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 1024}]},
            "mounts": [{"destination": "/dev/pts", "type": "devpts", "options": ["nosuid"]}],
            "linux": {"namespaces": [{"type": "ipc"}], "resources": {"memory": {"limit": 1048576}}}
        })
    }

    #[test]
    fn values_parse_like_vzctl() {
        assert_eq!(parse("items", "20:20", 4096).unwrap(), Setting { barrier: Some(20), limit: Some(20) });
        assert_eq!(parse("items", "20", 4096).unwrap(), Setting { barrier: Some(20), limit: Some(20) });
        assert_eq!(parse("pages", "0:32M", 4096).unwrap(), Setting { barrier: Some(0), limit: Some(8192) });
        assert_eq!(parse("pages", "unlimited", 4096).unwrap(), Setting { barrier: None, limit: None });
        assert!(parse("items", "20M", 4096).is_err());
        assert!(parse("items", "30:20", 4096).is_err());
        assert!(parse("items", "x", 4096).is_err());
    }

    #[test]
    fn annotations_become_oci_fields() {
        let mut c = config(json!({
            "org.tally.beancounter.numproc": "20:20",
            "org.tally.beancounter.numpty": "2",
            "org.tally.beancounter.shmpages": "1024",
            "org.tally.beancounter.lockedpages": "16:32",
        }));
        apply(&mut c, true, 4096).unwrap();
        assert_eq!(c["linux"]["resources"]["pids"]["limit"], 20);
        assert!(c["mounts"][0]["options"].as_array().unwrap().contains(&json!("max=2")));
        assert_eq!(c["linux"]["sysctl"]["kernel.shmall"], "1024");
        let memlock =
            c["process"]["rlimits"].as_array().unwrap().iter().find(|r| r["type"] == "RLIMIT_MEMLOCK").unwrap();
        assert_eq!((memlock["soft"].as_u64(), memlock["hard"].as_u64()), (Some(65536), Some(131072)));
    }

    #[test]
    fn bad_annotations_are_errors_naming_them() {
        for (key, value, needle) in [
            ("org.tally.beancounter.numbeans", "1", "unknown beancounter resource"),
            ("org.tally.beancounter.numproc", "lots", "not a number"),
            ("org.tally.beancounter.numfile", "2048", "contradicts process.rlimits"),
            ("org.tally.beancounter.physpages", "0:512", "contradicts linux.resources.memory.limit"),
        ] {
            let mut c = config(json!({ key: value }));
            let e = apply(&mut c, true, 4096).unwrap_err();
            assert_eq!(e.annotation, key);
            assert!(e.message.contains(needle), "{key}: {}", e.message);
        }
        let mut c = config(json!({"org.tally.beancounter.swappages": "0:1M"}));
        assert!(apply(&mut c, false, 4096).unwrap_err().message.contains("cgroup v2"));
        let mut c = config(json!({"org.tally.beancounter.numproc": "18446744073709551615"}));
        assert!(apply(&mut c, true, 4096).unwrap_err().message.contains("too large"));
        let mut c = json!({"annotations": {"org.tally.beancounter.numproc": "5"}, "linux": []});
        assert!(apply(&mut c, true, 4096).unwrap_err().message.contains("not an object"));
    }
}

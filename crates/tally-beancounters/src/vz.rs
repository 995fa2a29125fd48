//! OpenVZ's CPU and I/O scheduler settings (vzctl's `cpuunits`, `cpulimit`, `cpus`, `ioprio`,
//! `iolimit`, `iopslimit`) as annotations `org.tally.vz.<name>`, translated at `create` into the
//! OCI fields that carry them, as the beancounter annotations are (annotations.rs): the rest of
//! the runtime, and the cgroup manager, only see standard fields. The arithmetic is in
//! docs/beancounters.md. A value out of range, or one that contradicts an explicit OCI field,
//! is an error naming the annotation.

use serde_json::{json, Value as Json};

use crate::annotations::{obj, set, with_prefix, AnnotationError};

pub const PREFIX: &str = "org.tally.vz.";

/// The settings, with their accepted range.
pub const SETTINGS: &[(&str, u64, u64)] = &[
    ("cpuunits", 8, 500_000),
    ("cpulimit", 0, 100 * 4096),
    ("cpus", 1, 4096),
    ("ioprio", 0, 7),
    ("iolimit", 1, i64::MAX as u64),
    ("iopslimit", 1, i64::MAX as u64),
];

/// The CFS period the CPU limits are expressed in (µs): 100 ms, the kernel's default.
pub const CPU_PERIOD: u64 = 100_000;

/// A block device, for the I/O limits: the one the container's rootfs is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Device {
    pub major: u64,
    pub minor: u64,
}

/// Whether a config's raw bytes may hold these annotations.
pub fn mentioned(raw: &[u8]) -> bool {
    raw.windows(PREFIX.len()).any(|w| w == PREFIX.as_bytes())
}

/// vzctl's cpuunits (default 1000) as cgroup v1 cpu.shares (default 1024): the same ratio to
/// the default, within the kernel's range.
pub fn shares_of_cpuunits(units: u64) -> u64 {
    (units * 1024).div_ceil(1000).clamp(2, 262_144)
}

/// cpuunits as cgroup v2 cpu.weight (default 100), linear like the shares. Written directly:
/// the cgroup manager's shares-to-weight conversion is not linear (3072 shares become 240, not
/// 300), which would turn vzctl's 1:3 into 1:2.4.
pub fn weight_of_cpuunits(units: u64) -> u64 {
    units.div_ceil(10).clamp(1, 10_000)
}

/// The CFS quota (µs per CPU_PERIOD) for `cpulimit` percent of one CPU and at most `cpus`
/// CPUs: whichever is tighter. None when neither limits anything.
pub fn quota_of(cpulimit: Option<u64>, cpus: Option<u64>) -> Option<u64> {
    let by_limit = cpulimit.filter(|l| *l > 0).map(|l| l * CPU_PERIOD / 100);
    let by_cpus = cpus.map(|c| c * CPU_PERIOD);
    match (by_limit, by_cpus) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// vzctl's ioprio 0-7 (default 4) as a cgroup v1 blkio weight: 100 per step from 100, so the
/// default is v1's default weight of 500, and 0..7 spans 100..800 (the kernel takes 10..1000).
pub fn weight_of_ioprio(prio: u64) -> u64 {
    100 * (prio + 1)
}

/// ioprio as cgroup v2 io.weight (default 100): the same ratio to the default, 20..160.
pub fn v2_weight_of_ioprio(prio: u64) -> u64 {
    20 * (prio + 1)
}

fn parse(name: &str, text: &str, min: u64, max: u64) -> Result<u64, String> {
    let v: u64 = text.trim().parse().map_err(|_| format!("{text:?} is not a whole number"))?;
    if v < min || v > max {
        return Err(format!("{v} is out of range ({min}..{max}) for {name}"));
    }
    Ok(v)
}

/// Translates every `org.tally.vz.*` annotation of `config`. `rootfs_device` is the block
/// device of the rootfs (whole disk), or why there is none, for iolimit and iopslimit; `v2`
/// says whether the host has pure cgroup v2 (the weights are then written as v2 values).
pub fn apply(config: &mut Json, v2: bool, rootfs_device: Result<Device, String>) -> Result<(), AnnotationError> {
    let mut values = std::collections::BTreeMap::new();
    let given = with_prefix(config, PREFIX);
    for (key, text) in &given {
        let err = |message: String| AnnotationError { annotation: key.clone(), message };
        let name = &key[PREFIX.len()..];
        let Some(&(_, min, max)) = SETTINGS.iter().find(|(n, _, _)| *n == name) else {
            let known: Vec<&str> = SETTINGS.iter().map(|(n, _, _)| *n).collect();
            return Err(err(format!("unknown setting {name:?} (known: {})", known.join(", "))));
        };
        values.insert(name.to_string(), (key.clone(), parse(name, text, min, max).map_err(err)?));
    }
    let get = |n: &str| values.get(n).map(|(_, v)| *v);
    let fail = |n: &str, message: String| AnnotationError { annotation: values[n].0.clone(), message };

    if let Some(units) = get("cpuunits") {
        if v2 {
            if let Some(shares) = config.pointer("/linux/resources/cpu/shares").filter(|v| !v.is_null()) {
                let m =
                    format!("contradicts linux.resources.cpu.shares = {shares} in the config (both set cpu.weight)");
                return Err(fail("cpuunits", m));
            }
            let unified = obj(config, &["linux", "resources", "unified"]).map_err(|m| fail("cpuunits", m))?;
            let w = json!(weight_of_cpuunits(units).to_string());
            set(unified, "cpu.weight", w, "linux.resources.unified[\"cpu.weight\"]")
                .map_err(|m| fail("cpuunits", m))?;
        } else {
            let cpu = obj(config, &["linux", "resources", "cpu"]).map_err(|m| fail("cpuunits", m))?;
            set(cpu, "shares", json!(shares_of_cpuunits(units)), "linux.resources.cpu.shares")
                .map_err(|m| fail("cpuunits", m))?;
        }
    }
    if let Some(quota) = quota_of(get("cpulimit"), get("cpus")) {
        let by = if get("cpulimit").is_some_and(|l| l > 0) { "cpulimit" } else { "cpus" };
        let cpu = obj(config, &["linux", "resources", "cpu"]).map_err(|m| fail(by, m))?;
        set(cpu, "quota", json!(quota), "linux.resources.cpu.quota").map_err(|m| fail(by, m))?;
        set(cpu, "period", json!(CPU_PERIOD), "linux.resources.cpu.period").map_err(|m| fail(by, m))?;
    }
    if let Some(prio) = get("ioprio") {
        if v2 {
            if let Some(w) = config.pointer("/linux/resources/blockIO/weight").filter(|v| !v.is_null()) {
                let m = format!("contradicts linux.resources.blockIO.weight = {w} in the config");
                return Err(fail("ioprio", m));
            }
            let unified = obj(config, &["linux", "resources", "unified"]).map_err(|m| fail("ioprio", m))?;
            let w = json!(v2_weight_of_ioprio(prio).to_string());
            set(unified, "io.weight", w, "linux.resources.unified[\"io.weight\"]").map_err(|m| fail("ioprio", m))?;
        } else {
            let blk = obj(config, &["linux", "resources", "blockIO"]).map_err(|m| fail("ioprio", m))?;
            set(blk, "weight", json!(weight_of_ioprio(prio)), "linux.resources.blockIO.weight")
                .map_err(|m| fail("ioprio", m))?;
        }
    }
    for (name, fields) in [
        ("iolimit", ["throttleReadBpsDevice", "throttleWriteBpsDevice"]),
        ("iopslimit", ["throttleReadIOPSDevice", "throttleWriteIOPSDevice"]),
    ] {
        let Some(rate) = get(name) else { continue };
        let dev = rootfs_device.clone().map_err(|why| fail(name, why))?;
        for field in fields {
            let blk = obj(config, &["linux", "resources", "blockIO"]).map_err(|m| fail(name, m))?;
            let list = blk.entry(field).or_insert(json!([]));
            let list = list.as_array_mut().ok_or_else(|| fail(name, format!("blockIO.{field} is not a list")))?;
            let want = json!({"major": dev.major, "minor": dev.minor, "rate": rate});
            match list.iter().find(|d| d["major"] == dev.major && d["minor"] == dev.minor) {
                Some(old) if old["rate"] != want["rate"] => {
                    return Err(fail(
                        name,
                        format!(
                            "contradicts linux.resources.blockIO.{field} {}:{} rate {} in the config",
                            dev.major, dev.minor, old["rate"]
                        ),
                    ))
                }
                Some(_) => {}
                None => list.push(want),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DISK: Result<Device, String> = Ok(Device { major: 254, minor: 0 });

    fn config(annotations: Json) -> Json {
        json!({"annotations": annotations, "linux": {"resources": {}}})
    }

    #[test]
    fn the_arithmetic_of_docs_beancounters_md() {
        assert_eq!(shares_of_cpuunits(1000), 1024);
        assert_eq!(shares_of_cpuunits(3000), 3072);
        assert_eq!(shares_of_cpuunits(8), 9);
        assert_eq!(shares_of_cpuunits(500_000), 262_144);
        assert_eq!(quota_of(Some(25), None), Some(25_000));
        assert_eq!(quota_of(Some(250), None), Some(250_000));
        assert_eq!(quota_of(Some(0), None), None);
        assert_eq!(quota_of(None, Some(2)), Some(200_000));
        assert_eq!(quota_of(Some(300), Some(2)), Some(200_000));
        assert_eq!((weight_of_ioprio(0), weight_of_ioprio(4), weight_of_ioprio(7)), (100, 500, 800));
        assert_eq!((weight_of_cpuunits(1000), weight_of_cpuunits(3000), weight_of_cpuunits(8)), (100, 300, 1));
        assert_eq!((v2_weight_of_ioprio(0), v2_weight_of_ioprio(4), v2_weight_of_ioprio(7)), (20, 100, 160));
    }

    #[test]
    fn annotations_become_oci_fields() {
        let mut c = config(json!({
            "org.tally.vz.cpuunits": "3000",
            "org.tally.vz.cpulimit": "25",
            "org.tally.vz.ioprio": "6",
            "org.tally.vz.iopslimit": "100",
        }));
        apply(&mut c, false, DISK).unwrap();
        let r = &c["linux"]["resources"];
        assert_eq!((r["cpu"]["shares"].as_u64(), r["cpu"]["quota"].as_u64()), (Some(3072), Some(25_000)));
        assert_eq!(r["cpu"]["period"], 100_000);
        assert_eq!(r["blockIO"]["weight"], 700);
        assert_eq!(r["blockIO"]["throttleWriteIOPSDevice"], json!([{"major": 254, "minor": 0, "rate": 100}]));
        assert_eq!(r["blockIO"]["throttleReadIOPSDevice"], json!([{"major": 254, "minor": 0, "rate": 100}]));
        // On cgroup v2 the weights are v2 values, written as unified keys.
        let mut c = config(json!({"org.tally.vz.cpuunits": "3000", "org.tally.vz.ioprio": "6"}));
        apply(&mut c, true, DISK).unwrap();
        let u = &c["linux"]["resources"]["unified"];
        assert_eq!((u["cpu.weight"].as_str(), u["io.weight"].as_str()), (Some("300"), Some("140")));
    }

    #[test]
    fn bad_values_name_the_annotation() {
        for (key, value, needle) in [
            ("org.tally.vz.cpuunits", "0", "out of range (8..500000)"),
            ("org.tally.vz.ioprio", "9", "out of range (0..7)"),
            ("org.tally.vz.cpus", "-1", "not a whole number"),
            ("org.tally.vz.cpulimit", "25%", "not a whole number"),
            ("org.tally.vz.bogus", "1", "unknown setting"),
        ] {
            let e = apply(&mut config(json!({key: value})), false, DISK).unwrap_err();
            assert_eq!(e.annotation, key);
            assert!(e.message.contains(needle), "{key}={value}: {}", e.message);
        }
        let e = apply(&mut config(json!({"org.tally.vz.iolimit": "1048576"})), false, Err("no block device".into()))
            .unwrap_err();
        assert!(e.to_string().contains("org.tally.vz.iolimit") && e.message.contains("no block device"), "{e}");
    }

    #[test]
    fn a_conflict_with_an_explicit_oci_value_names_both() {
        let mut c = json!({
            "annotations": {"org.tally.vz.cpuunits": "1000"},
            "linux": {"resources": {"cpu": {"shares": 512}}}
        });
        let e = apply(&mut c, false, DISK).unwrap_err();
        assert!(e.to_string().contains("org.tally.vz.cpuunits") && e.message.contains("linux.resources.cpu.shares"));
        // The same value is no conflict.
        let mut c = json!({
            "annotations": {"org.tally.vz.cpuunits": "1000"},
            "linux": {"resources": {"cpu": {"shares": 1024}}}
        });
        apply(&mut c, false, DISK).unwrap();
    }
}

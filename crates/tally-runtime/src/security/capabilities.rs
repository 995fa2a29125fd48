//! `process.capabilities`: the five sets exactly as configured. A capability the running
//! kernel does not know, or that the host withholds from tally's own bounding set (so no
//! process tally starts can ever have it), is reported by `unavailable` and skipped.

use std::collections::HashSet;
use std::io;

use caps::{CapSet, Capability as Cap, CapsHashSet};
use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

#[derive(Debug, thiserror::Error)]
pub enum CapabilityError {
    #[error("process.capabilities: {op}: {message}")]
    Apply { op: String, message: String },
    #[error("process.capabilities: keep-caps: {0}")]
    KeepCaps(io::Error),
}

/// oci-spec and caps name capabilities alike (`CAP_SYS_ADMIN`); convert by name.
fn to_caps(c: &Capability) -> Option<Cap> {
    let name = serde_json::to_value(c).ok()?;
    name.as_str()?.parse().ok()
}

fn name(c: &Capability) -> String {
    serde_json::to_value(c).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_else(|| format!("{c:?}"))
}

/// What tally itself may hand out: its bounding set, intersected with what the kernel knows.
fn grantable() -> CapsHashSet {
    let bounding = caps::read(None, CapSet::Bounding).unwrap_or_else(|_| caps::all());
    let supported = caps::runtime::thread_all_supported();
    bounding.intersection(&supported).copied().collect()
}

/// Every capability the running kernel knows, by name, for `features`.
pub fn supported_names() -> Vec<String> {
    let mut names: Vec<String> = caps::runtime::thread_all_supported().iter().map(|c| c.to_string()).collect();
    names.sort();
    names
}

/// Capabilities the config asks for that no container here can have, with the reason, for
/// the runtime to warn about before it creates anything.
pub fn unavailable(caps_cfg: Option<&LinuxCapabilities>) -> Vec<String> {
    let Some(cfg) = caps_cfg else { return Vec::new() };
    let grant = grantable();
    let supported = caps::runtime::thread_all_supported();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for set in [cfg.bounding(), cfg.effective(), cfg.permitted(), cfg.inheritable(), cfg.ambient()] {
        for c in set.iter().flatten() {
            if !seen.insert(name(c)) {
                continue;
            }
            match to_caps(c) {
                None => out.push(format!("{} is not known to this build of tally; skipped", name(c))),
                Some(k) if !supported.contains(&k) => {
                    out.push(format!("{} is not supported by the running kernel; skipped", name(c)))
                }
                Some(k) if !grant.contains(&k) => out.push(format!(
                    "{} is not in tally's own bounding set (the host withholds it), so no container here can have it; skipped",
                    name(c)
                )),
                Some(_) => {}
            }
        }
    }
    let in_set = |set: &Option<Capabilities>, c: &Capability| set.iter().flatten().any(|x| x == c);
    for c in cfg.ambient().iter().flatten() {
        if !(in_set(cfg.permitted(), c) && in_set(cfg.inheritable(), c)) {
            out.push(format!(
                "ambient {} is not both permitted and inheritable, so the kernel refuses it; skipped",
                name(c)
            ));
        }
    }
    out
}

fn set_of(caps_cfg: &Option<Capabilities>, grant: &CapsHashSet) -> CapsHashSet {
    caps_cfg.iter().flatten().filter_map(to_caps).filter(|c| grant.contains(c)).collect()
}

/// The configured sets, filtered to what can be granted, ready to apply.
pub struct Plan {
    bounding: CapsHashSet,
    effective: CapsHashSet,
    permitted: CapsHashSet,
    inheritable: CapsHashSet,
    ambient: CapsHashSet,
}

impl Plan {
    /// None when the config has no `capabilities`: the process keeps what it has (root keeps
    /// all, another user none), as runc does.
    pub fn new(cfg: Option<&LinuxCapabilities>) -> Option<Plan> {
        let cfg = cfg?;
        let grant = grantable();
        Some(Plan {
            bounding: set_of(cfg.bounding(), &grant),
            effective: set_of(cfg.effective(), &grant),
            permitted: set_of(cfg.permitted(), &grant),
            inheritable: set_of(cfg.inheritable(), &grant),
            ambient: set_of(cfg.ambient(), &grant),
        })
    }

    /// Before the user switch: drop what the bounding set must not hold, and keep the
    /// permitted set across the switch of uid.
    pub fn before_user_switch(&self) -> Result<(), CapabilityError> {
        for c in caps::read(None, CapSet::Bounding).map_err(|e| err("read bounding set", e))? {
            if !self.bounding.contains(&c) {
                caps::drop(None, CapSet::Bounding, c)
                    .map_err(|e| err(&format!("drop {c} from the bounding set"), e))?;
            }
        }
        // SAFETY: prctl with PR_SET_KEEPCAPS takes plain integers.
        if unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) } != 0 {
            return Err(CapabilityError::KeepCaps(io::Error::last_os_error()));
        }
        Ok(())
    }

    /// After the user switch: permitted, inheritable and effective exactly as configured, then
    /// the ambient set (each ambient capability must be permitted and inheritable too).
    pub fn after_user_switch(&self) -> Result<(), CapabilityError> {
        // Effective must stay a subset of permitted at every step.
        caps::set(None, CapSet::Effective, &self.effective.intersection(&self.permitted).copied().collect())
            .map_err(|e| err("set effective", e))?;
        caps::set(None, CapSet::Permitted, &self.permitted).map_err(|e| err("set permitted", e))?;
        caps::set(None, CapSet::Inheritable, &self.inheritable).map_err(|e| err("set inheritable", e))?;
        caps::set(None, CapSet::Effective, &self.effective).map_err(|e| err("set effective", e))?;
        caps::clear(None, CapSet::Ambient).map_err(|e| err("clear ambient", e))?;
        for c in &self.ambient {
            // The kernel refuses an ambient capability that is not both permitted and
            // inheritable; runc skips it (`runc spec` lists ambient ones without inheritable).
            if !(self.permitted.contains(c) && self.inheritable.contains(c)) {
                continue;
            }
            caps::raise(None, CapSet::Ambient, *c)
                .map_err(|e| err(&format!("raise {c} in the ambient set (it must be permitted and inheritable)"), e))?;
        }
        // SAFETY: prctl with PR_SET_KEEPCAPS takes plain integers.
        if unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) } != 0 {
            return Err(CapabilityError::KeepCaps(io::Error::last_os_error()));
        }
        Ok(())
    }
}

fn err(op: &str, e: caps::errors::CapsError) -> CapabilityError {
    CapabilityError::Apply { op: op.to_string(), message: e.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_convert_both_ways() {
        let c: Capability = serde_json::from_str("\"CAP_SYS_ADMIN\"").unwrap();
        assert_eq!(to_caps(&c), Some(Cap::CAP_SYS_ADMIN));
        assert_eq!(name(&c), "CAP_SYS_ADMIN");
    }

    #[test]
    fn capabilities_outside_the_bounding_set_are_reported() {
        let grant = grantable();
        let all: Vec<Capability> = caps::all()
            .iter()
            .filter_map(|c| serde_json::from_value(serde_json::Value::String(c.to_string())).ok())
            .collect();
        let cfg: LinuxCapabilities = serde_json::from_value(serde_json::json!({ "bounding": all })).unwrap();
        let missing = unavailable(Some(&cfg));
        let expected = caps::all().len() - grant.len();
        assert_eq!(missing.len(), expected, "{missing:?}");
    }
}

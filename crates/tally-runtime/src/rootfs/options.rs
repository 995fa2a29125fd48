//! Mount options from config.json: mount(2) flags to set or clear, propagation changes,
//! recursive attributes (mount_setattr with AT_RECURSIVE), and the filesystem data string.

use nix::mount::MsFlags;

use crate::sys::{self, MountAttr};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OptionError {
    #[error("mount option {0:?} is not supported by tally")]
    Unsupported(String),
}

#[derive(Debug)]
pub struct MountOptions {
    pub flags: MsFlags,
    /// Flags explicitly asked off (`rw`, `suid`, ...): they matter for bind remounts.
    pub cleared: MsFlags,
    pub propagation: Vec<MsFlags>,
    pub recursive: MountAttr,
    pub has_recursive: bool,
    /// Filesystem-specific options, passed through as mount(2)'s data.
    pub data: Vec<String>,
    /// `tmpcopyup`: the new tmpfs starts with what the image has at its destination.
    pub copy_up: bool,
}

impl Default for MountOptions {
    fn default() -> Self {
        Self {
            flags: MsFlags::empty(),
            cleared: MsFlags::empty(),
            propagation: Vec::new(),
            recursive: MountAttr::default(),
            has_recursive: false,
            data: Vec::new(),
            copy_up: false,
        }
    }
}

/// MS_NOSYMFOLLOW (Linux 5.10), which nix 0.29 does not name.
pub const MS_NOSYMFOLLOW: MsFlags = MsFlags::from_bits_retain(256);

impl MountOptions {
    pub fn is_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }

    pub fn data_string(&self) -> Option<String> {
        (!self.data.is_empty()).then(|| self.data.join(","))
    }

    /// Flags a bind mount needs a second, remounting call for (bind ignores them).
    pub fn bind_remount_flags(&self) -> MsFlags {
        self.flags
            & (MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC
                | MsFlags::MS_NOATIME
                | MsFlags::MS_NODIRATIME
                | MsFlags::MS_RELATIME
                | MsFlags::MS_STRICTATIME
                | MS_NOSYMFOLLOW)
    }
}

enum Effect {
    Set(MsFlags),
    Clear(MsFlags),
    Propagate(MsFlags),
    RecSet(u64),
    RecClear(u64),
    /// Atime mode: the mode bits are a field, so clearing the field is part of setting it.
    RecAtime(u64),
    CopyUp,
    Ignore,
}

fn effect(opt: &str) -> Option<Effect> {
    use Effect::*;
    let f = |x| Some(Set(x));
    let c = |x| Some(Clear(x));
    match opt {
        "defaults" | "loud" | "silent" | "async" | "nolazytime" | "noiversion" | "nomand" => Some(Ignore),
        "tmpcopyup" => Some(CopyUp),
        "ro" => f(MsFlags::MS_RDONLY),
        "rw" => c(MsFlags::MS_RDONLY),
        "nosuid" => f(MsFlags::MS_NOSUID),
        "suid" => c(MsFlags::MS_NOSUID),
        "nodev" => f(MsFlags::MS_NODEV),
        "dev" => c(MsFlags::MS_NODEV),
        "noexec" => f(MsFlags::MS_NOEXEC),
        "exec" => c(MsFlags::MS_NOEXEC),
        "sync" => f(MsFlags::MS_SYNCHRONOUS),
        "dirsync" => f(MsFlags::MS_DIRSYNC),
        "remount" => f(MsFlags::MS_REMOUNT),
        "mand" => f(MsFlags::MS_MANDLOCK),
        "noatime" => f(MsFlags::MS_NOATIME),
        "atime" => c(MsFlags::MS_NOATIME),
        "nodiratime" => f(MsFlags::MS_NODIRATIME),
        "diratime" => c(MsFlags::MS_NODIRATIME),
        "relatime" => f(MsFlags::MS_RELATIME),
        "norelatime" => c(MsFlags::MS_RELATIME),
        "strictatime" => f(MsFlags::MS_STRICTATIME),
        "nostrictatime" => c(MsFlags::MS_STRICTATIME),
        "lazytime" => f(MsFlags::MS_LAZYTIME),
        "iversion" => f(MsFlags::MS_I_VERSION),
        "nosymfollow" => f(MS_NOSYMFOLLOW),
        "symfollow" => c(MS_NOSYMFOLLOW),
        "bind" => f(MsFlags::MS_BIND),
        "rbind" => f(MsFlags::MS_BIND | MsFlags::MS_REC),
        "private" => Some(Propagate(MsFlags::MS_PRIVATE)),
        "rprivate" => Some(Propagate(MsFlags::MS_PRIVATE | MsFlags::MS_REC)),
        "shared" => Some(Propagate(MsFlags::MS_SHARED)),
        "rshared" => Some(Propagate(MsFlags::MS_SHARED | MsFlags::MS_REC)),
        "slave" => Some(Propagate(MsFlags::MS_SLAVE)),
        "rslave" => Some(Propagate(MsFlags::MS_SLAVE | MsFlags::MS_REC)),
        "unbindable" => Some(Propagate(MsFlags::MS_UNBINDABLE)),
        "runbindable" => Some(Propagate(MsFlags::MS_UNBINDABLE | MsFlags::MS_REC)),
        "rro" => Some(RecSet(sys::MOUNT_ATTR_RDONLY)),
        "rrw" => Some(RecClear(sys::MOUNT_ATTR_RDONLY)),
        "rnosuid" => Some(RecSet(sys::MOUNT_ATTR_NOSUID)),
        "rsuid" => Some(RecClear(sys::MOUNT_ATTR_NOSUID)),
        "rnodev" => Some(RecSet(sys::MOUNT_ATTR_NODEV)),
        "rdev" => Some(RecClear(sys::MOUNT_ATTR_NODEV)),
        "rnoexec" => Some(RecSet(sys::MOUNT_ATTR_NOEXEC)),
        "rexec" => Some(RecClear(sys::MOUNT_ATTR_NOEXEC)),
        "rnodiratime" => Some(RecSet(sys::MOUNT_ATTR_NODIRATIME)),
        "rdiratime" => Some(RecClear(sys::MOUNT_ATTR_NODIRATIME)),
        "rnosymfollow" => Some(RecSet(sys::MOUNT_ATTR_NOSYMFOLLOW)),
        "rsymfollow" => Some(RecClear(sys::MOUNT_ATTR_NOSYMFOLLOW)),
        "rrelatime" => Some(RecAtime(sys::MOUNT_ATTR_RELATIME)),
        "rnorelatime" | "ratime" => Some(RecAtime(sys::MOUNT_ATTR_STRICTATIME)),
        "rnoatime" => Some(RecAtime(sys::MOUNT_ATTR_NOATIME)),
        "rstrictatime" => Some(RecAtime(sys::MOUNT_ATTR_STRICTATIME)),
        _ => None,
    }
}

/// Every option `parse` accepts, for `features`.
pub const NAMES: &[&str] = &[
    "async",
    "atime",
    "bind",
    "defaults",
    "dev",
    "diratime",
    "dirsync",
    "exec",
    "iversion",
    "lazytime",
    "loud",
    "mand",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "noiversion",
    "nolazytime",
    "nomand",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "nosymfollow",
    "private",
    "ratime",
    "rbind",
    "rdev",
    "rdiratime",
    "relatime",
    "remount",
    "rexec",
    "rnoatime",
    "rnodev",
    "rnodiratime",
    "rnoexec",
    "rnorelatime",
    "rnosuid",
    "rnosymfollow",
    "ro",
    "rprivate",
    "rrelatime",
    "rro",
    "rrw",
    "rshared",
    "rslave",
    "rstrictatime",
    "rsuid",
    "rsymfollow",
    "runbindable",
    "rw",
    "shared",
    "silent",
    "slave",
    "strictatime",
    "suid",
    "symfollow",
    "sync",
    "tmpcopyup",
    "unbindable",
];

/// Options the spec defines that tally does not implement: an error rather than silence.
const UNSUPPORTED: &[&str] = &["idmap", "ridmap"];

pub fn parse(options: &[String]) -> Result<MountOptions, OptionError> {
    let mut out = MountOptions::default();
    for opt in options {
        if UNSUPPORTED.contains(&opt.as_str()) {
            return Err(OptionError::Unsupported(opt.clone()));
        }
        match effect(opt) {
            Some(Effect::Set(f)) => {
                out.flags |= f;
                out.cleared &= !f;
            }
            Some(Effect::Clear(f)) => {
                out.flags &= !f;
                out.cleared |= f;
            }
            Some(Effect::Propagate(f)) => out.propagation.push(f),
            Some(Effect::CopyUp) => out.copy_up = true,
            Some(Effect::RecSet(a)) => {
                out.recursive.attr_set |= a;
                out.recursive.attr_clr &= !a;
                out.has_recursive = true;
            }
            Some(Effect::RecClear(a)) => {
                out.recursive.attr_clr |= a;
                out.recursive.attr_set &= !a;
                out.has_recursive = true;
            }
            Some(Effect::RecAtime(a)) => {
                out.recursive.attr_clr |= sys::MOUNT_ATTR__ATIME;
                out.recursive.attr_set = (out.recursive.attr_set & !sys::MOUNT_ATTR__ATIME) | a;
                out.has_recursive = true;
            }
            Some(Effect::Ignore) => {}
            None => out.data.push(opt.clone()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(opts: &[&str]) -> MountOptions {
        parse(&opts.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn every_name_features_lists_is_accepted() {
        for n in NAMES {
            assert!(effect(n).is_some(), "{n}");
        }
    }

    #[test]
    fn flags_propagation_and_data_are_separated() {
        let o = p(&["nosuid", "noexec", "nodev", "mode=755", "size=65536k", "rslave"]);
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV);
        assert_eq!(o.propagation, vec![MsFlags::MS_SLAVE | MsFlags::MS_REC]);
        assert_eq!(o.data_string().as_deref(), Some("mode=755,size=65536k"));
    }

    #[test]
    fn later_options_win() {
        let o = p(&["ro", "rw"]);
        assert!(!o.flags.contains(MsFlags::MS_RDONLY));
        assert!(o.cleared.contains(MsFlags::MS_RDONLY));
        let o = p(&["rbind", "ro"]);
        assert!(o.is_bind() && o.flags.contains(MsFlags::MS_REC));
        assert_eq!(o.bind_remount_flags(), MsFlags::MS_RDONLY);
    }

    #[test]
    fn recursive_attributes() {
        let o = p(&["rro", "rnosuid", "rnoatime"]);
        assert!(o.has_recursive);
        assert_eq!(o.recursive.attr_set, sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NOATIME);
        assert_eq!(o.recursive.attr_clr, sys::MOUNT_ATTR__ATIME);
    }

    #[test]
    fn unimplemented_spec_options_are_errors() {
        assert_eq!(parse(&["idmap".to_string()]).unwrap_err(), OptionError::Unsupported("idmap".into()));
    }
}

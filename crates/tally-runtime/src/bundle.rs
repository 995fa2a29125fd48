//! The bundle: config.json loaded and checked before anything is created, so every invalid
//! value is reported with its JSON path and nothing has to be undone.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("bundle {path}: {source}")]
    Dir { path: PathBuf, source: io::Error },
    #[error("{path}: {source}")]
    ReadConfig { path: PathBuf, source: io::Error },
    #[error("{path}: {field}: {message}")]
    Parse { path: PathBuf, field: String, message: String },
    #[error("{path}: {field}: {message}")]
    Invalid { path: PathBuf, field: &'static str, message: String },
}

/// A loaded, validated bundle.
#[derive(Debug)]
pub struct Bundle {
    /// Absolute path of the bundle directory.
    pub dir: PathBuf,
    /// Absolute path of the root filesystem, inside the host's view.
    pub rootfs: PathBuf,
    pub spec: Spec,
    /// config.json as read: `create` keeps a copy in the state directory for `exec`.
    pub raw: Vec<u8>,
}

impl Bundle {
    pub fn load(dir: &Path) -> Result<Self, BundleError> {
        let dir = fs::canonicalize(dir).map_err(|source| BundleError::Dir { path: dir.into(), source })?;
        let config_path = dir.join("config.json");
        let mut data =
            fs::read(&config_path).map_err(|source| BundleError::ReadConfig { path: config_path.clone(), source })?;
        if tally_beancounters::annotations::mentioned(&data) || tally_beancounters::vz::mentioned(&data) {
            data = beancounter_settings(&data, &dir).map_err(|(field, message)| BundleError::Parse {
                path: config_path.clone(),
                field,
                message,
            })?;
        }
        let spec = parse_spec(&data).map_err(|(field, message)| BundleError::Parse {
            path: config_path.clone(),
            field,
            message,
        })?;
        let invalid = |field, message: String| BundleError::Invalid { path: config_path.clone(), field, message };
        validate(&spec).map_err(|(field, msg)| invalid(field, msg))?;
        let rootfs = resolve_rootfs(&dir, &spec).map_err(|(field, msg)| invalid(field, msg))?;
        Ok(Self { dir, rootfs, spec, raw: data })
    }
}

/// Translates `org.tally.beancounter.*` annotations into the OCI fields that enforce them
/// (see tally_beancounters::annotations); the config the runtime goes on with is the result.
/// So are the `org.tally.vz.*` CPU and I/O settings (tally_beancounters::vz).
fn beancounter_settings(data: &[u8], dir: &Path) -> Result<Vec<u8>, (String, String)> {
    let v2 = crate::cgroups::available_controllers().0;
    // SAFETY: sysconf only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    translate_annotations(data, v2, page, Some(dir))
}

fn translate_annotations(data: &[u8], v2: bool, page: u64, dir: Option<&Path>) -> Result<Vec<u8>, (String, String)> {
    let mut config: serde_json::Value =
        serde_json::from_slice(data).map_err(|e| ("config".to_string(), e.to_string()))?;
    let named =
        |e: tally_beancounters::annotations::AnnotationError| (format!("annotations[\"{}\"]", e.annotation), e.message);
    if tally_beancounters::annotations::mentioned(data) {
        tally_beancounters::annotations::apply(&mut config, v2, page).map_err(named)?;
        tally_beancounters::diskquota::requested(&config).map_err(named)?;
    }
    if tally_beancounters::vz::mentioned(data) {
        let device = match dir {
            Some(dir) => rootfs_block_device(dir, &config),
            None => Err("the rootfs's block device is not known without a bundle".into()),
        };
        tally_beancounters::vz::apply(&mut config, v2, device).map_err(named)?;
    }
    Ok(serde_json::to_vec(&config).expect("JSON serializes"))
}

/// The whole disk that holds the rootfs (a partition's parent, from /sys/dev/block), for the
/// I/O limits: the kernel throttles whole disks. Overlay, tmpfs and btrfs roots have no block
/// device of their own, which is an error naming the rootfs.
fn rootfs_block_device(dir: &Path, config: &serde_json::Value) -> Result<tally_beancounters::vz::Device, String> {
    let root = config["root"]["path"].as_str().ok_or("the config has no root.path")?;
    block_device_of(&dir.join(root))
}

/// The whole disk that holds `root`, as `rootfs_block_device` explains.
pub(crate) fn block_device_of(root: &Path) -> Result<tally_beancounters::vz::Device, String> {
    use std::os::unix::fs::MetadataExt;
    let dev = fs::metadata(root).map_err(|e| format!("rootfs {}: {e}", root.display()))?.dev();
    let (major, minor) = (libc::major(dev) as u64, libc::minor(dev) as u64);
    let sys = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    if major == 0 || !sys.exists() {
        return Err(format!(
            "the rootfs {} is on a filesystem without a block device of its own (device {major}:{minor}), \
             so there is no disk to throttle",
            root.display()
        ));
    }
    let disk = match sys.join("partition").exists() {
        true => fs::read_to_string(sys.join("../dev")).map_err(|e| format!("{}: {e}", sys.join("../dev").display()))?,
        false => format!("{major}:{minor}"),
    };
    let (ma, mi) = disk.trim().split_once(':').ok_or_else(|| format!("{} reads {disk:?}", sys.display()))?;
    match (ma.parse(), mi.parse()) {
        (Ok(major), Ok(minor)) => Ok(tally_beancounters::vz::Device { major, minor }),
        _ => Err(format!("{} reads {disk:?}", sys.display())),
    }
}

fn named(field: &str, e: &dyn std::fmt::Display) -> (String, String) {
    (field.to_string(), e.to_string())
}

/// The whole config path of `create` short of making anything: annotation translation,
/// parsing, validation, and the plan of what the container process would do with it (mount
/// options, device nodes, the seccomp filter, the cgroup path), for a host with or without
/// pure cgroup v2 and the given page size. It opens no file (namespace paths to join are not
/// opened) and is what the fuzz targets drive. `Ok` carries the number of mounts planned.
pub fn check_config(data: &[u8], v2: bool, page: u64) -> Result<usize, (String, String)> {
    let translated;
    let data = match tally_beancounters::annotations::mentioned(data) || tally_beancounters::vz::mentioned(data) {
        true => {
            translated = translate_annotations(data, v2, page, None)?;
            &translated[..]
        }
        false => data,
    };
    let spec = parse_spec(data)?;
    validate(&spec).map_err(|(field, message)| (field.to_string(), message))?;
    crate::rootfs::check_propagation(&spec).map_err(|e| named("linux.rootfsPropagation", &e))?;
    let mounts = spec.mounts().as_deref().unwrap_or_default();
    for m in mounts {
        crate::rootfs::options::parse(m.options().as_deref().unwrap_or_default())
            .map_err(|e| named("mounts.options", &e))?;
    }
    let linux = spec.linux().as_ref().expect("validated");
    for d in linux.devices().iter().flatten() {
        crate::rootfs::device_node(d).map_err(|e| named("linux.devices", &e))?;
    }
    if let Some(cfg) = linux.seccomp() {
        crate::security::seccomp::compile(cfg).map_err(|e| named("linux.seccomp", &e))?;
    }
    crate::cgroups::container_path(linux.cgroups_path().as_deref(), "check")
        .map_err(|e| named("linux.cgroupsPath", &e))?;
    Ok(mounts.len())
}

/// Parses config.json, naming the JSON path of the first value that does not fit the spec.
pub fn parse_spec(data: &[u8]) -> Result<Spec, (String, String)> {
    parse_json(data)
}

/// Parses a spec document (config.json, an `exec --process` process.json, `update
/// --resources`), naming the JSON path of the first value that does not fit.
pub fn parse_json<T: serde::de::DeserializeOwned>(data: &[u8]) -> Result<T, (String, String)> {
    let de = &mut serde_json::Deserializer::from_slice(data);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let field = if field == "." || field.is_empty() { "config".to_string() } else { field };
        let mut message = e.into_inner().to_string();
        // oci-spec words an unknown capability as "no variant for X (converted to Y)".
        if field.contains("capabilities") {
            if let Some(rest) = message.strip_prefix("no variant for ") {
                message = format!("unknown capability {}", rest.split(" (").next().unwrap_or(rest));
            }
        }
        (field, message)
    })
}

type Check = Result<(), (&'static str, String)>;

/// The checks serde cannot express.
pub fn validate(spec: &Spec) -> Check {
    check_version(spec.version())?;
    let process = spec.process().as_ref().ok_or(("process", "is required to create a container".into()))?;
    match process.args() {
        Some(args) if !args.is_empty() && !args[0].is_empty() => {}
        _ => return Err(("process.args", "must name the program to run".into())),
    }
    if !process.cwd().is_absolute() {
        return Err(("process.cwd", format!("{:?} is not an absolute path", process.cwd())));
    }
    for m in spec.mounts().iter().flatten() {
        if !m.destination().is_absolute() {
            return Err(("mounts.destination", format!("{:?} is not an absolute path", m.destination())));
        }
    }
    let linux = spec.linux().as_ref().ok_or(("linux", "is required on Linux".into()))?;
    let mut seen = HashSet::new();
    for ns in linux.namespaces().iter().flatten() {
        if !seen.insert(ns.typ()) {
            return Err(("linux.namespaces", format!("namespace {} is listed twice", ns.typ())));
        }
        if let Some(p) = ns.path() {
            if !p.is_absolute() {
                return Err(("linux.namespaces.path", format!("{p:?} is not an absolute path")));
            }
        }
    }
    let has_mappings = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    let new_userns =
        linux.namespaces().iter().flatten().any(|ns| ns.typ() == LinuxNamespaceType::User && ns.path().is_none());
    if has_mappings && !new_userns {
        return Err(("linux.uidMappings", "mappings need a new user namespace".into()));
    }
    if new_userns && !has_mappings {
        return Err(("linux.uidMappings", "a new user namespace needs uid and gid mappings".into()));
    }
    if let Some(hooks) = spec.hooks() {
        crate::hooks::validate(hooks).map_err(|e| ("hooks", e.to_string()))?;
    }
    crate::security::validate_personality(linux.personality().as_ref())
        .map_err(|e| ("linux.personality", e.to_string()))?;
    crate::security::rlimits::validate(process.rlimits().as_deref().unwrap_or_default())
        .map_err(|e| ("process.rlimits", e.to_string()))?;
    if let Some(sysctl) = linux.sysctl() {
        let kind = |ns: &str| match ns {
            "ipc" => LinuxNamespaceType::Ipc,
            "uts" => LinuxNamespaceType::Uts,
            _ => LinuxNamespaceType::Network,
        };
        crate::security::sysctl::validate(sysctl, |ns| has_new(spec, kind(ns)))
            .map_err(|e| ("linux.sysctl", e.to_string()))?;
    }
    if spec.hostname().as_ref().is_some_and(|h| !h.is_empty()) && !has_new(spec, LinuxNamespaceType::Uts) {
        return Err(("hostname", "setting the hostname needs a new uts namespace".into()));
    }
    Ok(())
}

fn has_new(spec: &Spec, typ: LinuxNamespaceType) -> bool {
    spec.linux().as_ref().and_then(|l| l.namespaces().as_ref()).is_some_and(|nss| nss.iter().any(|ns| ns.typ() == typ))
}

/// Accepts any 1.x version: the 1.x line only adds optional fields.
fn check_version(version: &str) -> Check {
    let major = version.split('.').next().unwrap_or("");
    if major == "1" && version.split('.').count() >= 2 {
        Ok(())
    } else {
        Err(("ociVersion", format!("{version:?} is not supported (tally implements {})", crate::OCI_VERSION)))
    }
}

/// `root.path` relative to the bundle must stay inside it; an absolute one is taken as given
/// (runc and crun accept both). Either way it must be an existing directory.
fn resolve_rootfs(bundle: &Path, spec: &Spec) -> Result<PathBuf, (&'static str, String)> {
    let root = spec.root().as_ref().ok_or(("root", "is required".into()))?;
    let p = root.path();
    if p.as_os_str().is_empty() {
        return Err(("root.path", "is empty".into()));
    }
    if p.is_relative() && p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(("root.path", format!("{p:?} escapes the bundle directory")));
    }
    let full = bundle.join(p);
    let canon = fs::canonicalize(&full).map_err(|e| ("root.path", format!("{}: {e}", full.display())))?;
    if p.is_relative() && !canon.starts_with(bundle) {
        return Err(("root.path", format!("{p:?} resolves to {} outside the bundle", canon.display())));
    }
    if !canon.is_dir() {
        return Err(("root.path", format!("{} is not a directory", canon.display())));
    }
    Ok(canon)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> serde_json::Value {
        serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "process": {"args": ["/bin/true"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "linux": {"namespaces": [{"type": "mount"}]}
        })
    }

    fn check(v: serde_json::Value) -> Result<(), String> {
        let spec = parse_spec(&serde_json::to_vec(&v).unwrap()).map_err(|(f, m)| format!("{f}: {m}"))?;
        validate(&spec).map_err(|(f, m)| format!("{f}: {m}"))
    }

    #[test]
    fn minimal_config_is_valid() {
        check(minimal()).unwrap();
    }

    #[test]
    fn unknown_namespace_names_its_path() {
        let mut v = minimal();
        v["linux"]["namespaces"] = serde_json::json!([{"type": "mount"}, {"type": "bogus"}]);
        let err = check(v).unwrap_err();
        assert!(err.starts_with("linux.namespaces[1].type"), "{err}");
    }

    #[test]
    fn the_config_path_is_checked_without_making_anything() {
        let mut v = minimal();
        v["mounts"] = serde_json::json!([{"destination": "/tmp", "type": "tmpfs", "options": ["nosuid", "size=1m"]}]);
        assert_eq!(check_config(&serde_json::to_vec(&v).unwrap(), true, 4096), Ok(1));
        v["mounts"][0]["options"] = serde_json::json!(["idmap=bogus=1"]);
        v["annotations"] = serde_json::json!({"org.tally.beancounter.numproc": "0"});
        let (field, _) = check_config(&serde_json::to_vec(&v).unwrap(), true, 4096).unwrap_err();
        assert!(field.contains("org.tally.beancounter.numproc"), "{field}");
        v["annotations"] = serde_json::json!({});
        v["linux"]["devices"] = serde_json::json!([{"path": "rel", "type": "c", "major": 1, "minor": 3}]);
        assert_eq!(check_config(&serde_json::to_vec(&v).unwrap(), true, 4096).unwrap_err().0, "linux.devices");
    }

    #[test]
    fn malformed_json_is_an_error() {
        assert!(parse_spec(b"{\"ociVersion\": ").is_err());
    }

    #[test]
    fn each_invalid_value_names_its_field() {
        type Mutation = Box<dyn Fn(&mut serde_json::Value)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("ociVersion", Box::new(|v| v["ociVersion"] = "2.0.0".into())),
            ("process.args", Box::new(|v| v["process"]["args"] = serde_json::json!([]))),
            ("process.cwd", Box::new(|v| v["process"]["cwd"] = "rel".into())),
            (
                "mounts.destination",
                Box::new(|v| v["mounts"] = serde_json::json!([{"destination": "proc", "type": "proc"}])),
            ),
            (
                "linux.namespaces",
                Box::new(|v| v["linux"]["namespaces"] = serde_json::json!([{"type": "mount"}, {"type": "mount"}])),
            ),
            (
                "linux.uidMappings",
                Box::new(|v| v["linux"]["namespaces"] = serde_json::json!([{"type": "mount"}, {"type": "user"}])),
            ),
            ("hostname", Box::new(|v| v["hostname"] = "h".into())),
        ];
        for (field, mutate) in cases {
            let mut v = minimal();
            mutate(&mut v);
            let err = check(v).unwrap_err();
            assert!(err.starts_with(field), "expected {field}, got {err}");
        }
    }

    #[test]
    fn rootfs_must_stay_in_the_bundle() {
        let dir = std::env::temp_dir().join(format!("tally-bundle-test-{}", std::process::id()));
        fs::create_dir_all(dir.join("rootfs")).unwrap();
        let spec_for = |p: &str| {
            let mut v = minimal();
            v["root"]["path"] = p.into();
            parse_spec(&serde_json::to_vec(&v).unwrap()).unwrap()
        };
        assert!(resolve_rootfs(&dir, &spec_for("rootfs")).is_ok());
        assert!(resolve_rootfs(&dir, &spec_for("../x")).unwrap_err().1.contains("escapes"));
        assert!(resolve_rootfs(&dir, &spec_for("missing")).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}

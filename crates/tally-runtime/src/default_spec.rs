//! `tally spec`: the default config.json, the same shape runc writes, for a bundle whose
//! rootfs is `rootfs/`.

use oci_spec::runtime::{LinuxDeviceCgroupBuilder, Spec};

/// The default spec as pretty JSON. `rootless` adds a user namespace mapping the caller's
/// ids and drops what an unprivileged user cannot have.
pub fn render(rootless: bool) -> String {
    let mut spec = if rootless { rootless_spec() } else { Spec::default() };
    spec.set_hostname(Some("tally".to_string()));
    spec.set_version(crate::OCI_VERSION.to_string());
    // runc's default denies every device in the cgroup; the runtime then allows the ones a
    // container needs (cgroups::Cgroup::apply). A rootless container has no device cgroup
    // (runc's rootless spec has no resources at all).
    if let Some(linux) = spec.linux_mut().as_mut().filter(|_| !rootless) {
        let deny_all = LinuxDeviceCgroupBuilder::default().allow(false).access("rwm").build().expect("rule builds");
        let mut resources = linux.resources().clone().unwrap_or_default();
        resources.set_devices(Some(vec![deny_all]));
        linux.set_resources(Some(resources));
    }
    serde_json::to_string_pretty(&spec).expect("spec serializes")
}

fn rootless_spec() -> Spec {
    // SAFETY: getuid and getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    Spec::rootless(uid, gid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_spec_is_valid_and_loads() {
        let text = render(false);
        let spec = crate::bundle::parse_spec(text.as_bytes()).unwrap();
        crate::bundle::validate(&spec).unwrap();
        assert_eq!(spec.root().as_ref().unwrap().path().to_str(), Some("rootfs"));
        let rules = spec.linux().as_ref().unwrap().resources().as_ref().unwrap().devices().clone().unwrap();
        assert_eq!(rules.len(), 1);
        assert!(!rules[0].allow(), "devices are denied by default");
    }
}

//! The container process's privileges and limits, read back from inside the container:
//! capability sets, no_new_privs, rlimits, oom_score_adj, sysctls, umask; and the errors for
//! what cannot be had.

use integration_tests::{Bundle, Tally};
use serde_json::json;

/// The value of `Key:` in /proc/self/status as printed by the container.
fn status_field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim_start_matches(':').trim().to_string()))
        .unwrap_or_else(|| panic!("no {key} in {status}"))
}

fn mask(bits: &[u32]) -> String {
    format!("{:016x}", bits.iter().fold(0u64, |m, b| m | 1 << b))
}

const CHOWN: u32 = 0;
const KILL: u32 = 5;
const NET_BIND_SERVICE: u32 = 10;

#[test]
fn a_non_root_process_gets_exactly_the_configured_ambient_effective_and_bounding_sets() {
    let t = Tally::new();
    let mut b = Bundle::busybox("sec-caps-user");
    b.sh("cat /proc/self/status");
    b.edit(|c| {
        c["process"]["user"] = json!({"uid": 1000, "gid": 1000});
        c["process"]["capabilities"] = json!({
            "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "effective": ["CAP_KILL"],
            "permitted": ["CAP_CHOWN", "CAP_KILL"],
            "inheritable": ["CAP_KILL"],
            "ambient": ["CAP_KILL"]
        });
    });
    let r = t.run_container("sec-caps-user", &b).ok();
    assert_eq!(status_field(&r.stdout, "CapBnd"), mask(&[CHOWN, KILL, NET_BIND_SERVICE]));
    assert_eq!(status_field(&r.stdout, "CapInh"), mask(&[KILL]));
    assert_eq!(status_field(&r.stdout, "CapAmb"), mask(&[KILL]));
    // After execve a non-root process keeps only its ambient capabilities (no file caps).
    assert_eq!(status_field(&r.stdout, "CapPrm"), mask(&[KILL]));
    assert_eq!(status_field(&r.stdout, "CapEff"), mask(&[KILL]));
    assert_eq!(status_field(&r.stdout, "Uid").split_whitespace().next(), Some("1000"));
    t.assert_clean("sec-caps-user", &b);
}

/// `runc spec` lists ambient capabilities with no inheritable set; the kernel refuses to raise
/// those, and runc goes on without them. So does tally, with a warning naming each.
#[test]
fn an_ambient_capability_that_is_not_inheritable_is_skipped_with_a_warning() {
    let t = Tally::new();
    let mut b = Bundle::busybox("sec-caps-amb");
    b.sh("cat /proc/self/status");
    b.edit(|c| {
        c["process"]["capabilities"] = json!({
            "bounding": ["CAP_KILL", "CAP_CHOWN"],
            "effective": ["CAP_KILL", "CAP_CHOWN"],
            "permitted": ["CAP_KILL", "CAP_CHOWN"],
            "inheritable": ["CAP_CHOWN"],
            "ambient": ["CAP_KILL", "CAP_CHOWN"]
        });
    });
    let r = t.run_container("sec-caps-amb", &b).ok();
    assert_eq!(status_field(&r.stdout, "CapAmb"), mask(&[CHOWN]));
    assert!(r.stderr.contains("ambient CAP_KILL is not both permitted and inheritable"), "{}", r.stderr);
    assert!(!r.stderr.contains("ambient CAP_CHOWN"), "{}", r.stderr);
    t.assert_clean("sec-caps-amb", &b);
}

#[test]
fn root_is_bounded_by_the_configured_bounding_set() {
    let t = Tally::new();
    let mut b = Bundle::busybox("sec-caps-root");
    b.sh("cat /proc/self/status; chown 1 /tmp && echo chown-ok");
    b.edit(|c| {
        c["process"]["capabilities"] = json!({
            "bounding": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "effective": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "permitted": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "inheritable": []
        });
    });
    let r = t.run_container("sec-caps-root", &b);
    assert_eq!(status_field(&r.stdout, "CapBnd"), mask(&[KILL, NET_BIND_SERVICE]));
    assert_eq!(status_field(&r.stdout, "CapEff"), mask(&[KILL, NET_BIND_SERVICE]));
    assert_eq!(status_field(&r.stdout, "CapInh"), mask(&[]));
    assert!(!r.stdout.contains("chown-ok"), "root without CAP_CHOWN cannot chown");
    t.assert_clean("sec-caps-root", &b);
}

#[test]
fn a_capability_the_host_withholds_is_a_warning_that_names_it() {
    // The development hosts keep CAP_SYS_RESOURCE out of every bounding set; the VM does not.
    let host_has = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:").map(|v| u64::from_str_radix(v.trim(), 16).unwrap()))
        .unwrap()
        & (1 << 24)
        != 0;
    let t = Tally::new();
    let mut b = Bundle::busybox("sec-caps-withheld");
    b.sh("grep CapBnd /proc/self/status");
    b.edit(|c| c["process"]["capabilities"]["bounding"].as_array_mut().unwrap().push(json!("CAP_SYS_RESOURCE")));
    let r = t.run_container("sec-caps-withheld", &b).ok();
    if host_has {
        assert!(!r.stderr.contains("CAP_SYS_RESOURCE"), "{}", r.stderr);
    } else {
        assert!(r.stderr.contains("CAP_SYS_RESOURCE") && r.stderr.contains("bounding set"), "{}", r.stderr);
    }
    t.assert_clean("sec-caps-withheld", &b);
}

#[test]
fn an_unknown_capability_is_an_error_naming_it() {
    let t = Tally::new();
    let mut b = Bundle::busybox("sec-caps-unknown");
    b.edit(|c| c["process"]["capabilities"]["bounding"] = json!(["CAP_KILL", "CAP_FLY"]));
    t.create("sec-caps-unknown", &b).fails_with(&["process.capabilities.bounding", "unknown capability", "CAP_FLY"]);
    t.assert_clean("sec-caps-unknown", &b);
}

#[test]
fn no_new_privileges_is_set_when_configured_and_only_then() {
    let t = Tally::new();
    for (id, nnp) in [("sec-nnp-on", true), ("sec-nnp-off", false)] {
        let mut b = Bundle::busybox(id);
        b.sh("grep NoNewPrivs /proc/self/status");
        b.edit(|c| c["process"]["noNewPrivileges"] = json!(nnp));
        let r = t.run_container(id, &b).ok();
        assert_eq!(status_field(&r.stdout, "NoNewPrivs"), if nnp { "1" } else { "0" });
        t.assert_clean(id, &b);
    }
}

#[test]
fn rlimits_are_applied_by_name() {
    let t = Tally::new();
    let mut b = Bundle::busybox("sec-rlimits");
    b.sh("cat /proc/self/limits");
    b.edit(|c| {
        c["process"]["rlimits"] = json!([
            {"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024},
            {"type": "RLIMIT_NPROC", "soft": 100, "hard": 200},
            {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}
        ])
    });
    let r = t.run_container("sec-rlimits", &b).ok();
    let line = |name: &str| {
        r.stdout.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} in {}", r.stdout)).to_string()
    };
    assert_eq!(line("Max open files").split_whitespace().collect::<Vec<_>>()[3..5], ["512", "1024"]);
    assert_eq!(line("Max processes").split_whitespace().collect::<Vec<_>>()[2..4], ["100", "200"]);
    assert_eq!(line("Max core file size").split_whitespace().collect::<Vec<_>>()[4..6], ["0", "0"]);
    t.assert_clean("sec-rlimits", &b);
}

#[test]
fn unknown_or_impossible_rlimits_are_errors_naming_the_rlimit() {
    let t = Tally::new();
    let mut b = Bundle::busybox("sec-rlimit-bad");
    b.edit(|c| c["process"]["rlimits"] = json!([{"type": "RLIMIT_WINGS", "soft": 1, "hard": 1}]));
    t.create("sec-rlimit-bad", &b).fails_with(&["process.rlimits[0].type", "RLIMIT_WINGS"]);
    b.edit(|c| c["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 5}]));
    t.create("sec-rlimit-bad", &b).fails_with(&["RLIMIT_NOFILE", "soft 10 is above hard 5"]);
    // Far above any host's hard limit: refused unless tally holds CAP_SYS_RESOURCE.
    let huge = 1u64 << 40;
    b.edit(|c| c["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": huge}]));
    let r = t.create("sec-rlimit-bad", &b);
    if r.code != 0 {
        let r = r.fails_with(&["RLIMIT_NOFILE", &huge.to_string()]);
        assert!(r.stderr.contains("CAP_SYS_RESOURCE") || r.stderr.contains("not permitted"), "{}", r.stderr);
    } else {
        t.run(&["delete", "sec-rlimit-bad"]).ok();
    }
    t.assert_clean("sec-rlimit-bad", &b);
}

#[test]
fn oom_score_adj_and_the_default_umask_are_applied() {
    let t = Tally::new();
    let mut b = Bundle::busybox("sec-oom");
    b.sh("cat /proc/self/oom_score_adj; umask");
    b.edit(|c| c["process"]["oomScoreAdj"] = json!(500));
    let r = t.run_container("sec-oom", &b).ok();
    assert_eq!(r.stdout.lines().collect::<Vec<_>>(), ["500", "0022"]);
    t.assert_clean("sec-oom", &b);
}

#[test]
fn namespaced_sysctls_are_set_inside_the_container() {
    let t = Tally::new();
    let mut b = Bundle::busybox("sec-sysctl");
    b.sh("cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni");
    b.edit(|c| c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1", "kernel.shmmni": "1234"}));
    let r = t.run_container("sec-sysctl", &b).ok();
    assert_eq!(r.stdout.lines().collect::<Vec<_>>(), ["1", "1234"]);
    t.assert_clean("sec-sysctl", &b);
}

#[test]
fn host_wide_sysctls_and_sysctls_without_their_namespace_are_refused() {
    let t = Tally::new();
    let mut b = Bundle::busybox("sec-sysctl-bad");
    b.edit(|c| c["linux"]["sysctl"] = json!({"kernel.panic": "1"}));
    t.create("sec-sysctl-bad", &b).fails_with(&["linux.sysctl", "kernel.panic", "not namespaced"]);
    b.edit(|c| {
        c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
        c["linux"]["namespaces"].as_array_mut().unwrap().retain(|ns| ns["type"] != "network");
    });
    t.create("sec-sysctl-bad", &b).fails_with(&["linux.sysctl", "net.ipv4.ip_forward", "network namespace"]);
    t.assert_clean("sec-sysctl-bad", &b);
}

#[test]
fn the_linux32_personality_makes_uname_report_a_32_bit_machine() {
    let t = Tally::new();
    let mut b = Bundle::busybox("sec-persona");
    b.sh("uname -m");
    b.edit(|c| c["linux"]["personality"] = json!({"domain": "LINUX32"}));
    let r = t.run_container("sec-persona", &b).ok();
    assert_eq!(r.stdout.trim(), "i686");
    b.edit(|c| c["linux"]["personality"] = json!({"domain": "LINUX"}));
    assert_eq!(t.run_container("sec-persona", &b).ok().stdout.trim(), "x86_64");
    b.edit(|c| c["linux"]["personality"] = json!({"domain": "LINUX", "flags": ["SHORT_INODE"]}));
    t.create("sec-persona", &b).fails_with(&["linux.personality", "SHORT_INODE"]);
    t.assert_clean("sec-persona", &b);
}

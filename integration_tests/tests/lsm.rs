//! The security modules a config names. `process.apparmorProfile` confines the container's
//! program (and every exec'd process) from its first instruction; `exec --apparmor` and a
//! process.json's profile confine one process; a profile that is not loaded is an error at
//! `create`. A profile or an SELinux label (`process.selinuxLabel`, `linux.mountLabel`,
//! `exec --process-label`) for a module the host does not run is an error naming the field,
//! with nothing left behind, as runc does for SELinux: never a silently unconfined container.
//!
//! The enforcing tests need AppArmor: the test VM's Debian kernel runs it, and hack/vm-test.sh
//! puts apparmor_parser into the guest (TALLY_APPARMOR_PARSER). The development host runs no
//! security module at all; no machine here runs SELinux.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use integration_tests::{skip, unique, Bundle, Tally};
use serde_json::json;

fn apparmor_on() -> bool {
    fs::read("/sys/module/apparmor/parameters/enabled").is_ok_and(|v| v.first() == Some(&b'Y'))
}

fn selinux_on() -> bool {
    std::path::Path::new("/sys/fs/selinux/enforce").exists()
}

/// Loads (or replaces) profile `name` with the given rules plus everything else allowed, or
/// returns `None` (and a skip line) where AppArmor or its parser is not here.
fn load_profile(test: &str, name: &str, rules: &str) -> Option<()> {
    if !apparmor_on() {
        skip(test, "AppArmor is not enabled here (the host runs no security module; the VM's kernel runs AppArmor)");
        return None;
    }
    let Some(parser) = std::env::var_os("TALLY_APPARMOR_PARSER").map(PathBuf::from) else {
        skip(test, "no apparmor_parser here (hack/vm-test.sh sets TALLY_APPARMOR_PARSER in the VM)");
        return None;
    };
    let file = std::env::temp_dir().join(unique("tally-it-profile"));
    // attach_disconnected: paths under the container's new root are mediated as the container
    // names them, not refused as outside the namespace.
    let profile = format!(
        "profile {name} flags=(attach_disconnected,mediate_deleted) {{\n  file,\n  capability,\n  network,\n  \
         signal,\n  ptrace,\n  unix,\n  mount,\n  umount,\n  pivot_root,\n{rules}\n}}\n"
    );
    fs::write(&file, profile).unwrap();
    // -r: load or replace; -K: no cache directory (the guest has none).
    let out = Command::new(&parser).args(["-r", "-K"]).arg(&file).output().expect("run apparmor_parser");
    let _ = fs::remove_file(&file);
    assert!(out.status.success(), "apparmor_parser -r {name}: {}", String::from_utf8_lossy(&out.stderr));
    Some(())
}

/// The script every confined container runs: its own confinement, and whether it may write
/// the denied file and one beside it.
const PROBE: &str = "cat /proc/self/attr/current; echo; \
                     (echo x > /denied) 2>/dev/null && echo denied-written || echo denied-refused; \
                     (echo x > /allowed) 2>/dev/null && echo allowed-written || echo allowed-refused";

const DENY_RULE: &str = "  deny /denied w,";

/// The container still runs after a refused exec; then it goes, leaving nothing.
#[track_caller]
fn still_running_then_gone(t: &Tally, id: &str, b: &Bundle) {
    assert_eq!(t.status(id), "running");
    t.run(&["delete", "--force", id]).ok();
    t.assert_clean(id, b);
}

#[test]
fn a_container_with_a_profile_runs_confined_by_it_and_one_without_does_not() {
    let test = "a_container_with_a_profile_runs_confined_by_it_and_one_without_does_not";
    if load_profile(test, "tally-it-deny", DENY_RULE).is_none() {
        return;
    }
    let t = Tally::new();
    let mut b = Bundle::busybox("lsm-aa-run");
    b.sh(PROBE);
    // no_new_privs too: the profile must be set before it, or AppArmor refuses the change.
    b.edit(|c| {
        c["process"]["apparmorProfile"] = json!("tally-it-deny");
        c["process"]["noNewPrivileges"] = json!(true);
    });
    let r = t.run_container("lsm-aa-run", &b).ok();
    assert!(r.stdout.starts_with("tally-it-deny (enforce)"), "{}", r.stdout);
    assert!(r.stdout.contains("denied-refused"), "{}", r.stdout);
    assert!(r.stdout.contains("allowed-written"), "{}", r.stdout);
    t.assert_clean("lsm-aa-run", &b);

    let mut free = Bundle::busybox("lsm-aa-free");
    free.sh(PROBE);
    let r = t.run_container("lsm-aa-free", &free).ok();
    assert!(r.stdout.starts_with("unconfined"), "{}", r.stdout);
    assert!(r.stdout.contains("denied-written"), "{}", r.stdout);
    t.assert_clean("lsm-aa-free", &free);
}

#[test]
fn exec_takes_the_containers_profile_or_the_one_it_is_given() {
    let test = "exec_takes_the_containers_profile_or_the_one_it_is_given";
    if load_profile(test, "tally-it-exec", DENY_RULE).is_none() {
        return;
    }
    let t = Tally::new();
    let id = "lsm-aa-exec";
    let b = t.sleeping(id, |c| c["process"]["apparmorProfile"] = json!("tally-it-exec"));
    // The init and a plain exec: the container's profile.
    let r = t.run(&["exec", id, "cat", "/proc/1/attr/current"]).ok();
    assert!(r.stdout.starts_with("tally-it-exec (enforce)"), "{}", r.stdout);
    let r = t.run(&["exec", id, "sh", "-c", PROBE]).ok();
    assert!(r.stdout.starts_with("tally-it-exec (enforce)"), "{}", r.stdout);
    assert!(r.stdout.contains("denied-refused"), "{}", r.stdout);
    // --apparmor replaces it for this process only.
    let r = t.run(&["exec", "--apparmor", "unconfined", id, "sh", "-c", PROBE]).ok();
    assert!(r.stdout.starts_with("unconfined"), "{}", r.stdout);
    assert!(r.stdout.contains("denied-written"), "{}", r.stdout);
    // A process.json names its own.
    let process = std::env::temp_dir().join(unique("tally-it-process.json"));
    let spec: serde_json::Value = serde_json::from_slice(&fs::read(b.dir.join("config.json")).unwrap()).unwrap();
    let mut p = spec["process"].clone();
    p["args"] = json!(["cat", "/proc/self/attr/current"]);
    p["apparmorProfile"] = json!("unconfined");
    fs::write(&process, p.to_string()).unwrap();
    let r = t.run(&["exec", "--process", process.to_str().unwrap(), id]).ok();
    let _ = fs::remove_file(&process);
    assert!(r.stdout.starts_with("unconfined"), "{}", r.stdout);
    // A profile that is not loaded: the exec fails, the container runs on.
    t.run(&["exec", "--apparmor", "tally-it-not-loaded", id, "true"])
        .fails_with(&["process.apparmorProfile \"tally-it-not-loaded\"", "no such profile is loaded"]);
    still_running_then_gone(&t, id, &b);
}

#[test]
fn a_profile_that_is_not_loaded_fails_create_and_leaves_nothing() {
    let test = "a_profile_that_is_not_loaded_fails_create_and_leaves_nothing";
    if !apparmor_on() {
        skip(test, "AppArmor is not enabled here (the host runs no security module; the VM's kernel runs AppArmor)");
        return;
    }
    let t = Tally::new();
    let mut b = Bundle::busybox("lsm-aa-missing");
    b.edit(|c| c["process"]["apparmorProfile"] = json!("tally-it-never-loaded"));
    t.create("lsm-aa-missing", &b)
        .fails_with(&["process.apparmorProfile \"tally-it-never-loaded\"", "no such profile is loaded"]);
    t.assert_clean("lsm-aa-missing", &b);
}

#[test]
fn a_profile_where_apparmor_is_off_is_an_error_naming_the_field() {
    let test = "a_profile_where_apparmor_is_off_is_an_error_naming_the_field";
    if apparmor_on() {
        skip(test, "AppArmor is enabled here: the refusal is for hosts without it (the development host)");
        return;
    }
    let t = Tally::new();
    let mut b = Bundle::busybox("lsm-aa-off");
    b.edit(|c| c["process"]["apparmorProfile"] = json!("docker-default"));
    t.create("lsm-aa-off", &b)
        .fails_with(&["process.apparmorProfile \"docker-default\"", "AppArmor is not enabled on this host"]);
    t.assert_clean("lsm-aa-off", &b);

    // exec --apparmor into a container without one: refused the same way, container untouched.
    let id = "lsm-aa-off-exec";
    let b = t.sleeping(id, |_| {});
    t.run(&["exec", "--apparmor", "docker-default", id, "true"])
        .fails_with(&["process.apparmorProfile \"docker-default\"", "AppArmor is not enabled on this host"]);
    still_running_then_gone(&t, id, &b);
}

#[test]
fn selinux_labels_where_selinux_is_off_are_errors_naming_the_field() {
    let test = "selinux_labels_where_selinux_is_off_are_errors_naming_the_field";
    if selinux_on() {
        skip(test, "SELinux is enabled here: the refusal is for hosts without it");
        return;
    }
    let t = Tally::new();
    let label = "system_u:system_r:container_t:s0:c1,c2";
    let mut b = Bundle::busybox("lsm-se-off");
    b.edit(|c| c["process"]["selinuxLabel"] = json!(label));
    t.create("lsm-se-off", &b).fails_with(&["process.selinuxLabel", label, "SELinux is not enabled on this host"]);
    t.assert_clean("lsm-se-off", &b);

    let file_label = "system_u:object_r:container_file_t:s0:c1,c2";
    let mut b = Bundle::busybox("lsm-ml-off");
    b.edit(|c| c["linux"]["mountLabel"] = json!(file_label));
    t.create("lsm-ml-off", &b).fails_with(&["linux.mountLabel", file_label, "SELinux is not enabled on this host"]);
    t.assert_clean("lsm-ml-off", &b);

    let id = "lsm-se-off-exec";
    let b = t.sleeping(id, |_| {});
    t.run(&["exec", "--process-label", label, id, "true"])
        .fails_with(&["process.selinuxLabel", "SELinux is not enabled on this host"]);
    still_running_then_gone(&t, id, &b);
}

/// Empty strings are what some engines send for "no label": nothing is asked for.
#[test]
fn empty_labels_ask_for_nothing() {
    let t = Tally::new();
    let mut b = Bundle::busybox("lsm-empty");
    b.sh("cat /proc/self/attr/current 2>/dev/null; echo; echo ran");
    b.edit(|c| {
        c["process"]["apparmorProfile"] = json!("");
        c["process"]["selinuxLabel"] = json!("");
        c["linux"]["mountLabel"] = json!("");
    });
    let r = t.run_container("lsm-empty", &b).ok();
    assert!(r.stdout.contains("ran"), "{}", r.stdout);
    t.assert_clean("lsm-empty", &b);
}

#[test]
fn features_say_both_modules_are_supported_and_which_this_host_runs() {
    let t = Tally::new();
    let f: serde_json::Value = serde_json::from_str(&t.run(&["features"]).ok().stdout).unwrap();
    assert_eq!(f["linux"]["apparmor"]["enabled"], json!(true));
    assert_eq!(f["linux"]["selinux"]["enabled"], json!(true));
    let host = f["annotations"]["org.tally.lsm.host"].as_str().unwrap();
    let want = match (apparmor_on(), selinux_on()) {
        (true, true) => "apparmor,selinux",
        (true, false) => "apparmor",
        (false, true) => "selinux",
        (false, false) => "none",
    };
    assert_eq!(host, want);
    assert_eq!(f["annotations"]["org.tally.criu.commands"], json!("checkpoint,restore,migrate"));
}

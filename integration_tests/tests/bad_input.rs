//! Bad input: each mistake is a clear error that names the field or path and the reason, the
//! command exits non-zero, and nothing is left behind (state directory, cgroup, mount,
//! process).

use std::fs;
use std::path::Path;

use integration_tests::{assert_host_clean, Bundle, Tally};
use serde_json::{json, Value};

/// `tally create` on `b` fails naming every one of `needles`, and leaves nothing.
#[track_caller]
fn create_fails(id: &str, b: &Bundle, needles: &[&str]) {
    let t = Tally::new();
    t.create(id, b).fails_with(needles);
    assert!(!t.root.join(id).exists());
    t.assert_clean(id, b);
}

#[test]
fn a_missing_bundle_directory_is_named() {
    let t = Tally::new();
    let b = Bundle::busybox("bad-nobundle");
    let missing = b.dir.join("not-here");
    t.run_to_files(&["create", "--bundle", missing.to_str().unwrap(), "bad-nobundle"])
        .fails_with(&[missing.to_str().unwrap(), "No such file or directory"]);
    assert_host_clean(&t.root, "bad-nobundle", &missing);
    t.assert_clean("bad-nobundle", &b);
}

#[test]
fn a_missing_config_json_is_named() {
    let b = Bundle::busybox("bad-noconfig");
    fs::remove_file(b.dir.join("config.json")).unwrap();
    create_fails("bad-noconfig", &b, &["config.json", "No such file or directory"]);
}

#[test]
fn malformed_json_is_reported_with_its_position() {
    let b = Bundle::busybox("bad-json");
    fs::write(b.dir.join("config.json"), "{\"ociVersion\": \"1.0.2\",\n  \"root\": {\"path\": \"rootfs\"\n").unwrap();
    create_fails("bad-json", &b, &["config.json", "EOF", "line 3"]);
}

#[test]
fn a_value_of_the_wrong_type_names_its_json_path() {
    let mut b = Bundle::busybox("bad-type");
    b.edit(|c| c["process"]["user"]["uid"] = json!("root"));
    create_fails("bad-type", &b, &["config.json", "process.user.uid", "invalid type"]);
}

#[test]
fn an_unsupported_oci_version_is_refused() {
    let mut b = Bundle::busybox("bad-version");
    b.edit(|c| c["ociVersion"] = json!("2.0.0"));
    create_fails("bad-version", &b, &["ociVersion", "\"2.0.0\"", "not supported"]);
}

#[test]
fn a_root_path_escaping_the_bundle_is_refused() {
    let mut b = Bundle::busybox("bad-rootpath");
    b.edit(|c| c["root"]["path"] = json!("../x"));
    create_fails("bad-rootpath", &b, &["root.path", "\"../x\"", "escapes the bundle"]);
}

#[test]
fn a_root_path_that_does_not_exist_is_named() {
    let mut b = Bundle::busybox("bad-rootmissing");
    b.edit(|c| c["root"]["path"] = json!("no-rootfs"));
    create_fails("bad-rootmissing", &b, &["root.path", "no-rootfs", "No such file or directory"]);
}

#[test]
fn a_missing_executable_is_an_error_at_create_naming_it() {
    let mut b = Bundle::busybox("bad-noexec");
    b.edit(|c| c["process"]["args"] = json!(["no-such-program", "arg"]));
    create_fails("bad-noexec", &b, &["process.args[0]", "\"no-such-program\"", "not found"]);
    b.edit(|c| c["process"]["args"] = json!(["/bin/no-such-program"]));
    create_fails("bad-noexec", &b, &["process.args[0]", "/bin/no-such-program", "no such file or directory"]);
    fs::write(b.rootfs().join("not-executable"), "#!/bin/sh\n").unwrap();
    b.edit(|c| c["process"]["args"] = json!(["/not-executable"]));
    create_fails("bad-noexec", &b, &["process.args[0]", "/not-executable", "permission denied"]);
}

#[test]
fn a_duplicate_id_fails_and_leaves_the_first_container_alone() {
    let t = Tally::new();
    let mut b = Bundle::busybox("bad-dup");
    b.sh("touch /tmp/started; exec sleep 1000");
    let mut other = Bundle::busybox("bad-dup-other");
    other.sh("touch /tmp/started-other; exec sleep 1000");
    t.create("bad-dup", &b).ok();
    let before = t.state("bad-dup");
    t.create("bad-dup", &other).fails_with(&["bad-dup", "already exists"]);
    let after = t.state("bad-dup");
    assert_eq!(before, after, "the first container's state is unchanged");
    assert!(Path::new(&format!("/proc/{}", after["pid"])).exists());
    t.run(&["start", "bad-dup"]).ok();
    integration_tests::wait_for_file(&b.rootfs().join("tmp/started"));
    assert!(!other.rootfs().join("tmp/started-other").exists(), "the second bundle never ran");
    t.run(&["delete", "--force", "bad-dup"]).ok();
    t.assert_clean("bad-dup", &b);
    t.assert_clean("bad-dup", &other);
}

#[test]
fn invalid_ids_are_refused_before_anything_is_made() {
    let t = Tally::new();
    let b = Bundle::busybox("bad-id");
    for id in ["../x", "a/b", "..", "with space", ""] {
        t.create(id, &b).fails_with(&["invalid container id"]);
        assert_eq!(fs::read_dir(&t.root).map(|d| d.count()).unwrap_or(0), 0, "{id:?} left state behind");
    }
    assert!(!t.root.parent().unwrap().join("x").exists(), "nothing made next to the state root");
    t.assert_clean("bad-id", &b);
}

#[test]
fn an_unknown_namespace_type_names_its_index() {
    let mut b = Bundle::busybox("bad-nstype");
    b.edit(|c| c["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "bogus"})));
    let n = b.config["linux"]["namespaces"].as_array().unwrap().len() - 1;
    create_fails("bad-nstype", &b, &[&format!("linux.namespaces[{n}].type"), "bogus"]);
}

#[test]
fn a_namespace_path_of_the_wrong_type_is_refused() {
    let mut b = Bundle::busybox("bad-nspath");
    set_ns_path(&mut b, "uts", "/proc/self/ns/net");
    create_fails(
        "bad-nspath",
        &b,
        &["linux.namespaces", "/proc/self/ns/net", "network namespace, not a uts namespace"],
    );
}

#[test]
fn a_namespace_path_that_is_not_a_namespace_is_refused() {
    let mut b = Bundle::busybox("bad-nsfile");
    set_ns_path(&mut b, "ipc", "/etc/hostname");
    create_fails("bad-nsfile", &b, &["linux.namespaces", "/etc/hostname", "not a namespace"]);
    set_ns_path(&mut b, "ipc", "/no/such/ns");
    create_fails("bad-nsfile", &b, &["linux.namespaces", "ipc", "/no/such/ns", "No such file or directory"]);
}

fn set_ns_path(b: &mut Bundle, kind: &str, path: &str) {
    b.edit(|c| {
        for ns in c["linux"]["namespaces"].as_array_mut().unwrap() {
            if ns["type"] == kind {
                ns["path"] = json!(path);
            }
        }
    });
}

#[test]
fn a_relative_mount_destination_is_refused() {
    let mut b = Bundle::busybox("bad-mountdest");
    b.edit(|c| {
        c["mounts"].as_array_mut().unwrap().push(json!({"destination": "data", "type": "tmpfs", "source": "tmpfs"}))
    });
    create_fails("bad-mountdest", &b, &["mounts", "destination", "\"data\"", "not an absolute path"]);
}

#[test]
fn a_mount_that_fails_in_the_container_names_its_index_and_leaves_nothing() {
    let mut b = Bundle::busybox("bad-mountsrc");
    let missing = b.dir.join("missing-source");
    b.edit(|c| {
        c["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "/data", "type": "bind", "source": missing, "options": ["bind"]}))
    });
    let n = b.config["mounts"].as_array().unwrap().len() - 1;
    create_fails(
        "bad-mountsrc",
        &b,
        &[&format!("mounts[{n}]"), "/data", "missing-source", "No such file or directory"],
    );
}

#[test]
fn an_unknown_signal_is_refused_and_the_container_is_unaffected() {
    let t = Tally::new();
    let mut b = Bundle::busybox("bad-signal");
    b.sh("exec sleep 1000");
    t.create("bad-signal", &b).ok();
    t.run(&["start", "bad-signal"]).ok();
    for sig in ["SIGFOO", "0", "99", "RTMIN+99"] {
        t.run(&["kill", "bad-signal", sig]).fails_with(&["unknown signal", sig]);
    }
    assert_eq!(t.status("bad-signal"), "running");
    t.run(&["delete", "--force", "bad-signal"]).ok();
    t.assert_clean("bad-signal", &b);
}

#[test]
fn every_command_on_a_missing_container_says_it_does_not_exist() {
    let t = Tally::new();
    let b = Bundle::busybox("bad-missing");
    for args in [
        &["start", "bad-missing"][..],
        &["state", "bad-missing"],
        &["kill", "bad-missing"],
        &["kill", "bad-missing", "KILL"],
        &["delete", "bad-missing"],
    ] {
        let r = t.run(args).fails_with(&["bad-missing", "does not exist"]);
        assert!(r.stdout.is_empty(), "{args:?} printed {}", r.stdout);
    }
    // As runc: delete --force of a missing container succeeds, there being nothing to remove.
    t.run(&["delete", "--force", "bad-missing"]).ok();
    t.assert_clean("bad-missing", &b);
}

#[test]
fn start_on_a_started_or_stopped_container_is_an_error() {
    let t = Tally::new();
    let mut b = Bundle::busybox("bad-start2");
    b.sh("touch /tmp/ran; exit 0");
    t.create("bad-start2", &b).ok();
    t.run(&["start", "bad-start2"]).ok();
    t.wait_status("bad-start2", "stopped");
    fs::remove_file(b.rootfs().join("tmp/ran")).unwrap();
    t.run(&["start", "bad-start2"]).fails_with(&["bad-start2", "stopped", "not created"]);
    assert!(!b.rootfs().join("tmp/ran").exists(), "the program did not run again");
    t.run(&["delete", "bad-start2"]).ok();
    t.assert_clean("bad-start2", &b);
}

#[test]
fn a_failing_create_leaves_exactly_one_json_error_line_in_the_log() {
    let t = Tally::new();
    let mut b = Bundle::busybox("bad-log");
    b.edit(|c| c["process"]["args"] = json!(["no-such-program"]));
    let log = b.dir.join("tally.log");
    let r = t.run_to_files(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "create",
        "--bundle",
        b.dir.to_str().unwrap(),
        "bad-log",
    ]);
    r.fails_with(&["no-such-program"]);
    let text = fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().count(), 1, "one line: {text}");
    assert!(text.ends_with('\n'));
    // Podman parses the whole file as one object.
    let v: Value = serde_json::from_str(&text).expect("the log file is one JSON object");
    assert_eq!(v["level"], "error", "{v}");
    let msg = v["msg"].as_str().unwrap();
    assert!(msg.contains("process.args[0]") && msg.contains("no-such-program") && msg.contains("not found"), "{msg}");
    assert!(v["time"].as_str().is_some_and(|s| s.len() >= 20 && s.contains('T')), "{v}");
    t.assert_clean("bad-log", &b);
}

#[test]
fn a_failing_command_with_a_text_log_writes_one_logrus_line() {
    let t = Tally::new();
    let b = Bundle::busybox("bad-textlog");
    let log = b.dir.join("tally.log");
    t.run(&["--log", log.to_str().unwrap(), "state", "bad-textlog"]).fails_with(&["does not exist"]);
    let text = fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.starts_with("time=\"") && text.contains(" level=error msg=\"") && text.contains("does not exist"),
        "{text}"
    );
    t.assert_clean("bad-textlog", &b);
}

#[test]
fn a_command_line_error_reaches_the_json_log_as_one_error_line() {
    // containerd reports the last error line of --log; an unknown command or flag must land
    // there too, though the parser fails before logging is set up.
    let t = Tally::new();
    let log = std::env::temp_dir().join(integration_tests::unique("bad-usage-log"));
    let r = t.run(&["--log", log.to_str().unwrap(), "--log-format", "json", "frobnicate", "x"]);
    assert_ne!(r.code, 0);
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(v["level"], "error");
    assert!(v["msg"].as_str().unwrap().contains("frobnicate"), "{v}");
    let _ = std::fs::remove_file(&log);
}

#[test]
fn list_json_prints_null_when_there_are_no_containers() {
    let r = Tally::new().run(&["list", "--format", "json"]).ok();
    assert_eq!(r.stdout.trim(), "null", "as runc prints it");
}

#[test]
fn negative_or_out_of_range_limits_are_named() {
    for (id, resources, needles) in [
        ("bad-mem", json!({"memory": {"limit": -5}}), &["linux.resources.memory.limit", "-5"][..]),
        ("bad-pids", json!({"pids": {"limit": -7}}), &["linux.resources.pids.limit", "-7"][..]),
        ("bad-swappiness", json!({"memory": {"swappiness": 200}}), &["memory.swappiness", "0 to 100"][..]),
        ("bad-unified", json!({"unified": {"../memory.max": "1"}}), &["unified", "../memory.max"][..]),
    ] {
        let mut b = Bundle::busybox(id);
        b.edit(|c| c["linux"]["resources"] = resources);
        create_fails(id, &b, needles);
    }
}

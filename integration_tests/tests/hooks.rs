//! OCI hooks: each phase at its moment, in its namespace, with the state on stdin; failures of
//! the phases before the program runs fail the operation and leave nothing; poststart and
//! poststop failures are warnings.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use integration_tests::{unique, Bundle, Tally};
use serde_json::{json, Value};

/// A host script that appends `<name> <state json>` to `log`, with `extra` shell after it.
fn hook_script(dir: &Path, name: &str, log: &Path, extra: &str) -> PathBuf {
    let path = dir.join(format!("hook-{name}"));
    fs::write(&path, format!("#!/bin/sh\nstate=$(cat)\necho \"{name} $state\" >> {}\n{extra}\n", log.display()))
        .unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// (name, state) per line of the hook log.
fn log_lines(log: &Path) -> Vec<(String, Value)> {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let (name, json) = l.split_once(' ').unwrap();
            (name.to_string(), serde_json::from_str(json).unwrap())
        })
        .collect()
}

#[test]
fn all_six_phases_run_in_order_with_the_state_on_stdin() {
    let t = Tally::new();
    let mut b = Bundle::busybox("hook-all");
    let log = b.dir.join("hooks.log");
    let mut hooks = serde_json::Map::new();
    for phase in ["prestart", "createRuntime", "createContainer", "poststart", "poststop"] {
        let p = hook_script(&b.dir, phase, &log, "");
        hooks.insert(phase.to_string(), json!([{"path": p}]));
    }
    // startContainer resolves in the container: busybox sh there, writing into the rootfs.
    hooks.insert(
        "startContainer".into(),
        json!([{"path": "/bin/sh", "args": ["sh", "-c", "cat > /tmp/start-state.json"]}]),
    );
    b.edit(|c| c["hooks"] = Value::Object(hooks));
    b.sh("touch /tmp/program-ran");

    t.create("hook-all", &b).ok();
    let pid = t.state("hook-all")["pid"].as_i64().unwrap();
    let lines = log_lines(&log);
    let names: Vec<&str> = lines.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["prestart", "createRuntime", "createContainer"]);
    for (name, state) in &lines {
        // state.md: `creating` until the create operation has finished (runc passes it too).
        assert_eq!(state["status"], "creating", "{name}: {state}");
        assert_eq!(state["id"], "hook-all");
        assert_eq!(state["pid"].as_i64(), Some(pid), "{name} gets the init's host pid");
        assert_eq!(state["bundle"].as_str(), b.dir.to_str());
    }
    assert!(!b.rootfs().join("tmp/start-state.json").exists(), "startContainer waits for start");

    t.run(&["start", "hook-all"]).ok();
    let start_state: Value =
        serde_json::from_slice(&fs::read(b.rootfs().join("tmp/start-state.json")).unwrap()).unwrap();
    assert_eq!(start_state["status"], "created");
    assert_eq!(start_state["pid"].as_i64(), Some(pid));
    let lines = log_lines(&log);
    assert_eq!(lines.last().unwrap().0, "poststart");
    // The program has run by then (spec lifecycle step 11, state.md's `running`); runc passes
    // `created` here: docs/compatibility.md.
    assert_eq!(lines.last().unwrap().1["status"], "running");

    t.wait_status("hook-all", "stopped");
    assert!(b.rootfs().join("tmp/program-ran").exists());
    t.run(&["delete", "hook-all"]).ok();
    let lines = log_lines(&log);
    let (name, state) = lines.last().unwrap();
    assert_eq!(name, "poststop");
    assert_eq!(state["status"], "stopped");
    assert!(state.get("pid").is_none(), "poststop has no pid: {state}");
    t.assert_clean("hook-all", &b);
}

#[test]
fn hooks_get_their_args_and_only_their_env() {
    // busybox picks its applet from argv[0]: "sh" there shows that args[0] became argv[0].
    let t = Tally::new();
    let mut b = Bundle::busybox("hook-env");
    let out = b.dir.join("env.out");
    let script = format!("echo \"$0 $1 $HOOK_VAR\" > {0}; env >> {0}", out.display());
    b.edit(|c| {
        c["hooks"] = json!({"createRuntime": [{
            "path": "/bin/busybox", "args": ["sh", "-c", script, "hook-name", "one"], "env": ["HOOK_VAR=set"]
        }]})
    });
    t.create("hook-env", &b).ok();
    let text = fs::read_to_string(&out).unwrap();
    assert_eq!(text.lines().next(), Some("hook-name one set"));
    assert!(text.lines().any(|l| l == "HOOK_VAR=set"), "{text}");
    assert!(!text.contains("CARGO") && !text.contains("RUST_"), "the runtime's environment leaked: {text}");
    t.run(&["delete", "hook-env"]).ok();
    t.assert_clean("hook-env", &b);
}

#[test]
fn a_failing_create_runtime_hook_fails_create_and_leaves_nothing() {
    let t = Tally::new();
    let mut b = Bundle::busybox("hook-fail");
    let log = b.dir.join("hooks.log");
    let bad = hook_script(&b.dir, "bad", &log, "echo 'network setup failed' >&2; exit 3");
    let never = hook_script(&b.dir, "never", &log, "");
    b.edit(|c| c["hooks"] = json!({"createRuntime": [{"path": bad}, {"path": never}]}));
    t.create("hook-fail", &b).fails_with(&["hooks.createRuntime[0]", "exited with status 3", "network setup failed"]);
    let names: Vec<String> = log_lines(&log).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["bad"], "the hooks after a failing one do not run");
    t.assert_clean("hook-fail", &b);
}

#[test]
fn a_hook_that_overruns_its_timeout_is_killed_and_fails_create() {
    let t = Tally::new();
    let mut b = Bundle::busybox("hook-timeout");
    let log = b.dir.join("hooks.log");
    let slow = hook_script(&b.dir, "slow", &log, "sleep 30");
    b.edit(|c| c["hooks"] = json!({"prestart": [{"path": slow, "timeout": 1}]}));
    let started = std::time::Instant::now();
    t.create("hook-timeout", &b).fails_with(&["hooks.prestart[0]", "timed out after 1s"]);
    assert!(started.elapsed().as_secs() < 20, "the hook was killed, not waited for");
    t.assert_clean("hook-timeout", &b);
}

#[test]
fn a_failing_create_container_hook_fails_create() {
    let t = Tally::new();
    let mut b = Bundle::busybox("hook-cc");
    let log = b.dir.join("hooks.log");
    let bad = hook_script(&b.dir, "cc", &log, "exit 1");
    b.edit(|c| c["hooks"] = json!({"createContainer": [{"path": bad}]}));
    t.create("hook-cc", &b).fails_with(&["hooks.createContainer[0]", "exited with status 1"]);
    t.assert_clean("hook-cc", &b);
}

#[test]
fn a_failing_start_container_hook_fails_start_and_the_program_never_runs() {
    let t = Tally::new();
    let mut b = Bundle::busybox("hook-sc");
    b.edit(|c| {
        c["hooks"] = json!({"startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "echo no GPU >&2; exit 4"]}]})
    });
    b.sh("touch /tmp/program-ran; sleep 1000");
    t.create("hook-sc", &b).ok();
    t.run(&["start", "hook-sc"]).fails_with(&["hooks.startContainer[0]", "exited with status 4", "no GPU"]);
    assert!(!b.rootfs().join("tmp/program-ran").exists());
    t.wait_status("hook-sc", "stopped");
    t.run(&["delete", "hook-sc"]).ok();
    t.assert_clean("hook-sc", &b);
}

#[test]
fn failing_poststart_and_poststop_hooks_are_warnings_and_the_rest_still_run() {
    let t = Tally::new();
    let mut b = Bundle::busybox("hook-post");
    let log = b.dir.join("hooks.log");
    let bad = hook_script(&b.dir, "bad", &log, "exit 1");
    let good = hook_script(&b.dir, "good", &log, "");
    b.edit(|c| {
        c["hooks"] = json!({"poststart": [{"path": bad}, {"path": good}], "poststop": [{"path": bad}, {"path": good}]})
    });
    b.sh("sleep 1000");
    t.create("hook-post", &b).ok();
    let r = t.run(&["start", "hook-post"]).ok();
    assert!(r.stderr.contains("hooks.poststart[0]") && r.stderr.contains("warning"), "{}", r.stderr);
    assert_eq!(t.status("hook-post"), "running");
    let r = t.run(&["delete", "--force", "hook-post"]).ok();
    assert!(r.stderr.contains("hooks.poststop[0]"), "{}", r.stderr);
    let names: Vec<String> = log_lines(&log).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["bad", "good", "bad", "good"]);
    t.assert_clean("hook-post", &b);
}

#[test]
fn hook_paths_that_are_missing_relative_or_not_executable_are_refused_at_create() {
    let t = Tally::new();
    let mut b = Bundle::busybox("hook-bad");
    let not_exec = b.dir.join("not-exec");
    fs::write(&not_exec, "#!/bin/sh\n").unwrap();
    let missing = std::env::temp_dir().join(unique("no-such-hook"));
    for (hook, needle) in [
        (json!({"path": missing}), "No such file"),
        (json!({"path": "relative/hook"}), "must be absolute"),
        (json!({"path": not_exec}), "not an executable"),
        (json!({"path": "/bin/true", "timeout": 0}), "timeout"),
    ] {
        b.edit(|c| c["hooks"] = json!({"prestart": [hook]}));
        t.create("hook-bad", &b).fails_with(&["hooks.prestart[0]", needle]);
        t.assert_clean("hook-bad", &b);
    }
}

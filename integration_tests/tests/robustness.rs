//! Robustness: bad command-line input and hundreds of mutated config.json files get a clear
//! error (or succeed), never a panic or a hang, and leave nothing behind.

use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use integration_tests::{assert_host_clean, cgroup_dirs_named, rounds, tally_bin, unique, Bundle, Ran, Tally};
use serde_json::{json, Value};

/// Runs tally with the output in files and a 10 s bound: a hang is a failure, not a stuck test.
fn bounded(t: &Tally, args: &[&str]) -> Ran {
    let base = std::env::temp_dir().join(unique("tally-robust"));
    let (out, err) = (base.with_extension("out"), base.with_extension("err"));
    let mut child = Command::new(tally_bin())
        .arg("--root")
        .arg(&t.root)
        .args(args)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&err).unwrap())
        .spawn()
        .expect("spawn tally");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tally {args:?} hung for 10 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let ran = Ran {
        code: status.code().unwrap_or(-1),
        stdout: fs::read_to_string(&out).unwrap_or_default(),
        stderr: fs::read_to_string(&err).unwrap_or_default(),
    };
    let _ = fs::remove_file(out);
    let _ = fs::remove_file(err);
    ran
}

/// A failure is an exit status that is not a panic's (101), with one `tally: error:` line, or
/// the command line parser's usage error (`error: ...`, exit 2).
#[track_caller]
fn assert_clear_failure(r: &Ran, what: &str) {
    assert!(r.code != 0 && r.code != 101, "{what}: exit {}; stderr: {}", r.code, r.stderr);
    assert!(!r.stderr.contains("panicked"), "{what}: {}", r.stderr);
    if r.code == 2 && r.stderr.starts_with("error: ") {
        return;
    }
    let errors = r.stderr.lines().filter(|l| l.starts_with("tally: error:")).count();
    assert_eq!(errors, 1, "{what}: one error line expected; stderr: {}", r.stderr);
}

#[test]
fn bad_container_ids_are_refused_and_nothing_is_made() {
    let t = Tally::new();
    let b = Bundle::busybox("robust-ids");
    let long = "a".repeat(1000);
    // runc's rule: letters, digits, `_`, `+`, `-` and `.`, not `.` or `..` alone.
    for id in ["a/b", "..", ".", "", long.as_str(), "a b", "../../etc/x", "a\nb", "*"] {
        let r = bounded(&t, &["create", "--bundle", b.dir.to_str().unwrap(), id]);
        assert_clear_failure(&r, &format!("create {id:?}"));
        let entries: Vec<_> = fs::read_dir(&t.root).map(|d| d.flatten().collect()).unwrap_or_default();
        assert!(entries.iter().all(|e| e.file_name() == ".seccomp-cache"), "{id:?} left {entries:?}");
        if !id.is_empty() && !id.contains('/') && id != "." && id != ".." {
            assert!(cgroup_dirs_named(id).is_empty(), "{id:?} left a cgroup");
        }
    }
    // argv cannot carry NUL: the C strings the kernel passes end there.
}

#[test]
fn bad_signals_bundles_and_roots_are_clear_errors() {
    let t = Tally::new();
    let id = "robust-sig";
    let mut b = Bundle::busybox(id);
    b.edit(|c| c["process"]["args"] = json!(["sleep", "300"]));
    bounded(&t, &["run", "-d", "--bundle", b.dir.to_str().unwrap(), id]);
    for sig in ["SIGFOO", "999", "-1", "", "KILLKILL", "0x9"] {
        let r = bounded(&t, &["kill", id, sig]);
        assert_clear_failure(&r, &format!("kill {sig:?}"));
        assert_eq!(t.status(id), "running", "kill {sig:?} did something");
    }
    t.run(&["delete", "--force", id]).ok();
    t.assert_clean(id, &b);

    // A bundle that is a file, or missing.
    for bundle in ["/etc/passwd", "/no/such/bundle"] {
        let r = bounded(&t, &["create", "--bundle", bundle, "robust-bundle"]);
        assert_clear_failure(&r, bundle);
        assert!(r.stderr.contains(bundle), "{}", r.stderr);
        assert!(!t.root.join("robust-bundle").exists());
    }

    // A root that cannot be made (under a file), or not written (a read-only mount).
    for root in ["/etc/passwd/root", "/proc/tally-root"] {
        let r = bounded_root(root, &["create", "--bundle", b.dir.to_str().unwrap(), "robust-root"]);
        assert_clear_failure(&r, root);
        assert!(r.stderr.contains(root), "{}", r.stderr);
        assert!(cgroup_dirs_named("robust-root").is_empty());
    }
}

#[test]
fn a_root_that_is_a_symlink_is_followed_and_a_dangling_one_is_named() {
    let real = std::path::PathBuf::from("/run").join(unique("tally-robust-real"));
    fs::create_dir_all(&real).unwrap();
    let link = std::env::temp_dir().join(unique("tally-robust-link"));
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let t = Tally { root: link.clone() };
    let id = "robust-link";
    let b = Bundle::busybox(id);
    t.create(id, &b).ok();
    assert!(real.join(id).is_dir(), "the state is where the link points");
    t.run(&["delete", "--force", id]).ok();
    t.assert_clean(id, &b);
    drop(t);
    let _ = fs::remove_file(&link);
    let _ = fs::remove_dir_all(&real);

    let dangling = std::env::temp_dir().join(unique("tally-robust-dangling"));
    std::os::unix::fs::symlink("/nonexistent/tally-root", &dangling).unwrap();
    let r = bounded_root(dangling.to_str().unwrap(), &["create", "--bundle", b.dir.to_str().unwrap(), id]);
    assert_clear_failure(&r, "dangling root");
    assert!(r.stderr.contains("a symlink to /nonexistent/tally-root"), "{}", r.stderr);
    assert!(!std::path::Path::new("/nonexistent").exists());
    fs::remove_file(&dangling).unwrap();
}

fn bounded_root(root: &str, args: &[&str]) -> Ran {
    let t = Tally { root: root.into() };
    let r = bounded(&t, args);
    std::mem::forget(t); // nothing to clean in a root that could not be made
    r
}

/// A tiny deterministic generator (xorshift): the same mutations every run, so a failure
/// names a case that can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Every path to a value in `v`, as JSON pointers.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match v {
        Value::Object(m) => {
            m.iter().for_each(|(k, v)| pointers(v, format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")), out))
        }
        Value::Array(a) => a.iter().enumerate().for_each(|(i, v)| pointers(v, format!("{at}/{i}"), out)),
        _ => {}
    }
}

fn nested(depth: usize) -> Value {
    (0..depth).fold(json!(1), |v, _| json!([v]))
}

/// Values that break assumptions: wrong types, extremes, huge and odd strings, deep nesting.
fn odd_value(rng: &mut Rng) -> Value {
    match rng.below(16) {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(-1),
        3 => json!(i64::MAX),
        4 => json!(u64::MAX),
        5 => json!(-9_223_372_036_854_775_808i64),
        6 => json!(1e308),
        7 => json!(""),
        8 => json!("x".repeat(100_000)),
        9 => json!("a\u{0}b"),
        10 => json!([]),
        11 => json!({}),
        12 => nested(300),
        13 => json!("../../../../etc/shadow"),
        14 => json!("relative/path"),
        _ => json!("/proc/self/fd/3"),
    }
}

/// Structured mutations the generic ones rarely hit.
fn targeted(c: &mut Value, rng: &mut Rng) {
    match rng.below(6) {
        0 => push(&mut c["linux"]["namespaces"], json!({"type": "pid"})),
        1 => push(
            &mut c["mounts"],
            json!({"destination": "/x", "type": "tmpfs",
            "source": "tmpfs", "options": ["mode=99999", "size=-1", "nosuchoption", "rbind,ro", ""]}),
        ),
        2 => c["hooks"] = json!({"prestart": [{"path": "relative/hook"}]}),
        3 => c["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "hard": 1, "soft": 2}]),
        4 => c["linux"]["sysctl"] = json!({"kernel.no_such": "1", "../../x": "y"}),
        _ => c["annotations"] = json!({"org.tally.beancounter.numproc": "-5:abc"}),
    }
}

fn push(list: &mut Value, v: Value) {
    if let Some(a) = list.as_array_mut() {
        a.push(v);
    }
}

/// Paths whose odd values would turn the run into an attack on the test host rather than a
/// test of tally's input handling: the cgroup path decides what `delete` kills.
fn off_limits(pointer: &str) -> bool {
    pointer.starts_with("/linux/cgroupsPath") || pointer.starts_with("/hooks")
}

#[test]
fn hundreds_of_mutated_configs_fail_clearly_or_run_and_leave_nothing() {
    let t = Tally::new();
    let base = Bundle::busybox("robust-mutant").config.clone();
    let mut all = Vec::new();
    pointers(&base, String::new(), &mut all);
    let candidates: Vec<&String> = all.iter().filter(|p| !p.is_empty() && !off_limits(p)).collect();
    let mut rng = Rng(0x7a11_7a11_7a11_7a11);
    let (mut failed, mut ran) = (0, 0);
    for case in 0..300 {
        let id = format!("robust-m{case}");
        let mut b = Bundle::busybox(&id);
        let mut config = base.clone();
        for _ in 0..1 + rng.below(3) {
            if rng.below(4) == 0 {
                targeted(&mut config, &mut rng);
            } else {
                let p = candidates[rng.below(candidates.len())];
                if let Some(slot) = config.pointer_mut(p) {
                    *slot = odd_value(&mut rng);
                }
            }
        }
        b.edit(|c| *c = config.clone());
        let r = bounded(&t, &["create", "--bundle", b.dir.to_str().unwrap(), &id]);
        if r.code == 0 {
            ran += 1;
            let d = bounded(&t, &["delete", "--force", &id]);
            assert_eq!(d.code, 0, "case {case}: delete --force: {}", d.stderr);
        } else {
            failed += 1;
            assert_clear_failure(
                &r,
                &format!(
                    "case {case}: {}",
                    serde_json::to_string(&config).unwrap().chars().take(2000).collect::<String>()
                ),
            );
        }
        assert_host_clean(&t.root, &id, &b.dir);
    }
    eprintln!("mutated configs: {failed} refused, {ran} created");
    // Both outcomes occur: the mutations are neither all fatal nor all harmless.
    assert!(failed > 50 && ran > 0, "failed {failed}, ran {ran}");
}

/// Starts `tally args` with its output discarded (a container it leaves must not hold a pipe
/// of this test), kills it with SIGKILL after `delay`, and reaps it.
fn killed_after(t: &Tally, args: &[&str], delay: Duration) {
    let mut child = t
        .command()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tally");
    std::thread::sleep(delay);
    let _ = child.kill();
    let _ = child.wait();
}

/// How long `tally args` takes to finish here: the window the random kills are spread over.
fn duration_of(t: &Tally, args: &[&str]) -> Duration {
    let started = Instant::now();
    let r = t.run_to_files(args);
    assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
    started.elapsed()
}

/// Faults: tally is killed with SIGKILL at 50 random moments of `create`, `start`, `exec` and
/// `delete` (a random delay over the command's own duration). `delete --force` then leaves no
/// process, cgroup directory, mount or state entry, and the same ID can be created again. A
/// create killed before its state is saved leaves an init that ends itself (its channel to
/// tally closes) and a cgroup and directory that `delete --force` finds from the config copy.
#[test]
fn tally_killed_at_random_moments_leaves_nothing_after_delete_force() {
    let t = Tally::new();
    let mut b = Bundle::busybox("fault");
    b.edit(|c| c["process"]["args"] = json!(["sleep", "300"]));
    let bundle = b.dir.to_str().unwrap().to_string();
    let create = |id: &str| t.run_to_files(&["create", "--bundle", &bundle, id]).ok();
    let window = {
        let create_time = duration_of(&t, &["create", "--bundle", &bundle, "fault-probe"]);
        let start_time = duration_of(&t, &["start", "fault-probe"]);
        let exec_time = duration_of(&t, &["exec", "fault-probe", "true"]);
        let delete_time = duration_of(&t, &["delete", "--force", "fault-probe"]);
        [create_time, start_time, exec_time, delete_time]
    };
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    eprintln!("fault injection seed {seed}; command durations {window:?}");
    let mut rng = Rng(seed);
    for i in 0..rounds("tally_killed_at_random_moments_leaves_nothing_after_delete_force", 50, 12) {
        let id = format!("fault-{i}");
        let op = i % 4;
        let micros = window[op].as_micros() as usize * 3 / 2;
        let delay = Duration::from_micros(rng.below(micros.max(1)) as u64);
        match op {
            0 => killed_after(&t, &["create", "--bundle", &bundle, &id], delay),
            1 => {
                create(&id);
                killed_after(&t, &["start", &id], delay);
            }
            2 => {
                create(&id);
                t.run(&["start", &id]).ok();
                killed_after(&t, &["exec", &id, "sleep", "300"], delay);
            }
            _ => {
                create(&id);
                t.run(&["start", &id]).ok();
                killed_after(&t, &["delete", "--force", &id], delay);
            }
        }
        let r = bounded(&t, &["delete", "--force", &id]);
        assert_eq!(r.code, 0, "case {i} (op {op}, killed after {delay:?}): delete --force: {}", r.stderr);
        assert_host_clean(&t.root, &id, &b.dir);
        create(&id);
        t.run(&["delete", "--force", &id]).ok();
        assert_host_clean(&t.root, &id, &b.dir);
    }
}

/// 100 creates of distinct IDs at once: all succeed, `list` shows each once, and deleting them
/// at once leaves nothing.
#[test]
fn a_hundred_parallel_creates_all_succeed_and_leave_nothing() {
    let t = Tally::new();
    let mut b = Bundle::busybox("parallel");
    b.edit(|c| c["process"]["args"] = json!(["sleep", "300"]));
    let n = rounds("a_hundred_parallel_creates_all_succeed_and_leave_nothing", 100, 20);
    let ids: Vec<String> = (0..n).map(|i| format!("par-{i}")).collect();
    let each = |args: fn(&str, &str) -> Vec<String>| {
        std::thread::scope(|s| {
            let handles: Vec<_> = ids
                .iter()
                .map(|id| {
                    let args = args(id, b.dir.to_str().unwrap());
                    let t = &t;
                    s.spawn(move || t.run_to_files(&args.iter().map(String::as_str).collect::<Vec<_>>()))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect::<Vec<Ran>>()
        })
    };
    for (id, r) in ids.iter().zip(each(|id, bundle| vec!["create".into(), "--bundle".into(), bundle.into(), id.into()]))
    {
        assert_eq!(r.code, 0, "create {id}: {}", r.stderr);
    }
    let list = t.run(&["list", "--quiet"]).ok();
    let mut listed: Vec<&str> = list.stdout.lines().collect();
    listed.sort_unstable();
    let mut want: Vec<&str> = ids.iter().map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(listed, want);
    for id in &ids {
        assert_eq!(t.status(id), "created", "{id}");
    }
    for (id, r) in ids.iter().zip(each(|id, _| vec!["delete".into(), "--force".into(), id.into()])) {
        assert_eq!(r.code, 0, "delete {id}: {}", r.stderr);
    }
    for id in &ids {
        assert_host_clean(&t.root, id, &b.dir);
    }
}

/// 20 commands at once on one ID (creates, starts, execs, kills, states, deletes): each one
/// succeeds or fails with one error line that names the container, none panics; one create
/// wins, and another only after a delete freed the ID (runc's `delete` takes a created
/// container too); the state afterwards is readable and `delete --force` leaves nothing.
#[test]
fn twenty_concurrent_commands_on_one_id_succeed_or_name_the_conflict() {
    let t = Tally::new();
    let mut b = Bundle::busybox("conflict");
    b.edit(|c| c["process"]["args"] = json!(["sleep", "300"]));
    let bundle = b.dir.to_str().unwrap().to_string();
    let id = "conflict";
    for round in 0..rounds("twenty_concurrent_commands_on_one_id_succeed_or_name_the_conflict", 3, 1) {
        let commands: Vec<Vec<&str>> = (0..20)
            .map(|i| match i % 6 {
                0 => vec!["create", "--bundle", &bundle, id],
                1 => vec!["start", id],
                2 => vec!["exec", id, "true"],
                3 => vec!["kill", id, "KILL"],
                4 => vec!["state", id],
                _ => vec!["delete", id],
            })
            .collect();
        let results: Vec<Ran> = std::thread::scope(|s| {
            let handles: Vec<_> = commands
                .iter()
                .map(|args| {
                    let t = &t;
                    s.spawn(move || bounded(t, args))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let (mut creates_won, mut deletes_won) = (0, 0);
        for (args, r) in commands.iter().zip(&results) {
            if r.code == 0 {
                creates_won += usize::from(args[0] == "create");
                deletes_won += usize::from(args[0] == "delete");
                continue;
            }
            // An exec'd process that the concurrent `kill` ended: exec reports its status
            // (128 + SIGKILL) and nothing else, as runc does. Not an error of the runtime.
            if args[0] == "exec" && r.code == 128 + libc::SIGKILL && r.stderr.is_empty() {
                continue;
            }
            assert_clear_failure(r, &format!("round {round}: {args:?} (exit {})", r.code));
            assert!(r.stderr.contains(id), "round {round}: {args:?}: the error names the container: {}", r.stderr);
        }
        assert!(
            creates_won <= 1 + deletes_won,
            "round {round}: {creates_won} creates of one ID succeeded, with {deletes_won} deletes between"
        );
        if t.root.join(id).exists() {
            let state = bounded(&t, &["state", id]);
            if state.code == 0 {
                let v: Value = serde_json::from_str(&state.stdout).expect("state is JSON");
                assert_eq!(v["id"], id);
            }
        }
        let r = bounded(&t, &["delete", "--force", id]);
        assert_eq!(r.code, 0, "round {round}: {}", r.stderr);
        assert_host_clean(&t.root, id, &b.dir);
    }
}

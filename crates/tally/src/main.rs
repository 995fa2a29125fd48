//! The `tally` binary: parses runc's command line, sets up logging, and calls the runtime
//! library. No container logic lives here.

mod cli;
mod logging;

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use tally_runtime::lifecycle::{self, CreateOptions, ExecOptions, RunOptions, UpdateFlags};
use tally_runtime::process::Preserved;
use tally_runtime::state::StateRoot;

use cli::{Cli, Command, CreateArgs, ListFormat};

fn main() -> ExitCode {
    let args = cli::normalize_args(std::env::args());
    let cli = match Cli::try_parse_from(&args) {
        Ok(c) => c,
        Err(e) => {
            if e.use_stderr() {
                // The caller (containerd, Podman) reads the reason from --log, which the parser
                // refused to hand us: find it in the raw arguments.
                logging::usage_error(&args, e.to_string().lines().next().unwrap_or("invalid arguments"));
            }
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    // The commands whose processes enter containers run from a sealed copy of the binary, so
    // no container can reach the host's file through /proc/PID/exe (security/sealed_exe.rs).
    // First of all, while every fd above stdio is still the caller's.
    if matches!(cli.command, Some(Command::Create(_) | Command::Run { .. } | Command::Exec(_))) {
        let original: Vec<std::ffi::OsString> = std::env::args_os().collect();
        if let Err(e) = tally_runtime::security::sealed_exe::reexec_sealed(&original) {
            eprintln!("tally: error: re-executing from a sealed copy of /proc/self/exe: {e}");
            return ExitCode::FAILURE;
        }
    }
    // Before anything is opened (the log first): the caller's fds 3..3+N are claimed, so that
    // none of tally's own fds can be among the ones handed to the container.
    let preserve = match &cli.command {
        Some(Command::Create(a)) | Some(Command::Run { create: a, .. }) => a.preserve_fds,
        Some(Command::Exec(a)) => a.preserve_fds,
        _ => 0,
    };
    let preserved = Preserved::claim(preserve);
    if let Err(e) = logging::init(cli.log.as_deref(), cli.log_format, cli.debug) {
        eprintln!("tally: {e:#}");
        return ExitCode::FAILURE;
    }
    // Rust ignores SIGPIPE, which turns `tally list | head` into a panic on the closed pipe.
    // The commands that only print end quietly there instead; the others keep it ignored, since
    // a hook that does not read its stdin must be an EPIPE error, not the end of the runtime.
    if matches!(
        cli.command,
        Some(
            Command::List { .. }
                | Command::State { .. }
                | Command::Ps { .. }
                | Command::Beancounters { .. }
                | Command::Features
                | Command::Events { .. }
        )
    ) {
        // SAFETY: installs the default disposition; no handler code runs.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let result = preserved.map_err(anyhow::Error::from).and_then(|p| dispatch(cli, p));
    if let Err(e) = &result {
        // The runtime's errors already carry their causes in their text.
        tracing::error!("{e}");
    }
    logging::finish(result.is_ok());
    match result {
        Ok(code) => ExitCode::from(code),
        Err(_) => ExitCode::FAILURE,
    }
}

fn create_options<'a>(
    a: &'a CreateArgs,
    systemd_cgroup: bool,
    rootless: bool,
    preserved: &'a Preserved,
) -> CreateOptions<'a> {
    CreateOptions {
        bundle: &a.bundle,
        pid_file: a.pid_file.as_deref(),
        console_socket: a.console_socket.as_deref(),
        no_pivot: a.no_pivot,
        preserved,
        systemd_cgroup,
        rootless,
    }
}

fn dispatch(cli: Cli, preserved: Preserved) -> Result<u8> {
    if cli.version {
        // runc's shape: `podman info` and containerd show the first line and `commit:`.
        println!(
            "tally version {}\ncommit: {}\nspec: {}\nlibseccomp: {}",
            env!("CARGO_PKG_VERSION"),
            env!("TALLY_COMMIT"),
            tally_runtime::OCI_VERSION,
            tally_runtime::security::seccomp::library_version()
        );
        return Ok(0);
    }
    let Some(command) = cli.command else {
        anyhow::bail!("no command given; see tally --help");
    };
    let rootless = cli.rootless.parse::<tally_runtime::rootless::Mode>()?.resolve();
    let root_dir = cli.root.clone().unwrap_or_else(|| tally_runtime::rootless::default_root(rootless));
    let root = StateRoot::new(&root_dir);
    match command {
        Command::Spec { bundle, rootless } => {
            let path = bundle.join("config.json");
            if path.exists() {
                anyhow::bail!("{}: file already exists", path.display());
            }
            std::fs::write(&path, tally_runtime::default_spec::render(rootless))
                .map_err(|e| anyhow::anyhow!("write {}: {e}", path.display()))?;
        }
        Command::Create(a) => {
            lifecycle::create(&root, &a.id, &create_options(&a, cli.systemd_cgroup, rootless, &preserved))?;
        }
        Command::Start { id } => lifecycle::start(&root, &id)?,
        Command::Run { create, detach, keep, no_subreaper: _ } => {
            let code = lifecycle::run(
                &root,
                &create.id,
                &create_options(&create, cli.systemd_cgroup, rootless, &preserved),
                &RunOptions { detach, keep },
            )?;
            return Ok(code.clamp(0, 255) as u8);
        }
        Command::State { id } => println!("{}", lifecycle::state(&root, &id)?),
        Command::Kill { all, id, signal } => {
            let sig = tally_runtime::signal::parse(&signal)?;
            lifecycle::kill(&root, &id, sig, all)?;
        }
        Command::Delete { force, id } => lifecycle::delete(&root, &id, force)?,
        Command::List { format, quiet } => print_list(&root, format, quiet)?,
        Command::Exec(a) => {
            let opts = ExecOptions {
                process_file: a.process,
                args: a.command,
                tty: a.tty,
                console_socket: a.console_socket,
                detach: a.detach,
                pid_file: a.pid_file,
                cwd: a.cwd,
                env: a.env,
                user: a.user,
                additional_gids: a.additional_gids,
                caps: a.cap,
                no_new_privs: a.no_new_privs,
                preserved,
                ignore_paused: a.ignore_paused,
                cgroup: a.cgroup,
                apparmor: a.apparmor,
                process_label: a.process_label,
            };
            let code = lifecycle::exec(&root, &a.id, &opts)?;
            return Ok(code.clamp(0, 255) as u8);
        }
        Command::Checkpoint(a) => {
            let dump = tally_runtime::criu::DumpOptions {
                common: criu_options(a.criu)?,
                parent: a.parent_path,
                leave_running: a.leave_running,
                pre_dump: a.pre_dump,
                page_server: a.page_server,
                status_fd: a.status_fd,
            };
            lifecycle::checkpoint(&root, &a.id, &lifecycle::CheckpointOptions { criu: cli.criu.clone(), dump })?;
        }
        Command::Restore(a) => {
            let restore = criu_options(a.criu)?;
            let opts = lifecycle::RestoreOptions {
                criu: cli.criu.clone(),
                bundle: &a.bundle,
                restore,
                detach: a.detach,
                pid_file: a.pid_file.as_deref(),
                systemd_cgroup: cli.systemd_cgroup,
            };
            let code = lifecycle::restore(&root, &a.id, &opts)?;
            if !a.detach {
                return Ok(code.clamp(0, 255) as u8);
            }
        }
        Command::Migrate(a) => {
            let to_root = StateRoot::new(&a.to_root);
            let opts = lifecycle::MigrateOptions {
                criu: cli.criu.clone(),
                to_root: &to_root,
                pre_dump_rounds: a.pre_dump_rounds,
                images: a.image_path,
                tcp_established: a.tcp_established,
                ext_unix_sk: a.ext_unix_sk,
                file_locks: a.file_locks,
                shell_job: a.shell_job,
                systemd_cgroup: cli.systemd_cgroup,
            };
            let report = lifecycle::migrate(&root, &a.id, &opts)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Command::Pause { id } => lifecycle::pause(&root, &id)?,
        Command::Resume { id } => lifecycle::resume(&root, &id)?,
        Command::Ps { format, id, ps_args } => print_ps(&root, &id, format, &ps_args)?,
        Command::Update(a) => {
            let flags = UpdateFlags {
                blkio_weight: a.blkio_weight,
                cpu_period: a.cpu_period,
                cpu_quota: a.cpu_quota,
                cpu_burst: a.cpu_burst,
                cpu_shares: a.cpu_share,
                cpu_rt_period: a.cpu_rt_period,
                cpu_rt_runtime: a.cpu_rt_runtime,
                cpuset_cpus: a.cpuset_cpus,
                cpuset_mems: a.cpuset_mems,
                cpu_idle: a.cpu_idle,
                memory: a.memory,
                memory_reservation: a.memory_reservation,
                memory_swap: a.memory_swap,
                pids_limit: a.pids_limit,
                vz: [
                    ("cpuunits", a.cpuunits),
                    ("cpulimit", a.cpulimit),
                    ("cpus", a.cpus),
                    ("ioprio", a.ioprio),
                    ("iolimit", a.iolimit),
                    ("iopslimit", a.iopslimit),
                ]
                .into_iter()
                .filter_map(|(name, v)| Some((name, v?)))
                .collect(),
            };
            lifecycle::update(&root, &a.id, a.resources.as_deref(), &flags)?;
        }
        Command::Events { stats, interval, id } => {
            if stats {
                println!("{}", lifecycle::stats_event(&root, &id)?);
            } else {
                let every = parse_interval(&interval)?;
                lifecycle::watch_events(&root, &id, every, |event| {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{event}");
                    let _ = out.flush();
                })?;
            }
        }
        Command::Beancounters { format, ledger, resources, ids } => {
            let wanted = resources.as_deref().map(tally_beancounters::Wanted::parse).transpose()?;
            print_beancounters(&root, format, ledger, wanted.as_ref(), &ids)?
        }
        Command::Features => println!("{}", serde_json::to_string_pretty(&tally_runtime::features::document())?),
    }
    Ok(0)
}

/// The /proc/user_beancounters table, or JSON (one object per container, `null` where a
/// value does not exist); with --ledger, the final sets of deleted containers.
fn print_beancounters(
    root: &StateRoot,
    format: ListFormat,
    ledger: bool,
    wanted: Option<&tally_beancounters::Wanted>,
    ids: &[String],
) -> Result<()> {
    if ledger {
        let mut entries = lifecycle::ledger(root)?;
        if !ids.is_empty() {
            entries.retain(|e| e["beancounters"]["id"].as_str().is_some_and(|id| ids.iter().any(|i| i == id)));
        }
        if let Some(w) = wanted {
            for e in &mut entries {
                if let Some(rows) = e["beancounters"]["resources"].as_array_mut() {
                    rows.retain(|r| r["resource"].as_str().is_some_and(|n| w.wants(n)));
                }
            }
        }
        if format == ListFormat::Json {
            println!("{}", serde_json::to_string_pretty(&entries)?);
        } else {
            // One table, as /proc/user_beancounters held every container; the uid column is
            // each container's cgroup inode (--format json has the IDs and deletion times).
            let all: Vec<_> = entries.iter().map(|e| from_ledger(&e["beancounters"])).collect();
            print!("{}", tally_beancounters::table::render(&all, wanted.is_some()));
        }
        return Ok(());
    }
    let all = lifecycle::beancounters(root, ids, wanted)?;
    if format == ListFormat::Json {
        println!("{}", serde_json::to_string_pretty(&all)?);
    } else {
        print!("{}", tally_beancounters::table::render(&all, wanted.is_some()));
    }
    Ok(())
}

/// A ledger entry back into the model, for the table renderer.
fn from_ledger(bc: &serde_json::Value) -> tally_beancounters::Beancounters {
    let rows = bc["resources"].as_array().cloned().unwrap_or_default();
    let value = |v: &serde_json::Value| match v.as_u64() {
        Some(n) if n >= tally_beancounters::model::UNLIMITED => tally_beancounters::Value::Unlimited,
        Some(n) => tally_beancounters::Value::Num(n),
        None => tally_beancounters::Value::Absent,
    };
    let resources = rows
        .iter()
        .map(|r| {
            let mut row = tally_beancounters::Row::new(
                r["resource"].as_str().unwrap_or_default(),
                tally_beancounters::model::Unit::Items,
                tally_beancounters::model::Enforced::None,
                "",
            );
            row.held = value(&r["held"]);
            row.maxheld = value(&r["maxheld"]);
            row.barrier = value(&r["barrier"]);
            row.limit = value(&r["limit"]);
            row.failcnt = value(&r["failcnt"]);
            row
        })
        .collect();
    tally_beancounters::Beancounters {
        id: bc["id"].as_str().unwrap_or_default().into(),
        cgroup: bc["cgroup"].as_str().unwrap_or_default().into(),
        cgroup_id: bc["cgroup_id"].as_u64().unwrap_or(0),
        page_size: bc["page_size"].as_u64().unwrap_or(4096),
        resources,
    }
}

/// Go's duration syntax as runc takes it for `--interval`: 5s, 500ms, 1m, 1h.
fn parse_interval(s: &str) -> Result<std::time::Duration> {
    let bad = || anyhow::anyhow!("--interval {s:?}: not a duration from 1ms to 24h (e.g. 5s, 500ms, 1m)");
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').ok_or_else(bad)?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(bad()),
    };
    // At most a day: poll takes its timeout in milliseconds as an int.
    if !(0.001..=86_400.0).contains(&secs) {
        return Err(bad());
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// runc's `ps`: json is the array of host PIDs; a table is ps(1)'s own output (default -ef),
/// cut to the container's processes.
fn print_ps(root: &StateRoot, id: &str, format: ListFormat, ps_args: &[String]) -> Result<()> {
    let pids = lifecycle::pids(root, id)?;
    if format == ListFormat::Json {
        println!("{}", serde_json::to_string(&pids)?);
        return Ok(());
    }
    let args: Vec<String> = if ps_args.is_empty() { vec!["-ef".into()] } else { ps_args.to_vec() };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .map_err(|e| anyhow::anyhow!("ps {}: {e}", args.join(" ")))?;
    if !out.status.success() {
        anyhow::bail!("ps {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    let table =
        lifecycle::filter_ps_output(&String::from_utf8_lossy(&out.stdout), &pids).map_err(anyhow::Error::msg)?;
    print!("{table}");
    Ok(())
}

fn print_list(root: &StateRoot, format: ListFormat, quiet: bool) -> Result<()> {
    let entries = lifecycle::list(root)?;
    let mut out = std::io::stdout().lock();
    if quiet {
        for e in &entries {
            writeln!(out, "{}", e.id)?;
        }
    } else if format == ListFormat::Json {
        // runc prints `null` for no containers (a nil Go slice); go-runc accepts both.
        if entries.is_empty() {
            writeln!(out, "null")?;
        } else {
            writeln!(out, "{}", serde_json::to_string(&entries)?)?;
        }
    } else {
        let rows: Vec<[String; 6]> = entries
            .iter()
            .map(|e| {
                [
                    e.id.clone(),
                    e.pid.to_string(),
                    e.status.to_string(),
                    e.bundle.display().to_string(),
                    e.created.clone(),
                    e.owner.clone(),
                ]
            })
            .collect();
        let header = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from);
        let mut widths = header.clone().map(|h| h.len());
        for r in &rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.len());
            }
        }
        for r in std::iter::once(&header).chain(rows.iter()) {
            let line: Vec<String> = r.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
            writeln!(out, "{}", line.join("   ").trim_end())?;
        }
    }
    Ok(())
}

/// `--manage-cgroups-mode`: one of CRIU's modes, checked before CRIU runs.
/// What `checkpoint` and `restore` both pass on to CRIU; the work path defaults to the images'.
fn criu_options(c: cli::CriuArgs) -> Result<tally_runtime::criu::Options> {
    Ok(tally_runtime::criu::Options {
        work: c.work_path.unwrap_or_else(|| c.image_path.clone()),
        image: c.image_path,
        tcp_established: c.tcp_established,
        ext_unix_sk: c.ext_unix_sk,
        shell_job: c.shell_job,
        file_locks: c.file_locks,
        manage_cgroups_mode: check_cgroup_mode(c.manage_cgroups_mode)?,
        empty_ns: c.empty_ns,
        auto_dedup: c.auto_dedup,
        lazy_pages: c.lazy_pages,
    })
}

fn check_cgroup_mode(mode: Option<String>) -> Result<Option<String>> {
    match mode {
        Some(m) if !tally_runtime::criu::CGROUP_MODES.contains(&m.as_str()) => {
            anyhow::bail!(
                "--manage-cgroups-mode {m:?}: must be one of {}",
                tally_runtime::criu::CGROUP_MODES.join(", ")
            )
        }
        m => Ok(m),
    }
}

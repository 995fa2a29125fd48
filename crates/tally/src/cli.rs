//! runc's command line: global flags before the subcommand, runc's flag names and short
//! forms, so containerd, Podman and CRI-O can call tally as they call runc.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "tally",
    about = "tally: an OCI container runtime with beancounters",
    disable_version_flag = true,
    args_override_self = true
)]
pub struct Cli {
    /// Root directory for container state [default: /run/tally, or $XDG_RUNTIME_DIR/tally when rootless]
    #[arg(long, global = false)]
    pub root: Option<PathBuf>,
    /// Log file (default: stderr only)
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// Log format for --log
    #[arg(long = "log-format", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Debug logging
    #[arg(long)]
    pub debug: bool,
    /// Use the systemd cgroup driver
    #[arg(long = "systemd-cgroup")]
    pub systemd_cgroup: bool,
    /// Rootless mode: true, false or auto (auto: when not root, or inside a user namespace)
    #[arg(long, value_name = "true|false|auto", default_value = "auto")]
    pub rootless: String,
    /// The CRIU binary for checkpoint and restore
    #[arg(long, default_value = "criu")]
    pub criu: PathBuf,
    /// Print the version
    #[arg(short = 'v', long = "version")]
    pub version: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// Path to the bundle directory
    #[arg(short = 'b', long, default_value = ".")]
    pub bundle: PathBuf,
    /// File to write the container's init PID to
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty master when process.terminal is true
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Use MS_MOVE + chroot instead of pivot_root
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Accepted for runc compatibility: tally never creates a session keyring
    #[arg(long = "no-new-keyring")]
    pub no_new_keyring: bool,
    /// Pass this many extra fds (from 3) to the container
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
    /// Container ID
    pub id: String,
}

#[derive(clap::Args, Debug)]
pub struct ExecArgs {
    /// Unix socket that receives the pty master with --tty
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Working directory of the process
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// Set an environment variable (KEY=VALUE); repeatable
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Allocate a pseudo-terminal
    #[arg(short = 't', long)]
    pub tty: bool,
    /// uid[:gid]
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Additional group ids; repeatable
    #[arg(short = 'g', long = "additional-gids")]
    pub additional_gids: Vec<u32>,
    /// A process.json describing the whole process (- for stdin)
    #[arg(short = 'p', long)]
    pub process: Option<PathBuf>,
    /// Return once the process runs
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// File to write the process's PID to
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// SELinux label of the process, instead of the container's (an error where SELinux is off)
    #[arg(long = "process-label")]
    pub process_label: Option<String>,
    /// AppArmor profile of the process, instead of the container's (an error where AppArmor is off)
    #[arg(long)]
    pub apparmor: Option<String>,
    /// Set no_new_privs for the process
    #[arg(long = "no-new-privs")]
    pub no_new_privs: bool,
    /// Add a capability to the bounding, effective and permitted sets; repeatable
    #[arg(short = 'c', long = "cap")]
    pub cap: Vec<String>,
    /// Pass this many extra fds (from 3) to the process
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
    /// Run the process in this sub-cgroup of the container's ([controller:]path)
    #[arg(long)]
    pub cgroup: Option<String>,
    /// Exec even when the container is paused
    #[arg(long = "ignore-paused")]
    pub ignore_paused: bool,
    /// Container ID
    pub id: String,
    /// The command and its arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct UpdateArgs {
    /// LinuxResources JSON (- for stdin); the flags below are applied on top
    #[arg(short = 'r', long)]
    pub resources: Option<PathBuf>,
    #[arg(long = "blkio-weight")]
    pub blkio_weight: Option<u16>,
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<u64>,
    #[arg(long = "cpu-quota", allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    #[arg(long = "cpu-burst")]
    pub cpu_burst: Option<u64>,
    #[arg(long = "cpu-share")]
    pub cpu_share: Option<u64>,
    #[arg(long = "cpu-rt-period")]
    pub cpu_rt_period: Option<u64>,
    #[arg(long = "cpu-rt-runtime", allow_hyphen_values = true)]
    pub cpu_rt_runtime: Option<i64>,
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    #[arg(long = "cpu-idle", allow_hyphen_values = true)]
    pub cpu_idle: Option<i64>,
    /// Memory limit (bytes, or with k, m, g suffix; -1 for none)
    #[arg(long, allow_hyphen_values = true)]
    pub memory: Option<String>,
    #[arg(long = "memory-reservation", allow_hyphen_values = true)]
    pub memory_reservation: Option<String>,
    /// Memory plus swap limit (v1 semantics; -1 for none)
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// OpenVZ CPU weight, 8-500000 (vzctl's default 1000); docs/beancounters.md
    #[arg(long, allow_hyphen_values = true)]
    pub cpuunits: Option<String>,
    /// OpenVZ CPU limit, percent of one CPU (0 = none)
    #[arg(long, allow_hyphen_values = true)]
    pub cpulimit: Option<String>,
    /// OpenVZ: the number of CPUs the container may use in total
    #[arg(long, allow_hyphen_values = true)]
    pub cpus: Option<String>,
    /// OpenVZ I/O priority, 0-7 (default 4)
    #[arg(long, allow_hyphen_values = true)]
    pub ioprio: Option<String>,
    /// OpenVZ I/O bandwidth limit on the rootfs's disk, bytes/s
    #[arg(long, allow_hyphen_values = true)]
    pub iolimit: Option<String>,
    /// OpenVZ I/O operations limit on the rootfs's disk, ops/s
    #[arg(long, allow_hyphen_values = true)]
    pub iopslimit: Option<String>,
    /// Container ID
    pub id: String,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write a default config.json
    Spec {
        #[arg(short = 'b', long, default_value = ".")]
        bundle: PathBuf,
        /// A spec for rootless containers
        #[arg(long)]
        rootless: bool,
    },
    /// Create a container (its process waits for `start`)
    Create(CreateArgs),
    /// Start a created container
    Start { id: String },
    /// Create and start a container, and wait for it unless --detach
    Run {
        #[command(flatten)]
        create: CreateArgs,
        #[arg(short = 'd', long)]
        detach: bool,
        /// Do not delete the container after it exits
        #[arg(long)]
        keep: bool,
        /// Accepted for runc compatibility
        #[arg(long = "no-subreaper")]
        no_subreaper: bool,
    },
    /// Print a container's state as JSON
    State { id: String },
    /// Send a signal to a container's init (or, with --all, to all its processes)
    Kill {
        #[arg(short = 'a', long)]
        all: bool,
        id: String,
        #[arg(default_value = "TERM")]
        signal: String,
    },
    /// Delete a container
    Delete {
        #[arg(short = 'f', long)]
        force: bool,
        id: String,
    },
    /// Run a new process in a created or running container
    Exec(ExecArgs),
    /// Suspend every process of a container (cgroup freezer)
    Pause { id: String },
    /// Resume a paused container
    Resume { id: String },
    /// List the processes of a container
    Ps {
        #[arg(short = 'f', long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
        id: String,
        /// Arguments for ps(1) (default -ef)
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Change a container's resource limits
    Update(UpdateArgs),
    /// Print a container's statistics and events as JSON lines until it stops
    Events {
        /// Print the statistics once and exit
        #[arg(long)]
        stats: bool,
        /// How often statistics are printed
        #[arg(long, default_value = "5s")]
        interval: String,
        id: String,
    },
    /// Print what this build and host support, as runtime-spec features JSON
    Features,
    /// Print containers' beancounters (held, maxheld, barrier, limit, failcnt per resource)
    Beancounters {
        #[arg(short = 'f', long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
        /// Print the final beancounters of deleted containers instead
        #[arg(long)]
        ledger: bool,
        /// Only these resources, comma-separated (e.g. numproc,physpages,io); the others are
        /// not read at all
        #[arg(long, value_name = "LIST")]
        resources: Option<String>,
        /// Containers (default: all)
        ids: Vec<String>,
    },
    /// Checkpoint a running container with CRIU
    Checkpoint(CheckpointArgs),
    /// Restore a container from a checkpoint
    Restore(RestoreArgs),
    /// Move a running container to another state root by iterative pre-copy (tally's own)
    Migrate(MigrateArgs),
    /// List containers
    List {
        #[arg(short = 'f', long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
        #[arg(short = 'q', long)]
        quiet: bool,
    },
}

/// The CRIU flags `checkpoint` and `restore` share (runc's names).
#[derive(clap::Args, Debug)]
pub struct CriuArgs {
    /// Where the images are written or read
    #[arg(long = "image-path", default_value = "checkpoint")]
    pub image_path: PathBuf,
    /// Where CRIU's logs and work files go (default: the image path)
    #[arg(long = "work-path")]
    pub work_path: Option<PathBuf>,
    /// Allow open TCP connections
    #[arg(long = "tcp-established")]
    pub tcp_established: bool,
    /// Allow external unix sockets
    #[arg(long = "ext-unix-sk")]
    pub ext_unix_sk: bool,
    /// Allow shell jobs (a session or terminal from outside)
    #[arg(long = "shell-job")]
    pub shell_job: bool,
    /// Handle file locks
    #[arg(long = "file-locks")]
    pub file_locks: bool,
    /// CRIU's cgroup mode: none, props, soft, full, strict or ignore (default ignore)
    #[arg(long = "manage-cgroups-mode")]
    pub manage_cgroups_mode: Option<String>,
    /// Namespaces to leave empty (network)
    #[arg(long = "empty-ns")]
    pub empty_ns: Vec<String>,
    /// Deduplicate pages against the parent images
    #[arg(long = "auto-dedup")]
    pub auto_dedup: bool,
    /// Lazy migration of memory pages
    #[arg(long = "lazy-pages")]
    pub lazy_pages: bool,
}

#[derive(clap::Args, Debug)]
pub struct CheckpointArgs {
    #[command(flatten)]
    pub criu: CriuArgs,
    /// The previous (pre-)dump's images, relative to the image path
    #[arg(long = "parent-path")]
    pub parent_path: Option<PathBuf>,
    /// Leave the container running after the dump
    #[arg(long = "leave-running")]
    pub leave_running: bool,
    /// Only dump the memory (an iterative pre-copy round)
    #[arg(long = "pre-dump")]
    pub pre_dump: bool,
    /// Send pages to CRIU's page server at ADDRESS:PORT
    #[arg(long = "page-server")]
    pub page_server: Option<String>,
    /// An fd CRIU writes to when the lazy-pages server is ready
    #[arg(long = "status-fd")]
    pub status_fd: Option<i32>,
    pub id: String,
}

#[derive(clap::Args, Debug)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub criu: CriuArgs,
    /// The bundle whose config the restored container takes
    #[arg(short = 'b', long, default_value = ".")]
    pub bundle: PathBuf,
    /// Return once restored, without waiting for the container
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// File to write the restored init's PID to
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Accepted for runc compatibility (a restored terminal is CRIU's)
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Accepted for runc compatibility (CRIU restores the mount namespace itself)
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Accepted for runc compatibility (containerd's shim passes it): restore does not make
    /// tally a subreaper
    #[arg(long = "no-subreaper")]
    pub no_subreaper: bool,
    pub id: String,
}

#[derive(clap::Args, Debug)]
pub struct MigrateArgs {
    /// The state root the container moves to
    #[arg(long = "to-root")]
    pub to_root: PathBuf,
    /// Pre-dump rounds while the container runs, before the final dump
    #[arg(long = "pre-dump-rounds", default_value_t = 0)]
    pub pre_dump_rounds: u32,
    /// Keep the rounds' images here (default: a directory in the new root, removed after)
    #[arg(long = "image-path")]
    pub image_path: Option<PathBuf>,
    /// Allow open TCP connections
    #[arg(long = "tcp-established")]
    pub tcp_established: bool,
    /// Allow external unix sockets
    #[arg(long = "ext-unix-sk")]
    pub ext_unix_sk: bool,
    /// Handle file locks
    #[arg(long = "file-locks")]
    pub file_locks: bool,
    /// Allow shell jobs
    #[arg(long = "shell-job")]
    pub shell_job: bool,
    pub id: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

/// go-runc spells some long flags with one dash (`-no-subreaper`); clap would read those as
/// bundles of short flags.
pub fn normalize_args(args: impl Iterator<Item = String>) -> Vec<String> {
    const LONG: &[&str] = &[
        "no-subreaper",
        "no-pivot",
        "no-new-keyring",
        "console-socket",
        "pid-file",
        "preserve-fds",
        "detach",
        "bundle",
        "force",
        "all",
        "format",
        "root",
        "log",
        "log-format",
        "debug",
        "systemd-cgroup",
        "rootless",
        "keep",
        "console-socket",
        "cwd",
        "env",
        "tty",
        "user",
        "additional-gids",
        "process",
        "process-label",
        "apparmor",
        "no-new-privs",
        "cap",
        "cgroup",
        "ignore-paused",
        "resources",
        "stats",
        "interval",
        "pids-limit",
        "memory",
        "memory-swap",
        "memory-reservation",
        "cpu-quota",
        "cpu-period",
        "cpu-share",
        "cpuset-cpus",
        "cpuset-mems",
        "blkio-weight",
        "ledger",
        "criu",
        "image-path",
        "work-path",
        "parent-path",
        "leave-running",
        "tcp-established",
        "ext-unix-sk",
        "shell-job",
        "lazy-pages",
        "status-fd",
        "page-server",
        "file-locks",
        "pre-dump",
        "manage-cgroups-mode",
        "empty-ns",
        "auto-dedup",
        "to-root",
        "pre-dump-rounds",
    ];
    // Flags that take their value as the next argument, so it is not taken for a positional.
    const VALUED: &[&str] = &[
        "root",
        "log",
        "log-format",
        "rootless",
        "bundle",
        "b",
        "pid-file",
        "console-socket",
        "preserve-fds",
        "format",
        "f",
        "cwd",
        "env",
        "e",
        "user",
        "u",
        "additional-gids",
        "g",
        "process",
        "p",
        "process-label",
        "apparmor",
        "cap",
        "c",
        "cgroup",
        "resources",
        "r",
        "interval",
        "criu",
        "image-path",
        "work-path",
        "parent-path",
        "status-fd",
        "page-server",
        "manage-cgroups-mode",
        "empty-ns",
        "to-root",
        "pre-dump-rounds",
    ];
    let mut out = Vec::new();
    let mut command: Option<String> = None;
    let mut verbatim = false;
    let mut skip_value = false;
    for (i, a) in args.enumerate() {
        if i == 0 || verbatim {
            out.push(a);
            continue;
        }
        if skip_value {
            skip_value = false;
            out.push(a);
            continue;
        }
        if a == "--" {
            verbatim = true;
            out.push(a);
            continue;
        }
        let name = a.strip_prefix('-').filter(|r| !r.starts_with('-')).map(|r| r.split('=').next().unwrap_or(r));
        let long = a.strip_prefix("--").map(|r| r.split('=').next().unwrap_or(r));
        if let Some(flag) = name.or(long) {
            if VALUED.contains(&flag) && !a.contains('=') {
                skip_value = true;
            }
        } else if command.is_none() {
            command = Some(a.clone());
        } else if matches!(command.as_deref(), Some("exec") | Some("ps")) {
            // The container ID: what follows is the process's own command line.
            verbatim = true;
        }
        out.push(match name {
            Some(n) if LONG.contains(&n) => format!("-{a}"),
            _ => a,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_runc_single_dash_flags() {
        let args = normalize_args(["tally", "run", "-no-subreaper", "-d", "x"].iter().map(|s| s.to_string()));
        assert_eq!(args, ["tally", "run", "--no-subreaper", "-d", "x"]);
        let cli = Cli::try_parse_from(&args).unwrap();
        assert!(matches!(cli.command, Some(Command::Run { detach: true, no_subreaper: true, .. })));
    }

    #[test]
    fn an_exec_command_line_is_left_as_given() {
        let args = ["tally", "-root", "/r", "exec", "-cwd", "/", "c1", "ls", "-cwd", "-tty"];
        let args = normalize_args(args.iter().map(|s| s.to_string()));
        assert_eq!(args, ["tally", "--root", "/r", "exec", "--cwd", "/", "c1", "ls", "-cwd", "-tty"]);
        let cli = Cli::try_parse_from(&args).unwrap();
        let Some(Command::Exec(e)) = cli.command else { panic!("not exec") };
        assert_eq!(e.command, ["ls", "-cwd", "-tty"]);
    }

    #[test]
    fn a_flag_given_twice_is_taken_once_and_the_last_value_wins_as_runc_takes_it() {
        // Podman 4.3 passes `--leave-running` twice to `checkpoint --leave-running`.
        let cli = Cli::try_parse_from([
            "tally",
            "checkpoint",
            "--leave-running",
            "--leave-running",
            "--image-path",
            "/a",
            "--image-path",
            "/b",
            "c",
        ])
        .unwrap();
        let Some(Command::Checkpoint(c)) = cli.command else { panic!("not checkpoint") };
        assert!(c.leave_running);
        assert_eq!(c.criu.image_path, PathBuf::from("/b"));
        let cli = Cli::try_parse_from(["tally", "exec", "--env", "A=1", "--env", "B=2", "c", "true"]).unwrap();
        let Some(Command::Exec(e)) = cli.command else { panic!("not exec") };
        assert_eq!(e.env, ["A=1", "B=2"], "a repeatable flag still collects every value");
    }

    #[test]
    fn global_flags_before_the_command() {
        let cli = Cli::try_parse_from([
            "tally",
            "--root",
            "/r",
            "--log",
            "/l.json",
            "--log-format",
            "json",
            "kill",
            "--all",
            "c",
            "KILL",
        ])
        .unwrap();
        assert_eq!(cli.root, Some(PathBuf::from("/r")));
        assert_eq!(cli.log_format, LogFormat::Json);
        assert!(matches!(cli.command, Some(Command::Kill { all: true, ref signal, .. }) if signal == "KILL"));
    }
}

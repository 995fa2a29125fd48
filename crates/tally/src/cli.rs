//! runc's command line: global flags before the subcommand, runc's flag names and short
//! forms, so containerd, Podman and CRI-O can call tally as they call runc.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(name = "tally", about = "tally: an OCI container runtime with beancounters", disable_version_flag = true)]
pub struct Cli {
    /// Root directory for container state
    #[arg(long, global = false, default_value = "/run/tally")]
    pub root: PathBuf,
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
    /// Rootless mode: true, false or auto
    #[arg(long, value_name = "true|false|auto", default_value = "auto")]
    pub rootless: String,
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
    /// List containers
    List {
        #[arg(short = 'f', long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
        #[arg(short = 'q', long)]
        quiet: bool,
    },
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
    ];
    args.map(|a| {
        let name = a.strip_prefix('-').filter(|r| !r.starts_with('-')).map(|r| r.split('=').next().unwrap_or(r));
        match name {
            Some(n) if LONG.contains(&n) => format!("-{a}"),
            _ => a,
        }
    })
    .collect()
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
        assert_eq!(cli.root, PathBuf::from("/r"));
        assert_eq!(cli.log_format, LogFormat::Json);
        assert!(matches!(cli.command, Some(Command::Kill { all: true, ref signal, .. }) if signal == "KILL"));
    }
}

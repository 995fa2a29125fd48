//! Logging in the shape callers parse. With `--log-format json` every line is a logrus-style
//! object `{"level":"error","msg":"...","time":"..."}`: containerd reports the msg of the last
//! error line, and Podman reads the whole file as one object when a command fails, so only
//! warnings and errors go to `--log` (everything with `--debug`), and the lines before the
//! error are held back until the command ends: a failing command writes exactly one line, its
//! error, to `--log`; a successful one writes its warnings. stderr always gets warnings and
//! errors as text, at once.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

use crate::cli::LogFormat;

struct Sink {
    shared: Arc<Shared>,
    json: bool,
    debug: bool,
}

/// The `--log` file and the lines waiting for the command's outcome.
struct Shared {
    file: Option<Mutex<File>>,
    pending: Mutex<Vec<String>>,
}

static SHARED: OnceLock<Arc<Shared>> = OnceLock::new();

/// Called once at exit: writes the held-back lines if the command succeeded.
pub fn finish(success: bool) {
    let Some(shared) = SHARED.get() else { return };
    let (Some(file), Ok(mut pending)) = (&shared.file, shared.pending.lock()) else { return };
    if success && !pending.is_empty() {
        if let Ok(mut f) = file.lock() {
            let _ = f.write_all(pending.concat().as_bytes());
        }
    }
    pending.clear();
}

#[derive(Default)]
struct Message(String);

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.to_string();
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

fn level_name(l: &Level) -> &'static str {
    match *l {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

impl<S: Subscriber> Layer<S> for Sink {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = event.metadata().level();
        // Libraries' warnings (libcgroups reports every absent v1 controller) are noise to
        // an operator; tally says itself when something it was asked for cannot be done.
        let ours = event.metadata().target().starts_with("tally");
        let verbose = (*level <= Level::WARN && ours) || self.debug;
        if !verbose {
            return;
        }
        let mut msg = Message::default();
        event.record(&mut msg);
        let now = SystemTime::now();
        eprintln!("tally: {}: {}", level_name(level), msg.0);
        if let Some(file) = &self.shared.file {
            let line = if self.json {
                format!(
                    "{}\n",
                    serde_json::json!({"level": level_name(level), "msg": msg.0, "time": tally_runtime::timefmt::rfc3339_seconds(now)})
                )
            } else {
                format!(
                    "time=\"{}\" level={} msg={:?}\n",
                    tally_runtime::timefmt::rfc3339_seconds(now),
                    level_name(level),
                    msg.0
                )
            };
            if *level == Level::ERROR {
                if let Ok(mut f) = file.lock() {
                    let _ = f.write_all(line.as_bytes());
                }
            } else if let Ok(mut pending) = self.shared.pending.lock() {
                pending.push(line);
            }
        }
    }
}

/// Writes a command-line error to the `--log` file named in `args`, if any, in the format
/// `--log-format` names there: the parser failed, so `init` never ran.
pub fn usage_error(args: &[String], msg: &str) {
    let value = |flag: &str| {
        args.iter().enumerate().find_map(|(i, a)| {
            a.strip_prefix(&format!("{flag}="))
                .map(String::from)
                .or_else(|| (a == flag).then(|| args.get(i + 1).cloned()).flatten())
        })
    };
    let Some(path) = value("--log") else { return };
    let json = value("--log-format").as_deref() == Some("json");
    let msg = msg.trim_start_matches("error: ");
    let time = tally_runtime::timefmt::rfc3339_seconds(SystemTime::now());
    let line = if json {
        format!("{}\n", serde_json::json!({"level": "error", "msg": msg, "time": time}))
    } else {
        format!("time=\"{time}\" level=error msg={msg:?}\n")
    };
    if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(path) {
        let _ = f.write_all(line.as_bytes());
    }
}

pub fn init(log: Option<&Path>, format: LogFormat, debug: bool) -> anyhow::Result<()> {
    let file = match log {
        Some(p) => Some(Mutex::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| anyhow::anyhow!("--log {}: {e}", p.display()))?,
        )),
        None => None,
    };
    let shared = Arc::new(Shared { file, pending: Mutex::new(Vec::new()) });
    let _ = SHARED.set(shared.clone());
    let sink = Sink { shared, json: format == LogFormat::Json, debug };
    let subscriber = tracing_subscriber::registry().with(sink);
    tracing::subscriber::set_global_default(subscriber).map_err(|e| anyhow::anyhow!("logging: {e}"))
}

//! Signal names as `kill` accepts them: a number, `TERM`, or `SIGTERM`, case-insensitive.

use nix::sys::signal::Signal;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignalError {
    #[error("unknown signal {0:?}")]
    Unknown(String),
}

/// Parses a signal the way runc does. Real-time signals are accepted by number and as
/// `RTMIN+n` / `RTMAX-n`, because callers such as systemd-in-a-container use them.
pub fn parse(input: &str) -> Result<i32, SignalError> {
    let unknown = || SignalError::Unknown(input.to_string());
    if let Ok(n) = input.parse::<i32>() {
        return if (1..=libc::SIGRTMAX()).contains(&n) { Ok(n) } else { Err(unknown()) };
    }
    let upper = input.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(rest) = name.strip_prefix("RTMIN") {
        return rt_offset(libc::SIGRTMIN(), rest, 1).ok_or_else(unknown);
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        return rt_offset(libc::SIGRTMAX(), rest, -1).ok_or_else(unknown);
    }
    let full = format!("SIG{name}");
    full.parse::<Signal>().map(|s| s as i32).map_err(|_| unknown())
}

fn rt_offset(base: i32, rest: &str, dir: i32) -> Option<i32> {
    let n = if rest.is_empty() {
        0
    } else {
        let digits = rest.strip_prefix(if dir > 0 { '+' } else { '-' })?;
        digits.parse::<i32>().ok()?
    };
    let sig = base + dir * n;
    (libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(&sig).then_some(sig)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_names_and_sig_names() {
        assert_eq!(parse("9"), Ok(libc::SIGKILL));
        assert_eq!(parse("KILL"), Ok(libc::SIGKILL));
        assert_eq!(parse("SIGKILL"), Ok(libc::SIGKILL));
        assert_eq!(parse("term"), Ok(libc::SIGTERM));
        assert_eq!(parse("SIGRTMIN+1"), Ok(libc::SIGRTMIN() + 1));
        assert_eq!(parse("RTMAX"), Ok(libc::SIGRTMAX()));
    }

    #[test]
    fn unknown_signals_are_errors() {
        for s in ["", "0", "65", "-1", "SIGFOO", "KILLX", "RTMIN+99"] {
            assert!(parse(s).is_err(), "{s}");
        }
    }
}

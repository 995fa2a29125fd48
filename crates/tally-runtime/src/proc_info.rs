//! What /proc says about a host process: whether it still is the process we started.

/// Liveness of a recorded init process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Same PID and same start time as recorded, not a zombie.
    Alive,
    /// Gone, a zombie, or the PID now belongs to another process.
    Gone,
}

/// Start time of `pid` in clock ticks since boot (field 22 of /proc/<pid>/stat) and whether it
/// is a zombie. None when the process does not exist.
pub fn start_time(pid: i32) -> Option<(u64, bool)> {
    // Every command that checks a container's status reads this file: read_to_string would
    // spend six reads on it, growing from 32 bytes; kfile reads it in two.
    let stat = tally_beancounters::kfile::read(std::path::Path::new(&format!("/proc/{pid}/stat")))?;
    parse_stat(&stat)
}

/// The command name (field 2) may hold spaces and parentheses, so fields are counted from the
/// last ')'.
fn parse_stat(stat: &str) -> Option<(u64, bool)> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    let state = fields.next()?;
    // After the state (field 3), field 22 is the 19th remaining one.
    let start = fields.nth(18)?.parse().ok()?;
    Some((start, state == "Z" || state == "X"))
}

/// Whether `pid` is still the process that started at `recorded_start`.
pub fn liveness(pid: i32, recorded_start: u64) -> Liveness {
    match start_time(pid) {
        Some((start, zombie)) if start == recorded_start && !zombie => Liveness::Alive,
        _ => Liveness::Gone,
    }
}

/// Every process in the pid namespace of `pid` when it is not the caller's (a container's own
/// namespace, whose init `pid` is); just `pid` when it is (the host's processes are not the
/// container's).
pub fn pid_namespace_members(pid: i32) -> Vec<i32> {
    let ns = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/pid")).ok();
    let Some(target) = ns(&pid.to_string()) else { return Vec::new() };
    if ns("self").as_ref() == Some(&target) {
        return vec![pid];
    }
    let Ok(entries) = std::fs::read_dir("/proc") else { return vec![pid] };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| ns(&p.to_string()).as_ref() == Some(&target))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_in_the_callers_pid_namespace_is_its_only_member() {
        let me = std::process::id() as i32;
        assert_eq!(pid_namespace_members(me), vec![me]);
        assert!(pid_namespace_members(i32::MAX).is_empty());
    }

    #[test]
    fn parses_names_with_spaces_and_parens() {
        let stat = "42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 12345 0 0";
        assert_eq!(parse_stat(stat), Some((12345, false)));
        let zombie = stat.replace(" S ", " Z ");
        assert_eq!(parse_stat(&zombie), Some((12345, true)));
    }

    #[test]
    fn our_own_process_is_alive() {
        let me = std::process::id() as i32;
        let (start, zombie) = start_time(me).expect("own stat");
        assert!(!zombie);
        assert_eq!(liveness(me, start), Liveness::Alive);
        assert_eq!(liveness(me, start + 1), Liveness::Gone);
    }
}

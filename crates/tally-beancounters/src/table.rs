//! The `/proc/user_beancounters` text format, as OpenVZ's kernel printed it on 64-bit hosts
//! (`vzubc` and the scripts written for it parse this): a `Version: 2.5` line, a header, then
//! per container one row per resource in kernel index order, the first row prefixed with the
//! numeric uid and a colon. Numbers are right-aligned in 20 columns; a value that does not
//! exist prints as 0 (as OpenVZ's `dummy` rows did), no limit as 9223372036854775807.

use std::fmt::Write as _;

use crate::model::{Beancounters, Value, UBC_ORDER};

pub const VERSION_LINE: &str = "Version: 2.5";

fn line(out: &mut String, uid: Option<u64>, name: &str, v: [Value; 5]) {
    match uid {
        Some(u) => {
            push_right(out, u, 10);
            out.push(':');
        }
        None => out.push_str(&SPACES[..11]),
    }
    out.push(' ');
    out.push_str(name);
    out.push_str(&SPACES[..12usize.saturating_sub(name.len())]);
    for value in v {
        out.push(' ');
        push_right(out, value.num().unwrap_or(0), 20);
    }
    out.push('\n');
}

const SPACES: &str = "                    ";

/// `n` right-aligned in `width` columns (at most 20, the digits of u64::MAX): the padding in
/// one piece, where `{:>20}` writes it one character at a time, and 1,000 containers make
/// 120,000 such numbers.
fn push_right(out: &mut String, n: u64, width: usize) {
    let digits = n.checked_ilog10().map_or(1, |l| l as usize + 1);
    out.push_str(&SPACES[..width.min(SPACES.len()).saturating_sub(digits)]);
    let _ = write!(out, "{n}");
}

/// The whole file: header and one block per container. With `only_present`, a UBC resource
/// the container has no row for (filtered out with `--resources`) and the `dummy` rows are left
/// out instead of printed as zeros.
pub fn render(containers: &[Beancounters], only_present: bool) -> String {
    let mut out = String::with_capacity(128 + containers.len() * UBC_ORDER.len() * 128);
    out.push_str(VERSION_LINE);
    out.push('\n');
    let _ = writeln!(
        out,
        "{:>10}  {:<12} {:>20} {:>20} {:>20} {:>20} {:>20}",
        "uid", "resource", "held", "maxheld", "barrier", "limit", "failcnt"
    );
    for bc in containers {
        let mut first = true;
        for name in UBC_ORDER {
            let values = match bc.row(name) {
                Some(r) if *name != "dummy" => [r.held, r.maxheld, r.barrier, r.limit, r.failcnt],
                _ if only_present => continue,
                _ => [Value::Num(0); 5],
            };
            line(&mut out, first.then_some(bc.cgroup_id), name, values);
            first = false;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Enforced, Row, Unit};

    #[test]
    fn numbers_are_right_aligned_as_format_would() {
        for n in [0, 7, 9, 10, 99, 100, 12345, 9223372036854775807, u64::MAX] {
            let mut out = String::new();
            push_right(&mut out, n, 20);
            assert_eq!(out, format!("{n:>20}"));
            let mut out = String::new();
            push_right(&mut out, n, 10);
            assert_eq!(out, format!("{n:>10}"));
        }
    }

    #[test]
    fn the_table_is_the_original_format_byte_for_byte() {
        let mut numproc = Row::new("numproc", Unit::Items, Enforced::Kernel, "pids.*");
        numproc.held = Value::Num(3);
        numproc.maxheld = Value::Num(20);
        numproc.barrier = Value::Num(20);
        numproc.limit = Value::Num(20);
        numproc.failcnt = Value::Num(7);
        let mut kmem = Row::new("kmemsize", Unit::Bytes, Enforced::Aggregate, "memory.stat");
        kmem.held = Value::Num(1541542);
        kmem.maxheld = Value::Num(2379485);
        kmem.barrier = Value::Unlimited;
        kmem.limit = Value::Unlimited;
        let bc = Beancounters {
            id: "c1".into(),
            cgroup: "/tally/c1".into(),
            cgroup_id: 101,
            page_size: 4096,
            resources: vec![kmem, numproc],
        };
        let text = render(&[bc], false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "Version: 2.5");
        assert_eq!(
            lines[1],
            "       uid  resource                     held              maxheld              barrier                limit              failcnt"
        );
        assert_eq!(
            lines[2],
            "       101: kmemsize                  1541542              2379485  9223372036854775807  9223372036854775807                    0"
        );
        assert_eq!(
            lines[3],
            "            lockedpages                     0                    0                    0                    0                    0"
        );
        assert_eq!(
            lines[7],
            "            numproc                         3                   20                   20                   20                    7"
        );
        assert_eq!(lines.len(), 2 + UBC_ORDER.len());
        assert!(lines.iter().all(|l| !l.ends_with(' ')));
    }
}

//! `ps`: the host PIDs of every process in the container's cgroup.

use super::LifecycleError;
use crate::cgroups::Cgroup;
use crate::state::{ContainerDir, Lock, StateRoot};

pub fn pids(root: &StateRoot, id: &str) -> Result<Vec<i32>, LifecycleError> {
    let dir = ContainerDir::open(root, id, Lock::Shared)?;
    let state = dir.load()?.ok_or_else(|| LifecycleError::Creating(id.into()))?;
    let cgroup = Cgroup::of(&state)?;
    let mut pids = cgroup.processes(state.pid)?;
    pids.sort_unstable();
    pids.dedup();
    Ok(pids)
}

/// Keeps the header and the lines of ps(1) output whose PID column holds one of `pids`.
pub fn filter_ps_output(output: &str, pids: &[i32]) -> Result<String, String> {
    let mut lines = output.lines();
    let header = lines.next().ok_or("ps printed nothing")?;
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| format!("ps output has no PID column: {header:?}"))?;
    let mut out = format!("{header}\n");
    for line in lines {
        let pid = line.split_whitespace().nth(col).and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_containers_processes_are_kept() {
        let ps = "UID PID PPID C STIME TTY TIME CMD\nroot 1 0 0 10:00 ? 00:00:01 init\nroot 42 1 0 10:00 ? 00:00:00 sleep 1\n";
        assert_eq!(
            filter_ps_output(ps, &[42]).unwrap(),
            "UID PID PPID C STIME TTY TIME CMD\nroot 42 1 0 10:00 ? 00:00:00 sleep 1\n"
        );
        assert!(filter_ps_output("A B\n1 2\n", &[1]).is_err());
    }
}

//! `run`: create and start in one call, then (unless detached) wait for the container's init
//! while forwarding the signals this process receives, and delete the container afterwards.

use super::create::create_container;
use super::delete::delete_with;
use super::foreground::{block_forwarded, wait_forwarding};
use super::terminal::{proxy, LocalConsole};
use super::{delete, start, CreateOptions, LifecycleError};
use crate::console::ConsoleError;
use crate::spawn::SpawnError;
use crate::state::StateRoot;

pub struct RunOptions {
    pub detach: bool,
    pub keep: bool,
}

/// Returns the container's exit status (128+signal when killed), or 0 when detached.
pub fn run(root: &StateRoot, id: &str, opts: &CreateOptions, run: &RunOptions) -> Result<i32, LifecycleError> {
    if !run.detach {
        // If the init is not our direct child (joined PID namespace), it is reparented to us
        // rather than to the system's init, so we can still wait for it.
        // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes plain integers.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    }
    // A terminal container run by a person, without a console socket: tally holds the pty
    // itself. Found out by create's own check, so a config without a terminal costs nothing.
    let mut local = None;
    let created = match create_container(root, id, opts) {
        Err(LifecycleError::Spawn(SpawnError::Console(ConsoleError::NoSocket)))
            if !run.detach && opts.console_socket.is_none() =>
        {
            let console = LocalConsole::listen().map_err(|e| LifecycleError::Start { id: id.into(), source: e })?;
            let path = console.path();
            local = Some(console);
            create_container(root, id, &CreateOptions { console_socket: Some(&path), ..*opts })?
        }
        other => other?,
    };
    let pid = created.pid;
    let master = match local.as_ref().map(|l| l.master()).transpose() {
        Ok(m) => m,
        Err(e) => {
            let _ = delete(root, id, true);
            return Err(LifecycleError::Start { id: id.into(), source: e });
        }
    };
    // Blocked before start, so the init's exit cannot be missed; the container process
    // already exists with the normal mask.
    let set = block_forwarded();
    if let Err(e) = start(root, id) {
        let _ = delete(root, id, true);
        return Err(e);
    }
    if run.detach {
        return Ok(0);
    }
    let code = match &master {
        Some(m) => proxy(m, pid, &set),
        None => wait_forwarding(pid, &set),
    };
    if !run.keep {
        delete_with(root, id, true, Some(created.cgroup))?;
    }
    Ok(code)
}

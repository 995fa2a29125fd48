//! `linux.seccomp` through libseccomp. The filter is compiled by the runtime before the
//! container process exists (so a bad profile is an error at `create`, with nothing to undo),
//! and loaded by the container process: right before exec when noNewPrivileges is set (as late
//! as possible), or before the capabilities are dropped when it is not (loading a filter then
//! needs CAP_SYS_ADMIN).

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterAttr, ScmpFilterContext, ScmpSyscall};
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator, LinuxSyscall};

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("linux.seccomp.{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("linux.seccomp: {op}: {message}")]
    Libseccomp { op: String, message: String },
}

fn lib(op: impl Into<String>) -> impl FnOnce(libseccomp::error::SeccompError) -> SeccompError {
    let op = op.into();
    move |e| SeccompError::Libseccomp { op, message: e.to_string() }
}

/// A compiled filter, ready to load in the container process.
pub struct Filter {
    ctx: ScmpFilterContext,
}

fn action(a: LinuxSeccompAction, errno_ret: Option<u32>, field: &str) -> Result<ScmpAction, SeccompError> {
    use LinuxSeccompAction::*;
    Ok(match a {
        ScmpActKill | ScmpActKillThread => ScmpAction::KillThread,
        ScmpActKillProcess => ScmpAction::KillProcess,
        ScmpActTrap => ScmpAction::Trap,
        ScmpActErrno => ScmpAction::Errno(errno_ret.unwrap_or(libc::EPERM as u32) as i32),
        ScmpActTrace => ScmpAction::Trace(errno_ret.unwrap_or(libc::EPERM as u32) as u16),
        ScmpActLog => ScmpAction::Log,
        ScmpActAllow => ScmpAction::Allow,
        ScmpActNotify => {
            return Err(SeccompError::Invalid {
                field: field.to_string(),
                message: "SCMP_ACT_NOTIFY (seccomp user notification) is not implemented yet in tally".into(),
            })
        }
    })
}

fn compare(index: usize, op: LinuxSeccompOperator, value: u64, value_two: Option<u64>) -> ScmpArgCompare {
    use LinuxSeccompOperator::*;
    let index = index as u32;
    match op {
        ScmpCmpNe => ScmpArgCompare::new(index, ScmpCompareOp::NotEqual, value),
        ScmpCmpLt => ScmpArgCompare::new(index, ScmpCompareOp::Less, value),
        ScmpCmpLe => ScmpArgCompare::new(index, ScmpCompareOp::LessOrEqual, value),
        ScmpCmpEq => ScmpArgCompare::new(index, ScmpCompareOp::Equal, value),
        ScmpCmpGe => ScmpArgCompare::new(index, ScmpCompareOp::GreaterEqual, value),
        ScmpCmpGt => ScmpArgCompare::new(index, ScmpCompareOp::Greater, value),
        // The spec's masked-eq compares (arg & value) == valueTwo.
        ScmpCmpMaskedEq => ScmpArgCompare::new(index, ScmpCompareOp::MaskedEqual(value), value_two.unwrap_or(0)),
    }
}

/// Compiles the profile. Unknown syscall names are skipped (debug log), as runc does, because
/// profiles list syscalls of newer kernels and other architectures.
pub fn compile(cfg: &LinuxSeccomp) -> Result<Filter, SeccompError> {
    let default = action(cfg.default_action(), cfg.default_errno_ret(), "defaultAction")?;
    let mut ctx = ScmpFilterContext::new(default).map_err(lib("create filter"))?;
    for (i, arch) in cfg.architectures().iter().flatten().enumerate() {
        let name = serde_json::to_value(arch).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
        let a: ScmpArch = name.parse().map_err(|_| SeccompError::Invalid {
            field: format!("architectures[{i}]"),
            message: format!("{name} is not known to libseccomp"),
        })?;
        ctx.add_arch(a).map_err(lib(format!("add architecture {name}")))?;
    }
    for flag in cfg.flags().iter().flatten() {
        let (attr, name) = match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => (ScmpFilterAttr::CtlLog, "SECCOMP_FILTER_FLAG_LOG"),
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => (ScmpFilterAttr::CtlTsync, "SECCOMP_FILTER_FLAG_TSYNC"),
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                (ScmpFilterAttr::CtlSsb, "SECCOMP_FILTER_FLAG_SPEC_ALLOW")
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                (ScmpFilterAttr::CtlWaitkill, "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV")
            }
        };
        ctx.set_filter_attr(attr, 1)
            .map_err(lib(format!("flag {name} (not supported by this kernel or libseccomp)")))?;
    }
    for (i, sc) in cfg.syscalls().iter().flatten().enumerate() {
        add_syscall_rules(&mut ctx, i, sc, default)?;
    }
    Ok(Filter { ctx })
}

fn add_syscall_rules(
    ctx: &mut ScmpFilterContext,
    i: usize,
    sc: &LinuxSyscall,
    default: ScmpAction,
) -> Result<(), SeccompError> {
    let act = action(sc.action(), sc.errno_ret(), &format!("syscalls[{i}].action"))?;
    // libseccomp refuses a rule whose action is the default one; such a rule changes nothing.
    if act == default {
        return Ok(());
    }
    let args = sc.args().clone().unwrap_or_default();
    for a in &args {
        if a.index() > 5 {
            return Err(SeccompError::Invalid {
                field: format!("syscalls[{i}].args"),
                message: format!("index {} is out of range (a syscall has 6 arguments, 0-5)", a.index()),
            });
        }
    }
    let conditions: Vec<ScmpArgCompare> =
        args.iter().map(|a| compare(a.index(), a.op(), a.value(), a.value_two())).collect();
    // libseccomp takes each argument at most once per rule; several comparisons of one
    // argument become one rule each (any of them matches), as runc does.
    let mut indices: Vec<usize> = args.iter().map(|a| a.index()).collect();
    indices.sort_unstable();
    let repeated = indices.windows(2).any(|w| w[0] == w[1]);
    for name in sc.names() {
        let Ok(syscall) = ScmpSyscall::from_name(name) else {
            tracing::debug!("linux.seccomp.syscalls[{i}]: syscall {name} is unknown here; skipped");
            continue;
        };
        let what = || format!("syscalls[{i}] rule for {name}");
        if conditions.is_empty() {
            ctx.add_rule(act, syscall).map_err(lib(what()))?;
        } else if repeated {
            for c in &conditions {
                ctx.add_rule_conditional(act, syscall, std::slice::from_ref(c)).map_err(lib(what()))?;
            }
        } else {
            ctx.add_rule_conditional(act, syscall, &conditions).map_err(lib(what()))?;
        }
    }
    Ok(())
}

impl Filter {
    /// Installs the filter on the calling process (irreversible).
    pub fn load(&self) -> Result<(), SeccompError> {
        self.ctx.load().map_err(lib("load filter"))
    }
}

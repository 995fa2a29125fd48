//! The first level of OpenVZ's two-level disk quota on a stock kernel: project quotas. A
//! container's rootfs tree gets a project id (with the inherit flag on its directories, so
//! everything made inside is charged too), and the project gets block and inode limits. This
//! module is the kernel interface: `quotactl_fd(2)` for limits and usage, the
//! `FS_IOC_FS{GET,SET}XATTR` ioctls for the project id of files. ext4 (`-O quota,project`,
//! mounted with `prjquota`) and XFS (`prjquota`) have it; other filesystems are refused by name.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::annotations::{parse, AnnotationError, Setting, PREFIX};

/// The annotations this module reads: `diskspace` in 1 KiB blocks (K/M/G/T suffixes are
/// bytes, rounded up to blocks), `diskinodes` in inodes; `barrier[:limit]` as the others.
pub const DISKSPACE: &str = "diskspace";
pub const DISKINODES: &str = "diskinodes";

/// What the config asks for; `None` fields are not limited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Soft and hard limits in 1 KiB blocks.
    pub blocks_soft: Option<u64>,
    pub blocks_hard: Option<u64>,
    pub inodes_soft: Option<u64>,
    pub inodes_hard: Option<u64>,
}

/// The disk quota annotations of `config`, or `None` when it has none.
pub fn requested(config: &serde_json::Value) -> Result<Option<Limits>, AnnotationError> {
    // A value that is not a string reads as empty, which the parser refuses by name.
    requested_by(|key| config.get("annotations")?.get(key).map(|v| v.as_str().unwrap_or_default()))
}

/// The same, from a lookup of one annotation by key (the runtime's parsed annotations).
pub fn requested_by<'a>(annotation: impl Fn(&str) -> Option<&'a str>) -> Result<Option<Limits>, AnnotationError> {
    let get = |name: &str, unit: &str| -> Result<Option<Setting>, AnnotationError> {
        let key = format!("{PREFIX}{name}");
        let Some(text) = annotation(&key) else { return Ok(None) };
        // Blocks are 1 KiB: a size suffix means bytes, which the "pages" unit of 1024 converts.
        parse(unit, text, 1024)
            .map(Some)
            .map_err(|m| AnnotationError { annotation: key.clone(), message: format!("{text:?}: {m}") })
    };
    let space = get(DISKSPACE, "pages")?;
    let inodes = get(DISKINODES, "items")?;
    if space.is_none() && inodes.is_none() {
        return Ok(None);
    }
    Ok(Some(Limits {
        blocks_soft: space.and_then(|s| s.barrier),
        blocks_hard: space.and_then(|s| s.limit),
        inodes_soft: inodes.and_then(|s| s.barrier),
        inodes_hard: inodes.and_then(|s| s.limit),
    }))
}

#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the rootfs {path} is on {fs}, which has no project quotas{hint}")]
    Unsupported { path: PathBuf, fs: String, hint: String },
    #[error("quota {project} on the filesystem of {path}: {op}: {source}")]
    Quotactl { path: PathBuf, project: u32, op: &'static str, source: std::io::Error },
    #[error("{path}: setting project id {project}: {source}")]
    Tag { path: PathBuf, project: u32, source: std::io::Error },
}

/// Usage and limits of one project, as `Q_GETQUOTA` reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub space_bytes: u64,
    pub inodes: u64,
    pub limits: Limits,
}

impl Usage {
    /// Whether anything is charged to or set for the project: it is in use.
    pub fn in_use(&self) -> bool {
        self.space_bytes > 0 || self.inodes > 0 || self.limits != Limits::default()
    }
}

// <linux/quota.h>
const USRQUOTA: u32 = 0;
const PRJQUOTA: u32 = 2;
const Q_GETINFO: u32 = 0x800005;
const Q_GETQUOTA: u32 = 0x800007;
const Q_SETQUOTA: u32 = 0x800008;
const QIF_BLIMITS: u32 = 1;
const QIF_ILIMITS: u32 = 4;

const fn qcmd(cmd: u32, kind: u32) -> u32 {
    (cmd << 8) | (kind & 0xff)
}

#[repr(C)]
#[derive(Default)]
struct IfDqblk {
    bhardlimit: u64,
    bsoftlimit: u64,
    curspace: u64,
    ihardlimit: u64,
    isoftlimit: u64,
    curinodes: u64,
    btime: u64,
    itime: u64,
    valid: u32,
}

#[repr(C)]
#[derive(Default)]
struct IfDqinfo {
    bgrace: u64,
    igrace: u64,
    flags: u32,
    valid: u32,
}

fn open_dir(path: &Path) -> Result<File, QuotaError> {
    File::open(path).map_err(|source| QuotaError::Io { path: path.into(), source })
}

fn quotactl(fd: RawFd, cmd: u32, id: u32, addr: *mut libc::c_void) -> std::io::Result<()> {
    // SAFETY: `addr` points to the struct `cmd` reads or writes (IfDqblk, IfDqinfo), alive
    // for the call; the fd is open.
    let r = unsafe { libc::syscall(libc::SYS_quotactl_fd, fd, cmd, id, addr) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The filesystem type of `f` as a name for errors.
fn fs_name(f: &File) -> String {
    // SAFETY: statfs fills the struct it is given; the fd is open.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstatfs(f.as_raw_fd(), &mut st) } != 0 {
        return "an unknown filesystem".into();
    }
    match st.f_type as u64 {
        0xEF53 => "ext4".into(),
        0x5846_5342 => "xfs".into(),
        0x0102_1994 => "tmpfs".into(),
        0x794C_7630 => "overlayfs".into(),
        0x9123_683E => "btrfs".into(),
        0x858458F6 => "ramfs".into(),
        t => format!("a filesystem of type {t:#x}"),
    }
}

/// Whether the filesystem of `path` has project quotas on; the error says what is missing.
pub fn check_support(path: &Path) -> Result<(), QuotaError> {
    let f = open_dir(path)?;
    let mut info = IfDqinfo::default();
    match quotactl(f.as_raw_fd(), qcmd(Q_GETINFO, PRJQUOTA), 0, (&mut info as *mut IfDqinfo).cast()) {
        Ok(()) => Ok(()),
        Err(e) => {
            let fs = fs_name(&f);
            // ESRCH: the kernel keeps no project quota for this filesystem.
            let e = match e.raw_os_error() {
                Some(libc::ESRCH) => "project quota accounting is off".to_string(),
                _ => e.to_string(),
            };
            let hint = match fs.as_str() {
                "ext4" => format!(
                    " enabled ({e}): it needs the project and quota features (mkfs.ext4 -O quota,project, or tune2fs -O quota,project) and the prjquota mount option"
                ),
                "xfs" => format!(" enabled ({e}): mount it with prjquota"),
                _ => format!(" ({e}); ext4 and xfs have them"),
            };
            Err(QuotaError::Unsupported { path: path.into(), fs, hint })
        }
    }
}

/// Usage and limits of `project` on the filesystem of `path`.
pub fn usage(path: &Path, project: u32) -> Result<Usage, QuotaError> {
    get(path, PRJQUOTA, project)
}

/// Usage and limits of host user `uid` (the second level: see docs/beancounters.md).
pub fn user_usage(path: &Path, uid: u32) -> Result<Usage, QuotaError> {
    get(path, USRQUOTA, uid)
}

fn get(path: &Path, kind: u32, id: u32) -> Result<Usage, QuotaError> {
    let f = open_dir(path)?;
    let mut q = IfDqblk::default();
    quotactl(f.as_raw_fd(), qcmd(Q_GETQUOTA, kind), id, (&mut q as *mut IfDqblk).cast())
        .map_err(|source| QuotaError::Quotactl { path: path.into(), project: id, op: "reading usage", source })?;
    let some = |v: u64| (v > 0).then_some(v);
    Ok(Usage {
        space_bytes: q.curspace,
        inodes: q.curinodes,
        limits: Limits {
            blocks_soft: some(q.bsoftlimit),
            blocks_hard: some(q.bhardlimit),
            inodes_soft: some(q.isoftlimit),
            inodes_hard: some(q.ihardlimit),
        },
    })
}

/// Sets the project's limits (0, which the kernel reads as none, where a field is `None`).
pub fn set_limits(path: &Path, project: u32, l: &Limits) -> Result<(), QuotaError> {
    set(path, PRJQUOTA, project, l)
}

/// Sets host user `uid`'s limits on the filesystem of `path`.
pub fn set_user_limits(path: &Path, uid: u32, l: &Limits) -> Result<(), QuotaError> {
    set(path, USRQUOTA, uid, l)
}

fn set(path: &Path, kind: u32, id: u32, l: &Limits) -> Result<(), QuotaError> {
    let f = open_dir(path)?;
    let mut q = IfDqblk {
        bhardlimit: l.blocks_hard.unwrap_or(0),
        bsoftlimit: l.blocks_soft.unwrap_or(0),
        ihardlimit: l.inodes_hard.unwrap_or(0),
        isoftlimit: l.inodes_soft.unwrap_or(0),
        valid: QIF_BLIMITS | QIF_ILIMITS,
        ..Default::default()
    };
    quotactl(f.as_raw_fd(), qcmd(Q_SETQUOTA, kind), id, (&mut q as *mut IfDqblk).cast())
        .map_err(|source| QuotaError::Quotactl { path: path.into(), project: id, op: "setting limits", source })
}

// <linux/fs.h>: struct fsxattr and its ioctls.
#[repr(C)]
#[derive(Default)]
struct FsXattr {
    xflags: u32,
    extsize: u32,
    nextents: u32,
    projid: u32,
    cowextsize: u32,
    pad: [u8; 8],
}
const FS_IOC_FSGETXATTR: libc::c_ulong = 0x801C_581F;
const FS_IOC_FSSETXATTR: libc::c_ulong = 0x401C_5820;
const FS_XFLAG_PROJINHERIT: u32 = 0x0000_0200;

fn fsxattr(fd: RawFd) -> std::io::Result<FsXattr> {
    let mut x = FsXattr::default();
    // SAFETY: the ioctl fills an fsxattr of exactly this layout; the fd is open.
    if unsafe { libc::ioctl(fd, FS_IOC_FSGETXATTR, &mut x as *mut FsXattr) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(x)
}

fn set_project(fd: RawFd, project: u32, dir: bool) -> std::io::Result<()> {
    let mut x = fsxattr(fd)?;
    x.projid = project;
    if dir {
        x.xflags |= FS_XFLAG_PROJINHERIT;
    }
    // SAFETY: as above; the kernel reads the struct.
    if unsafe { libc::ioctl(fd, FS_IOC_FSSETXATTR, &x as *const FsXattr) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The project id of the file or directory at `path`.
pub fn project_of(path: &Path) -> Result<u32, QuotaError> {
    let f = File::open(path).map_err(|source| QuotaError::Io { path: path.into(), source })?;
    fsxattr(f.as_raw_fd()).map(|x| x.projid).map_err(|source| QuotaError::Io { path: path.into(), source })
}

/// Gives every directory and regular file of the tree at `root` the project id `project`
/// (directories also the inherit flag, so what is made in them later is charged too). The
/// walk stays on the root's filesystem and follows no symlink: each entry is opened by name
/// under its directory's fd with O_NOFOLLOW. Symlinks, device nodes, fifos and sockets that
/// already exist keep their project (they cannot be opened for the ioctl without following or
/// opening them); ones made later inherit it.
pub fn tag_tree(root: &Path, project: u32) -> Result<(), QuotaError> {
    let top = open_at(libc::AT_FDCWD, root.as_os_str().as_bytes(), libc::O_DIRECTORY)
        .map_err(|source| QuotaError::Io { path: root.into(), source })?;
    let dev = fstat(&top).map_err(|source| QuotaError::Io { path: root.into(), source })?.st_dev;
    let mut stack = vec![(top, root.to_path_buf())];
    while let Some((dir, path)) = stack.pop() {
        set_project(dir.as_raw_fd(), project, true).map_err(|source| QuotaError::Tag {
            path: path.clone(),
            project,
            source,
        })?;
        let listed = crate::kfile::names(&dir).map_err(|source| QuotaError::Io { path: path.clone(), source })?;
        for (name, kind) in listed {
            let child_path = path.join(std::ffi::OsStr::from_bytes(name.as_bytes()));
            let is_dir = match kind {
                libc::DT_DIR => true,
                libc::DT_REG => false,
                _ => continue,
            };
            let flags = if is_dir { libc::O_DIRECTORY } else { libc::O_NONBLOCK };
            let fd = match open_at(dir.as_raw_fd(), name.as_bytes(), flags) {
                Ok(fd) => fd,
                // Replaced meanwhile by something that is not what readdir said: not ours to tag.
                Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR | libc::ENOENT)) => continue,
                Err(source) => return Err(QuotaError::Io { path: child_path, source }),
            };
            let st = fstat(&fd).map_err(|source| QuotaError::Io { path: child_path.clone(), source })?;
            if st.st_dev != dev {
                continue;
            }
            if is_dir {
                stack.push((fd, child_path));
            } else if st.st_mode & libc::S_IFMT == libc::S_IFREG {
                set_project(fd.as_raw_fd(), project, false).map_err(|source| QuotaError::Tag {
                    path: child_path,
                    project,
                    source,
                })?;
            }
        }
    }
    Ok(())
}

/// An entry opened without following a symlink in its last component.
fn open_at(dir: RawFd, name: &[u8], flags: i32) -> std::io::Result<OwnedFd> {
    let c = CString::new(name).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    crate::kfile::open_at(dir, &c, libc::O_NOFOLLOW | flags)
}

fn fstat(fd: &OwnedFd) -> std::io::Result<libc::stat> {
    // SAFETY: fstat fills the struct it is given; the fd is open.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn annotations_read_as_blocks_and_inodes() {
        let c = json!({"annotations": {"org.tally.beancounter.diskspace": "8M:10M", "org.tally.beancounter.diskinodes": "100"}});
        let l = requested(&c).unwrap().unwrap();
        assert_eq!((l.blocks_soft, l.blocks_hard), (Some(8192), Some(10240)));
        assert_eq!((l.inodes_soft, l.inodes_hard), (Some(100), Some(100)));
        assert_eq!(requested(&json!({"annotations": {}})).unwrap(), None);
        let e = requested(&json!({"annotations": {"org.tally.beancounter.diskinodes": "lots"}})).unwrap_err();
        assert_eq!(e.annotation, "org.tally.beancounter.diskinodes");
        let e = requested(&json!({"annotations": {"org.tally.beancounter.diskspace": "10:5"}})).unwrap_err();
        assert!(e.message.contains("above the limit"), "{e}");
    }

    #[test]
    fn a_filesystem_without_project_quotas_is_named() {
        // /proc has no quotas on any machine.
        let e = check_support(Path::new("/proc")).unwrap_err().to_string();
        assert!(e.contains("/proc") && e.contains("no project quotas"), "{e}");
    }

    #[test]
    fn usage_in_use() {
        assert!(!Usage::default().in_use());
        assert!(Usage { inodes: 1, ..Default::default() }.in_use());
        let limits = Limits { blocks_hard: Some(1), ..Default::default() };
        assert!(Usage { limits, ..Default::default() }.in_use());
    }
}

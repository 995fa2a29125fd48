//! The network lock CRIU 3.17 leaves behind in a restored network namespace.
//!
//! With `--network-lock=nftables` CRIU drops every packet of the container's network namespace
//! through an nftables table `inet CRIU-<pid>` while it dumps and restores, and deletes the
//! table when it is done. CRIU 3.17 names the table after the root task's host PID, which is
//! another number at restore than at dump: the table that came back with the namespace (and
//! the one the restore made) outlives the restore, and nothing reaches the restored sockets.
//! CRIU 3.18 names it after a run ID stored in the images instead. tally deletes what is left,
//! over nfnetlink, in the restored init's network namespace only: tables of the `inet` family
//! named `CRIU-` and a number. (No `nft` binary needed; the host may have none.)

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

const NETLINK_NETFILTER: libc::c_int = 12;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_DELTABLE: u16 = 2;
const NFNL_MSG_BATCH_BEGIN: u16 = 16;
const NFNL_MSG_BATCH_END: u16 = 17;
const NFPROTO_INET: u8 = 1;
const NFTA_TABLE_NAME: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const HEADER: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum NetlockError {
    #[error("the network namespace of pid {pid}: {source}")]
    Namespace { pid: i32, source: io::Error },
    #[error("nftables in the network namespace of pid {pid}: {what}: {source}")]
    Netlink { pid: i32, what: &'static str, source: io::Error },
}

/// Is `name` one of CRIU's lock tables (`CRIU-1234`; `CRIU--1` when the PID was not known yet)?
fn is_lock_table(name: &str) -> bool {
    name.strip_prefix("CRIU-")
        .map(|n| n.strip_prefix('-').unwrap_or(n))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// One netlink message: header, nfgenmsg, then `attrs` (already encoded).
fn message(kind: u16, flags: u16, seq: u32, family: u8, res_id: u16, attrs: &[u8]) -> Vec<u8> {
    let len = HEADER + 4 + attrs.len();
    let mut m = Vec::with_capacity(align(len));
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&[family, 0]);
    m.extend_from_slice(&res_id.to_be_bytes());
    m.extend_from_slice(attrs);
    m.resize(align(len), 0);
    m
}

fn string_attr(kind: u16, value: &str) -> Vec<u8> {
    let len = 4 + value.len() + 1;
    let mut a = Vec::with_capacity(align(len));
    a.extend_from_slice(&(len as u16).to_ne_bytes());
    a.extend_from_slice(&kind.to_ne_bytes());
    a.extend_from_slice(value.as_bytes());
    a.push(0);
    a.resize(align(len), 0);
    a
}

fn nft(msg: u16) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | msg
}

/// The batch that deletes the `inet` table `name` (nftables changes only come in batches).
fn delete_batch(name: &str, seq: u32) -> Vec<u8> {
    let mut b = message(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq, 0, NFNL_SUBSYS_NFTABLES, &[]);
    b.extend(message(
        nft(NFT_MSG_DELTABLE),
        NLM_F_REQUEST | NLM_F_ACK,
        seq + 1,
        NFPROTO_INET,
        0,
        &string_attr(NFTA_TABLE_NAME, name),
    ));
    b.extend(message(NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq + 2, 0, NFNL_SUBSYS_NFTABLES, &[]));
    b
}

/// What one read of replies holds.
#[derive(Debug, Default, PartialEq, Eq)]
struct Replies {
    tables: Vec<String>,
    /// The errno of an NLMSG_ERROR (0 is an acknowledgement).
    errors: Vec<i32>,
    done: bool,
}

fn parse(buf: &[u8], out: &mut Replies) {
    let u16_at = |b: &[u8], i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
    let mut off = 0;
    while off + HEADER <= buf.len() {
        let len = u32::from_ne_bytes(buf[off..off + 4].try_into().expect("4 bytes")) as usize;
        if len < HEADER || off + len > buf.len() {
            break;
        }
        let msg = &buf[off..off + len];
        match u16_at(msg, 4) {
            NLMSG_DONE => out.done = true,
            NLMSG_ERROR if len >= HEADER + 4 => {
                out.errors.push(-i32::from_ne_bytes(msg[HEADER..HEADER + 4].try_into().expect("4 bytes")))
            }
            t if t == nft(0) || t == nft(NFT_MSG_GETTABLE) => {
                // NFT_MSG_NEWTABLE (0) is what a dump of tables answers with.
                let mut a = HEADER + 4;
                while a + 4 <= msg.len() {
                    let alen = u16_at(msg, a) as usize;
                    if alen < 4 || a + alen > msg.len() {
                        break;
                    }
                    if u16_at(msg, a + 2) & 0x3fff == NFTA_TABLE_NAME {
                        let v = &msg[a + 4..a + alen];
                        let v = v.split(|&b| b == 0).next().unwrap_or(v);
                        out.tables.push(String::from_utf8_lossy(v).into_owned());
                    }
                    a += align(alen);
                }
            }
            _ => {}
        }
        off += align(len);
    }
}

/// A netfilter netlink socket made in the network namespace of `pid`: a thread joins the
/// namespace (a network namespace is per thread), makes the socket, which stays bound to that
/// namespace, and ends.
fn socket_in(pid: i32) -> Result<OwnedFd, NetlockError> {
    let ns = std::fs::File::open(Path::new(&format!("/proc/{pid}/ns/net")))
        .map_err(|source| NetlockError::Namespace { pid, source })?;
    let made = std::thread::spawn(move || -> io::Result<OwnedFd> {
        // SAFETY: setns on this thread alone, with an fd the closure owns.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a plain socket call; the fd is owned at once.
        let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, NETLINK_NETFILTER) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just returned by socket() and is not owned elsewhere.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    })
    .join()
    .unwrap_or_else(|_| Err(io::Error::other("the namespace thread panicked")));
    made.map_err(|source| NetlockError::Namespace { pid, source })
}

fn send(fd: &OwnedFd, buf: &[u8]) -> io::Result<()> {
    // SAFETY: buf is a live slice; the kernel is the peer (a zero sockaddr_nl is implied).
    let n = unsafe { libc::send(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads replies until `until` says enough.
fn receive(fd: &OwnedFd, until: impl Fn(&Replies) -> bool) -> io::Result<Replies> {
    let mut out = Replies::default();
    let mut buf = vec![0u8; 32 * 1024];
    while !until(&out) {
        // SAFETY: buf is a live, writable buffer of its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n == 0 {
            break;
        }
        parse(&buf[..n as usize], &mut out);
    }
    Ok(out)
}

/// Deletes CRIU's lock tables from the network namespace of `pid`, unless it is tally's own
/// (the host's tables are not the container's). Returns the names deleted.
pub fn unlock_restored(pid: i32) -> Result<Vec<String>, NetlockError> {
    let ns_of = |p: &str| std::fs::metadata(p).map(|m| std::os::unix::fs::MetadataExt::ino(&m));
    let theirs = ns_of(&format!("/proc/{pid}/ns/net")).map_err(|source| NetlockError::Namespace { pid, source })?;
    if ns_of("/proc/self/ns/net").is_ok_and(|ours| ours == theirs) {
        return Ok(Vec::new());
    }
    let fd = socket_in(pid)?;
    let nl = |what: &'static str| move |source| NetlockError::Netlink { pid, what, source };
    send(&fd, &message(nft(NFT_MSG_GETTABLE), NLM_F_REQUEST | NLM_F_DUMP, 1, NFPROTO_INET, 0, &[]))
        .map_err(nl("list the tables"))?;
    let listed = receive(&fd, |r| r.done || !r.errors.is_empty()).map_err(nl("list the tables"))?;
    if let Some(&e) = listed.errors.iter().find(|&&e| e != 0) {
        return Err(nl("list the tables")(io::Error::from_raw_os_error(e)));
    }
    let mut deleted = Vec::new();
    for (i, name) in listed.tables.into_iter().filter(|t| is_lock_table(t)).enumerate() {
        send(&fd, &delete_batch(&name, 10 + 3 * i as u32)).map_err(nl("delete a lock table"))?;
        let acked = receive(&fd, |r| !r.errors.is_empty()).map_err(nl("delete a lock table"))?;
        match acked.errors.first() {
            Some(0) | Some(&libc::ENOENT) | None => deleted.push(name),
            Some(&e) => return Err(nl("delete a lock table")(io::Error::from_raw_os_error(e))),
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criu_lock_tables_are_told_from_others() {
        for name in ["CRIU-1234", "CRIU--1", "CRIU-0"] {
            assert!(is_lock_table(name), "{name}");
        }
        for name in ["CRIU-", "CRIU-abc", "filter", "CRIU-12x", "criu-12", "CRIU---1"] {
            assert!(!is_lock_table(name), "{name}");
        }
    }

    #[test]
    fn a_delete_batch_is_begin_deltable_end_with_the_name_nul_terminated_and_padded() {
        let b = delete_batch("CRIU-77", 5);
        // BEGIN: 20 bytes, res_id = the nftables subsystem in network order.
        assert_eq!(u32::from_ne_bytes(b[0..4].try_into().unwrap()), 20);
        assert_eq!(u16::from_ne_bytes([b[4], b[5]]), NFNL_MSG_BATCH_BEGIN);
        assert_eq!(&b[18..20], &10u16.to_be_bytes());
        // DELTABLE: header 16 + nfgenmsg 4 + attr (4 + "CRIU-77\0" = 12) = 32.
        let d = &b[20..52];
        assert_eq!(u32::from_ne_bytes(d[0..4].try_into().unwrap()), 32);
        assert_eq!(u16::from_ne_bytes([d[4], d[5]]), (10 << 8) | 2);
        assert_eq!(u16::from_ne_bytes([d[6], d[7]]), NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(d[16], NFPROTO_INET);
        assert_eq!(u16::from_ne_bytes([d[20], d[21]]), 12);
        assert_eq!(&d[24..32], b"CRIU-77\0");
        assert_eq!(u16::from_ne_bytes([b[56], b[57]]), NFNL_MSG_BATCH_END);
        assert_eq!(b.len(), 72);
    }

    #[test]
    fn replies_give_table_names_errors_and_the_end_of_a_dump() {
        let mut buf = message(nft(0), 0, 1, NFPROTO_INET, 0, &string_attr(NFTA_TABLE_NAME, "CRIU-9"));
        buf.extend(message(nft(0), 0, 1, NFPROTO_INET, 0, &string_attr(NFTA_TABLE_NAME, "filter")));
        let mut err = message(NLMSG_ERROR, 0, 1, 0, 0, &[]);
        err[HEADER..HEADER + 4].copy_from_slice(&(-libc::ENOENT).to_ne_bytes());
        buf.extend(err);
        buf.extend(message(NLMSG_DONE, 0, 1, 0, 0, &[]));
        let mut r = Replies::default();
        parse(&buf, &mut r);
        assert_eq!(
            r,
            Replies { tables: vec!["CRIU-9".into(), "filter".into()], errors: vec![libc::ENOENT], done: true }
        );
        // A truncated message is not read past its end.
        let mut r = Replies::default();
        parse(&buf[..10], &mut r);
        assert_eq!(r, Replies::default());
    }
}

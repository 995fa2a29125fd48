//! The ledger: the final beancounters of every deleted container, one JSON line each, in the
//! state root, so usage and failures outlive the container. It is bounded: past `MAX_BYTES`
//! the older half of the lines is dropped.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::model::Beancounters;

pub const FILE_NAME: &str = ".beancounters-ledger.jsonl";
pub const MAX_BYTES: u64 = 4 << 20;

/// Appends one container's final row set, with the time of deletion (seconds since the epoch).
pub fn append(root: &Path, bc: &Beancounters) -> io::Result<()> {
    append_bounded(root, bc, None, MAX_BYTES)
}

/// Appends a row set taken at an event of the container's life (`checkpointed`, `restored`),
/// with its time in the same field, and the event named.
pub fn append_event(root: &Path, bc: &Beancounters, event: &str) -> io::Result<()> {
    append_bounded(root, bc, Some(event), MAX_BYTES)
}

fn append_bounded(root: &Path, bc: &Beancounters, event: Option<&str>, max_bytes: u64) -> io::Result<()> {
    let path = root.join(FILE_NAME);
    let deleted = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut entry = serde_json::json!({"deleted": deleted, "beancounters": bc});
    if let Some(event) = event {
        entry["event"] = serde_json::json!(event);
    }
    let mut line = serde_json::to_vec(&entry).expect("serializes");
    line.push(b'\n');
    // Concurrent deletes append one whole line each (O_APPEND); the lock keeps a trim, which
    // replaces the file, from losing a line appended meanwhile: a writer that locked the file
    // a trim replaced opens the new one.
    let mut file = loop {
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        // SAFETY: flock only takes an fd we own and an operation constant.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let (locked, current) = (file.metadata()?, fs::metadata(&path)?);
        if (locked.dev(), locked.ino()) == (current.dev(), current.ino()) {
            break file;
        }
    };
    if file.metadata()?.len() > max_bytes {
        trim(&path)?;
        file = OpenOptions::new().append(true).open(&path)?;
    }
    file.write_all(&line)
}

fn trim(path: &Path) -> io::Result<()> {
    let text = fs::read_to_string(path)?;
    let lines: Vec<&str> = text.lines().collect();
    let keep = lines[lines.len() / 2..].join("\n") + "\n";
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, keep)?;
    fs::rename(tmp, path)
}

/// Every entry, oldest first.
pub fn read(root: &Path) -> io::Result<Vec<serde_json::Value>> {
    let text = match fs::read_to_string(root.join(FILE_NAME)) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_appended_and_read_back() {
        let dir = std::env::temp_dir().join(format!("tally-ledger-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let bc = Beancounters {
            id: "c1".into(),
            cgroup: "/tally/c1".into(),
            cgroup_id: 7,
            page_size: 4096,
            resources: vec![],
        };
        append(&dir, &bc).unwrap();
        append(&dir, &bc).unwrap();
        let entries = read(&dir).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1]["beancounters"]["id"], "c1");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn past_its_bound_the_older_half_is_dropped() {
        let dir = std::env::temp_dir().join(format!("tally-ledger-trim-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        for i in 0..10 {
            let bc = Beancounters {
                id: format!("c{i}"),
                cgroup: String::new(),
                cgroup_id: i,
                page_size: 4096,
                resources: vec![],
            };
            append_bounded(&dir, &bc, None, 500).unwrap();
        }
        let ids: Vec<String> =
            read(&dir).unwrap().iter().map(|e| e["beancounters"]["id"].as_str().unwrap().to_string()).collect();
        assert!(ids.len() < 10, "trimmed: {ids:?}");
        assert_eq!(ids.last().unwrap(), "c9", "the newest entry is kept");
        assert!(fs::metadata(dir.join(FILE_NAME)).unwrap().len() < 1000);
        fs::remove_dir_all(&dir).unwrap();
    }
}

//! sled's files: the syncs that sled 0.34's own `flush` does not do, and opening it.

use super::meta::sync_dir;
use std::{
    fs, io,
    path::{Path, PathBuf},
};

/// Where sled keeps its data, for the syncs that sled's own `flush` does not do.
pub(super) struct SledFiles {
    dir: PathBuf,
    /// `<db>/db`, sled's log file.
    data: fs::File,
}

/// Snapshots at least this large may be stored by sled as a blob file of their own (sled 0.34
/// moves values over a quarter of its segment size there, and never syncs them).
pub(super) const SLED_BLOB_MIN: usize = 16 * 1024;

impl SledFiles {
    pub(super) fn open(dir: &Path) -> io::Result<SledFiles> {
        Ok(SledFiles {
            dir: dir.to_path_buf(),
            data: fs::File::open(dir.join("db"))?,
        })
    }

    /// Makes what sled flushed durable: its data file, and with `blobs` every blob file and
    /// the directories.
    pub(super) fn sync(&self, blobs: bool) -> io::Result<()> {
        self.data.sync_data()?;
        if blobs {
            let dir = self.dir.join("blobs");
            match fs::read_dir(&dir) {
                Ok(listing) => {
                    for e in listing {
                        // sled's threads remove the blobs of overwritten values while we list
                        // them: a blob gone since the listing needs no sync.
                        let gone = |e: &io::Error| e.kind() == io::ErrorKind::NotFound;
                        let e = e?;
                        match e.file_type() {
                            Ok(t) if t.is_file() => {}
                            Ok(_) => continue,
                            Err(err) if gone(&err) => continue,
                            Err(err) => return Err(err),
                        }
                        match fs::File::open(e.path()) {
                            Ok(f) => f.sync_data()?,
                            Err(err) if gone(&err) => {}
                            Err(err) => return Err(err),
                        }
                    }
                    sync_dir(&dir)?;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

/// How long `open` waits for sled's lock on the database (see [`open_sled`]).
const SLED_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Opens sled in `dir`, waiting up to [`SLED_LOCK_WAIT`] for its lock: a storage just dropped
/// in this process may still have sled's background threads finishing with the file for a
/// moment. A lock held longer (another live instance or process) is an error.
///
/// If sled finds corruption and the directory holds unpublished sled snapshots (see
/// [`remove_unpublished_snapshots`]), they are removed and sled is opened once more.
pub(super) fn open_sled(config: &sled::Config, dir: &Path) -> sled::Result<sled::Db> {
    match open_waiting(config) {
        // sled 0.34 writes snapshot files only while it opens, holding its lock, and no open
        // gets past a torn newest one: nobody is writing the files removed here, except
        // another process racing this one to open the same damaged database, which would
        // fail at sled's lock anyway (and loses no data: the files were never published).
        Err(sled::Error::Corruption { .. }) if remove_unpublished_snapshots(dir)? > 0 => {
            open_waiting(config)
        }
        r => r,
    }
}

fn open_waiting(config: &sled::Config) -> sled::Result<sled::Db> {
    let deadline = std::time::Instant::now() + SLED_LOCK_WAIT;
    loop {
        match config.open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            r => return r,
        }
    }
}

/// Removes sled's unpublished snapshot files from `dir`; returns how many there were.
///
/// sled 0.34, when it opens a database whose log moved on since its last snapshot (of its page
/// table), writes a new one to `snap.<lsn>.generating`, syncs it, renames it to `snap.<lsn>`
/// and then removes the older ones: the rename publishes it. But when it opens, it takes the
/// newest file whose name starts with `snap.`, `.generating` ones included, and refuses a torn
/// one as corruption, so a process killed while it wrote one left a database that never
/// opened again. Removing such a file gives the directory as it was before that write started
/// (the previous snapshot is only removed after the rename), which sled recovers from like
/// from any crash: from the previous snapshot and its log.
fn remove_unpublished_snapshots(dir: &Path) -> io::Result<usize> {
    let mut removed = 0;
    for e in fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            match fs::remove_file(e.path()) {
                Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
                _ => removed += 1,
            }
        }
    }
    if removed > 0 {
        sync_dir(dir)?;
    }
    Ok(removed)
}

/// Syncs every file and directory under `dir` (a freshly built storage).
pub(super) fn sync_tree(dir: &Path) -> io::Result<()> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        let t = e.file_type()?;
        if t.is_dir() {
            sync_tree(&e.path())?;
        } else if t.is_file() {
            fs::File::open(e.path())?.sync_all()?;
        }
    }
    sync_dir(dir)
}

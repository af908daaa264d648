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

/// Opens sled, waiting up to [`SLED_LOCK_WAIT`] for its lock: a storage just dropped in this
/// process may still have sled's background threads finishing with the file for a moment. A
/// lock held longer (another live instance or process) is an error.
pub(super) fn open_sled(config: &sled::Config) -> sled::Result<sled::Db> {
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

//! [`PersistentStorageConfig`]: where the storage lives and how it uses commitlog and sled.

use commitlog::LogOptions;
use std::path::{Path, PathBuf};

/// The directory [`PersistentStorageConfig::default`] uses: `omnipaxos_storage` in the current
/// working directory.
pub const DEFAULT_PATH: &str = "omnipaxos_storage";

/// Default of [`PersistentStorageConfig::set_log_rewrite_threshold`].
pub const DEFAULT_LOG_REWRITE_THRESHOLD: usize = 4096;

/// Default of [`PersistentStorageConfig::set_checkpoint_interval`].
pub const DEFAULT_CHECKPOINT_INTERVAL: usize = 65_536;

/// When the data of a [`write_atomically`](omnipaxos::storage::Storage::write_atomically)
/// reaches the disk. Atomicity does not depend on it; durability does.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Durability {
    /// Every write syncs before it returns: one `fdatasync` of the commitlog segment it was
    /// appended to (and of the log directory when the write created a segment). A returned
    /// write survives a process kill and a power loss. The sync is paid per write, whatever
    /// its size: batch entries (`examples/storage_bench.rs` measures the cost against a plain
    /// file with one `fsync` per batch).
    ///
    /// One exception, as in etcd's raft: a write that only raises the decided index (no
    /// entries, no other change, no stop sign) is appended but synced with the next write. A
    /// decided index is knowledge the cluster holds, not a vote: after a power loss the node
    /// may reopen with an older decided index (never with fewer entries, promises or accepted
    /// rounds than it acknowledged) and learns it again from its leader. A process kill loses
    /// nothing.
    #[default]
    Immediate,
    /// Writes return once the data is handed to the OS; it reaches the disk when the OS writes
    /// it back, at the next checkpoint, and when the storage is dropped. After a **process**
    /// crash nothing is lost (the OS still has the data). After a **power loss** (or an OS
    /// crash) the storage reopens in the state after some earlier write (atomicity is kept,
    /// the last writes are lost), or refuses to open if the log lost data a checkpoint names;
    /// it never opens wrong. Writes that change the promise or the accepted round are still
    /// synced, so a node never forgets a promise.
    ///
    /// Losing accepted entries can break Paxos safety even if only **one** server loses them:
    /// a follower that acknowledged an entry and then forgets it, together with a crash of the
    /// leader that decided it on that acknowledgement, can lose a decided entry (the next
    /// leader may be elected by a majority none of which still holds it). Use it for tests, or
    /// where servers do not lose power and speed matters more.
    Deferred,
}

/// Configuration of a [`PersistentStorage`](super::PersistentStorage).
///
/// The storage owns the directory [`get_path`](Self::get_path): it keeps its commitlog, its sled
/// database (checkpoints and snapshots) and a small anchor file there (see the
/// [module documentation](super#on-disk-layout)). The directories inside the given
/// `LogOptions` and `sled::Config` are **not** used: the storage places both under its own
/// path, keeping every other option you set (segment, index and message sizes of the log;
/// cache size, mode, compression and flush interval of sled).
#[derive(Clone, Debug)]
pub struct PersistentStorageConfig {
    path: PathBuf,
    commitlog_options: LogOptions,
    database_options: sled::Config,
    durability: Durability,
    log_rewrite_threshold: usize,
    checkpoint_interval: usize,
}

impl Default for PersistentStorageConfig {
    /// Path [`DEFAULT_PATH`], commitlog and sled defaults, [`Durability::Immediate`].
    fn default() -> Self {
        PersistentStorageConfig {
            path: PathBuf::from(DEFAULT_PATH),
            commitlog_options: LogOptions::new(DEFAULT_PATH),
            database_options: sled::Config::default(),
            durability: Durability::default(),
            log_rewrite_threshold: DEFAULT_LOG_REWRITE_THRESHOLD,
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
        }
    }
}

impl PersistentStorageConfig {
    /// A configuration with the storage directory `path` and the given commitlog and sled
    /// options (their own paths are ignored, see the type's documentation).
    pub fn with(
        path: impl Into<PathBuf>,
        commitlog_options: LogOptions,
        database_options: sled::Config,
    ) -> Self {
        PersistentStorageConfig {
            path: path.into(),
            commitlog_options,
            database_options,
            ..Default::default()
        }
    }

    /// A configuration with the storage directory `path` and default options.
    pub fn with_path(path: impl Into<PathBuf>) -> Self {
        PersistentStorageConfig {
            path: path.into(),
            ..Default::default()
        }
    }

    /// The storage directory.
    pub fn get_path(&self) -> &Path {
        &self.path
    }

    /// Sets the storage directory. It must be used by one storage (one node) only.
    pub fn set_path(&mut self, path: impl Into<PathBuf>) {
        self.path = path.into();
    }

    /// The commitlog options (segment, index and message sizes).
    pub fn get_commitlog_options(&self) -> LogOptions {
        self.commitlog_options.clone()
    }

    /// Sets the commitlog options. Their directory is ignored. `message_max_bytes` bounds the
    /// encoded size of one entry, and of one write's state record, plus 37 bytes of header,
    /// kind and commit mark; larger ones are refused.
    pub fn set_commitlog_options(&mut self, options: LogOptions) {
        self.commitlog_options = options;
    }

    /// The sled options.
    pub fn get_database_options(&self) -> sled::Config {
        self.database_options.clone()
    }

    /// Sets the sled options (sled keeps the checkpoints and snapshots). Their path is
    /// ignored; `create_new` and `temporary` are turned off (use
    /// [`PersistentStorage::try_new`](super::PersistentStorage::try_new) to require a fresh
    /// directory).
    pub fn set_database_options(&mut self, options: sled::Config) {
        self.database_options = options;
    }

    /// When written data reaches the disk; [`Durability::Immediate`] by default.
    pub fn get_durability(&self) -> Durability {
        self.durability
    }

    /// Sets when written data reaches the disk (see [`Durability`]).
    pub fn set_durability(&mut self, durability: Durability) {
        self.durability = durability;
    }

    /// See [`set_log_rewrite_threshold`](Self::set_log_rewrite_threshold).
    pub fn get_log_rewrite_threshold(&self) -> usize {
        self.log_rewrite_threshold
    }

    /// Trimmed and overwritten entries, state records and commit marks stay in the commitlog
    /// (unreferenced) until their number reaches `records` **and** twice the number of live
    /// entries; then the next write first copies the live entries into a fresh log
    /// (crash-safe, see the module documentation). Lower values reclaim disk space sooner and
    /// copy more often. Default [`DEFAULT_LOG_REWRITE_THRESHOLD`]; at least 1.
    pub fn set_log_rewrite_threshold(&mut self, records: usize) {
        self.log_rewrite_threshold = records.max(1);
    }

    /// See [`set_checkpoint_interval`](Self::set_checkpoint_interval).
    pub fn get_checkpoint_interval(&self) -> usize {
        self.checkpoint_interval
    }

    /// A checkpoint of the state is written to sled (flushed and synced: about three syncs)
    /// before the first write after `records` log records (or 64 MiB of log) since the last
    /// one. `open` reads the log from the last checkpoint on, and the end of the log up to the
    /// last checkpoint is protected against being cut off (see the module documentation).
    /// Lower values cost more syncs; higher values leave more of the log after a crash
    /// protected only by its checksums. Default [`DEFAULT_CHECKPOINT_INTERVAL`]; at least 1.
    pub fn set_checkpoint_interval(&mut self, records: usize) {
        self.checkpoint_interval = records.max(1);
    }

    /// Whether every write syncs before it returns: `true` for [`Durability::Immediate`]
    /// (the default). The name and meaning of omnipaxos_storage 0.2.4.
    pub fn get_sync_writes(&self) -> bool {
        self.durability == Durability::Immediate
    }

    /// Sets whether every write syncs before it returns: `true` is [`Durability::Immediate`],
    /// `false` is [`Durability::Deferred`] (see there for what a node can lose). The name and
    /// meaning of omnipaxos_storage 0.2.4.
    pub fn set_sync_writes(&mut self, sync_writes: bool) {
        self.durability = if sync_writes {
            Durability::Immediate
        } else {
            Durability::Deferred
        };
    }

    /// The options of the log: the same as
    /// [`get_commitlog_options`](Self::get_commitlog_options) (the name of omnipaxos_storage
    /// 0.2.4, whose log was a RocksDB column family).
    pub fn get_log_options(&self) -> LogOptions {
        self.get_commitlog_options()
    }

    /// Sets the options of the log: the same as
    /// [`set_commitlog_options`](Self::set_commitlog_options) (the name of omnipaxos_storage
    /// 0.2.4, whose log was a RocksDB column family).
    pub fn set_log_options(&mut self, options: LogOptions) {
        self.set_commitlog_options(options)
    }
}

/// The numeric fields of a `commitlog::LogOptions`, which has private fields and no getters.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct LogLimits {
    /// Largest size of one segment file in bytes.
    pub(crate) segment_max_bytes: usize,
    /// Initial size of an index file in bytes.
    pub(crate) index_max_bytes: usize,
    /// Largest size of one append (all records with their headers) in bytes.
    pub(crate) message_max_bytes: usize,
}

impl LogLimits {
    /// Reads the limits out of the `Debug` form of `LogOptions` (commitlog is pinned to 0.2.0,
    /// whose derived `Debug` prints every field; a unit test checks the round trip).
    pub(crate) fn of(options: &LogOptions) -> Option<LogLimits> {
        let text = format!("{options:?}");
        // The numeric fields follow `log_dir`, so search from the end: a directory name
        // cannot fool us.
        let field = |name: &str| -> Option<usize> {
            let key = format!(", {name}: ");
            let at = text.rfind(&key)? + key.len();
            let digits: String = text[at..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        };
        Some(LogLimits {
            segment_max_bytes: field("log_max_bytes")?,
            index_max_bytes: field("index_max_bytes")?,
            message_max_bytes: field("message_max_bytes")?,
        })
    }

    /// `LogOptions` with these limits for directory `dir`.
    pub(crate) fn options_for(&self, dir: &Path) -> LogOptions {
        let mut o = LogOptions::new(dir);
        o.segment_max_bytes(self.segment_max_bytes)
            .index_max_items(self.index_max_bytes / 8)
            .message_max_bytes(self.message_max_bytes);
        o
    }

    /// The largest number of bytes one append may carry: a batch must pass the message limit
    /// and fit into a fresh segment (which starts with 2 bytes of magic).
    pub(crate) fn max_batch_bytes(&self) -> usize {
        self.message_max_bytes
            .min(self.segment_max_bytes.saturating_sub(2))
    }
}

/// The sled configuration the storage uses: the user's, with our path. `sled::Config::path`
/// panics on a shared config, so first make a private copy through a copy-on-write setter.
pub(crate) fn sled_config_for(user: &sled::Config, path: &Path) -> sled::Config {
    let private = user
        .clone()
        .print_profile_on_drop(user.print_profile_on_drop)
        .create_new(false)
        .temporary(false);
    private.path(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_limits_round_trip_through_debug() {
        let mut o = LogOptions::new("/a/b, log_max_bytes: 7, x");
        o.segment_max_bytes(12_345)
            .index_max_items(77)
            .message_max_bytes(999);
        let l = LogLimits::of(&o).expect("parse");
        assert_eq!(
            l,
            LogLimits {
                segment_max_bytes: 12_345,
                index_max_bytes: 77 * 8,
                message_max_bytes: 999
            }
        );
        let rebuilt = l.options_for(Path::new("/a/b, log_max_bytes: 7, x"));
        assert_eq!(format!("{rebuilt:?}"), format!("{o:?}"));
        let d = LogLimits::of(&LogOptions::new("x")).expect("parse defaults");
        assert_eq!(d.segment_max_bytes, 1_000_000_000);
        assert_eq!(d.message_max_bytes, 1_000_000);
    }

    #[test]
    fn sled_config_keeps_user_options_and_takes_our_path() {
        let user = sled::Config::new()
            .cache_capacity(12_345)
            .path("/elsewhere");
        let keep = user.clone(); // shared: `path` on it directly would panic
        let ours = sled_config_for(&user, Path::new("/ours"));
        assert_eq!(ours.cache_capacity, 12_345);
        assert_eq!(ours.path, Path::new("/ours"));
        assert_eq!(keep.path, Path::new("/elsewhere"));
    }
}

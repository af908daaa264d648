//! omnipaxos 0.2.4's `slog` logging on top of the library's `tracing` events (feature
//! `logging`).
//!
//! The library reports what it does (elections, leader changes, compaction, reconfiguration)
//! as [`tracing`] events. In 0.2.4 a node wrote them to an `slog` logger: the
//! `ServerConfig::custom_logger`, else a logger on `logger_file_path`, else one on
//! `logs/paxos_<pid>.log`. Here:
//!
//! * [`SlogSubscriber`] is a `tracing` subscriber that hands every event the logger is enabled
//!   for to an `slog::Logger`: the event's level, its message, and its fields as key-values
//!   (span fields are not forwarded).
//! * [`dispatch_for`] gives the dispatcher a node built from a `ServerConfig` reports to: one on
//!   its `custom_logger`, else one on [`create_logger`]`(logger_file_path)`, else `None` (the
//!   events go to your own `tracing` subscriber, if any; no file is written by default).
//! * [`create_logger`] is 0.2.4's helper: a logger writing each record to standard error and to
//!   a file.
//!
//! A node built from a `ServerConfig` with a logger runs every call into it (`tick`,
//! `handle_incoming`, `append`, ...) under that dispatcher, so its events reach its logger and
//! no other subscriber. To send events of your own code to the same logger, run it under the
//! dispatcher too:
//!
//! ```
//! use omnipaxos::utils::logger::SlogSubscriber;
//! use slog::Drain;
//! # struct Counter(std::sync::Arc<std::sync::atomic::AtomicUsize>);
//! # impl Drain for Counter {
//! #     type Ok = ();
//! #     type Err = slog::Never;
//! #     fn log(&self, _: &slog::Record<'_>, _: &slog::OwnedKVList) -> Result<(), slog::Never> {
//! #         self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
//! #         Ok(())
//! #     }
//! # }
//! # let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
//! # let logger = slog::Logger::root(Counter(seen.clone()), slog::o!());
//! let dispatch = tracing::Dispatch::new(SlogSubscriber::new(logger));
//! tracing::dispatcher::with_default(&dispatch, || {
//!     // node.tick(), node.handle_incoming(m), ...: their events reach `logger`.
//!     tracing::info!(pid = 2, "an event");
//! });
//! # assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 1);
//! ```

use crate::ServerConfig;
use slog::{Drain, Level, Logger, OwnedKVList, Record, Serializer, KV};
use std::{
    fmt::{self, Write as _},
    fs::{File, OpenOptions},
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
    time::{SystemTime, UNIX_EPOCH},
};
use tracing::{
    field::{Field, Visit},
    span, Dispatch, Event, Metadata, Subscriber,
};

/// The dispatcher the events of a node built from `config` go to, as 0.2.4 chose its logger:
/// `custom_logger` if set, else a logger on `logger_file_path` ([`create_logger`]) if set, else
/// `None`: the events go to the `tracing` subscriber in scope (yours, if you installed one).
pub fn dispatch_for(config: &ServerConfig) -> Option<Dispatch> {
    let logger = match (&config.custom_logger, &config.logger_file_path) {
        (Some(logger), _) => logger.clone(),
        (None, Some(path)) => create_logger(path),
        (None, None) => return None,
    };
    Some(Dispatch::new(SlogSubscriber::new(logger)))
}

/// A `tracing` subscriber that hands each event to an `slog::Logger`.
///
/// Levels map one to one (`ERROR` to `Error`, `WARN` to `Warning`, and so on); the record's
/// message is the event's message, its tag the event's target, its location the event's file
/// and line, and the event's other fields are the record's key-values. Spans are accepted and
/// ignored.
///
/// An event is built only if the logger is enabled for its level (`Drain::is_enabled`): by
/// slog's compile-time maximum level (by default `Debug` in debug builds, `Info` in release
/// builds, as in 0.2.4), or the level your drain filters at. So the library's per-message
/// `TRACE` events cost nothing with a 0.2.4-style logger.
pub struct SlogSubscriber {
    logger: Logger,
    next_span: AtomicU64,
}

impl SlogSubscriber {
    /// A subscriber that logs to `logger`.
    pub fn new(logger: Logger) -> Self {
        SlogSubscriber {
            logger,
            next_span: AtomicU64::new(1),
        }
    }
}

impl fmt::Debug for SlogSubscriber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlogSubscriber").finish_non_exhaustive()
    }
}

fn slog_level(level: &tracing::Level) -> Level {
    match *level {
        tracing::Level::ERROR => Level::Error,
        tracing::Level::WARN => Level::Warning,
        tracing::Level::INFO => Level::Info,
        tracing::Level::DEBUG => Level::Debug,
        tracing::Level::TRACE => Level::Trace,
    }
}

/// A field value, kept with its type so that `slog` serializers see numbers as numbers.
enum Value {
    U64(u64),
    I64(i64),
    Bool(bool),
    Str(String),
}

/// An event's message and fields.
#[derive(Default)]
struct Fields {
    message: String,
    pairs: Vec<(&'static str, Value)>,
}

impl Visit for Fields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.pairs.push((field.name(), Value::U64(value)));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.pairs.push((field.name(), Value::I64(value)));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.pairs.push((field.name(), Value::Bool(value)));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.pairs
                .push((field.name(), Value::Str(value.to_string())));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            // `info!("x = {}", x)` records its formatted message as `Debug` of the arguments,
            // which prints them as formatted.
            let _ = write!(self.message, "{value:?}");
        } else {
            self.pairs
                .push((field.name(), Value::Str(format!("{value:?}"))));
        }
    }
}

impl KV for Fields {
    // `Key` is `&'static str`, or a wrapper made `From` it when some crate in the build turns on
    // slog's `dynamic-keys`: `.into()` serves both.
    #[allow(clippy::useless_conversion)]
    fn serialize(&self, _record: &Record<'_>, ser: &mut dyn Serializer) -> slog::Result {
        for (key, value) in &self.pairs {
            match value {
                Value::U64(v) => ser.emit_u64((*key).into(), *v)?,
                Value::I64(v) => ser.emit_i64((*key).into(), *v)?,
                Value::Bool(v) => ser.emit_bool((*key).into(), *v)?,
                Value::Str(v) => ser.emit_str((*key).into(), v)?,
            }
        }
        Ok(())
    }
}

impl Subscriber for SlogSubscriber {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.logger.is_enabled(slog_level(metadata.level()))
    }

    fn new_span(&self, _span: &span::Attributes<'_>) -> span::Id {
        // Spans are not forwarded; an id still has to be unique and not 0.
        span::Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed))
    }

    fn record(&self, _span: &span::Id, _values: &span::Record<'_>) {}

    fn record_follows_from(&self, _span: &span::Id, _follows: &span::Id) {}

    fn event(&self, event: &Event<'_>) {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let location = slog::RecordLocation {
            file: meta.file().unwrap_or(""),
            line: meta.line().unwrap_or(0),
            column: 0,
            function: "",
            module: meta.module_path().unwrap_or(meta.target()),
        };
        let rstatic = slog::RecordStatic {
            location: &location,
            tag: meta.target(),
            level: slog_level(meta.level()),
        };
        let message = format_args!("{}", fields.message);
        self.logger
            .log(&Record::new(&rstatic, &message, slog::BorrowedKV(&fields)));
    }

    fn enter(&self, _span: &span::Id) {}

    fn exit(&self, _span: &span::Id) {}
}

/// A logger that writes each record as one line to standard error and to `file_path`, as
/// omnipaxos 0.2.4's `create_logger` did (synchronously here; 0.2.4 used a background thread).
///
/// The file's parent directories are created and the file is truncated. If that fails, the
/// logger writes to standard error only, and its first record is an error that says why (0.2.4
/// panicked).
///
/// A line reads `2024-05-01 12:00:00.123 UTC INFO message, key: value, ...`.
pub fn create_logger(file_path: &str) -> Logger {
    logger_on(file_path, std::io::stderr())
}

/// [`create_logger`] with another console than standard error.
fn logger_on<W: std::io::Write + Send + 'static>(file_path: &str, console: W) -> Logger {
    let (file, failure) = match open_log_file(file_path) {
        Ok(file) => (Some(file), None),
        Err(e) => (None, Some(e)),
    };
    let logger = Logger::root(
        LineDrain {
            console: Mutex::new(console),
            file: file.map(Mutex::new),
        },
        slog::o!(),
    );
    if let Some(e) = failure {
        slog::error!(logger, "cannot open the log file, logging to standard error only";
            "path" => file_path, "error" => %e);
    }
    logger
}

fn open_log_file(file_path: &str) -> std::io::Result<File> {
    if let Some(dir) = std::path::Path::new(file_path).parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)?;
        }
    }
    OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(file_path)
}

/// Writes each record as one line to a console (standard error) and, if it has one, to a file.
struct LineDrain<W> {
    console: Mutex<W>,
    file: Option<Mutex<File>>,
}

fn write_line<W: std::io::Write>(to: &Mutex<W>, line: &str) {
    let mut to = to.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    // A log line that cannot be written is dropped: logging must not stop the node.
    let _ = to.write_all(line.as_bytes());
}

impl<W: std::io::Write> Drain for LineDrain<W> {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), slog::Never> {
        let line = format_line(SystemTime::now(), record, values);
        write_line(&self.console, &line);
        if let Some(file) = &self.file {
            write_line(file, &line);
        }
        Ok(())
    }
}

/// Writes key-values as `, key: value`.
struct LineSerializer<'a>(&'a mut String);

impl Serializer for LineSerializer<'_> {
    fn emit_arguments(&mut self, key: slog::Key, val: &fmt::Arguments<'_>) -> slog::Result {
        let _ = write!(self.0, ", {key}: {val}");
        Ok(())
    }
}

fn format_line(now: SystemTime, record: &Record<'_>, values: &OwnedKVList) -> String {
    let mut line = format!(
        "{} {} {}",
        utc_timestamp(now),
        record.level().as_short_str(),
        record.msg()
    );
    let _ = record
        .kv()
        .serialize(record, &mut LineSerializer(&mut line));
    let _ = values.serialize(record, &mut LineSerializer(&mut line));
    line.push('\n');
    line
}

/// `YYYY-MM-DD HH:MM:SS.mmm UTC` (a time before 1970 prints as 1970-01-01).
fn utc_timestamp(now: SystemTime) -> String {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// The proleptic Gregorian date `days` days after 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{
        sync::{Arc, Mutex as StdMutex},
        time::Duration,
    };

    /// Records every record it gets as `(level, message, key-values)`.
    #[derive(Clone, Default)]
    struct Capture(Arc<StdMutex<Vec<(Level, String, String)>>>);

    impl Drain for Capture {
        type Ok = ();
        type Err = slog::Never;
        // Every level, whatever slog's compile-time maximum.
        fn is_enabled(&self, _level: Level) -> bool {
            true
        }
        fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), slog::Never> {
            let mut kv = String::new();
            let _ = record.kv().serialize(record, &mut LineSerializer(&mut kv));
            let _ = values.serialize(record, &mut LineSerializer(&mut kv));
            self.0
                .lock()
                .unwrap()
                .push((record.level(), record.msg().to_string(), kv));
            Ok(())
        }
    }

    fn capture() -> (Capture, Logger) {
        let c = Capture::default();
        let logger = Logger::root(c.clone(), slog::o!("node" => 7));
        (c, logger)
    }

    #[test]
    fn events_reach_the_logger_with_level_message_and_fields() {
        let (seen, logger) = capture();
        let dispatch = Dispatch::new(SlogSubscriber::new(logger));
        tracing::dispatcher::with_default(&dispatch, || {
            tracing::warn!(pid = 2u64, happy = false, "lost the leader");
            tracing::info!(ballot = ?(3, 1), "elected {}", 2);
            tracing::error!(delta = -4i64, who = "x", "plain");
            tracing::debug!("debug");
            tracing::trace!("trace");
        });
        let seen = seen.0.lock().unwrap().clone();
        assert_eq!(
            seen,
            vec![
                (
                    Level::Warning,
                    "lost the leader".to_string(),
                    ", pid: 2, happy: false, node: 7".to_string()
                ),
                (
                    Level::Info,
                    "elected 2".to_string(),
                    ", ballot: (3, 1), node: 7".to_string()
                ),
                (
                    Level::Error,
                    "plain".to_string(),
                    ", delta: -4, who: x, node: 7".to_string()
                ),
                (Level::Debug, "debug".to_string(), ", node: 7".to_string()),
                (Level::Trace, "trace".to_string(), ", node: 7".to_string()),
            ]
        );
    }

    /// A drain enabled from `min` up (as `slog::LevelFilter` is).
    struct AtLeast(Capture, Level);

    impl Drain for AtLeast {
        type Ok = ();
        type Err = slog::Never;
        fn is_enabled(&self, level: Level) -> bool {
            level.is_at_least(self.1)
        }
        fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), slog::Never> {
            assert!(
                self.is_enabled(record.level()),
                "{:?} was built",
                record.level()
            );
            self.0.log(record, values)
        }
    }

    #[test]
    fn events_below_the_loggers_level_are_not_built() {
        let seen = Capture::default();
        let logger = Logger::root(AtLeast(seen.clone(), Level::Info), slog::o!());
        let dispatch = Dispatch::new(SlogSubscriber::new(logger));
        tracing::dispatcher::with_default(&dispatch, || {
            tracing::trace!("trace");
            tracing::debug!("debug");
            tracing::info!("info");
            tracing::warn!("warn");
        });
        let levels: Vec<(Level, String)> = seen
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|(l, m, _)| (*l, m.clone()))
            .collect();
        assert_eq!(
            levels,
            vec![
                (Level::Info, "info".to_string()),
                (Level::Warning, "warn".to_string())
            ]
        );
    }

    #[test]
    fn events_outside_the_dispatcher_do_not_reach_the_logger() {
        let (seen, logger) = capture();
        let dispatch = Dispatch::new(SlogSubscriber::new(logger));
        tracing::info!("before");
        tracing::dispatcher::with_default(&dispatch, || {
            let span = tracing::info_span!("node", pid = 1);
            let _entered = span.enter();
            tracing::info!("inside a span");
        });
        tracing::info!("after");
        let seen = seen.0.lock().unwrap().clone();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].1, "inside a span");
    }

    #[test]
    fn dispatch_for_prefers_the_custom_logger_and_else_needs_a_path() {
        let mut config = ServerConfig::default();
        assert!(dispatch_for(&config).is_none());
        let (seen, logger) = capture();
        config.custom_logger = Some(logger);
        config.logger_file_path = Some("/this/path/is/not/used".to_string());
        let dispatch = dispatch_for(&config).expect("a logger is set");
        tracing::dispatcher::with_default(&dispatch, || tracing::info!("to the custom logger"));
        assert_eq!(seen.0.lock().unwrap().len(), 1);
    }

    #[test]
    fn create_logger_writes_lines_to_the_file_creating_its_directory() {
        let dir = std::env::temp_dir().join(format!(
            "omnipaxos-logger-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let path = dir.join("nested").join("paxos_1.log");
        let _ = std::fs::remove_dir_all(&dir);
        let config = ServerConfig {
            logger_file_path: Some(path.to_str().unwrap().to_string()),
            ..Default::default()
        };
        let dispatch = dispatch_for(&config).expect("a path is set");
        tracing::dispatcher::with_default(&dispatch, || {
            tracing::info!(pid = 1u64, "hello from the node");
        });
        let text = std::fs::read_to_string(&path).expect("the file was created");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            text.ends_with(" UTC INFO hello from the node, pid: 1\n"),
            "{text}"
        );
    }

    /// A console that keeps what is written to it.
    #[derive(Clone, Default)]
    struct Console(Arc<StdMutex<Vec<u8>>>);

    impl std::io::Write for Console {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_log_file_that_cannot_be_opened_is_reported_not_a_panic() {
        // A path below a regular file cannot be created.
        let file =
            std::env::temp_dir().join(format!("omnipaxos-logger-file-{}", std::process::id()));
        std::fs::write(&file, b"").unwrap();
        let path = file.join("paxos.log");
        let console = Console::default();
        let logger = logger_on(path.to_str().unwrap(), console.clone());
        slog::info!(logger, "still logging");
        let _ = std::fs::remove_file(&file);
        assert!(!path.exists());
        let text = String::from_utf8(console.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].contains(" ERRO cannot open the log file, logging to standard error only, ")
                && lines[0].contains(&format!("path: {}", path.display())),
            "{text}"
        );
        assert!(lines[1].ends_with(" UTC INFO still logging"), "{text}");
    }

    #[test]
    fn lines_have_a_utc_timestamp_level_message_and_key_values() {
        let t = UNIX_EPOCH + Duration::from_millis(1_714_564_800_123); // 2024-05-01 12:00:00.123
        let location = slog::RecordLocation {
            file: "f.rs",
            line: 1,
            column: 0,
            function: "",
            module: "m",
        };
        let rstatic = slog::RecordStatic {
            location: &location,
            tag: "t",
            level: Level::Warning,
        };
        let msg = format_args!("leader {} lost", 3);
        let kv = Fields {
            message: String::new(),
            pairs: vec![("round", Value::U64(9))],
        };
        let record = Record::new(&rstatic, &msg, slog::BorrowedKV(&kv));
        let values = OwnedKVList::from(slog::o!("pid" => 2));
        assert_eq!(
            format_line(t, &record, &values),
            "2024-05-01 12:00:00.123 UTC WARN leader 3 lost, round: 9, pid: 2\n"
        );
    }

    #[test]
    fn dates_are_right_across_leap_years_and_centuries() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(59), (1970, 3, 1));
        assert_eq!(civil_from_days(10_957), (2000, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(19_844), (2024, 5, 1));
        assert_eq!(civil_from_days(47_541), (2100, 3, 1));
    }
}

//! Logging through `tracing`: one line per event on stderr, filtered by `RUST_LOG`.
//!
//! `RUST_LOG` takes `tracing_subscriber::EnvFilter` directives (`info`,
//! `omnipaxos_kv=debug,sled=warn`, ...). Messages of the `log` crate (sled and commitlog use it)
//! go through the same filter. A server's events carry its id in a `server{id=..}` span, so the
//! logs of a local cluster can be merged and still be told apart.

use tracing_subscriber::EnvFilter;

/// The default filter of the server: `info`, with commitlog's per-file messages and a spurious
/// sled warning about its configuration muted.
pub const SERVER_DEFAULT_FILTER: &str = "info,commitlog=warn,sled::config=off";

/// The default filter of the tools (client, `local_cluster`, `bench`): errors only.
pub const TOOL_DEFAULT_FILTER: &str = "error";

/// Installs the stderr subscriber, with the filter from `RUST_LOG` or else `default_filter`.
/// A bad `RUST_LOG` is reported on stderr and the default used. Calling it again (or after
/// another subscriber was installed) does nothing.
pub fn init_logging(default_filter: &str) {
    let filter = match std::env::var("RUST_LOG") {
        Ok(s) if !s.trim().is_empty() => EnvFilter::try_new(&s).unwrap_or_else(|e| {
            eprintln!("RUST_LOG={s:?} is not a valid filter ({e}); using {default_filter:?}");
            EnvFilter::new(default_filter)
        }),
        _ => EnvFilter::new(default_filter),
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(true)
        .try_init();
}

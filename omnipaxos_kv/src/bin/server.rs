//! The omnipaxos-kv server. Reads `CLUSTER_CONFIG_FILE` and `SERVER_CONFIG_FILE` (TOML; every
//! key can be overridden by `OMNIPAXOS_<KEY>`); logs go to stderr, filtered by `RUST_LOG`
//! (default `info`, with commitlog's per-file messages and a spurious sled warning muted).

use omnipaxos_kv::{config::ServerSettings, server::run_server};

fn main() {
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("info,commitlog=warn,sled::config=off"),
    )
    .init();
    let settings = match ServerSettings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("server: {e}");
            std::process::exit(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("server: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run_server(settings)) {
        eprintln!("server: {e}");
        std::process::exit(1);
    }
}

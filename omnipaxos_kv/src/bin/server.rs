//! The omnipaxos-kv server. Reads `CLUSTER_CONFIG_FILE` and `SERVER_CONFIG_FILE` (TOML; every
//! key can be overridden by `OMNIPAXOS_<KEY>`); logs go to stderr, filtered by `RUST_LOG`
//! (default `info`, with commitlog's per-file messages and a spurious sled warning muted).

fn main() {
    std::process::exit(omnipaxos_kv::server::serve_from_env());
}

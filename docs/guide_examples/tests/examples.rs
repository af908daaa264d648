//! Runs the guide's examples (`cargo test` only builds examples; this runs them).

#[path = "../examples/first_cluster.rs"]
mod first_cluster;

#[path = "../examples/channels.rs"]
mod channels;

#[test]
fn first_cluster_runs() {
    first_cluster::main();
}

#[test]
fn channels_runs() {
    channels::main();
}

//! `jobfleet-worker`: the worker with the built-in tasks.

fn main() {
    jobfleet_worker::cli::main(jobfleet_worker::Registry::with_builtins())
}

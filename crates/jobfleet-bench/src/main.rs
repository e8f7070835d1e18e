//! `jobfleet-bench`: the probes behind `scripts/bench.sh`.
//!
//! # Layout
//!
//! - `latency`: submit one job, wait for its completion event, repeat
//!   (one events subscription, opened first); prints percentiles.
//! - `memory`: fills a backlog of no-op jobs and prints Redis' `used_memory`
//!   growth per job.
//! - `ready`: waits until N worker processes have registered.
//! - `run`: optionally spawns a command (the `jobfleet submit` CLI), polls
//!   the queue's completed counter until it has grown by `--expect`, and
//!   prints the timings and the CPU each named process spent meanwhile.
//!
//! Every subcommand prints one JSON object on stdout (for the script to
//! read) and a human line on stderr. Only jobfleet-core's typed client is
//! used: no key names or Lua here.

mod cpu;
mod latency;
mod memory;
mod run;

use clap::{Parser, Subcommand};

/// Benchmark probes for jobfleet (see scripts/bench.sh).
#[derive(Debug, Parser)]
#[command(about, long_about = None)]
struct Args {
    /// Redis URL.
    #[arg(
        long,
        env = "JOBFLEET_REDIS",
        default_value = "redis://127.0.0.1:6379",
        global = true
    )]
    redis: String,
    /// Queue.
    #[arg(long, short = 'q', default_value = "default", global = true)]
    queue: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Submit -> completion event latency, one job at a time (workers must run).
    Latency(latency::Args),
    /// Redis used_memory growth per pending no-op job (no workers running).
    Memory(memory::Args),
    /// Runs a command (`-- jobfleet submit ...`) and times it until --expect completions.
    Run(run::Args),
    /// Waits until this many workers have registered (every known queue).
    Ready {
        /// Workers to wait for.
        #[arg(long)]
        workers: usize,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = jobfleet_core::Client::connect(&args.redis).await?;
        let queue = client.queue(&args.queue)?;
        let report = match args.command {
            Command::Latency(a) => latency::run(&client, &queue, a).await?,
            Command::Memory(a) => memory::run(&client, &queue, a).await?,
            Command::Run(a) => run::run(&queue, a).await?,
            Command::Ready { workers, timeout } => ready(&client, workers, timeout).await?,
        };
        println!("{report}");
        Ok(())
    })
}

async fn ready(client: &jobfleet_core::Client, n: usize, timeout: u64) -> anyhow::Result<serde_json::Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(timeout);
    loop {
        let live = client.workers().await?.len();
        if live >= n {
            return Ok(serde_json::json!({ "workers": live }));
        }
        if std::time::Instant::now() > deadline {
            anyhow::bail!("only {live} of {n} workers registered within {timeout}s: see their logs");
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

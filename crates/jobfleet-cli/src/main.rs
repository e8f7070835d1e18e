//! `jobfleet`: the producer and admin command line. `main` parses flags and
//! dispatches; each command lives in its own module under `cmd/`.
//!
//! Exit codes (scripts rely on them): 0 success; 1 a job failed, died or was
//! cancelled; 2 `wait` timed out, or the command line was wrong; 3 anything
//! else went wrong (bad input, unknown job, Redis unreachable); 130 Ctrl-C
//! while waiting (the jobs keep running).
//!
//! Everything on stdout goes through `output::out!`/`outln!`, which return an
//! error instead of panicking: a closed stdout (`jobfleet events | head -1`)
//! ends the command quietly with 0, as in ripgrep.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

mod cmd;
mod connect;
mod output;

/// Submit and inspect background jobs on a jobfleet Redis.
///
/// Workers (`jobfleet-worker`) on any number of machines pull jobs from the
/// same Redis; this command submits work, waits for results, and shows what
/// the fleet is doing.
#[derive(Debug, Parser)]
#[command(
    name = "jobfleet",
    version,
    about,
    long_about,
    propagate_version = true,
    max_term_width = 100,
    after_help = "Exit codes: 0 success; 1 a job failed, died or was cancelled; 2 `wait` timed out or the \
                  command line was wrong; 3 any other error (bad input, unknown job, Redis unreachable); \
                  130 Ctrl-C while waiting (the jobs keep running)."
)]
struct Cli {
    /// Redis URL: redis://[user:password@]host:port[/db], rediss:// for TLS, or
    /// redis+sentinel://[user:password@]host:port[,host:port...]/MASTER_NAME for a
    /// primary that Sentinel names (followed through failovers).
    #[arg(
        long,
        global = true,
        env = "JOBFLEET_REDIS",
        default_value = "redis://127.0.0.1:6379"
    )]
    redis: String,
    /// Durable submits: return a job id only once this many replicas have the
    /// job (Redis WAIT); if they do not within --replica-timeout, say so and
    /// exit 3 (submitting again with the same --key is safe). 0: don't ask.
    #[arg(long, global = true, env = "JOBFLEET_REPLICAS", default_value_t = 0)]
    replicas: u32,
    /// How long a durable submit waits for its replicas.
    #[arg(
        long,
        global = true,
        env = "JOBFLEET_REPLICA_TIMEOUT",
        default_value = "2s",
        value_parser = humantime::parse_duration
    )]
    replica_timeout: Duration,
    /// Key prefix, to keep several fleets apart on one Redis.
    #[arg(long, global = true, env = "JOBFLEET_PREFIX", default_value = "jobfleet")]
    prefix: String,
    /// What to log on stderr beside the command's own output: error, warn, info,
    /// debug or trace, or a filter such as `warn,jobfleet_core=debug`.
    #[arg(
        long,
        global = true,
        env = "JOBFLEET_LOG_LEVEL",
        default_value = "warn",
        value_name = "LEVEL"
    )]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Submit one job, or one per line of stdin; print each job id.
    Submit(cmd::submit::Args),
    /// Submit a batch: one job per line of stdin, and a callback job once they all ended.
    Batch(cmd::batch::Args),
    /// Thumbnail image files and folders: one job per image, every size in it.
    Thumbnail(cmd::thumbnail::Args),
    /// Wait for jobs to finish: exit 0 if all completed, 1 if any failed, 2 on timeout.
    Wait(cmd::inspect::WaitArgs),
    /// Show a job: state, attempts, timings, worker, result or error.
    Status(cmd::inspect::StatusArgs),
    /// Cancel jobs by id, or by filter (--queue with --task or --all): waiting ones at once,
    /// running ones through their worker.
    Cancel(cmd::inspect::CancelArgs),
    /// Browse a queue's jobs by state: pending, scheduled, active or dead.
    Jobs(cmd::jobs::Args),
    /// Print live events (completed, failed, dead, cancelled, recovered) until Ctrl-C.
    Events(cmd::events::Args),
    /// Show queue sizes and counters, and live workers.
    Stats(cmd::stats::StatsArgs),
    /// Show live workers.
    Workers(cmd::stats::WorkersArgs),
    /// List, retry or purge dead jobs.
    Dead(cmd::dead::Args),
    /// Manage whole queues.
    Queue(cmd::queue::Args),
    /// Jobs the fleet submits on a cron expression or at an interval.
    Schedule(cmd::schedule::Args),
    /// The wire protocol, for producers in other languages.
    Protocol(cmd::protocol::Args),
    /// Serve the live web dashboard.
    Dashboard(cmd::dashboard::Args),
    /// Print shell completions: `jobfleet completions bash > /etc/bash_completion.d/jobfleet`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): `jobfleet man | man -l -`.
    Man,
}

/// How a command that ran to the end went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything succeeded.
    Success,
    /// Some job failed, died or was cancelled.
    JobsFailed,
    /// `wait` ran out of time.
    TimedOut,
    /// Ctrl-C while waiting (the jobs keep running).
    Interrupted,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = init_logging(&cli.log_level) {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("start the tokio runtime");
    let result = runtime.block_on(run(cli));
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::JobsFailed) => ExitCode::from(1),
        Ok(Outcome::TimedOut) => ExitCode::from(2),
        Ok(Outcome::Interrupted) => ExitCode::from(130),
        Err(e) if stdout_closed(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if let Some(jobfleet_core::Error::NotReplicated { ids, .. }) = e.downcast_ref() {
                eprintln!(
                    "{} jobs are on the primary but unconfirmed (not printed as submitted): {}{}",
                    ids.len(),
                    ids.iter().take(10).cloned().collect::<Vec<_>>().join(" "),
                    if ids.len() > 10 { " ..." } else { "" }
                );
                eprintln!(
                    "with --key, run the same command again: keyed jobs are created once; without one, a resubmit may run them twice"
                );
            }
            ExitCode::from(3)
        }
    }
}

/// Logs (warnings from the client library, such as writes replicas did not
/// confirm) go to stderr, coloured only on a terminal.
fn init_logging(level: &str) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_new(level).map_err(|_| {
        anyhow::anyhow!("--log-level {level:?} is not a level (error, warn, info, debug, trace) or a filter")
    })?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    Ok(())
}

/// Whether the command failed because its reader closed stdout (`head` has
/// what it wanted): not a failure.
fn stdout_closed(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<output::StdoutError>()
            .is_some_and(|s| s.is_closed())
    })
}

async fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let target = connect::Target {
        url: cli.redis,
        prefix: cli.prefix,
        replicas: cli.replicas,
        replica_timeout: cli.replica_timeout,
    };
    match cli.command {
        Command::Submit(args) => cmd::submit::run(&target, args).await,
        Command::Thumbnail(args) => cmd::thumbnail::run(&target, args).await,
        Command::Batch(args) => cmd::batch::run(&target, args).await,
        Command::Wait(args) => cmd::inspect::wait(&target, args).await,
        Command::Status(args) => cmd::inspect::status(&target, args).await,
        Command::Cancel(args) => cmd::inspect::cancel(&target, args).await,
        Command::Events(args) => cmd::events::run(&target, args).await,
        Command::Jobs(args) => cmd::jobs::run(&target, args).await,
        Command::Stats(args) => cmd::stats::stats(&target, args).await,
        Command::Workers(args) => cmd::stats::workers(&target, args).await,
        Command::Dead(args) => cmd::dead::run(&target, args).await,
        Command::Queue(args) => cmd::queue::run(&target, args).await,
        Command::Schedule(args) => cmd::schedule::run(&target, args).await,
        Command::Protocol(args) => cmd::protocol::run(args),
        Command::Dashboard(args) => cmd::dashboard::run(&target, args).await,
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "jobfleet",
                &mut out,
            );
            output::out!("{}", String::from_utf8_lossy(&out))?;
            Ok(Outcome::Success)
        }
        Command::Man => {
            let mut out = Vec::new();
            clap_mangen::Man::new(<Cli as clap::CommandFactory>::command()).render(&mut out)?;
            output::out!("{}", String::from_utf8_lossy(&out))?;
            Ok(Outcome::Success)
        }
    }
}

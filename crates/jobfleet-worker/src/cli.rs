//! The `jobfleet-worker` command line, reusable: a binary with tasks of its
//! own calls [`main`] with its registry and gets the same flags, logging and
//! signal handling as `jobfleet-worker`.
//!
//! Settings come from, strongest first: the command line, the environment
//! (`JOBFLEET_*`), the `--config` file (TOML, one key per long flag name),
//! the defaults.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{Config, Registry};
use anyhow::{Context, bail};
use clap::parser::ValueSource;
use clap::{CommandFactory, Parser, ValueEnum};
use jobfleet_core::Policy;

/// Runs jobs from jobfleet queues in Redis. Run as many as you like, on as
/// many machines as you like: they share the work through Redis.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Args {
    /// A TOML file of settings, one key per long flag name (`redis = "redis://..."`,
    /// `queue = ["high", "low"]`, `concurrency = 8`, `dead-after = "10s"`); flags and
    /// JOBFLEET_* variables override it.
    #[arg(long, env = "JOBFLEET_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Redis URL: redis://[user:password@]host:port[/db], rediss:// for TLS, or
    /// redis+sentinel://[user:password@]host:port[,host:port...]/MASTER_NAME for a
    /// primary that Sentinel names (followed through failovers).
    #[arg(long, env = "JOBFLEET_REDIS", default_value = "redis://127.0.0.1:6379")]
    redis: String,
    /// Replicas that must confirm each ack and fail (Redis WAIT); one they do
    /// not confirm in time is logged and counted, not undone (a failover would
    /// only run that job again). 0: don't ask.
    #[arg(long, env = "JOBFLEET_REPLICAS", default_value_t = 0)]
    replicas: u32,
    /// How long to wait for those replicas.
    #[arg(long, env = "JOBFLEET_REPLICA_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    replica_timeout: Duration,
    /// Key prefix, to keep several fleets apart on one Redis.
    #[arg(long, env = "JOBFLEET_PREFIX", default_value = "jobfleet")]
    prefix: String,
    /// Queue to serve; repeat for several, highest priority first. NAME:WEIGHT on each
    /// (`--queue high:3 --queue low:1`) weighs them instead: each claim tries a queue of
    /// weight 3 first three times as often as one of weight 1, so no queue starves.
    #[arg(long = "queue", short = 'q', default_value = "default")]
    queues: Vec<String>,
    /// Jobs run at once (default: number of CPUs).
    #[arg(long, short = 'c')]
    concurrency: Option<usize>,
    /// A folder file-reading tasks (thumbnail) may read and write; repeatable.
    #[arg(long = "allow-dir")]
    allow_dirs: Vec<PathBuf>,
    /// Thumbnail: largest image canvas accepted, in megapixels (read from the header, before decoding).
    #[arg(long, default_value_t = 100)]
    max_megapixels: u64,
    /// Thumbnail: largest decoded image memory accepted, in MiB.
    #[arg(long, default_value_t = 256)]
    max_image_mib: u64,
    /// Thumbnail: largest input file accepted, in MiB.
    #[arg(long, default_value_t = 200)]
    max_input_mib: u64,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9100).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
    /// Log format. Text has colours only on a terminal (and never with NO_COLOR set).
    #[arg(long, env = "JOBFLEET_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// What to log: error, warn, info, debug or trace, or a filter such as
    /// `info,jobfleet_worker=debug` (default: RUST_LOG, else info).
    #[arg(long, env = "JOBFLEET_LOG_LEVEL", value_name = "LEVEL")]
    log_level: Option<String>,
    /// How long running jobs may finish after SIGTERM/SIGINT before they are handed back.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    grace: Duration,
    /// How often the worker tells the fleet it is alive.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    heartbeat: Duration,
    /// A worker silent this long is declared dead and its jobs are run elsewhere.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    dead_after: Duration,
    /// Fallback poll for work when a notification is missed.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    poll: Duration,
    /// How long completed and cancelled job records are kept (0s: not kept).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    keep_completed: Duration,
    /// How long dead jobs are kept.
    #[arg(long, default_value = "7days", value_parser = humantime::parse_duration)]
    keep_dead: Duration,
    /// The most dead jobs kept per queue (oldest dropped first).
    #[arg(long, default_value_t = 100_000)]
    dead_max: u64,
    /// Retry backoff base: base * 2^(attempt-1), plus up to 25% jitter.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    backoff: Duration,
    /// A job whose worker died this many times while running it is buried.
    #[arg(long, default_value_t = 3)]
    poison_cap: u32,
    /// How often to hand back jobs our processing lists hold that no task
    /// runs (an outcome Redis rolled back in a failover); also after any outage.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    reconcile: Duration,
    /// The largest payload run, in bytes; a job with a larger one is buried
    /// whoever submitted it.
    #[arg(long, default_value_t = jobfleet_core::DEFAULT_MAX_PAYLOAD_BYTES)]
    max_payload_bytes: usize,
    /// The largest result written back, in bytes; a larger one fails the job.
    #[arg(long, default_value_t = jobfleet_core::DEFAULT_MAX_RESULT_BYTES)]
    max_result_bytes: usize,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Parses the command line, sets up logging, and runs a worker with
/// `registry` until SIGINT or SIGTERM (a second signal exits at once).
/// Exits the process: 0 after a clean shutdown, 1 when the worker could not
/// start (a clear one-line error on stderr).
pub fn main(registry: Registry) -> ! {
    let args = with_config(std::env::args_os().collect())
        .map(Args::parse_from)
        .and_then(|args| init_logging(args.log_format, args.log_level.as_deref()).map(|()| args));
    let args = match args {
        Ok(args) => args,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("start the tokio runtime");
    let result = runtime.block_on(serve(args, registry));
    #[cfg(feature = "otel")]
    crate::otel::shutdown();
    // Blocking task threads that overran their timeout cannot be joined;
    // exit without waiting for them.
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}

async fn serve(args: Args, registry: Registry) -> anyhow::Result<()> {
    let redis = args.redis.clone();
    if let Some(addr) = args.metrics {
        crate::metrics::install(addr).map_err(anyhow::Error::msg)?;
        tracing::info!("serving metrics at http://{addr}/metrics");
    }
    let defaults = Config::new(args.redis);
    let (queues, weights) = weighted(&args.queues)?;
    let config = Config {
        prefix: args.prefix,
        queues,
        weights,
        concurrency: args.concurrency.unwrap_or(defaults.concurrency),
        heartbeat: args.heartbeat,
        dead_after: args.dead_after,
        grace: args.grace,
        poll_interval: args.poll,
        reconcile_interval: args.reconcile,
        allow_dirs: args.allow_dirs,
        thumbnail_limits: jobfleet_thumbnail::Limits {
            max_pixels: args.max_megapixels * 1_000_000,
            max_alloc_bytes: args.max_image_mib * 1024 * 1024,
            max_input_bytes: args.max_input_mib * 1024 * 1024,
        },
        policy: Policy {
            completed_retention: args.keep_completed,
            dead_retention: args.keep_dead,
            dead_max_count: args.dead_max,
            backoff_base: args.backoff,
            poison_cap: args.poison_cap.max(1),
            max_payload_bytes: args.max_payload_bytes,
            max_result_bytes: args.max_result_bytes,
            ..Policy::default()
        },
        replicas: args.replicas,
        replica_timeout: args.replica_timeout,
        ..defaults
    };
    crate::run(config, registry, shutdown_signal())
        .await
        .map_err(|e| match e {
            crate::WorkerError::Redis(e) => {
                let what = match e.connect_trouble() {
                    jobfleet_core::ConnectTrouble::BadUrl => "the Redis URL cannot be used",
                    jobfleet_core::ConnectTrouble::Credentials => {
                        "Redis refused the credentials, or wants some (put the password in the URL)"
                    }
                    _ => "cannot use Redis",
                };
                anyhow::anyhow!(
                    "{what} at {}: {e} (set --redis or JOBFLEET_REDIS)",
                    jobfleet_core::redact_url(&redis)
                )
            }
            other => anyhow::Error::new(other),
        })
        .context("worker failed to start")
}

/// Resolves on the first SIGINT or SIGTERM; a second one exits at once.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install a SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("shutdown requested; send the signal again to exit at once");
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        eprintln!("second signal: exiting now; unfinished jobs will be recovered by the fleet");
        std::process::exit(130);
    });
}

/// Adds the `--config` file's settings to `argv` for every flag that
/// neither the command line nor the environment set. Each key is a long flag
/// name; a list gives a repeatable flag several values.
fn with_config(mut argv: Vec<OsString>) -> anyhow::Result<Vec<OsString>> {
    let command = Args::command();
    let matches = command.clone().get_matches_from(&argv);
    let Some(path) = matches.get_one::<PathBuf>("config") else {
        return Ok(argv);
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {} (--config)", path.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("{} is not valid TOML", path.display()))?;
    for (key, value) in table {
        let Some(arg) = command
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()) && key != "config")
        else {
            bail!(
                "{}: unknown setting `{key}`; the settings are the long flag names of \
                 `jobfleet-worker --help`, such as redis, queue, concurrency",
                path.display()
            );
        };
        let set_elsewhere = matches!(
            matches.value_source(arg.get_id().as_str()),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        );
        if set_elsewhere {
            continue;
        }
        let values = match value {
            toml::Value::Array(items) => items,
            single => vec![single],
        };
        for value in values {
            argv.push(config_flag(path, &key, value, arg.get_action().takes_values())?);
        }
    }
    Ok(argv)
}

/// One setting of the config file as a command-line flag.
fn config_flag(path: &Path, key: &str, value: toml::Value, takes_value: bool) -> anyhow::Result<OsString> {
    let text = match value {
        toml::Value::String(s) => s,
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        other => bail!(
            "{}: `{key}` must be a string, a number or a list of them, not {}",
            path.display(),
            other.type_str()
        ),
    };
    Ok(if takes_value {
        format!("--{key}={text}").into()
    } else {
        format!("--{key}").into()
    })
}

fn init_logging(format: LogFormat, level: Option<&str>) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(level) => EnvFilter::try_new(level).with_context(|| {
            format!("--log-level {level:?} is not a level (error, warn, info, debug, trace) or a filter")
        })?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    use tracing_subscriber::prelude::*;
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().boxed(),
    };
    let logging = tracing_subscriber::registry().with(filter).with(fmt);
    #[cfg(feature = "otel")]
    let logging = logging.with(crate::otel::layer()?);
    logging.init();
    Ok(())
}

/// Splits `--queue` values into names and weights: `high:3` is queue `high`
/// of weight 3 (a name may hold `:`; only a trailing `:<digits>` is a
/// weight). Either every queue has a weight or none does.
fn weighted(args: &[String]) -> anyhow::Result<(Vec<String>, Vec<u32>)> {
    let split: Vec<(String, Option<u32>)> = args
        .iter()
        .map(|a| match a.rsplit_once(':') {
            Some((name, w)) if !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit()) => {
                (name.to_string(), w.parse().ok().or(Some(u32::MAX)))
            }
            _ => (a.clone(), None),
        })
        .collect();
    let weighed = split.iter().filter(|(_, w)| w.is_some()).count();
    if weighed == 0 {
        return Ok((args.to_vec(), Vec::new()));
    }
    if weighed != split.len() {
        anyhow::bail!(
            "--queue: give every queue a weight (--queue high:3 --queue low:1) or none (strict priority)"
        );
    }
    Ok(split.into_iter().map(|(n, w)| (n, w.unwrap_or(1))).unzip())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(config: &str, flags: &[&str]) -> anyhow::Result<Args> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("worker.toml");
        std::fs::write(&path, config)?;
        let mut argv: Vec<OsString> = vec!["jobfleet-worker".into(), "--config".into(), path.into()];
        argv.extend(flags.iter().map(OsString::from));
        Ok(Args::try_parse_from(with_config(argv)?)?)
    }

    #[test]
    fn queues_take_weights_all_or_none() {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            weighted(&strings(&["high:3", "low:1"])).unwrap(),
            (strings(&["high", "low"]), vec![3, 1])
        );
        assert_eq!(
            weighted(&strings(&["a:b", "c"])).unwrap(),
            (strings(&["a:b", "c"]), vec![])
        );
        assert_eq!(
            weighted(&strings(&["a:b:2"])).unwrap(),
            (strings(&["a:b"]), vec![2])
        );
        let e = weighted(&strings(&["high:3", "low"])).unwrap_err().to_string();
        assert!(e.contains("give every queue a weight"), "{e}");
    }

    #[test]
    fn the_config_file_sets_every_kind_of_flag() {
        let args = parse(
            "redis = \"redis://10.0.0.5:6380\"\nqueue = [\"high\", \"low\"]\nconcurrency = 3\n\
             dead-after = \"4s\"\nallow-dir = [\"/srv/photos\"]\nlog-format = \"json\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(args.redis, "redis://10.0.0.5:6380");
        assert_eq!(args.queues, ["high", "low"]);
        assert_eq!(args.concurrency, Some(3));
        assert_eq!(args.dead_after, Duration::from_secs(4));
        assert_eq!(args.allow_dirs, [PathBuf::from("/srv/photos")]);
        assert!(matches!(args.log_format, LogFormat::Json));
    }

    #[test]
    fn the_example_config_of_deploy_is_valid() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/jobfleet.example.toml");
        let text = std::fs::read_to_string(&example).expect("deploy/jobfleet.example.toml");
        let args = parse(&text, &[]).unwrap();
        assert!(!args.queues.is_empty());
    }

    #[test]
    fn flags_override_the_config_file() {
        let args = parse(
            "queue = [\"high\", \"low\"]\nconcurrency = 3\n",
            &["--queue", "only", "-c", "9"],
        )
        .unwrap();
        assert_eq!(args.queues, ["only"]);
        assert_eq!(args.concurrency, Some(9));
    }

    #[test]
    fn an_unknown_or_misshapen_setting_is_named() {
        let e = parse("concurrenci = 3\n", &[]).unwrap_err().to_string();
        assert!(e.contains("unknown setting `concurrenci`"), "{e}");
        let e = parse("queue = { a = 1 }\n", &[]).unwrap_err().to_string();
        assert!(e.contains("`queue` must be a string"), "{e}");
        let e = parse("concurrency = \"many\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains("many"), "{e}");
        let e = parse("redis = \n", &[]).unwrap_err().to_string();
        assert!(e.contains("not valid TOML"), "{e}");
    }
}

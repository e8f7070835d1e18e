//! `jobfleet events`: live events, one line each, until Ctrl-C.

use jobfleet_core::Event;

use crate::Outcome;
use crate::connect::Target;
use crate::output::{duration_ms, outln, percent, timestamp};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only these queues (repeatable) [default: every queue, including new ones].
    #[arg(long = "queue", short = 'q')]
    queues: Vec<String>,
    /// Print each event as its JSON line.
    #[arg(long)]
    json: bool,
}

pub async fn run(target: &Target, args: Args) -> anyhow::Result<Outcome> {
    let client = target.connect().await?;
    for q in &args.queues {
        jobfleet_core::validate_queue_name(q)?;
    }
    let mut events = client.events(&args.queues).await?;
    loop {
        let next = tokio::select! {
            next = events.next_event() => next,
            _ = tokio::signal::ctrl_c() => return Ok(Outcome::Success),
        };
        match next {
            None => anyhow::bail!("the event subscription ended"),
            // `events()` returned once subscribed: every later one is news.
            Some(None) => {
                eprintln!(
                    "(some events were missed: reconnected to Redis, fell behind, or an event could not be read)"
                )
            }
            Some(Some(event)) if args.json => outln!("{}", serde_json::to_string(&event)?)?,
            Some(Some(event)) => outln!("{}", line(&event))?,
        }
    }
}

/// One readable line per event.
fn line(e: &Event) -> String {
    let mut line = format!(
        "{} {:<9} {} {} {} attempt {}",
        timestamp(e.ms),
        format!("{:?}", e.state).to_lowercase(),
        e.queue,
        e.task,
        e.id,
        e.attempt
    );
    if !e.worker.is_empty() {
        line.push_str(&format!(" on {}", e.worker));
    }
    if let Some(ms) = e.duration_ms {
        line.push_str(&format!(" ({})", duration_ms(ms)));
    }
    if let Some(error) = &e.error {
        line.push_str(&format!(": {error}"));
    }
    if let Some(ms) = e.run_at_ms {
        line.push_str(&format!("; retry at {}", timestamp(ms)));
    }
    if let Some(fraction) = e.progress {
        line.push_str(&format!(": {}", percent(fraction, e.message.as_deref())));
    }
    line
}

//! `jobfleet events`: live events, one line each, until Ctrl-C.

use std::io::Write;

use jobfleet_core::Event;

use crate::Outcome;
use crate::connect::Target;
use crate::output::{duration_ms, timestamp};

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
    let mut first = true;
    loop {
        let next = tokio::select! {
            next = events.next_event() => next,
            _ = tokio::signal::ctrl_c() => return Ok(Outcome::Success),
        };
        let mut stdout = std::io::stdout().lock();
        match next {
            None => anyhow::bail!("the event subscription ended"),
            Some(None) if first => first = false,
            Some(None) => eprintln!("(reconnected to Redis; events published meanwhile were missed)"),
            Some(Some(event)) if args.json => {
                writeln!(stdout, "{}", serde_json::to_string(&event)?)?;
            }
            Some(Some(event)) => writeln!(stdout, "{}", line(&event))?,
        }
        stdout.flush()?;
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
    line
}

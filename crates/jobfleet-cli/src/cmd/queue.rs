//! `jobfleet queue forget`: commands about whole queues.

use std::time::Duration;

use clap::Subcommand;

use crate::Outcome;
use crate::connect::Target;
use crate::output::outln;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Forget a queue that is empty and no worker serves: its counters go, and it leaves `stats`.
    /// Refused (exit 3) while it holds any job or a live worker serves it.
    Forget {
        /// The queue.
        name: String,
        /// A worker that beat within this long still serves the queue.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        live_within: Duration,
    },
}

pub async fn run(target: &Target, args: Args) -> anyhow::Result<Outcome> {
    match args.action {
        Action::Forget { name, live_within } => {
            jobfleet_core::validate_queue_name(&name)?;
            let client = target.connect().await?;
            client.forget_queue(&name, live_within).await?;
            outln!("forgot queue {name}")?;
        }
    }
    Ok(Outcome::Success)
}

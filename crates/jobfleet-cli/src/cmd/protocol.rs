//! `jobfleet protocol scripts`: the wire protocol's pieces as this build
//! speaks it, so producers in other languages can use them (see
//! docs/PROTOCOL.md for the keys and each script's KEYS/ARGV).

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;

use crate::Outcome;
use crate::output::outln;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Write every Lua script exactly as jobfleet sends it to Redis (common.lua and the
    /// transition), one file each, and print their paths.
    Scripts {
        /// The folder to write them to; created if missing, files of the same name replaced.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    match args.action {
        Action::Scripts { out } => {
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot create {}; check --out", out.display()))?;
            for (file_name, text) in jobfleet_core::scripts::SOURCES {
                let path = out.join(file_name);
                std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
                outln!("{}", path.display())?;
            }
        }
    }
    Ok(Outcome::Success)
}

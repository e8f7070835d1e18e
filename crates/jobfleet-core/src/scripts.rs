//! The Lua transitions, loaded once. Each script is `common.lua` (shared
//! helpers) followed by the transition's own file; the header of each file
//! lists its KEYS, ARGV and return value.

use std::sync::OnceLock;

use redis::Script;

use crate::Client;

/// The line of `common.lua` that names the publish command. On a Redis
/// Cluster it reads `SPUBLISH` instead (sharded pub/sub: a message stays on
/// the channel's shard instead of being copied to every node).
pub const PUBLISH_LINE: &str = "local PUBLISH = 'PUBLISH'";

/// [`PUBLISH_LINE`] as a Cluster runs it.
pub const SHARDED_PUBLISH_LINE: &str = "local PUBLISH = 'SPUBLISH'";

/// One transition, in its two forms: plain pub/sub and sharded pub/sub.
pub(crate) struct Transition {
    source: &'static str,
    plain: OnceLock<Script>,
    sharded: OnceLock<Script>,
}

impl Transition {
    const fn new(source: &'static str) -> Transition {
        Transition {
            source,
            plain: OnceLock::new(),
            sharded: OnceLock::new(),
        }
    }

    /// The form `client`'s topology runs.
    pub(crate) fn on(&self, client: &Client) -> &Script {
        if client.sharded_pubsub() {
            self.sharded
                .get_or_init(|| Script::new(&self.source.replacen(PUBLISH_LINE, SHARDED_PUBLISH_LINE, 1)))
        } else {
            self.plain.get_or_init(|| Script::new(self.source))
        }
    }
}

macro_rules! scripts {
    ($($name:ident => $file:literal),* $(,)?) => {
        $(
            pub(crate) static $name: Transition = Transition::new(
                concat!(include_str!("scripts/common.lua"), include_str!(concat!("scripts/", $file)))
            );
        )*

        /// Every script as it is sent to Redis (`common.lua` then the
        /// transition), by file name: what `jobfleet protocol scripts` writes
        /// out for producers in other languages.
        pub const SOURCES: &[(&str, &str)] = &[
            $(($file, concat!(include_str!("scripts/common.lua"), include_str!(concat!("scripts/", $file))))),*
        ];
    };
}

scripts! {
    SUBMIT => "submit.lua",
    CLAIM => "claim.lua",
    ACK => "ack.lua",
    FAIL => "fail.lua",
    HEARTBEAT => "heartbeat.lua",
    RECOVER => "recover.lua",
    PROMOTE => "promote.lua",
    CANCEL => "cancel.lua",
    CANCEL_WHERE => "cancel_where.lua",
    PROGRESS => "progress.lua",
    SCHEDULES_DUE => "schedules_due.lua",
    BATCH_SEAL => "batch_seal.lua",
    SCHEDULE_FIRE => "schedule_fire.lua",
    REQUEUE => "requeue.lua",
    RECONCILE => "reconcile.lua",
    DEAD_RETRY => "dead_retry.lua",
    DEAD_PURGE => "dead_purge.lua",
    STATS => "stats.lua",
    WORKER_INFO => "worker_info.lua",
    FORGET => "forget.lua",
    SET_SHARDS => "set_shards.lua",
}

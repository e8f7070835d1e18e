//! The Lua transitions, loaded once. Each script is `common.lua` (shared
//! helpers) followed by the transition's own file; the header of each file
//! lists its KEYS, ARGV and return value.

use std::sync::LazyLock;

use redis::Script;

macro_rules! scripts {
    ($($name:ident => $file:literal),* $(,)?) => {
        $(
            pub(crate) static $name: LazyLock<Script> = LazyLock::new(|| {
                Script::new(concat!(include_str!("scripts/common.lua"), include_str!(concat!("scripts/", $file))))
            });
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
    REQUEUE => "requeue.lua",
    RECONCILE => "reconcile.lua",
    DEAD_RETRY => "dead_retry.lua",
    DEAD_PURGE => "dead_purge.lua",
    STATS => "stats.lua",
    WORKER_INFO => "worker_info.lua",
    FORGET => "forget.lua",
}

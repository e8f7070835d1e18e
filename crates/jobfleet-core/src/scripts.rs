//! The Lua transitions, loaded once. Each script is `common.lua` (shared
//! helpers) followed by the transition's own file; the header of each file
//! lists its KEYS, ARGV and return value.

use std::sync::LazyLock;

use redis::Script;

macro_rules! script {
    ($name:ident, $file:literal) => {
        pub(crate) static $name: LazyLock<Script> = LazyLock::new(|| {
            Script::new(concat!(
                include_str!("scripts/common.lua"),
                include_str!($file)
            ))
        });
    };
}

script!(SUBMIT, "scripts/submit.lua");
script!(CLAIM, "scripts/claim.lua");
script!(ACK, "scripts/ack.lua");
script!(FAIL, "scripts/fail.lua");
script!(HEARTBEAT, "scripts/heartbeat.lua");
script!(RECOVER, "scripts/recover.lua");
script!(PROMOTE, "scripts/promote.lua");
script!(CANCEL, "scripts/cancel.lua");
script!(REQUEUE, "scripts/requeue.lua");
script!(RECONCILE, "scripts/reconcile.lua");
script!(DEAD_RETRY, "scripts/dead_retry.lua");
script!(DEAD_PURGE, "scripts/dead_purge.lua");
script!(STATS, "scripts/stats.lua");
script!(WORKER_INFO, "scripts/worker_info.lua");

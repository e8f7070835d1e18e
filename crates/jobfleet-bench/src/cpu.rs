//! CPU time of processes, from `/proc/<pid>/stat` (utime + stime), so a
//! run can say how busy Redis and each worker were.

use std::sync::OnceLock;
use std::time::Duration;

/// CPU time (user + system) a process has used so far; `None` when it is
/// gone or /proc is unavailable. With `children`, the CPU of its waited-for
/// children instead (how a spawned command's CPU is read after it exits).
pub fn used(pid: u32, children: bool) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at state.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime, stime, cutime, cstime are fields 14..17 of the line (1-based),
    // so 11..14 counting from state.
    let at = if children { 13 } else { 11 };
    let ticks: u64 = fields.get(at)?.parse::<u64>().ok()? + fields.get(at + 1)?.parse::<u64>().ok()?;
    Some(Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64))
}

/// The kernel's clock ticks per second (USER_HZ), 100 on Linux.
fn clock_ticks() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100)
    })
}

//! Writing to stdout, and formatting shared by the commands: timestamps,
//! durations, tables.

use std::io;
use std::sync::Mutex;
use std::time::{Duration, UNIX_EPOCH};

use tokio::sync::Notify;

/// A write to stdout that failed. Its own type so that `main` ends quietly
/// on a closed stdout only (`jobfleet events | head -1`: the reader has what
/// it wanted), never on a broken pipe to Redis.
#[derive(Debug)]
pub struct StdoutError(pub io::Error);

impl std::fmt::Display for StdoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("cannot write to stdout")
    }
}

impl std::error::Error for StdoutError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl StdoutError {
    /// Whether the reader of stdout has gone.
    pub fn is_closed(&self) -> bool {
        self.0.kind() == io::ErrorKind::BrokenPipe
    }
}

/// `print!` that returns `Result<(), StdoutError>` instead of panicking when
/// stdout is gone (Rust ignores SIGPIPE, so a closed pipe is an error).
/// Flushed, so the error comes from this write and not a later one.
macro_rules! out {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let mut stdout = ::std::io::stdout().lock();
        write!(stdout, $($arg)*)
            .and_then(|()| stdout.flush())
            .map_err($crate::output::StdoutError)
    }};
}

/// `println!` that returns `Result<(), StdoutError>`, as [`out!`].
macro_rules! outln {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let mut stdout = ::std::io::stdout().lock();
        writeln!(stdout, $($arg)*)
            .and_then(|()| stdout.flush())
            .map_err($crate::output::StdoutError)
    }};
}

pub(crate) use {out, outln};

/// Stdout for the callback the core's `wait` calls per finished job, which
/// cannot return an error: the first failed write is kept and
/// [`WaitOutput::failed`] resolves with it, so the command ends at once
/// instead of when the last job finishes.
#[derive(Debug, Default)]
pub struct WaitOutput {
    error: Mutex<Option<StdoutError>>,
    failed: Notify,
}

impl WaitOutput {
    /// Runs `write` unless a write failed already.
    pub fn write(&self, write: impl FnOnce() -> Result<(), StdoutError>) {
        let mut error = self.error.lock().expect("poisoned");
        if error.is_none()
            && let Err(e) = write()
        {
            *error = Some(e);
            self.failed.notify_one();
        }
    }

    /// The first failed write, once there is one.
    pub async fn failed(&self) -> StdoutError {
        loop {
            if let Some(e) = self.error.lock().expect("poisoned").take() {
                return e;
            }
            self.failed.notified().await;
        }
    }

    /// A write that failed as the wait ended, if one did.
    pub fn finish(self) -> Result<(), StdoutError> {
        match self.error.into_inner().expect("poisoned") {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// A Redis-clock unix ms timestamp as RFC 3339 (UTC, ms precision).
pub fn timestamp(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// A duration in ms, short and readable ("840ms", "12.3s", "4m 2s").
pub fn duration_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        humantime::format_duration(Duration::from_secs(ms / 1000)).to_string()
    }
}

/// A progress report as text: "40% (resizing)".
pub fn percent(fraction: f64, message: Option<&str>) -> String {
    let pct = format!("{:.0}%", fraction * 100.0);
    match message.filter(|m| !m.is_empty()) {
        Some(m) => format!("{pct} ({m})"),
        None => pct,
    }
}

/// Renders rows as a left-aligned table with a header.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            // Padded by hand: a format width over u16::MAX (a long job error) panics.
            .map(|(c, w)| format!("{c}{}", " ".repeat(w.saturating_sub(c.chars().count()))))
            .collect();
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// Asks `question` on a terminal and reads y/N. Without a terminal on stdin
/// and stderr nothing is asked: the answer is an error that says to pass
/// `--yes`, so a script never blocks on a prompt nor proceeds by accident.
pub fn confirm(question: &str) -> anyhow::Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    if !io::stdin().is_terminal() || !io::stderr().is_terminal() {
        anyhow::bail!("{question} Not asking without a terminal: pass --yes to go ahead");
    }
    let mut stderr = io::stderr().lock();
    write!(stderr, "{question} [y/N] ")?;
    stderr.flush()?;
    let mut answer = String::new();
    io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(duration_ms(840), "840ms");
        assert_eq!(duration_ms(12_345), "12.3s");
        assert_eq!(duration_ms(242_000), "4m 2s");
    }

    #[test]
    fn tables_align_columns() {
        let t = table(&["A", "BB"], &[vec!["long".into(), "x".into()]]);
        assert_eq!(t, "A     BB\nlong  x\n");
    }

    #[test]
    fn tables_take_cells_wider_than_a_format_width() {
        let long = "x".repeat(100_000);
        let t = table(
            &["A", "B"],
            &[vec![long.clone(), "y".into()], vec!["z".into(), "w".into()]],
        );
        assert_eq!(
            t,
            format!(
                "A{}  B\n{long}  y\nz{}  w\n",
                " ".repeat(99_999),
                " ".repeat(99_999)
            )
        );
    }
}

//! Progress of long CLI jobs (projection rebuild, compaction, reports), on
//! stderr only: stdout stays what scripts and tests read.
//!
//! On a terminal: an `indicatif` bar with counts, rate and ETA. Otherwise
//! (CI, a log file, a pipe): plain lines — one at the start, one whenever
//! another tenth is done or 2 s have passed since the last line, and one at
//! the end:
//!
//! ```text
//! projection rebuild: 0/1200 documents
//! projection rebuild: 120/1200 documents (10%), 410/s, 0.3 s
//! projection rebuild: done, 1200/1200 documents in 2.9 s (414/s)
//! ```

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Plain lines at least this often while work goes on.
pub const PLAIN_EVERY: Duration = Duration::from_secs(2);

type Sink = Box<dyn FnMut(&str) + Send>;

enum Output {
    Bar(ProgressBar),
    Plain {
        sink: Sink,
        last_line: Instant,
        /// Tenths done at the last line.
        last_tenth: u64,
    },
}

pub struct Progress {
    label: String,
    unit: &'static str,
    total: u64,
    done: u64,
    started: Instant,
    out: Output,
    finished: bool,
}

impl Progress {
    /// A bar when stderr is a terminal, plain lines on stderr otherwise.
    pub fn new(label: impl Into<String>, unit: &'static str, total: u64) -> Self {
        if std::io::stderr().is_terminal() {
            Self::bar(label, unit, total)
        } else {
            Self::plain(label, unit, total, Box::new(|line| eprintln!("{line}")))
        }
    }

    fn bar(label: impl Into<String>, unit: &'static str, total: u64) -> Self {
        let label = label.into();
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} {msg} ({per_sec}, eta {eta})",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(label.clone());
        bar.set_message(unit);
        bar.enable_steady_tick(Duration::from_millis(200));
        Self::with_output(label, unit, total, Output::Bar(bar))
    }

    /// Plain lines to `sink` (tests; `new` picks stderr).
    pub fn plain(label: impl Into<String>, unit: &'static str, total: u64, mut sink: Sink) -> Self {
        let label = label.into();
        sink(&format!("{label}: 0/{total} {unit}"));
        let out = Output::Plain {
            sink,
            last_line: Instant::now(),
            last_tenth: 0,
        };
        Self::with_output(label, unit, total, out)
    }

    fn with_output(label: String, unit: &'static str, total: u64, out: Output) -> Self {
        Self {
            label,
            unit,
            total,
            done: 0,
            started: Instant::now(),
            out,
            finished: false,
        }
    }

    pub fn inc(&mut self, n: u64) {
        self.set(self.done.saturating_add(n));
    }

    pub fn set(&mut self, done: u64) {
        self.done = done;
        let rate = self.rate();
        match &mut self.out {
            Output::Bar(bar) => bar.set_position(done),
            Output::Plain {
                sink,
                last_line,
                last_tenth,
            } => {
                let tenth = done
                    .saturating_mul(10)
                    .checked_div(self.total)
                    .unwrap_or(10);
                if done < self.total && (tenth > *last_tenth || last_line.elapsed() >= PLAIN_EVERY)
                {
                    sink(&format!(
                        "{}: {done}/{} {} ({}%), {rate:.0}/s, {:.1} s",
                        self.label,
                        self.total,
                        self.unit,
                        done.saturating_mul(100) / self.total.max(1),
                        self.started.elapsed().as_secs_f64()
                    ));
                    *last_line = Instant::now();
                    *last_tenth = tenth;
                }
            }
        }
    }

    /// A line of its own (a step of the job), above the bar.
    pub fn note(&mut self, line: &str) {
        match &mut self.out {
            Output::Bar(bar) => bar.println(line),
            Output::Plain { sink, .. } => sink(line),
        }
    }

    fn rate(&self) -> f64 {
        let secs = self.started.elapsed().as_secs_f64();
        if secs > 0.0 {
            self.done as f64 / secs
        } else {
            0.0
        }
    }

    /// The closing line (also printed when the progress is dropped).
    pub fn finish(mut self) {
        self.close();
    }

    fn close(&mut self) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let line = format!(
            "{}: done, {}/{} {} in {:.1} s ({:.0}/s)",
            self.label,
            self.done,
            self.total,
            self.unit,
            self.started.elapsed().as_secs_f64(),
            self.rate()
        );
        match &mut self.out {
            Output::Bar(bar) => {
                bar.finish_and_clear();
                eprintln!("{line}");
            }
            Output::Plain { sink, .. } => sink(&line),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn lines_of(total: u64, steps: u64) -> Vec<String> {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l = lines.clone();
        let mut p = Progress::plain(
            "compact",
            "documents",
            total,
            Box::new(move |s| l.lock().unwrap().push(s.to_string())),
        );
        for _ in 0..steps {
            p.inc(1);
        }
        p.note("a step");
        p.finish();
        let out = lines.lock().unwrap().clone();
        out
    }

    #[test]
    fn plain_lines_at_start_every_tenth_and_at_the_end() {
        let lines = lines_of(1000, 1000);
        assert_eq!(lines[0], "compact: 0/1000 documents");
        // One per tenth (10 % … 90 %), the note, and the closing line.
        assert_eq!(lines.len(), 1 + 9 + 1 + 1, "{lines:#?}");
        assert!(
            lines[1].starts_with("compact: 100/1000 documents (10%), "),
            "{}",
            lines[1]
        );
        assert!(lines[9].starts_with("compact: 900/1000 documents (90%)"));
        assert_eq!(lines[10], "a step");
        assert!(
            lines[11].starts_with("compact: done, 1000/1000 documents in "),
            "{}",
            lines[11]
        );
    }

    #[test]
    fn nothing_to_do_still_says_so() {
        let lines = lines_of(0, 0);
        assert_eq!(lines[0], "compact: 0/0 documents");
        assert!(lines
            .last()
            .unwrap()
            .starts_with("compact: done, 0/0 documents"));
    }
}

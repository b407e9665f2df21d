//! The progress bar of a one-off command on a terminal: what the run is doing now (the
//! phase, and the item with bytes read and rate while data is read), on a line of its own
//! that log lines are written above, cleared when the run ends.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::progress::Progress;

pub struct Bar {
    bar: ProgressBar,
    phase: Mutex<String>,
}

/// A step without bytes: no size, no rate that would only fall while nothing is read.
const STEP: &str = "{spinner} {elapsed:>4} {msg}";
/// An item being read.
const DATA: &str = "{spinner} {elapsed:>4} {msg}  {binary_bytes}  {binary_bytes_per_sec}";

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner())
}

/// What the bar says: the phase, then the item if there is one.
fn describe(phase: &str, item: Option<&str>) -> String {
    match item {
        Some(item) if !phase.is_empty() => format!("{phase} {item}"),
        Some(item) => item.to_string(),
        None => phase.to_string(),
    }
}

impl Bar {
    /// Draws on stderr (only on a terminal) until [`Bar::finish`].
    pub fn start() -> Arc<Bar> {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(style(STEP));
        bar.set_message("starting");
        bar.enable_steady_tick(Duration::from_millis(200));
        crate::logging::show_progress(Some(bar.clone()));
        Arc::new(Bar {
            bar,
            phase: Mutex::new(String::new()),
        })
    }

    /// Clears the bar; what is printed next starts on a clean line.
    pub fn finish(&self) {
        crate::logging::show_progress(None);
        self.bar.finish_and_clear();
    }
}

impl Progress for Bar {
    fn phase(&self, what: &str) {
        if let Ok(mut phase) = self.phase.lock() {
            *phase = what.to_string();
        }
        self.bar.set_style(style(STEP));
        self.bar.set_message(describe(what, None));
    }

    fn item(&self, name: &str) {
        let phase = self.phase.lock().map(|p| p.clone()).unwrap_or_default();
        self.bar.set_style(style(DATA));
        self.bar.set_message(describe(&phase, Some(name)));
    }

    fn bytes(&self, n: u64) {
        self.bar.inc(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_says_the_phase_and_the_item() {
        assert_eq!(describe("stopping", None), "stopping");
        assert_eq!(
            describe("archiving", Some("volumes/db")),
            "archiving volumes/db"
        );
        assert_eq!(describe("", Some("volumes/db")), "volumes/db");
    }

    #[test]
    fn the_templates_are_valid() {
        for template in [STEP, DATA] {
            assert!(ProgressStyle::with_template(template).is_ok(), "{template}");
        }
    }
}

//! A one-line progress display on a terminal: current item, bytes read, rate.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::progress::Progress;

pub struct ProgressLine {
    bytes: AtomicU64,
    item: Mutex<String>,
    done: AtomicBool,
}

impl Progress for ProgressLine {
    fn item(&self, name: &str) {
        if let Ok(mut item) = self.item.lock() {
            *item = name.to_string();
        }
    }

    fn bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }
}

impl ProgressLine {
    /// Starts redrawing the line on stderr four times a second until `finish`.
    pub fn start() -> Arc<ProgressLine> {
        let line = Arc::new(ProgressLine {
            bytes: AtomicU64::new(0),
            item: Mutex::new(String::new()),
            done: AtomicBool::new(false),
        });
        let drawer = line.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            while !drawer.done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(250));
                let bytes = drawer.bytes.load(Ordering::Relaxed);
                let rate = bytes as f64 / started.elapsed().as_secs_f64().max(0.001);
                let item = drawer.item.lock().map(|i| i.clone()).unwrap_or_default();
                let mut err = std::io::stderr().lock();
                // Best effort: a closed terminal must not fail the backup.
                let _ = write!(
                    err,
                    "\r\x1b[2K{item}  {}  {}/s",
                    super::plan::human_bytes(bytes),
                    super::plan::human_bytes(rate as u64)
                );
                let _ = err.flush();
            }
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        });
        line
    }

    pub fn finish(&self) {
        self.done.store(true, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(300));
    }
}

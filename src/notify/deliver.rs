//! Delivery, off the reconcile loop: each notifier has a bounded queue and a task of its
//! own that sends in order (so a heartbeat's `/start` arrives before its success), retries
//! what may succeed later with a growing delay, and reports every result. A slow or dead
//! service delays only its own messages, and a full queue drops new ones (counted) rather
//! than holding up the loop.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{Instrument, info_span};

use super::message::Message;
use super::target::Target;

/// Messages waiting per notifier before new ones are dropped.
pub const QUEUE: usize = 64;

/// How many times, how long each, and how long between tries.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Retry {
    pub attempts: u32,
    pub timeout: Duration,
    /// The delay after the first failed attempt; doubled after each further one.
    pub first_delay: Duration,
}

impl Default for Retry {
    fn default() -> Retry {
        Retry {
            attempts: 4,
            timeout: Duration::from_secs(10),
            first_delay: Duration::from_secs(1),
        }
    }
}

/// How a message ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Delivered {
    Sent {
        attempts: u32,
    },
    Failed {
        attempts: u32,
        error: String,
    },
    /// The notifier's queue was full.
    Dropped,
}

impl Delivered {
    /// The `result` label of `holdfast_notifications_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Delivered::Sent { .. } => "sent",
            Delivered::Failed { .. } => "failed",
            Delivered::Dropped => "dropped",
        }
    }
}

/// Called with each result: the notifier's name, the message and how it ended.
pub type Report = Arc<dyn Fn(&str, &Message, &Delivered) + Send + Sync>;

struct Job {
    target: Arc<Target>,
    message: Message,
}

/// The queues, one per notifier, created on first use.
pub struct Outbox {
    queues: Mutex<BTreeMap<String, mpsc::Sender<Job>>>,
    retry: Retry,
    report: Report,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Outbox {
    pub fn new(retry: Retry, report: Report) -> Outbox {
        Outbox {
            queues: Mutex::new(BTreeMap::new()),
            retry,
            report,
            tasks: Mutex::new(Vec::new()),
        }
    }

    /// Queues a message for `notifier`; never waits. Must be called within a Tokio runtime.
    pub fn post(&self, notifier: &str, target: Arc<Target>, message: Message) {
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        let queue = queues.entry(notifier.to_string()).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            let task = tokio::spawn(work(
                notifier.to_string(),
                rx,
                self.retry,
                self.report.clone(),
            ));
            self.tasks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(task);
            tx
        });
        if let Err(e) = queue.try_send(Job { target, message }) {
            let job = match e {
                mpsc::error::TrySendError::Full(job) | mpsc::error::TrySendError::Closed(job) => {
                    job
                }
            };
            (self.report)(notifier, &job.message, &Delivered::Dropped);
        }
    }

    /// Closes the queues and waits up to `limit` for what is queued to be sent.
    pub async fn flush(&self, limit: Duration) {
        self.queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        let tasks: Vec<_> =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        let all = futures_util::future::join_all(tasks);
        let _ = tokio::time::timeout(limit, all).await;
    }
}

async fn work(notifier: String, mut rx: mpsc::Receiver<Job>, retry: Retry, report: Report) {
    while let Some(job) = rx.recv().await {
        // A message about a run is logged in that run's log too.
        let span = match job.message.run.as_ref() {
            Some(run) => info_span!("run", run = %run.run_id),
            None => info_span!("notify"),
        };
        let result = deliver(&job, retry).instrument(span.clone()).await;
        span.in_scope(|| (report)(&notifier, &job.message, &result));
    }
}

async fn deliver(job: &Job, retry: Retry) -> Delivered {
    let mut delay = retry.first_delay;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match job.target.send(&job.message, retry.timeout).await {
            Ok(()) => return Delivered::Sent { attempts: attempt },
            Err(e) if e.retry && attempt < retry.attempts => {
                tracing::debug!(attempt, "sending a notification failed, trying again: {e}");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => {
                return Delivered::Failed {
                    attempts: attempt,
                    error: e.message,
                };
            }
        }
    }
}

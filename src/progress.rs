//! Progress reporting, behind a trait so that the core never depends on a terminal.

/// Receives progress from long-running work. Implementations must be cheap: `bytes` is
/// called for every buffer written.
pub trait Progress: Send + Sync {
    /// The run got its id; called once, before anything else.
    fn run(&self, _id: &str) {}
    /// A step without bytes to count has started ("stopping", "starting again"), or a
    /// step whose items follow ("archiving", "dumping"). What was shown before is over.
    fn phase(&self, _what: &str) {}
    /// A new item (volume, bind mount, dump) of the current phase has started.
    fn item(&self, _name: &str) {}
    /// `n` more bytes of source data were read.
    fn bytes(&self, _n: u64) {}
    /// Whether the work should stop: it was cancelled (holdfast is stopping and the run
    /// had no time left). Asked as often as `bytes`; work that sees `true` stops at once
    /// with an error, leaving only what a crash would leave.
    fn cancelled(&self) -> bool {
        false
    }
}

/// Reports nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct Silent;

impl Progress for Silent {}

/// Passes progress on to another reporter, and says `cancelled` once [`Cancellable::cancel`]
/// was called: how a one-off command tells a run's threads that it was interrupted.
pub struct Cancellable {
    inner: std::sync::Arc<dyn Progress>,
    cancelled: std::sync::atomic::AtomicBool,
}

impl Cancellable {
    pub fn new(inner: std::sync::Arc<dyn Progress>) -> Cancellable {
        Cancellable {
            inner,
            cancelled: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// From now on, the work asked stops at its next buffer.
    pub fn cancel(&self) {
        self.cancelled
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Progress for Cancellable {
    fn run(&self, id: &str) {
        self.inner.run(id);
    }

    fn phase(&self, what: &str) {
        self.inner.phase(what);
    }

    fn item(&self, name: &str) {
        self.inner.item(name);
    }

    fn bytes(&self, n: u64) {
        self.inner.bytes(n);
    }

    fn cancelled(&self) -> bool {
        self.cancelled.load(std::sync::atomic::Ordering::Relaxed) || self.inner.cancelled()
    }
}

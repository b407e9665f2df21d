//! Progress reporting, behind a trait so that the core never depends on a terminal.

/// Receives progress from long-running work. Implementations must be cheap: `bytes` is
/// called for every buffer written.
pub trait Progress: Send + Sync {
    /// The run got its id; called once, before anything else.
    fn run(&self, _id: &str) {}
    /// A new item (volume, bind mount, dump) has started.
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

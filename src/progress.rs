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
}

/// Reports nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct Silent;

impl Progress for Silent {}

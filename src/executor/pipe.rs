//! Bridges Docker's async byte streams to the blocking archive writers.

use std::io::{self, Read};

use bytes::{Buf, Bytes};
use tokio::sync::mpsc;

/// Chunks in flight between the Docker stream and the writer. Bounded, so a slow disk
/// slows the download instead of filling memory.
pub const DEPTH: usize = 32;

/// Reads the chunks sent on a channel, in order, until every sender is gone. Must be used
/// from a blocking thread (`spawn_blocking`).
pub struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl ChannelReader {
    pub fn new(rx: mpsc::Receiver<Bytes>) -> Self {
        ChannelReader {
            rx,
            current: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_chunks_in_order_until_senders_are_gone() {
        let (tx, rx) = mpsc::channel(2);
        let writer = std::thread::spawn(move || {
            for part in ["hello ", "", "world"] {
                tx.blocking_send(Bytes::from(part)).unwrap();
            }
        });
        let mut text = String::new();
        ChannelReader::new(rx).read_to_string(&mut text).unwrap();
        writer.join().unwrap();
        assert_eq!(text, "hello world");
    }
}

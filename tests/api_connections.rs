//! What a client can hold of the real daemon's HTTP listener without ever finishing a
//! request: connections that send half a header are closed after the header-read timeout,
//! connections beyond the cap are closed at once, and a normal request is answered while
//! and after they are there.

mod common;

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::daemon::*;
use common::*;

/// As the README promises.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_CONNECTIONS: usize = 256;

/// `GET /healthz` on a fresh connection; the status code of the answer.
fn healthz(addr: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.0\r\nHost: holdfast\r\n\r\n")
        .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.split_whitespace().nth(1)?.parse().ok()
}

/// Whether the server closed `stream`: reading ends (or fails) within `wait`. What the
/// server sends before closing does not matter.
fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

fn open(addr: &str, n: usize, send: &[u8]) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(send).unwrap();
            s
        })
        .collect()
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn half_sent_headers_are_closed_and_the_listener_keeps_answering() {
    if !docker_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("specs")).unwrap();
    let _daemon = Daemon::start(dir.path(), &[]);
    let addr = Daemon::api_address(dir.path());
    assert_eq!(healthz(&addr), Some(200));

    // Half a header on each, below the cap.
    let began = Instant::now();
    let mut half = open(
        &addr,
        200,
        b"GET /api/v1/policies HTTP/1.1\r\nHost: holdfast\r\nX-Slow: ",
    );
    assert_eq!(healthz(&addr), Some(200), "while half headers are open");
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !closed_within(&mut half[0], Duration::from_millis(100)),
        "a connection was closed long before the header-read timeout"
    );
    let slack = Duration::from_secs(5);
    for (i, s) in half.iter_mut().enumerate() {
        let left = (HEADER_READ_TIMEOUT + slack).saturating_sub(began.elapsed());
        assert!(
            closed_within(s, left),
            "half-header connection {i} still open {:?} after it was opened",
            began.elapsed()
        );
    }
    assert_eq!(
        healthz(&addr),
        Some(200),
        "after the half headers were closed"
    );

    // Connections that send nothing, past the cap: the excess is closed at once.
    let extra = 40;
    let began = Instant::now();
    let mut idle = open(&addr, MAX_CONNECTIONS + extra, b"");
    std::thread::sleep(Duration::from_secs(1));
    let mut closed = 0;
    for s in idle.iter_mut() {
        if closed_within(s, Duration::from_millis(5)) {
            closed += 1;
        }
    }
    assert!(
        began.elapsed() < HEADER_READ_TIMEOUT,
        "opening the connections took too long to tell the cap from the timeout"
    );
    assert_eq!(closed, extra, "connections beyond the cap");
    for (i, s) in idle.iter_mut().enumerate() {
        let left = (HEADER_READ_TIMEOUT + slack).saturating_sub(began.elapsed());
        assert!(
            closed_within(s, left),
            "idle connection {i} still open {:?} after it was opened",
            began.elapsed()
        );
    }
    assert_eq!(
        healthz(&addr),
        Some(200),
        "after the idle connections were closed"
    );
}

//! Runs inputs through a target on a worker thread, with a deadline, and a campaign of
//! mutations around a corpus.

use std::any::Any;
use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::mutate::Rng;

/// Inputs larger than this are cut: the bugs worth finding show in small inputs, and
/// small inputs keep a campaign fast.
pub const MAX_INPUT: usize = 256 * 1024;
/// Mutated inputs join the corpus only up to this size.
const MAX_CORPUS_INPUT: usize = 16 * 1024;

/// One piece of code that reads untrusted input.
pub trait Target: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// The file extension crashers are saved with.
    fn extension(&self) -> &'static str;
    /// Inputs made at run time (archives holdfast writes, files of the checkout).
    fn seeds(&self) -> Vec<Vec<u8>>;
    /// A new input from `input`, with `other` to splice from.
    fn mutate(&self, rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8>;
    /// Runs one input through the real code. `Ok` names the kind of outcome (inputs with a
    /// new kind join the corpus); `Err` says which promise was broken.
    fn run(&self, input: &[u8]) -> Result<String, String>;
}

#[derive(Debug)]
pub enum Verdict {
    Fine(String),
    Broken(String),
    Panicked(String),
    Hung(Duration),
}

impl Verdict {
    pub fn is_fine(&self) -> bool {
        matches!(self, Verdict::Fine(_))
    }

    /// One line, with numbers and quoted names taken out, so that one bug found a
    /// thousand times is saved once.
    fn class(&self) -> String {
        let text = match self {
            Verdict::Fine(s) => format!("fine {s}"),
            Verdict::Broken(s) => format!("broken {s}"),
            Verdict::Panicked(s) => format!("panicked {s}"),
            Verdict::Hung(after) => format!("hung for {after:?}"),
        };
        outcome_class(&text)
    }
}

/// Letters and spaces of the first line of `text`, without what sits between quotes.
pub fn outcome_class(text: &str) -> String {
    let line = text.lines().next().unwrap_or("");
    let mut out = String::new();
    let mut quoted = false;
    for c in line.chars() {
        if c == '"' {
            quoted = !quoted;
        } else if !quoted && (c.is_ascii_alphabetic() || c == ' ') {
            out.push(c);
        }
        if out.len() >= 120 {
            break;
        }
    }
    out
}

type Reply = Result<Result<String, String>, String>;

/// A thread that runs inputs one at a time. One that hangs is abandoned (it cannot be
/// killed) and a new one takes its place.
pub struct Worker {
    target: Arc<dyn Target>,
    tx: Sender<Vec<u8>>,
    rx: Receiver<Reply>,
}

fn panic_text(payload: Box<dyn Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

impl Worker {
    pub fn new(target: Arc<dyn Target>) -> Worker {
        let (tx, job_rx) = mpsc::channel::<Vec<u8>>();
        let (reply_tx, rx) = mpsc::channel::<Reply>();
        let on_thread = target.clone();
        // The stack of a Tokio worker, where the daemon reads specs and archives.
        std::thread::Builder::new()
            .name(format!("fuzz-{}", target.name()))
            .stack_size(2 << 20)
            .spawn(move || {
                for input in job_rx {
                    let reply = catch_unwind(AssertUnwindSafe(|| on_thread.run(&input)))
                        .map_err(panic_text);
                    if reply_tx.send(reply).is_err() {
                        return;
                    }
                }
            })
            .expect("starting a fuzz worker");
        Worker { target, tx, rx }
    }

    pub fn run(&mut self, input: &[u8], limit: Duration) -> Verdict {
        let started = Instant::now();
        self.tx
            .send(input.to_vec())
            .expect("the fuzz worker is gone");
        match self.rx.recv_timeout(limit) {
            Ok(Ok(Ok(outcome))) => Verdict::Fine(outcome),
            Ok(Ok(Err(broken))) => Verdict::Broken(broken),
            Ok(Err(panic)) => Verdict::Panicked(panic),
            Err(RecvTimeoutError::Timeout) => {
                *self = Worker::new(self.target.clone());
                Verdict::Hung(started.elapsed())
            }
            Err(RecvTimeoutError::Disconnected) => panic!("the fuzz worker died"),
        }
    }
}

/// The committed inputs of a target: its corpus and every crasher found so far.
pub fn fixture_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fuzz")
        .join(target)
}

pub fn committed_inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = fixture_dir(target);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("reading {}: {e}", dir.display()),
    };
    let mut inputs: Vec<(String, Vec<u8>)> = entries
        .map(|entry| {
            let path = entry.expect("listing the fuzz corpus").path();
            let bytes =
                std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            (path.display().to_string(), bytes)
        })
        .collect();
    inputs.sort();
    inputs
}

/// FNV-1a, to name a saved crasher after its content.
fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Saves a crasher beside the corpus, named after its content.
pub fn save_crasher(target: &str, extension: &str, input: &[u8]) -> PathBuf {
    let dir = fixture_dir(target);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    let path = dir.join(format!("crash-{:016x}.{extension}", fnv(input)));
    std::fs::write(&path, input).unwrap_or_else(|e| panic!("saving {}: {e}", path.display()));
    path
}

/// The input a campaign runs now (target, extension, bytes), for a watchdog to save.
pub static CURRENT: Mutex<(&str, &str, Vec<u8>)> = Mutex::new(("", "", Vec::new()));

pub struct Campaign {
    pub execs: u64,
    /// The slowest input and how long it took.
    pub slowest: (Duration, Vec<u8>),
    pub seconds: f64,
    pub corpus: usize,
    pub crashers: Vec<(Verdict, Vec<u8>)>,
}

/// Runs every seed and committed input, then `execs` mutated inputs. Crashers are
/// collected (one per kind of failure) and, with `save`, written beside the committed
/// corpus so that they become regression tests.
pub fn campaign(
    target: Arc<dyn Target>,
    seed: u64,
    execs: u64,
    limit: Duration,
    save: bool,
) -> Campaign {
    let started = Instant::now();
    let mut worker = Worker::new(target.clone());
    let mut rng = Rng::new(seed);
    let mut corpus: Vec<Vec<u8>> = target.seeds();
    corpus.extend(committed_inputs(target.name()).into_iter().map(|(_, b)| b));
    let mut seen = HashSet::new();
    let mut crashers = Vec::new();
    let mut crash_kinds = HashSet::new();
    let mut record = |verdict: Verdict, input: Vec<u8>, crashers: &mut Vec<(Verdict, Vec<u8>)>| {
        if crash_kinds.insert(verdict.class()) {
            if save {
                let path = save_crasher(target.name(), target.extension(), &input);
                eprintln!("{}: saved {} ({verdict:?})", target.name(), path.display());
            }
            crashers.push((verdict, input));
        }
    };
    let mut ran = 0u64;
    let mut slowest = (Duration::ZERO, Vec::new());
    for input in corpus.clone() {
        let verdict = worker.run(&input, limit);
        ran += 1;
        match verdict {
            Verdict::Fine(outcome) => {
                seen.insert(outcome_class(&outcome));
            }
            other => record(other, input, &mut crashers),
        }
    }
    for i in 0..execs {
        if i > 0 && i % 100_000 == 0 {
            println!(
                "fuzz {:>6}: {i} executions, {:.0} s",
                target.name(),
                started.elapsed().as_secs_f64()
            );
        }
        let parent = rng.below(corpus.len());
        let other = rng.below(corpus.len());
        let mut input = target.mutate(&mut rng, &corpus[parent], &corpus[other]);
        input.truncate(MAX_INPUT);
        if save {
            let mut current = CURRENT.lock().unwrap_or_else(|e| e.into_inner());
            *current = (target.name(), target.extension(), input.clone());
        }
        let run_started = Instant::now();
        let verdict = worker.run(&input, limit);
        let took = run_started.elapsed();
        if took > slowest.0 {
            slowest = (took, input.clone());
        }
        ran += 1;
        match verdict {
            // Small inputs only: a corpus of large ones would slow every later input.
            Verdict::Fine(_) if input.len() > MAX_CORPUS_INPUT => {}
            Verdict::Fine(outcome) => {
                // A new kind of outcome is the only feedback there is without coverage.
                if seen.insert(outcome_class(&outcome)) && corpus.len() < 4096 {
                    corpus.push(input);
                }
            }
            other => record(other, input, &mut crashers),
        }
    }
    Campaign {
        execs: ran,
        slowest,
        seconds: started.elapsed().as_secs_f64(),
        corpus: corpus.len(),
        crashers,
    }
}

//! The randomness and the format-blind mutations every target shares.

/// xorshift64*: small, fast, and the same sequence for the same seed on every machine,
/// so a campaign can be replayed from its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // A zero state would stay zero.
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15 | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n`; `n` must not be 0.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True one time in `n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// A length that is usually small: most mutations touch a few bytes.
    pub fn small_len(&mut self, max: usize) -> usize {
        let max = max.max(1);
        match self.below(4) {
            0 => 1,
            1 => 1 + self.below(max.min(8)),
            2 => 1 + self.below(max.min(64)),
            _ => 1 + self.below(max),
        }
    }
}

/// The byte values that most often change a parser's mind.
pub const INTERESTING_BYTES: &[u8] = &[
    0, 0xff, 0x7f, 0x80, 0xfe, 0x01, b'0', b'1', b'7', b'8', b'9', b' ', b'\n', b'\r', b'\t', b':',
    b'/', b'.', b'-', b'=', b'"', b'\'', b'\\', b'#', b'&', b'*', b'{', b'[', b'|', b'>',
];

/// One classic mutation of `data`: a bit flip, an interesting byte, a chunk deleted,
/// duplicated or taken from `other`, a splice with `other`, or a cut. The result is no
/// longer than `max_len`.
pub fn mutate_bytes(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8], max_len: usize) {
    if data.is_empty() {
        data.extend_from_slice(&other[..other.len().min(max_len)]);
        if data.is_empty() {
            data.push(*rng.pick(INTERESTING_BYTES));
        }
        return;
    }
    match rng.below(10) {
        0 => {
            let at = rng.below(data.len());
            data[at] ^= 1 << rng.below(8);
        }
        1 | 2 => {
            let at = rng.below(data.len());
            data[at] = *rng.pick(INTERESTING_BYTES);
        }
        3 => {
            let at = rng.below(data.len());
            let len = rng.small_len(data.len() - at);
            data.drain(at..at + len);
        }
        4 => {
            let at = rng.below(data.len());
            let len = rng.small_len(data.len() - at);
            let chunk = data[at..at + len].to_vec();
            let to = rng.below(data.len() + 1);
            data.splice(to..to, chunk);
        }
        5 if !other.is_empty() => {
            let from = rng.below(other.len());
            let len = rng.small_len(other.len() - from);
            let to = rng.below(data.len() + 1);
            data.splice(to..to, other[from..from + len].iter().copied());
        }
        6 if !other.is_empty() => {
            // Splice: our head, their tail.
            let cut = rng.below(data.len() + 1);
            let from = rng.below(other.len() + 1);
            data.truncate(cut);
            data.extend_from_slice(&other[from..]);
        }
        7 => {
            let cut = rng.below(data.len());
            data.truncate(cut);
        }
        8 => {
            // A run of one byte: long numbers, deep nesting, long names.
            let at = rng.below(data.len() + 1);
            let byte = *rng.pick(INTERESTING_BYTES);
            let len = rng.small_len(4096);
            data.splice(at..at, std::iter::repeat_n(byte, len));
        }
        _ => {
            let at = rng.below(data.len());
            let len = rng.small_len((data.len() - at).min(8));
            for b in &mut data[at..at + len] {
                *b = rng.next() as u8;
            }
        }
    }
    data.truncate(max_len);
}

//! Token-level mutations for text formats (YAML specs, compose files, `.env` files):
//! words swapped for words of the corpus or of a dictionary, lines repeated, dropped,
//! moved or re-indented, and YAML's own constructs (anchors, aliases, merges, tags,
//! block scalars, flow collections) dropped in.

use super::mutate::{Rng, mutate_bytes};

#[derive(Clone, Copy, PartialEq)]
enum Class {
    Word,
    Space,
    Punct,
}

fn class(b: u8) -> Class {
    if b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'/' || b >= 0x80 {
        Class::Word
    } else if b == b' ' || b == b'\t' {
        Class::Space
    } else {
        Class::Punct
    }
}

/// Runs of word bytes, runs of blanks, and single punctuation bytes (newlines included).
pub fn tokens(text: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=text.len() {
        let split = i == text.len()
            || class(text[i]) != class(text[start])
            || class(text[start]) == Class::Punct;
        if split {
            out.push(&text[start..i]);
            start = i;
        }
    }
    out
}

/// The words of `texts`, plus `extra`: what mutations put in place of a word.
pub fn dictionary(texts: &[Vec<u8>], extra: &[&str]) -> Vec<Vec<u8>> {
    let mut words: Vec<Vec<u8>> = texts
        .iter()
        .flat_map(|t| tokens(t).into_iter().filter(|w| class(w[0]) == Class::Word))
        .map(<[u8]>::to_vec)
        .collect();
    words.extend(extra.iter().map(|w| w.as_bytes().to_vec()));
    words.sort();
    words.dedup();
    words
}

/// What YAML allows and a spec reader must survive.
pub const YAML_EXTRA: &[&str] = &[
    "&a",
    "*a",
    "<<: *a",
    "!!str",
    "!!binary",
    "!custom",
    "|",
    ">-",
    "|+",
    "? ",
    "{",
    "}",
    "[",
    "]",
    "- ",
    ": ",
    ", ",
    "---",
    "...",
    "~",
    "null",
    "true",
    "no",
    "yes",
    ".nan",
    ".inf",
    "-.inf",
    "0x1f",
    "0o17",
    "1e309",
    "-0",
    "18446744073709551616",
    "-9223372036854775809",
    "99999999999999999999999",
    "\"\\u0000\"",
    "\"\\x\"",
    "'",
    "\"",
    "%YAML 1.2",
    "%TAG ! x",
    "#",
    "\t",
    "\u{feff}",
    "\u{2028}",
    "é",
    "0 3 30 2 *",
    "0 0 29 2 *",
    "*/0 * * * *",
    "59 23 31 12 *",
    "0 0 * * 7",
    "0 0 * * 8",
    "@reboot",
    "@yearly",
    "@every 1h",
    "0 0 L * *",
    "0 0 ? * MON#5",
    "0 0 1-31/7 * *",
    "60 * * * *",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "America/Sao_Paulo",
    "Etc/GMT+14",
    "Europe/Dublin",
    "UTC",
    "local",
    "0s",
    "1ns",
    "9999999999999999h",
    "1.5h",
    "-1m",
    "1h30m",
    "25h",
    "720h",
    "latest",
    "2026-03-29T02:30:00+01:00",
    "9999-12-31T23:59:59Z",
    "0000-01-01T00:00:00Z",
];

/// Builds a document whose aliases expand exponentially: `a` repeated `2^levels` times.
fn laughs(rng: &mut Rng) -> Vec<u8> {
    let levels = 3 + rng.below(30);
    let mut out = String::from("l0: &l0 [lol, lol]\n");
    for i in 1..levels {
        out.push_str(&format!(
            "l{i}: &l{i} [*l{p}, *l{p}, <<: *l{p}]\n",
            p = i - 1
        ));
    }
    out.push_str(&format!(
        "spec: {{targets: {{stacks: *l{}}}}}\n",
        levels - 1
    ));
    out.into_bytes()
}

fn lines(text: &[u8]) -> Vec<Vec<u8>> {
    text.split_inclusive(|b| *b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

/// One to four token- or line-level mutations, now and then a byte-level one.
pub fn mutate_text(
    rng: &mut Rng,
    words: &[Vec<u8>],
    input: &[u8],
    other: &[u8],
    max_len: usize,
) -> Vec<u8> {
    let mut data = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(12) {
            0..=3 => {
                // A word replaced, or a word or punctuation inserted.
                let toks = tokens(&data);
                if toks.is_empty() {
                    let word: &Vec<u8> = rng.pick(words);
                    data.extend_from_slice(word);
                    continue;
                }
                let i = rng.below(toks.len());
                let word = rng.pick(words).clone();
                let mut out = Vec::with_capacity(data.len() + word.len());
                for (j, t) in toks.iter().enumerate() {
                    if j == i {
                        out.extend_from_slice(&word);
                        if rng.one_in(3) {
                            out.extend_from_slice(t);
                        }
                    } else {
                        out.extend_from_slice(t);
                    }
                }
                data = out;
            }
            4..=7 => {
                let mut ls = lines(&data);
                if ls.is_empty() {
                    ls.push(b"\n".to_vec());
                }
                let i = rng.below(ls.len());
                match rng.below(6) {
                    0 => {
                        let l = ls[i].clone();
                        ls.insert(rng.below(ls.len() + 1), l);
                    }
                    1 => {
                        ls.remove(i);
                    }
                    2 => {
                        let j = rng.below(ls.len());
                        ls.swap(i, j);
                    }
                    3 => {
                        let indent = &b"  "[..1 + rng.below(2)];
                        ls[i].splice(0..0, indent.iter().copied());
                    }
                    4 => {
                        let cut = ls[i].iter().take_while(|b| **b == b' ').count().min(2);
                        ls[i].drain(..cut);
                    }
                    _ => {
                        let theirs = lines(other);
                        if !theirs.is_empty() {
                            ls.insert(i, rng.pick(&theirs).clone());
                        }
                    }
                }
                data = ls.concat();
            }
            8 => {
                // Another document of the corpus in the same file.
                data.extend_from_slice(b"\n---\n");
                data.extend_from_slice(other);
            }
            9 if rng.one_in(8) => data.extend_from_slice(&laughs(rng)),
            _ => mutate_bytes(rng, &mut data, other, max_len),
        }
    }
    data.truncate(max_len);
    data
}

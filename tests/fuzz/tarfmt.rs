//! Tar as a mutator sees it: members (a header and its data), written back with
//! checksums recomputed so that a mutation reaches the parser behind the checksum.

use super::mutate::{Rng, mutate_bytes};

pub const BLOCK: usize = 512;

/// A header field: offset and length.
#[derive(Clone, Copy)]
pub struct Field(pub usize, pub usize);

pub const NAME: Field = Field(0, 100);
pub const MODE: Field = Field(100, 8);
pub const UID: Field = Field(108, 8);
pub const GID: Field = Field(116, 8);
pub const SIZE: Field = Field(124, 12);
pub const MTIME: Field = Field(136, 12);
pub const CHECKSUM: Field = Field(148, 8);
pub const TYPEFLAG: Field = Field(156, 1);
pub const LINKNAME: Field = Field(157, 100);
pub const MAGIC: Field = Field(257, 6);
pub const VERSION: Field = Field(263, 2);
pub const UNAME: Field = Field(265, 32);
pub const DEVMAJOR: Field = Field(329, 8);
pub const PREFIX: Field = Field(345, 155);

const NUMERIC: &[Field] = &[MODE, UID, GID, SIZE, MTIME, DEVMAJOR];
const NAMES: &[Field] = &[NAME, LINKNAME, PREFIX, UNAME];

#[derive(Clone)]
pub struct Member {
    pub header: [u8; BLOCK],
    pub data: Vec<u8>,
}

/// A tar split into members; `tail` is what follows the last member (the end marker and
/// padding, or garbage).
#[derive(Clone, Default)]
pub struct Tar {
    pub members: Vec<Member>,
    pub tail: Vec<u8>,
}

fn octal(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        // Base-256, as GNU tar writes large numbers.
        let mut n: u64 = u64::from(field[0] & 0x7f);
        for b in &field[1..] {
            n = n.checked_mul(256)?.checked_add(u64::from(*b))?;
        }
        return Some(n);
    }
    let text: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|b| *b == b' ')
        .take_while(|b| (b'0'..=b'7').contains(b))
        .collect();
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(std::str::from_utf8(&text).ok()?, 8).ok()
}

fn padding(n: usize) -> usize {
    (BLOCK - n % BLOCK) % BLOCK
}

impl Tar {
    pub fn parse(bytes: &[u8]) -> Tar {
        let mut tar = Tar::default();
        let mut at = 0;
        while at + BLOCK <= bytes.len() {
            let block = &bytes[at..at + BLOCK];
            if block.iter().all(|b| *b == 0) {
                break;
            }
            let mut header = [0; BLOCK];
            header.copy_from_slice(block);
            let size = octal(&header[SIZE.0..SIZE.0 + SIZE.1]).unwrap_or(u64::MAX);
            let start = at + BLOCK;
            let end = usize::try_from(size)
                .ok()
                .and_then(|s| start.checked_add(s))
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            tar.members.push(Member {
                header,
                data: bytes[start..end].to_vec(),
            });
            at = end + padding(end - start);
        }
        tar.tail = bytes[at.min(bytes.len())..].to_vec();
        tar
    }

    pub fn write(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for m in &self.members {
            out.extend_from_slice(&m.header);
            out.extend_from_slice(&m.data);
            out.resize(out.len() + padding(m.data.len()), 0);
        }
        out.extend_from_slice(&self.tail);
        out
    }
}

pub fn set(header: &mut [u8; BLOCK], field: Field, value: &[u8]) {
    let dst = &mut header[field.0..field.0 + field.1];
    dst.fill(0);
    let n = value.len().min(field.1);
    dst[..n].copy_from_slice(&value[..n]);
}

pub fn set_octal(header: &mut [u8; BLOCK], field: Field, n: u64) {
    let digits = field.1 - 1;
    let text = format!("{n:0digits$o}");
    if text.len() <= digits {
        set(header, field, text.as_bytes());
    } else {
        // Too large for octal: base-256.
        let dst = &mut header[field.0..field.0 + field.1];
        dst.fill(0);
        let bytes = n.to_be_bytes();
        let n = bytes.len().min(field.1);
        dst[field.1 - n..].copy_from_slice(&bytes[bytes.len() - n..]);
        dst[0] |= 0x80;
    }
}

pub fn fix_checksum(header: &mut [u8; BLOCK]) {
    header[CHECKSUM.0..CHECKSUM.0 + CHECKSUM.1].fill(b' ');
    let sum: u32 = header.iter().map(|b| u32::from(*b)).sum();
    let text = format!("{sum:06o}\0 ");
    header[CHECKSUM.0..CHECKSUM.0 + CHECKSUM.1].copy_from_slice(text.as_bytes());
}

/// A ustar header; names longer than the field are cut (long names go through
/// [`long_name`] or pax).
pub fn header(name: &[u8], typeflag: u8, link: &[u8], size: u64, mode: u32) -> [u8; BLOCK] {
    let mut h = [0; BLOCK];
    set(&mut h, NAME, name);
    set_octal(&mut h, MODE, u64::from(mode));
    set_octal(&mut h, UID, 1000);
    set_octal(&mut h, GID, 1000);
    set_octal(&mut h, SIZE, size);
    set_octal(&mut h, MTIME, 1_700_000_000);
    h[TYPEFLAG.0] = typeflag;
    set(&mut h, LINKNAME, link);
    set(&mut h, MAGIC, b"ustar\0");
    set(&mut h, VERSION, b"00");
    set(&mut h, UNAME, b"fuzz");
    fix_checksum(&mut h);
    h
}

pub fn member(name: &[u8], typeflag: u8, link: &[u8], data: &[u8]) -> Member {
    let mode = if typeflag == b'5' { 0o755 } else { 0o644 };
    Member {
        header: header(name, typeflag, link, data.len() as u64, mode),
        data: data.to_vec(),
    }
}

/// A pax record: `<length> <key>=<value>\n`, the length counting itself.
pub fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3;
    let mut len = body + body.to_string().len();
    if len.to_string().len() + body != len {
        len = body + len.to_string().len();
    }
    let mut out = format!("{len} ").into_bytes();
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

pub fn pax(records: &[(&[u8], &[u8])]) -> Member {
    let data: Vec<u8> = records.iter().flat_map(|(k, v)| pax_record(k, v)).collect();
    member(b"./PaxHeaders/x", b'x', b"", &data)
}

pub fn long_name(typeflag: u8, name: &[u8]) -> Member {
    let mut data = name.to_vec();
    data.push(0);
    member(b"././@LongLink", typeflag, b"", &data)
}

pub fn end() -> Vec<u8> {
    vec![0; 2 * BLOCK]
}

/// Splits pax data into records, as written (a malformed rest is kept as one piece).
fn pax_records(data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let len = rest
            .iter()
            .position(|b| *b == b' ')
            .and_then(|sp| std::str::from_utf8(&rest[..sp]).ok())
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|l| *l > 0 && *l <= rest.len())
            .unwrap_or(rest.len());
        out.push(rest[..len].to_vec());
        rest = &rest[len..];
    }
    out
}

/// Names and numbers a hostile archive would try. `outside` is an absolute path that
/// extraction must never write below.
pub struct Dictionary {
    pub names: Vec<Vec<u8>>,
    pub numbers: Vec<u64>,
    pub pax_keys: Vec<&'static [u8]>,
    pub pax_values: Vec<Vec<u8>>,
}

impl Dictionary {
    pub fn new(outside: &[u8]) -> Dictionary {
        let mut abs = outside.to_vec();
        abs.extend_from_slice(b"/x");
        let mut names: Vec<Vec<u8>> = [
            &b""[..],
            b".",
            b"./",
            b"..",
            b"../x",
            b"a/../../x",
            b"a/..",
            b"./a/./b//c/",
            b"/",
            b"/etc/x",
            b"a",
            b"a/",
            b"a/b",
            b"a/b/c",
            b"l",
            b"l/x",
            b"h",
            b"d/",
            b"caf\xe9",
            b"x\0y",
            b"\xff\xfe",
            b"a\\b",
            b"a\nb",
            b"PaxHeaders/x",
        ]
        .iter()
        .map(|n| n.to_vec())
        .collect();
        names.push(outside.to_vec());
        names.push(abs);
        names.push(vec![b'n'; 255]);
        names.push(vec![b'n'; 256]);
        let mut deep = Vec::new();
        for _ in 0..300 {
            deep.extend_from_slice(b"d/");
        }
        names.push(deep);
        let mut up = Vec::new();
        for _ in 0..40 {
            up.extend_from_slice(b"../");
        }
        up.extend_from_slice(&outside[1..]);
        names.push(up);
        let numbers = vec![
            0,
            1,
            7,
            0o777,
            0o4755,
            0o7777,
            0o170000,
            511,
            512,
            513,
            65535,
            65536,
            (1 << 21) - 1,
            1 << 21,
            u64::from(u32::MAX),
            1 << 32,
            (1 << 33) - 1,
            1 << 33,
            i64::MAX as u64,
            1 << 63,
            u64::MAX,
        ];
        let pax_keys: Vec<&'static [u8]> = vec![
            b"path",
            b"linkpath",
            b"size",
            b"uid",
            b"gid",
            b"mtime",
            b"atime",
            b"uname",
            b"comment",
            b"GNU.sparse.major",
            b"GNU.sparse.size",
            b"GNU.sparse.map",
            b"SCHILY.xattr.user.fuzz",
            b"SCHILY.xattr.security.capability",
            b"SCHILY.xattr.trusted.fuzz",
            b"SCHILY.xattr.",
            b"LIBARCHIVE.xattr.user.x",
            b"",
        ];
        let mut pax_values: Vec<Vec<u8>> = [
            &b""[..],
            b"0",
            b"-1",
            b"1.5",
            b"-1.5",
            b"-0.000000001",
            b"1.1234567891234",
            b"1.",
            b".5",
            b"1e3",
            b"+1",
            b" 1",
            b"9223372036854775807",
            b"-9223372036854775808",
            b"9223372036854775808",
            b"18446744073709551615",
            b"18446744073709551616",
            b"4294967296",
            b"abc",
            b"\xff",
            b"=",
        ]
        .iter()
        .map(|v| v.to_vec())
        .collect();
        pax_values.extend(names.iter().cloned());
        Dictionary {
            names,
            numbers,
            pax_keys,
            pax_values,
        }
    }

    fn name(&self, rng: &mut Rng, tar: &Tar) -> Vec<u8> {
        // Names already in the archive: duplicates, links to them, paths through them.
        if !tar.members.is_empty() && rng.one_in(3) {
            let m = rng.pick(&tar.members);
            let name = &m.header[NAME.0..NAME.0 + NAME.1];
            let name = name.split(|b| *b == 0).next().unwrap_or(b"").to_vec();
            return match rng.below(3) {
                0 => name,
                1 => [&name[..], b"/x"].concat(),
                _ => [&name[..], b"/../../x"].concat(),
            };
        }
        rng.pick(&self.names).clone()
    }
}

const TYPEFLAGS: &[u8] = b"0123456789xgLKSDMNVA\0 ";

fn random_member(rng: &mut Rng, dict: &Dictionary, tar: &Tar) -> Member {
    let name = dict.name(rng, tar);
    let link = dict.name(rng, tar);
    match rng.below(8) {
        0 => pax(&[(
            *rng.pick(&dict.pax_keys),
            &rng.pick(&dict.pax_values).clone(),
        )]),
        1 => long_name(*rng.pick(b"LK"), &name),
        2 => member(&name, b'2', &link, b""),
        3 => member(&name, b'1', &link, b""),
        4 => member(&name, b'5', b"", b""),
        5 => {
            let len = rng.small_len(3000);
            member(&name, b'0', b"", &vec![*rng.pick(b"\0a"); len])
        }
        6 => member(&name, *rng.pick(TYPEFLAGS), &link, b"data"),
        _ => member(&name, b'6', b"", b""),
    }
}

/// One structural mutation of a tar: a header field, a pax record, a member added,
/// removed, repeated or moved, or content resized; most keep checksums valid.
pub fn mutate_tar(rng: &mut Rng, dict: &Dictionary, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut tar = Tar::parse(input);
    let others = Tar::parse(other);
    let rounds = 1 + rng.below(3);
    let mut keep_checksums = false;
    for _ in 0..rounds {
        if tar.members.is_empty() {
            tar.members.push(random_member(rng, dict, &tar));
            continue;
        }
        let i = rng.below(tar.members.len());
        match rng.below(16) {
            0 | 1 => {
                let field = *rng.pick(NUMERIC);
                let n = *rng.pick(&dict.numbers);
                let m = &mut tar.members[i];
                match rng.below(4) {
                    0 => {
                        let odd: [&[u8]; 6] = [b"", b" ", b"8", b"-1", b"0x1", b"77777777777777"];
                        let value = odd[rng.below(odd.len())];
                        set(&mut m.header, field, value);
                    }
                    _ => set_octal(&mut m.header, field, n),
                }
            }
            2 | 3 => {
                let field = *rng.pick(NAMES);
                let name = dict.name(rng, &tar);
                set(&mut tar.members[i].header, field, &name);
            }
            4 => tar.members[i].header[TYPEFLAG.0] = *rng.pick(TYPEFLAGS),
            5 => {
                let m = random_member(rng, dict, &tar);
                let at = rng.below(tar.members.len() + 1);
                tar.members.insert(at, m);
            }
            6 => {
                tar.members.remove(i);
            }
            7 => {
                let m = tar.members[i].clone();
                let at = rng.below(tar.members.len() + 1);
                tar.members.insert(at, m);
            }
            8 if !others.members.is_empty() => {
                let m = rng.pick(&others.members).clone();
                let at = rng.below(tar.members.len() + 1);
                tar.members.insert(at, m);
            }
            9 => {
                // Content resized with the size field following, or not.
                let m = &mut tar.members[i];
                let len = match rng.below(3) {
                    0 => 0,
                    1 => m.data.len() + rng.small_len(2048),
                    _ => rng.below(m.data.len() + 1),
                };
                m.data.resize(len, *rng.pick(b"\0z"));
                if !rng.one_in(4) {
                    set_octal(&mut m.header, SIZE, len as u64);
                }
            }
            10 | 11 => {
                // A pax record changed, added or removed.
                let m = &mut tar.members[i];
                if m.header[TYPEFLAG.0] != b'x' {
                    let new = pax(&[(
                        *rng.pick(&dict.pax_keys),
                        &rng.pick(&dict.pax_values).clone(),
                    )]);
                    tar.members.insert(i, new);
                    continue;
                }
                let mut records = pax_records(&m.data);
                let key = *rng.pick(&dict.pax_keys);
                let value = rng.pick(&dict.pax_values).clone();
                match rng.below(4) {
                    0 if !records.is_empty() => {
                        let r = rng.below(records.len());
                        records.remove(r);
                    }
                    1 if !records.is_empty() => {
                        // A length that lies.
                        let r = rng.below(records.len());
                        let body = records[r]
                            .splitn(2, |b| *b == b' ')
                            .nth(1)
                            .unwrap_or(b"")
                            .to_vec();
                        let len =
                            records[r].len() as i64 + *rng.pick(&[-2i64, -1, 1, 2, 100, 1 << 40]);
                        records[r] = [format!("{len} ").as_bytes(), &body].concat();
                    }
                    _ => {
                        let at = rng.below(records.len() + 1);
                        records.insert(at, pax_record(key, &value));
                    }
                }
                m.data = records.concat();
                set_octal(&mut m.header, SIZE, m.data.len() as u64);
            }
            12 => {
                let j = rng.below(tar.members.len());
                tar.members.swap(i, j);
            }
            13 => {
                // Bytes of content or of a header, checksum fixed afterwards.
                let m = &mut tar.members[i];
                if rng.one_in(2) && !m.data.is_empty() {
                    mutate_bytes(rng, &mut m.data, other, 64 * 1024);
                } else {
                    let mut h = m.header.to_vec();
                    mutate_bytes(rng, &mut h, other, BLOCK);
                    h.resize(BLOCK, 0);
                    m.header.copy_from_slice(&h);
                }
            }
            14 => {
                tar.tail = match rng.below(4) {
                    0 => Vec::new(),
                    1 => vec![0; BLOCK],
                    2 => end(),
                    _ => [end(), b"trailing garbage".to_vec()].concat(),
                };
            }
            _ => {
                keep_checksums = true;
                let m = &mut tar.members[i];
                let at = rng.below(BLOCK);
                m.header[at] ^= 1 << rng.below(8);
            }
        }
    }
    if !keep_checksums {
        for m in &mut tar.members {
            fix_checksum(&mut m.header);
        }
    }
    let mut out = tar.write();
    if rng.one_in(8) {
        mutate_bytes(rng, &mut out, other, super::runner::MAX_INPUT);
    }
    out
}

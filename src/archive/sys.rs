//! The system calls archiving and extraction make relative to a folder descriptor, which
//! std has no form of, as small safe wrappers over rustix (and libc where rustix has no
//! equivalent). Walking by `openat` with `O_NOFOLLOW` means a container swapping a folder
//! for a symlink mid-backup cannot make holdfast, running as root, read host files
//! outside the volume; extracting the same way means an archive cannot make it write
//! there.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use rustix::fs::{Advice, AtFlags, Gid, Mode, RawDir, Timespec, Timestamps, Uid, XattrFlags};
pub(crate) use rustix::fs::{CWD, FileType, OFlags, Stat};
use rustix::io::Errno;

fn os<T>(r: rustix::io::Result<T>) -> io::Result<T> {
    r.map_err(io::Error::from)
}

/// What a [`Stat`] describes: a folder, a regular file, a symlink...
pub(crate) fn file_type(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

/// `lstat` relative to a folder descriptor.
pub(crate) fn stat_at(dir: impl AsFd, name: &CStr) -> io::Result<Stat> {
    os(rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW))
}

pub(crate) fn stat_fd(fd: impl AsFd) -> io::Result<Stat> {
    os(rustix::fs::fstat(fd))
}

fn openat(dir: impl AsFd, name: &CStr, flags: OFlags, mode: u32) -> rustix::io::Result<OwnedFd> {
    let dir = dir.as_fd();
    let flags = flags | OFlags::CLOEXEC | OFlags::NOCTTY;
    loop {
        match rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(mode)) {
            Err(Errno::INTR) => continue,
            other => return other,
        }
    }
}

/// `openat`, always with `O_CLOEXEC` and `O_NOCTTY`; `mode` is for a file it creates.
pub(crate) fn open_at(
    dir: impl AsFd,
    name: &CStr,
    flags: OFlags,
    mode: u32,
) -> io::Result<OwnedFd> {
    os(openat(dir, name, flags, mode))
}

/// Opens `name` below `dir` to read it, without following a symlink in its place.
/// Non-blocking, so a fifo swapped in for a file cannot hang the backup.
pub(crate) fn open_read_at(dir: impl AsFd, name: &CStr, directory: bool) -> io::Result<OwnedFd> {
    let dir = dir.as_fd();
    let mut flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK;
    if directory {
        flags |= OFlags::DIRECTORY;
    }
    // O_NOATIME keeps a backup from dirtying every inode; only the owner or root may ask.
    match openat(dir, name, flags | OFlags::NOATIME, 0) {
        Err(Errno::PERM) => os(openat(dir, name, flags, 0)),
        other => os(other),
    }
}

pub(crate) fn read_link_at(dir: impl AsFd, name: &CStr) -> io::Result<Vec<u8>> {
    os(rustix::fs::readlinkat(dir, name, Vec::with_capacity(256))).map(CString::into_bytes)
}

/// The names in a folder (without `.` and `..`) with their type as the folder records it
/// (`Unknown` where the filesystem does not), sorted by bytes so that two runs over the
/// same data write the same archive. Reads from the descriptor's current position.
pub(crate) fn list_dir(dir: impl AsFd) -> io::Result<Vec<(CString, FileType)>> {
    // Room for many entries per call, and always for one: names are at most 255 bytes.
    let mut buf = [MaybeUninit::<u8>::uninit(); 32 * 1024];
    let mut entries = RawDir::new(dir.as_fd(), &mut buf);
    let mut names = Vec::new();
    while let Some(entry) = entries.next() {
        let entry = os(entry)?;
        let name = entry.file_name();
        if !matches!(name.to_bytes(), b"." | b"..") {
            names.push((name.to_owned(), entry.file_type()));
        }
    }
    names.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok(names)
}

pub(crate) fn open_dir(path: &std::path::Path) -> io::Result<OwnedFd> {
    let file = File::open(path)?;
    if !file.metadata()?.is_dir() {
        return Err(io::Error::new(io::ErrorKind::NotADirectory, "not a folder"));
    }
    Ok(OwnedFd::from(file))
}

pub(crate) fn mkdir_at(dir: impl AsFd, name: &CStr, mode: u32) -> io::Result<()> {
    os(rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(mode)))
}

pub(crate) fn unlink_at(dir: impl AsFd, name: &CStr) -> io::Result<()> {
    os(rustix::fs::unlinkat(dir, name, AtFlags::empty()))
}

pub(crate) fn symlink_at(to: &CStr, dir: impl AsFd, name: &CStr) -> io::Result<()> {
    os(rustix::fs::symlinkat(to, dir, name))
}

/// Without `AT_SYMLINK_FOLLOW`: a link to a symlink is a link to the symlink itself.
pub(crate) fn link_at(
    from_dir: impl AsFd,
    from: &CStr,
    dir: impl AsFd,
    name: &CStr,
) -> io::Result<()> {
    os(rustix::fs::linkat(
        from_dir,
        from,
        dir,
        name,
        AtFlags::empty(),
    ))
}

/// A fifo, or a device node of `rustix::fs::makedev(major, minor)`.
pub(crate) fn mknod_at(
    dir: impl AsFd,
    name: &CStr,
    kind: FileType,
    mode: u32,
    dev: u64,
) -> io::Result<()> {
    os(rustix::fs::mknodat(
        dir,
        name,
        kind,
        Mode::from_raw_mode(mode),
        dev,
    ))
}

/// `u32::MAX` (-1) leaves the id as it is, as with the raw calls.
fn ids(uid: u32, gid: u32) -> (Option<Uid>, Option<Gid>) {
    (
        (uid != u32::MAX).then(|| Uid::from_raw(uid)),
        (gid != u32::MAX).then(|| Gid::from_raw(gid)),
    )
}

/// `lchown` relative to a folder descriptor.
pub(crate) fn chown_at(dir: impl AsFd, name: &CStr, uid: u32, gid: u32) -> io::Result<()> {
    let (uid, gid) = ids(uid, gid);
    os(rustix::fs::chownat(
        dir,
        name,
        uid,
        gid,
        AtFlags::SYMLINK_NOFOLLOW,
    ))
}

pub(crate) fn chown_fd(fd: impl AsFd, uid: u32, gid: u32) -> io::Result<()> {
    let (uid, gid) = ids(uid, gid);
    os(rustix::fs::fchown(fd, uid, gid))
}

/// Permission bits, including setuid, setgid and sticky.
pub(crate) fn chmod_fd(fd: impl AsFd, mode: u32) -> io::Result<()> {
    os(rustix::fs::fchmod(fd, Mode::from_raw_mode(mode & 0o7777)))
}

/// Sets an extended attribute; `name` must hold no NUL byte.
pub(crate) fn set_xattr_fd(fd: impl AsFd, name: &[u8], value: &[u8]) -> io::Result<()> {
    os(rustix::fs::fsetxattr(fd, name, value, XattrFlags::empty()))
}

fn times((secs, nanos): (i64, i64)) -> Timestamps {
    let t = Timespec {
        tv_sec: secs,
        tv_nsec: nanos,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// Sets both atime and mtime, in seconds and nanoseconds, of `name` itself (a symlink is
/// not followed).
pub(crate) fn set_times_at(dir: impl AsFd, name: &CStr, mtime: (i64, i64)) -> io::Result<()> {
    os(rustix::fs::utimensat(
        dir,
        name,
        &times(mtime),
        AtFlags::SYMLINK_NOFOLLOW,
    ))
}

pub(crate) fn set_times_fd(fd: impl AsFd, mtime: (i64, i64)) -> io::Result<()> {
    os(rustix::fs::futimens(fd, &times(mtime)))
}

pub(crate) fn truncate_fd(fd: impl AsFd, size: u64) -> io::Result<()> {
    os(rustix::fs::ftruncate(fd, size))
}

/// Writes all of `data` at `off`.
pub(crate) fn pwrite_all(fd: impl AsFd, mut data: &[u8], mut off: u64) -> io::Result<()> {
    let fd = fd.as_fd();
    while !data.is_empty() {
        match rustix::io::pwrite(fd, data, off) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                data = &data[n..];
                off += n as u64;
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Starts writing the range to disk without waiting for it. Advice only: errors are
/// ignored.
pub(crate) fn start_writeback(fd: impl AsFd, off: u64, len: u64) {
    // rustix has no sync_file_range.
    // SAFETY: a valid descriptor for the duration of the call; the call takes no pointers.
    unsafe {
        libc::sync_file_range(
            fd.as_fd().as_raw_fd(),
            off as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        )
    };
}

/// Asks for a larger readahead window on a file read from start to end. Advice only.
pub(crate) fn advise_sequential(fd: impl AsFd) {
    let _ = rustix::fs::fadvise(fd, 0, None, Advice::Sequential);
}

/// Makes everything written to the filesystem holding `fd` durable.
pub(crate) fn sync_fs(fd: impl AsFd) -> io::Result<()> {
    os(rustix::fs::syncfs(fd))
}

/// User and group names by id, looked up once each: many files, few owners.
#[derive(Default)]
pub(crate) struct Owners {
    users: HashMap<u32, Vec<u8>>,
    groups: HashMap<u32, Vec<u8>>,
}

impl Owners {
    pub(crate) fn resolve(&mut self, uid: u32, gid: u32) {
        self.users.entry(uid).or_insert_with(|| user_name(uid));
        self.groups.entry(gid).or_insert_with(|| group_name(gid));
    }

    /// The names of ids passed to `resolve` before; empty otherwise.
    pub(crate) fn names(&self, uid: u32, gid: u32) -> (&[u8], &[u8]) {
        (
            self.users.get(&uid).map_or(&[][..], |n| &n[..]),
            self.groups.get(&gid).map_or(&[][..], |n| &n[..]),
        )
    }
}

/// An id without a name (common for container users) maps to an empty name.
fn user_name(uid: u32) -> Vec<u8> {
    let mut buf = vec![0 as libc::c_char; 4096];
    // SAFETY: all-zero passwd is valid; getpwuid_r fills it, pointing into `buf`.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: all pointers are live for the call; the buffer length is passed.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() {
        return Vec::new();
    }
    // SAFETY: on success pw_name points to a NUL-terminated string inside `buf`.
    unsafe { CStr::from_ptr(pwd.pw_name) }.to_bytes().to_vec()
}

fn group_name(gid: u32) -> Vec<u8> {
    let mut buf = vec![0 as libc::c_char; 4096];
    // SAFETY: as in `user_name`.
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: as in `user_name`.
    let rc = unsafe { libc::getgrgid_r(gid, &mut grp, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() {
        return Vec::new();
    }
    // SAFETY: as in `user_name`.
    unsafe { CStr::from_ptr(grp.gr_name) }.to_bytes().to_vec()
}

pub(crate) fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

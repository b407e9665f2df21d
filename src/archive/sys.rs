//! The few system calls the walker needs that std has no fd-relative form of. Walking by
//! `openat` with `O_NOFOLLOW` means a container swapping a folder for a symlink mid-backup
//! cannot make holdfast, running as root, read host files outside the volume.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `lstat` relative to a folder descriptor.
pub(crate) fn stat_at(dir: &OwnedFd, name: &CStr) -> io::Result<libc::stat> {
    // SAFETY: an all-zero `stat` is a valid value; fstatat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd, NUL-terminated name, and a pointer to a live `stat`.
    check(unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(st)
}

pub(crate) fn stat_fd(fd: &impl AsRawFd) -> io::Result<libc::stat> {
    // SAFETY: as above.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and a pointer to a live `stat`.
    check(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}

/// Opens `name` below `dir` without following a symlink in its place. Non-blocking, so a
/// fifo swapped in for a file cannot hang the backup.
pub(crate) fn open_at(dir: &OwnedFd, name: &CStr, directory: bool) -> io::Result<OwnedFd> {
    let mut flags =
        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK;
    if directory {
        flags |= libc::O_DIRECTORY;
    }
    // O_NOATIME keeps a backup from dirtying every inode; only the owner or root may ask.
    // SAFETY: valid fd and NUL-terminated name; the result is checked before use.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags | libc::O_NOATIME) };
    let fd = if fd < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EPERM) {
        // SAFETY: as above.
        unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags) }
    } else {
        fd
    };
    let fd = check(fd)?;
    // SAFETY: `fd` was just returned by openat and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub(crate) fn read_link_at(dir: &OwnedFd, name: &CStr) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: the buffer is live and its length is passed.
        let n = unsafe {
            libc::readlinkat(
                dir.as_raw_fd(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        if n < buf.len() {
            buf.truncate(n);
            return Ok(buf);
        }
        buf.resize(buf.len() * 2, 0);
    }
}

/// The names in a folder (without `.` and `..`) with their `d_type`, sorted by bytes so
/// that two runs over the same data write the same archive.
pub(crate) fn list_dir(dir: &OwnedFd) -> io::Result<Vec<(CString, u8)>> {
    // fdopendir takes ownership of the descriptor it is given, so give it a duplicate.
    // SAFETY: valid fd.
    let dup = check(unsafe { libc::fcntl(dir.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) })?;
    // SAFETY: `dup` is an open descriptor we own.
    let stream = unsafe { libc::fdopendir(dup) };
    if stream.is_null() {
        let err = io::Error::last_os_error();
        // SAFETY: fdopendir failed, so `dup` is still ours to close.
        unsafe { libc::close(dup) };
        return Err(err);
    }
    let mut names = Vec::new();
    let result = loop {
        // readdir reports errors only through errno, so clear it first.
        // SAFETY: errno is thread-local.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: `stream` is a live DIR*.
        let ent = unsafe { libc::readdir(stream) };
        if ent.is_null() {
            let err = io::Error::last_os_error();
            break if err.raw_os_error().unwrap_or(0) == 0 {
                Ok(())
            } else {
                Err(err)
            };
        }
        // SAFETY: readdir returned a live dirent whose d_name is NUL-terminated.
        let (name, kind) = unsafe { (CStr::from_ptr((*ent).d_name.as_ptr()), (*ent).d_type) };
        let bytes = name.to_bytes();
        if bytes != b"." && bytes != b".." {
            names.push((name.to_owned(), kind));
        }
    };
    // SAFETY: `stream` is live and closed once; it closes `dup`.
    unsafe { libc::closedir(stream) };
    result?;
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
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

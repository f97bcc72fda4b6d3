//! The one disk the log and redb share, and redb's file written back so that the log waits
//! little.
//!
//! A durable write waits for the log's synced append (~0.1 ms). redb's commit, every 50 ms, is
//! 1-3 ms of CPU and then a sync of what it wrote: at one connection ~50 pages, 0.6-1.0 ms on this
//! project's disk, nearly all of it writing the pages back (`sync_file_range` of 50 dirty pages
//! took 0.51 ms at p50, the `fdatasync` after it 0.05). Both used to hold up the one request in a
//! hundred that came meanwhile, at one connection the whole added p99 (`tollgate-bench`: 1.5-3.0
//! ms; 0.84-1.02 with no redb commit during the run):
//! - the disk serves one at a time, so an append waited for all of redb's sync. Here redb's pages
//!   go back in slices of `SLICE` bytes, each holding the disk alone, and the log goes first
//!   whenever it waits (passing a waiting slice once at most); the `fdatasync` that ends the
//!   sync then finds them written and only flushes.
//! - the scheduler (EEVDF, Linux 6.6 on) lets a running thread finish its slice, up to a few ms,
//!   before a thread that wakes on its core runs: the logger whose append completed, the worker
//!   it answers, the client. So the committer yields its core every few pages it writes (here)
//!   and every few items it adds to the tables (`commit`): a thread waiting for that core runs
//!   at once, and when none waits the yield returns straight away.
//!
//! What is durable, and when, is unchanged: redb's commit still returns after an `fdatasync` of
//! its file. With both, the added p99 at one connection was 0.70-0.98 ms in eleven runs
//! (`tollgate-bench BIN 5 1`), against 1.59-3.03 in seven runs of the build before.

use std::fs::File;
use std::io;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

/// How much of redb's written pages one turn on the disk writes back: ~10 µs a page here, so
/// an append that arrives meanwhile waits ~80 µs at most.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
const SLICE: u64 = 32 * 1024;

/// How many of redb's page writes go between two yields of the core (~50 µs of CPU).
const YIELD_EVERY: usize = 8;

/// Whose turn it is on the disk. The log's appends go first: a writer waits for each, while
/// nobody waits for redb's commits. But an append passes a waiting write-back once at most:
/// under a steady stream of appends (the log busy at many connections), redb's sync still
/// moves a slice for every append, where a gap between two appends that it had to win the
/// race for could take long to come, and its commit with it.
#[derive(Default)]
pub(super) struct Disk {
    state: Mutex<Turns>,
    free: Condvar,
}

#[derive(Default)]
struct Turns {
    busy: bool,
    /// Logs waiting for the disk; the background waits while any does, unless one passed it.
    first: usize,
    /// Write-backs waiting for the disk.
    background: usize,
    /// A log took the disk while a write-back waited: the write-back goes next.
    passed: bool,
    /// Anyone waiting at all, so that a release with nobody waiting wakes nobody.
    waiting: usize,
}

impl Turns {
    fn may_take(&self, urgent: bool) -> bool {
        !self.busy && if urgent { !(self.passed && self.background > 0) } else { self.first == 0 || self.passed }
    }

    fn queue(&mut self, urgent: bool) -> &mut usize {
        if urgent { &mut self.first } else { &mut self.background }
    }
}

/// The disk held, until dropped.
pub(super) struct Turn<'a>(&'a Disk);

impl Disk {
    fn state(&self) -> MutexGuard<'_, Turns> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take(&self, urgent: bool) -> Turn<'_> {
        let mut turns = self.state();
        if !turns.may_take(urgent) {
            turns.waiting += 1;
            *turns.queue(urgent) += 1;
            while !turns.may_take(urgent) {
                turns = self.free.wait(turns).unwrap_or_else(PoisonError::into_inner);
            }
            turns.waiting -= 1;
            *turns.queue(urgent) -= 1;
        }
        turns.passed = urgent && turns.background > 0;
        turns.busy = true;
        Turn(self)
    }

    /// The disk for a write someone waits on (the log's append), ahead of the background's
    /// (of a write-back that waits, once).
    pub(super) fn first(&self) -> Turn<'_> {
        self.take(true)
    }

    /// The disk for work nobody waits on (redb's write-back), once no first one waits or one
    /// has passed it.
    pub(super) fn background(&self) -> Turn<'_> {
        self.take(false)
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut turns = self.0.state();
        turns.busy = false;
        if turns.waiting > 0 {
            self.0.free.notify_all();
        }
    }
}

/// redb's file: redb's own backend, with its writes noted so that its sync can write them back
/// a slice at a time.
pub(super) struct SlicedFile {
    inner: FileBackend,
    /// The same file, for `sync_file_range` and `fdatasync`.
    file: File,
    /// Byte ranges written since the last sync.
    written: Mutex<Vec<(u64, u64)>>,
    disk: Arc<Disk>,
    /// `sync_file_range` was refused as unsupported here: the sync is the `fdatasync` alone.
    unsliced: AtomicBool,
}

impl std::fmt::Debug for SlicedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlicedFile").finish_non_exhaustive()
    }
}

impl SlicedFile {
    pub(super) fn new(file: File, disk: Arc<Disk>) -> io::Result<Self> {
        let own = file.try_clone()?;
        Ok(SlicedFile {
            inner: FileBackend::new(file).map_err(io::Error::other)?,
            file: own,
            written: Mutex::default(),
            disk,
            unsliced: AtomicBool::new(false),
        })
    }

    /// Writes back the pages written since the last sync, a slice at a time, each slice with the
    /// disk to itself.
    #[cfg(target_os = "linux")]
    fn write_back(&self) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let fd = self.file.as_raw_fd();
        self.write_back_with(|offset, len, flags| sync_range(fd, offset, len, flags))
    }

    /// `write_back` through `sync` (`sync_file_range`'s arguments). Where the system refuses
    /// the call itself (a seccomp filter, an emulator, a file system without it), the pages are
    /// left to the `fdatasync` that follows, which writes back everything anyway: slicing only
    /// orders the disk's work, so going without it must not fail the commit as an I/O error does.
    #[cfg(target_os = "linux")]
    fn write_back_with(&self, mut sync: impl FnMut(u64, u64, libc::c_uint) -> io::Result<()>) -> io::Result<()> {
        let ranges = std::mem::take(&mut *self.written.lock().unwrap_or_else(PoisonError::into_inner));
        if self.unsliced.load(Ordering::Relaxed) {
            return Ok(());
        }
        let sliced = || {
            for slice in slices(ranges, SLICE) {
                let _turn = self.disk.background();
                // The slice's writes are started together, then waited for over the span they
                // cover: waiting does not start the writing of the other dirty pages in that
                // span (the next slices'), as a span given `SYNC_FILE_RANGE_WRITE` would.
                for &(offset, len) in &slice {
                    sync(offset, len, libc::SYNC_FILE_RANGE_WRITE)?;
                }
                let (start, end) = (slice[0].0, slice.last().map_or(0, |(o, l)| o + l));
                sync(start, end - start, libc::SYNC_FILE_RANGE_WAIT_AFTER)?;
            }
            Ok(())
        };
        match sliced() {
            Err(e) if unsupported(&e) => {
                self.unsliced.store(true, Ordering::Relaxed);
                tracing::warn!(error = %e, "sync_file_range is refused here; redb's file is synced whole, without giving the log's appends the disk between its pages");
                Ok(())
            }
            other => other,
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn write_back(&self) -> io::Result<()> {
        self.written.lock().unwrap_or_else(PoisonError::into_inner).clear();
        Ok(())
    }
}

/// Whether `sync_file_range` failed for want of support rather than of the disk (EIO, ENOSPC
/// and the like stay errors).
#[cfg(target_os = "linux")]
fn unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM | libc::EINVAL | libc::ESPIPE | libc::EOPNOTSUPP))
}

#[cfg(target_os = "linux")]
fn sync_range(fd: std::os::fd::RawFd, offset: u64, len: u64, flags: libc::c_uint) -> io::Result<()> {
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Err(io::Error::other("a range past what sync_file_range takes"));
    };
    // SAFETY: a plain system call on a file descriptor this backend owns.
    match unsafe { libc::sync_file_range(fd, offset, len, flags) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// `ranges` sorted, overlapping and touching ones merged, and grouped into slices of about
/// `size` bytes each (a range longer than `size` is cut).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn slices(mut ranges: Vec<(u64, u64)>, size: u64) -> Vec<Vec<(u64, u64)>> {
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (offset, len) in ranges {
        match merged.last_mut() {
            Some((o, l)) if offset <= *o + *l => *l = (*l).max(offset + len - *o),
            _ => merged.push((offset, len)),
        }
    }
    let mut out: Vec<Vec<(u64, u64)>> = Vec::new();
    let mut filled = size;
    for (mut offset, mut len) in merged {
        while len > 0 {
            if filled >= size {
                out.push(Vec::new());
                filled = 0;
            }
            let take = len.min(size - filled);
            out.last_mut().expect("a slice was pushed").push((offset, take));
            (offset, len, filled) = (offset + take, len - take, filled + take);
        }
    }
    out
}

impl StorageBackend for SlicedFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.write_back()?;
        let _turn = self.disk.background();
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        // Into the page cache: the disk is not touched until the sync.
        self.inner.write(offset, data)?;
        let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        written.push((offset, data.len() as u64));
        let count = written.len();
        drop(written);
        // redb writes a commit's pages (and checksums them) in one burst: let a thread that
        // woke on this core run between every few.
        if count.is_multiple_of(YIELD_EVERY) {
            std::thread::yield_now();
        }
        Ok(())
    }

    fn close(&self) -> io::Result<()> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_ranges_are_merged_and_cut_into_slices() {
        let got = slices(vec![(8192, 4096), (0, 4096), (4096, 4096), (100_000, 10), (2048, 100)], 8192);
        assert_eq!(got, vec![vec![(0, 8192)], vec![(8192, 4096), (100_000, 10)]]);
        assert_eq!(slices(vec![(0, 20_000)], 8192), vec![vec![(0, 8192)], vec![(8192, 8192)], vec![(16384, 3616)]]);
        assert!(slices(vec![], 8192).is_empty());
    }

    type Order = Arc<Mutex<Vec<&'static str>>>;

    /// Spins until the gate's state is as `done` says (a thread queued, say).
    fn wait_until(disk: &Disk, done: impl Fn(&Turns) -> bool) {
        while !done(&disk.state()) {
            std::thread::yield_now();
        }
    }

    /// A thread that takes the disk (`first` when `urgent`, else `background`), notes `name` in
    /// `order` once it has it, and holds it until `release` says so, if given.
    fn taker(disk: &Arc<Disk>, order: &Order, urgent: bool, name: &'static str, release: Option<std::sync::mpsc::Receiver<()>>) -> std::thread::JoinHandle<()> {
        let (disk, order) = (disk.clone(), order.clone());
        std::thread::spawn(move || {
            let _turn = if urgent { disk.first() } else { disk.background() };
            order.lock().unwrap().push(name);
            if let Some(release) = release {
                release.recv().unwrap();
            }
        })
    }

    #[test]
    fn a_first_comer_goes_before_the_background() {
        let (disk, order): (Arc<Disk>, Order) = Default::default();
        let held = disk.first();
        let background = taker(&disk, &order, false, "background", None);
        wait_until(&disk, |t| t.background == 1);
        let first = taker(&disk, &order, true, "first", None);
        wait_until(&disk, |t| t.first == 1);
        drop(held);
        first.join().unwrap();
        background.join().unwrap();
        assert_eq!(*order.lock().unwrap(), vec!["first", "background"]);
    }

    #[test]
    fn a_first_comer_passes_a_waiting_write_back_once() {
        let (disk, order): (Arc<Disk>, Order) = Default::default();
        let held = disk.first();
        let background = taker(&disk, &order, false, "background", None);
        wait_until(&disk, |t| t.background == 1);
        let (release, released) = std::sync::mpsc::channel();
        let first = taker(&disk, &order, true, "first", Some(released));
        wait_until(&disk, |t| t.first == 1);
        drop(held);
        // The first comer goes ahead of the waiting write-back; a second one, waiting while it
        // holds the disk, goes after the write-back.
        while order.lock().unwrap().is_empty() {
            std::thread::yield_now();
        }
        let second = taker(&disk, &order, true, "second", None);
        wait_until(&disk, |t| t.first == 1);
        release.send(()).unwrap();
        for thread in [first, background, second] {
            thread.join().unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec!["first", "background", "second"]);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_refused_sync_file_range_leaves_the_sync_to_fdatasync() {
        let dir = tempfile::tempdir().unwrap();
        let open = |name: &str| {
            let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(dir.path().join(name)).unwrap();
            SlicedFile::new(file, Arc::new(Disk::default())).unwrap()
        };
        let refused = open("refused");
        refused.write(0, &[7; 8192]).unwrap();
        let mut calls = 0;
        refused
            .write_back_with(|_, _, _| {
                calls += 1;
                Err(io::Error::from_raw_os_error(libc::ENOSYS))
            })
            .unwrap();
        assert_eq!(calls, 1);
        // Not asked again, and the written ranges do not pile up meanwhile.
        refused.write(8192, &[7; 4096]).unwrap();
        refused.write_back_with(|_, _, _| panic!("sync_file_range was refused before")).unwrap();
        assert!(refused.written.lock().unwrap().is_empty());
        refused.sync_data().unwrap();
        let mut back = [0; 4096];
        refused.read(8192, &mut back).unwrap();
        assert_eq!(back, [7; 4096]);

        // The disk's own failure stays one.
        let failing = open("failing");
        failing.write(0, &[7; 4096]).unwrap();
        let error = failing.write_back_with(|_, _, _| Err(io::Error::from_raw_os_error(libc::EIO))).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::EIO));
        assert!(!failing.unsliced.load(Ordering::Relaxed));
    }
}

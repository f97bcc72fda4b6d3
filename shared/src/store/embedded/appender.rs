//! A log file appended to in place, each append on disk when it returns.
//!
//! Where the filesystem allows, the file is opened `O_DIRECT | O_DSYNC`: an append goes from our
//! buffer to the disk and is synced by the same call, without the page cache's copy and
//! writeback and without a second call to `fdatasync`. On this project's disk that was 30-39 µs
//! of CPU per synced append of 1,200 bytes against 41-55 (a micro-benchmark), and 0.08-0.12 ms
//! at p50 for 4 KiB against 0.19-0.26 (`scripts/bench`'s probe). Such writes must be whole blocks, from and to aligned places, so the
//! last partial block is kept in memory and written again, with the next bytes, by the next
//! append, and what follows the new bytes in their last block is written as zeros. Rewriting
//! the block cannot lose what it held: those bytes are written unchanged, so a torn write tears
//! only the new ones (whose writers were not yet told they were durable).
//! Elsewhere (filesystems that refuse `O_DIRECT`, tmpfs before Linux 6.6 among them, and
//! platforms without it), a plain write and `fdatasync`.
//!
//! The benchmark's durable forwarder includes this file too (`bench/src/forwarder.rs`), so the
//! floor it measures writes the same way the gateway's log does.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

/// Whether `e` says the filesystem will not do direct writes (EINVAL from most, EOPNOTSUPP from
/// a few).
fn refused(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EOPNOTSUPP))
}

/// The unit of a direct write: a multiple of every logical block size in use (512 or 4096).
const BLOCK: usize = 4096;

/// The flags of a direct, synced append, where the platform has them (macOS has no `O_DIRECT`:
/// there the log is written through the page cache).
#[cfg(target_os = "linux")]
const DIRECT: Option<libc::c_int> = Some(libc::O_DIRECT | libc::O_DSYNC);
#[cfg(not(target_os = "linux"))]
const DIRECT: Option<libc::c_int> = None;

pub struct Appender {
    file: File,
    direct: bool,
    /// Where the next bytes go.
    end: u64,
    /// Direct only: the bytes of the block `end` falls in, before `end`.
    tail: Vec<u8>,
    /// Direct only: room for one append's blocks, at an aligned offset within it.
    buf: Vec<u8>,
}

impl Appender {
    /// Opens the existing file at `path` to append from its beginning: directly where the
    /// filesystem allows and `direct` is asked for, else buffered. Opening directly writes the
    /// first block back as it was (a file shorter than a block is made one, with zeros).
    pub fn open(path: &Path, direct: bool) -> io::Result<Self> {
        let plain = || File::options().write(true).open(path);
        let file = match DIRECT.filter(|_| direct) {
            Some(flags) => match File::options().write(true).custom_flags(flags).open(path) {
                Ok(file) => Some(file),
                Err(e) if refused(&e) => None,
                Err(e) => return Err(e),
            },
            None => None,
        };
        let mut appender = match file {
            Some(file) => Self { file, direct: true, end: 0, tail: Vec::new(), buf: Vec::new() },
            None => Self { file: plain()?, direct: false, end: 0, tail: Vec::new(), buf: Vec::new() },
        };
        // Some filesystems take the flag and refuse the writes: learn it now, by writing the
        // first block as it stands (the caller has read what it needs of the file), whole
        // even where the file is shorter, so that the probe always writes.
        if appender.direct {
            let mut first = vec![0u8; BLOCK];
            std::fs::File::open(path)?.read_at(&mut first, 0)?;
            match appender.append(&first) {
                Ok(()) => appender.restart(),
                Err(e) if refused(&e) => {
                    appender.file = plain()?;
                    appender.direct = false;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(appender)
    }

    /// Whether appends bypass the page cache.
    pub fn direct(&self) -> bool {
        self.direct
    }

    /// Where the next append goes.
    #[cfg(test)]
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Appends from the beginning of the file again, over what it holds.
    pub fn restart(&mut self) {
        self.end = 0;
        self.tail.clear();
    }

    /// Writes `bytes` at the end; returns once they are on disk.
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        if !self.direct {
            self.file.write_all_at(bytes, self.end)?;
            self.file.sync_data()?;
            self.end += bytes.len() as u64;
            return Ok(());
        }
        let start = self.end - self.tail.len() as u64;
        let len = self.tail.len() + bytes.len();
        let blocks = len.div_ceil(BLOCK) * BLOCK;
        if self.buf.len() < blocks + BLOCK {
            self.buf = vec![0; (blocks + BLOCK).next_power_of_two()];
        }
        let at = self.buf.as_ptr().align_offset(BLOCK);
        let out = &mut self.buf[at..at + blocks];
        out[..self.tail.len()].copy_from_slice(&self.tail);
        out[self.tail.len()..len].copy_from_slice(bytes);
        // Past the end the file holds zeros (written ahead), nothing, or after a restart older
        // bytes: zeros there end what a reader takes, as they did.
        out[len..].fill(0);
        self.file.write_all_at(out, start)?;
        self.end += bytes.len() as u64;
        self.tail.clear();
        self.tail.extend_from_slice(&out[len - len % BLOCK..len]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Appends pieces of every size around a block's, restarts, appends again, and checks that
    /// the file holds exactly what was appended since, over the zeros or older bytes past it.
    fn appends_land_in_place(direct: bool) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, vec![0u8; 5 * BLOCK]).unwrap();
        let mut log = Appender::open(&path, direct).unwrap();
        assert!(direct || !log.direct());
        let mut expected = Vec::new();
        for (i, size) in [1, 100, BLOCK - 101, BLOCK, 3, BLOCK + 7, 2 * BLOCK].into_iter().enumerate() {
            let piece = vec![i as u8 + 1; size];
            log.append(&piece).unwrap();
            expected.extend_from_slice(&piece);
            assert_eq!(log.end(), expected.len() as u64);
            let file = std::fs::read(&path).unwrap();
            assert!(file[..expected.len()] == expected[..], "after the append of {size} bytes");
            assert!(file[expected.len()..].iter().all(|&b| b == 0), "nothing written past the end");
        }
        let longer = expected.len();
        assert!(longer > 5 * BLOCK, "the file grew past its prepared size");
        log.restart();
        log.append(b"again").unwrap();
        let file = std::fs::read(&path).unwrap();
        assert_eq!(&file[..5], b"again");
        // A direct append writes its last block whole, zeros after its bytes; nothing else
        // of what the file held changes.
        let kept = if log.direct() { BLOCK } else { 5 };
        assert!(file[5..kept].iter().all(|&b| b == 0), "zeros to the end of the block");
        assert!(file[kept..longer] == expected[kept..], "a restart overwrites only what it writes");
    }

    #[test]
    fn direct_appends_land_in_place_block_by_block() {
        appends_land_in_place(true);
    }

    #[test]
    fn buffered_appends_land_in_place() {
        appends_land_in_place(false);
    }

    #[test]
    fn opening_an_empty_file_directly_makes_it_a_block_of_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, b"").unwrap();
        let log = Appender::open(&path, true).unwrap();
        let file = std::fs::read(&path).unwrap();
        if log.direct() {
            assert!(file.len() == BLOCK && file.iter().all(|&b| b == 0), "the probe wrote a block");
        } else {
            assert!(file.is_empty());
        }
    }

    #[test]
    fn opening_leaves_the_file_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let before: Vec<u8> = (0..3 * BLOCK + 5).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &before).unwrap();
        drop(Appender::open(&path, true).unwrap());
        assert!(std::fs::read(&path).unwrap() == before, "the probe writes the first block back as it was");
    }
}

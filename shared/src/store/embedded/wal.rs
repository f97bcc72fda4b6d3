//! The embedded store's write-ahead log. A write someone waits on is durable once its record
//! is in the log: one small write and one `fdatasync`, about a fifth of what a redb commit
//! (a dozen scattered pages, then a sync) costs here. redb still takes every write, in the
//! background.
//!
//! The log is two files used in turn, one per round: a round starts when the committer takes a
//! batch for redb, and its file is written from the beginning again. By then the records there
//! are two rounds old, so redb has them all: the commit that ended the round after theirs is
//! durable before the next batch is taken. The files are written ahead of use (zeros), so a
//! sync has no file size or block map to update.
//!
//! A record is `magic, length, crc32, seq, payload`, where `seq` is the last transaction the
//! record covers and the payload the items written since the previous record (newest version
//! of each; `null` for a deleted one). Reading a file stops at the first record that is torn,
//! fails its checksum or does not follow the one before (a leftover of an earlier round);
//! records redb already holds are skipped, and both files' records are replayed in `seq` order.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use prost::encoding::encode_varint;

use super::{backend, codec};
use crate::store::{Item, Key, StoreResult};

const MAGIC: u32 = 0x5447_574c; // "TGWL"
const HEADER: usize = 4 + 4 + 4 + 8;
/// Written ahead at creation: room for a second or so of records at full speed before the log
/// grows by appending (which is correct, only slower to sync).
const PREPARED: u64 = 8 << 20;

pub(super) struct Wal {
    files: [File; 2],
    /// Where the next record goes, in each file.
    ends: [u64; 2],
    /// The round being written (None: none yet since opening).
    round: Option<u64>,
}

/// One logged write.
pub(super) type Entry = (Key, Option<Item>);
/// One record read back: the last transaction it covers, and its writes.
pub(super) type Record = (u64, Vec<Entry>);

impl Wal {
    /// Opens (or creates) the log files (`<base>-0`, `<base>-1`); returns the log with the records
    /// to replay, oldest first: those covering transactions after `durable`, the last one redb
    /// holds.
    pub fn open(base: &Path, durable: u64) -> StoreResult<(Self, Vec<Record>)> {
        let mut records = Vec::new();
        let mut open = |n: usize| -> StoreResult<File> {
            let mut path = base.as_os_str().to_owned();
            path.push(format!("-{n}"));
            let mut file = File::options().read(true).write(true).create(true).truncate(false).open(path).map_err(backend)?;
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes).map_err(backend)?;
            records.extend(read_records(&bytes, durable));
            if (bytes.len() as u64) < PREPARED {
                file.seek(SeekFrom::End(0)).map_err(backend)?;
                file.write_all(&vec![0; (PREPARED - bytes.len() as u64) as usize]).map_err(backend)?;
                file.sync_all().map_err(backend)?;
            }
            Ok(file)
        };
        let files = [open(0)?, open(1)?];
        records.sort_by_key(|(seq, _)| *seq);
        Ok((Self { files, ends: [0, 0], round: None }, records))
    }

    /// Appends a record of `round` covering transactions up to `seq`; returns once it is on disk.
    /// Each entry is an item's key and its encoding (`codec::encode`; None for a deletion).
    pub fn append(&mut self, round: u64, seq: u64, entries: &[(&Key, Option<&[u8]>)]) -> StoreResult<()> {
        let n = (round % 2) as usize;
        if self.round != Some(round) {
            // A new round overwrites the file's records of two rounds ago, which redb holds.
            self.round = Some(round);
            self.ends[n] = 0;
        }
        let payload = payload(entries);
        let mut record = Vec::with_capacity(HEADER + payload.len());
        record.extend_from_slice(&MAGIC.to_le_bytes());
        record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        record.extend_from_slice(&checksum(seq, &payload).to_le_bytes());
        record.extend_from_slice(&seq.to_le_bytes());
        record.extend_from_slice(&payload);
        self.files[n].write_all_at(&record, self.ends[n]).map_err(backend)?;
        self.files[n].sync_data().map_err(backend)?;
        self.ends[n] += record.len() as u64;
        Ok(())
    }
}

/// A record's entries: `FORMAT count (pk sk item)*`, each string as `codec` writes one and
/// each item as its length plus one (0: deleted) and its encoding, as already made for redb.
fn payload(entries: &[(&Key, Option<&[u8]>)]) -> Vec<u8> {
    let size: usize = entries.iter().map(|(k, item)| k.pk.len() + k.sk.len() + item.map_or(0, <[u8]>::len) + 12).sum();
    let mut out = Vec::with_capacity(size + 4);
    out.push(codec::FORMAT);
    encode_varint(entries.len() as u64, &mut out);
    for (key, item) in entries {
        codec::put_str(&key.pk, &mut out);
        codec::put_str(&key.sk, &mut out);
        encode_varint(item.map_or(0, |bytes| bytes.len() as u64 + 1), &mut out);
        out.extend_from_slice(item.unwrap_or_default());
    }
    out
}

/// The entries of a payload: this version's, or the JSON `[[pk, sk, item or null], ...]` of
/// earlier ones (a log left by a crash before an upgrade still replays).
fn entries(payload: &[u8]) -> StoreResult<Vec<Entry>> {
    let Some((&codec::FORMAT, mut rest)) = payload.split_first() else {
        let body: Vec<(String, String, Option<Item>)> = serde_json::from_slice(payload).map_err(backend)?;
        return Ok(body.into_iter().map(|(pk, sk, item)| (Key { pk, sk }, item)).collect());
    };
    let n = codec::count(&mut rest)?;
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        let key = Key { pk: codec::take_str(&mut rest)?, sk: codec::take_str(&mut rest)? };
        let item = match codec::varint(&mut rest)? {
            0 => None,
            len => {
                let len = usize::try_from(len - 1).ok().filter(|len| *len <= rest.len()).ok_or_else(|| backend("a logged item runs past its record"))?;
                let (bytes, after) = rest.split_at(len);
                rest = after;
                Some(codec::decode(&key, bytes)?)
            }
        };
        entries.push((key, item));
    }
    Ok(entries)
}

fn checksum(seq: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&seq.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

fn read_records(bytes: &[u8], durable: u64) -> Vec<Record> {
    let mut records = Vec::new();
    let (mut at, mut last) = (0usize, 0u64);
    let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or_default());
    while at + HEADER <= bytes.len() && word(at) == MAGIC {
        let len = word(at + 4) as usize;
        let crc = word(at + 8);
        let seq = u64::from_le_bytes(bytes[at + 12..at + 20].try_into().unwrap_or_default());
        let Some(payload) = bytes.get(at + HEADER..at + HEADER + len) else { break };
        if checksum(seq, payload) != crc || seq <= last {
            break;
        }
        let Ok(entries) = entries(payload) else { break };
        if seq > durable {
            records.push((seq, entries));
        }
        (at, last) = (at + HEADER + len, seq);
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Attr;

    /// The item at `key` in its `n`th version (an item's PK and SK are its key).
    fn item(key: &Key, n: i64) -> Item {
        Item::from([("PK".to_string(), Attr::S(key.pk.clone())), ("SK".to_string(), Attr::S(key.sk.clone())), ("n".to_string(), Attr::S(format!("{n:03}")))])
    }

    fn bytes(key: &Key, n: i64) -> Vec<u8> {
        codec::encode(&item(key, n))
    }

    fn seqs(replay: &[Record]) -> Vec<u64> {
        replay.iter().map(|(s, _)| *s).collect()
    }

    #[test]
    fn a_record_holds_its_entries_and_earlier_json_records_still_read() {
        let (k1, k2) = (Key::new("P\"q", "S1\n"), Key::new("P", "S2"));
        let expected = vec![(k1.clone(), Some(item(&k1, 1))), (k2.clone(), None)];
        assert_eq!(entries(&payload(&[(&k1, Some(&bytes(&k1, 1))), (&k2, None)])).unwrap(), expected);
        let json = serde_json::to_vec(&[(k1.pk.as_str(), k1.sk.as_str(), Some(item(&k1, 1))), (k2.pk.as_str(), k2.sk.as_str(), None)]).unwrap();
        assert_eq!(entries(&json).unwrap(), expected);
    }

    #[test]
    fn records_survive_a_reopen_and_a_torn_tail_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("wal");
        let (mut wal, replay) = Wal::open(&base, 0).unwrap();
        assert!(replay.is_empty());
        let (k1, k2) = (Key::new("P", "S1"), Key::new("P", "S2"));
        wal.append(0, 3, &[(&k1, Some(&bytes(&k1, 1)))]).unwrap();
        wal.append(0, 5, &[(&k2, Some(&bytes(&k2, 2))), (&k1, None)]).unwrap();
        // A third record torn half-way.
        let end = wal.ends[0];
        wal.append(0, 9, &[(&k2, Some(&bytes(&k2, 9)))]).unwrap();
        wal.files[0].write_all_at(&[0xff; 8], end + HEADER as u64 + 2).unwrap();
        drop(wal);

        let (_, replay) = Wal::open(&base, 0).unwrap();
        assert_eq!(seqs(&replay), [3, 5]);
        assert_eq!(replay[1].1, vec![(k2.clone(), Some(item(&k2, 2))), (k1.clone(), None)]);
        // What redb already holds is skipped.
        let (_, replay) = Wal::open(&base, 3).unwrap();
        assert_eq!(seqs(&replay), [5]);
    }

    #[test]
    fn rounds_alternate_files_and_replay_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("wal");
        let (mut wal, _) = Wal::open(&base, 0).unwrap();
        let k = Key::new("P", "S1");
        let mut seq = 0;
        // Records of equal length, so leftovers sit exactly where a record would.
        for (round, records) in [(0, 4), (1, 4), (2, 2)] {
            for _ in 0..records {
                seq += 1;
                wal.append(round, seq, &[(&k, Some(&bytes(&k, seq as i64)))]).unwrap();
            }
        }
        // Round 2 overwrote the first two of round 0's records in file 0; the other two are left
        // over after them and must not be taken, whatever redb holds.
        drop(wal);
        let (_, replay) = Wal::open(&base, 0).unwrap();
        assert_eq!(seqs(&replay), [5, 6, 7, 8, 9, 10]);
        // After the commit that ended round 1, only round 2 is replayed.
        let (_, replay) = Wal::open(&base, 8).unwrap();
        assert_eq!(seqs(&replay), [9, 10]);
        assert_eq!(replay[1].1, vec![(k.clone(), Some(item(&k, 10)))]);
    }
}

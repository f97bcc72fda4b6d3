//! The embedded store's write-ahead log. A write someone waits on is durable once its record
//! is in the log: one small synced write (`appender`), about a fifth of what a redb commit
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
//! record covers and the payload each transaction logged since the previous record, in order:
//! its number and its writes, an update as the update itself rather than the item it made (a
//! limit's counters item carries a lease for every request in flight; logging it whole per
//! record was most of the logger's work at a few hundred requests in flight). Replay applies
//! the transactions redb lacks, each once, to what redb holds: a record may straddle redb's
//! last commit, so each transaction carries its own number. Reading a file stops at the first
//! record that is torn, fails its checksum or does not follow the one before (a leftover of an
//! earlier round); both files' transactions are replayed in order. Records of earlier versions
//! (whole items, written per record) still replay.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use prost::encoding::encode_varint;

use super::appender::Appender;
use super::{backend, codec};
use crate::store::{Attr, Item, Key, StoreResult, Update};

const MAGIC: u32 = 0x5447_574c; // "TGWL"
const HEADER: usize = 4 + 4 + 4 + 8;
/// Written ahead at creation: room for a second or so of records at full speed before the log
/// grows by appending (which is correct, only slower to sync).
const PREPARED: u64 = 8 << 20;

pub(super) struct Wal {
    files: [Appender; 2],
    /// The round being written (None: none yet since opening).
    round: Option<u64>,
}

/// The first byte of a payload of transactions (this version's; `codec::FORMAT` begins one of
/// whole items, `[` one of JSON).
const TRANSACTIONS: u8 = 2;

/// One write of a logged transaction, read back.
#[derive(Debug, PartialEq)]
pub(super) enum Logged {
    /// The whole item: a put, or a version from a record of an earlier release.
    Item(Item),
    Delete,
    /// An update, applied again to the item replay has come to: to none when `fresh` (the item
    /// was absent or expired when the update was made, and the update created it anew).
    Update {
        fresh: bool,
        update: Update,
    },
}

/// One transaction read back: its number and its writes.
pub(super) type Tx = (u64, Vec<(Key, Logged)>);

impl Wal {
    /// Opens (or creates) the log files (`<base>-0`, `<base>-1`); returns the log with the
    /// transactions to replay, oldest first: those after `durable`, the last one redb holds.
    pub fn open(base: &Path, durable: u64) -> StoreResult<(Self, Vec<Tx>)> {
        let (mut records, mut whole) = (Vec::new(), false);
        let mut open = |n: usize| -> StoreResult<Appender> {
            let mut path = base.as_os_str().to_owned();
            path.push(format!("-{n}"));
            let mut file = File::options().read(true).write(true).create(true).truncate(false).open(&path).map_err(backend)?;
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes).map_err(backend)?;
            whole |= read_records(&bytes, durable, &mut records, Path::new(&path))?;
            if (bytes.len() as u64) < PREPARED {
                file.seek(SeekFrom::End(0)).map_err(backend)?;
                file.write_all(&vec![0; (PREPARED - bytes.len() as u64) as usize]).map_err(backend)?;
                file.sync_all().map_err(backend)?;
            }
            Appender::open(Path::new(&path), true).map_err(backend)
        };
        let files = [open(0)?, open(1)?];
        let how = if files.iter().all(Appender::direct) { "directly (O_DIRECT, O_DSYNC)" } else { "through the page cache, then fdatasync" };
        tracing::info!("the embedded store's write-ahead log ({}-0, -1) is written {how}", base.display());
        records.sort_by_key(|(seq, _)| *seq);
        if !whole {
            consecutive(&records, durable, base)?;
        }
        Ok((Self { files, round: None }, records))
    }

    /// A log over files already open, written from their beginning: for tests that choose how
    /// it is written (to a disk that fails, or through the page cache).
    #[cfg(test)]
    pub fn over(files: [Appender; 2]) -> Self {
        Self { files, round: None }
    }

    /// Appends a record of `round` covering transactions up to `seq`; returns once it is on disk.
    pub fn append(&mut self, round: u64, seq: u64, payload: &Payload) -> StoreResult<()> {
        let n = (round % 2) as usize;
        if self.round != Some(round) {
            // A new round overwrites the file's records of two rounds ago, which redb holds.
            self.round = Some(round);
            self.files[n].restart();
        }
        let payload = &payload.bytes;
        let mut record = Vec::with_capacity(HEADER + payload.len());
        record.extend_from_slice(&MAGIC.to_le_bytes());
        record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        record.extend_from_slice(&checksum(seq, payload).to_le_bytes());
        record.extend_from_slice(&seq.to_le_bytes());
        record.extend_from_slice(payload);
        self.files[n].append(&record).map_err(backend)
    }
}

/// A record's payload, built a transaction at a time:
///
/// ```text
/// payload := TRANSACTIONS count tx*
/// tx      := varint seq, count write*
/// write   := pk sk (DELETE | PUT varint length item | UPDATE update | FRESH update)
/// update  := count (name value)* (SET), count (name value)* (SET if absent),
///            count (name value)* (ADD, numbers), count name* (REMOVE)
/// ```
///
/// Strings, names, values and items as `codec` writes them.
pub(super) struct Payload {
    bytes: Vec<u8>,
}

const DELETE: u8 = 0;
const PUT: u8 = 1;
const UPDATE: u8 = 2;
const FRESH: u8 = 3;

impl Payload {
    /// A payload of `txs` transactions.
    pub fn new(txs: usize) -> Self {
        let mut bytes = Vec::with_capacity(64 + txs * 256);
        bytes.push(TRANSACTIONS);
        encode_varint(txs as u64, &mut bytes);
        Self { bytes }
    }

    /// Begins transaction `seq`, of `writes` writes.
    pub fn tx(&mut self, seq: u64, writes: usize) {
        encode_varint(seq, &mut self.bytes);
        encode_varint(writes as u64, &mut self.bytes);
    }

    fn key(&mut self, key: &Key, kind: u8) {
        codec::put_str(&key.pk, &mut self.bytes);
        codec::put_str(&key.sk, &mut self.bytes);
        self.bytes.push(kind);
    }

    pub fn delete(&mut self, key: &Key) {
        self.key(key, DELETE);
    }

    /// A put of the item `codec::encode` made `item`.
    pub fn put(&mut self, key: &Key, item: &[u8]) {
        self.key(key, PUT);
        encode_varint(item.len() as u64, &mut self.bytes);
        self.bytes.extend_from_slice(item);
    }

    /// An update, made to no item when `fresh`.
    pub fn update(&mut self, key: &Key, fresh: bool, update: &Update) {
        self.key(key, if fresh { FRESH } else { UPDATE });
        let out = &mut self.bytes;
        for values in [&update.set, &update.set_if_absent] {
            encode_varint(values.len() as u64, out);
            for (name, value) in values {
                codec::put_name(name, out);
                codec::put_value(value, out);
            }
        }
        encode_varint(update.add.len() as u64, out);
        for (name, delta) in &update.add {
            codec::put_name(name, out);
            codec::put_value(&Attr::N(*delta), out);
        }
        encode_varint(update.remove.len() as u64, out);
        for name in &update.remove {
            codec::put_name(name, out);
        }
    }
}

/// The transactions of a record covering up to `seq`: this version's, or one transaction
/// (numbered `seq`) of the whole items earlier versions logged, in their binary form or as the
/// JSON `[[pk, sk, item or null], ...]` (a log left by a crash before an upgrade still replays).
fn transactions(seq: u64, payload: &[u8]) -> StoreResult<Vec<Tx>> {
    let whole =
        |writes: Vec<(Key, Option<Item>)>| vec![(seq, writes.into_iter().map(|(key, item)| (key, item.map_or(Logged::Delete, Logged::Item))).collect())];
    match payload.split_first() {
        Some((&TRANSACTIONS, mut rest)) => {
            let n = codec::count(&mut rest)?;
            let mut txs = Vec::with_capacity(n);
            for _ in 0..n {
                let seq = codec::varint(&mut rest)?;
                let writes = codec::count(&mut rest)?;
                let writes = (0..writes).map(|_| write(&mut rest)).collect::<StoreResult<_>>()?;
                txs.push((seq, writes));
            }
            Ok(txs)
        }
        Some((&codec::FORMAT, mut rest)) => {
            let n = codec::count(&mut rest)?;
            let mut writes = Vec::with_capacity(n);
            for _ in 0..n {
                let key = Key { pk: codec::take_str(&mut rest)?, sk: codec::take_str(&mut rest)? };
                let item = match codec::varint(&mut rest)? {
                    0 => None,
                    len => Some(codec::decode(&key, take(&mut rest, len - 1)?)?),
                };
                writes.push((key, item));
            }
            Ok(whole(writes))
        }
        _ => {
            let body: Vec<(String, String, Option<Item>)> = serde_json::from_slice(payload).map_err(backend)?;
            Ok(whole(body.into_iter().map(|(pk, sk, item)| (Key { pk, sk }, item)).collect()))
        }
    }
}

/// The next `len` bytes.
fn take<'a>(rest: &mut &'a [u8], len: u64) -> StoreResult<&'a [u8]> {
    let len = usize::try_from(len).ok().filter(|len| *len <= rest.len()).ok_or_else(|| backend("a logged write runs past its record"))?;
    let (bytes, after) = rest.split_at(len);
    *rest = after;
    Ok(bytes)
}

fn write(rest: &mut &[u8]) -> StoreResult<(Key, Logged)> {
    let key = Key { pk: codec::take_str(rest)?, sk: codec::take_str(rest)? };
    let (&kind, after) = rest.split_first().ok_or_else(|| backend("a logged write is cut short"))?;
    *rest = after;
    let logged = match kind {
        DELETE => Logged::Delete,
        PUT => {
            let len = codec::varint(rest)?;
            Logged::Item(codec::decode(&key, take(rest, len)?)?)
        }
        UPDATE | FRESH => {
            let mut update = Update::default();
            for values in [&mut update.set, &mut update.set_if_absent] {
                for _ in 0..codec::count(rest)? {
                    values.push((codec::take_name(rest)?, codec::value(rest)?));
                }
            }
            for _ in 0..codec::count(rest)? {
                let name = codec::take_name(rest)?;
                let Attr::N(delta) = codec::value(rest)? else { return Err(backend("a logged ADD is not a number")) };
                update.add.push((name, delta));
            }
            for _ in 0..codec::count(rest)? {
                update.remove.push(codec::take_name(rest)?);
            }
            Logged::Update { fresh: kind == FRESH, update }
        }
        _ => return Err(backend("a logged write of an unknown kind")),
    };
    Ok((key, logged))
}

fn checksum(seq: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&seq.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// Every transaction gets the next number and is logged once, so those redb lacks run on from
/// the one after `durable` without a gap or a repeat. Either means a damaged log, and an update
/// replayed past a gap would land on the wrong counts: the store refuses to open instead.
fn consecutive(txs: &[Tx], durable: u64, base: &Path) -> StoreResult<()> {
    for (expected, (seq, _)) in (durable + 1..).zip(txs) {
        if *seq != expected {
            return Err(backend(format!(
                "the write-ahead log {}-0/-1 lacks transaction {expected} (the next it holds is {seq}), so the store cannot be brought up to date; \
                 move the log files aside to start without the writes they hold",
                base.display()
            )));
        }
    }
    Ok(())
}

/// Adds to `txs` the transactions after `durable` in a log file's records (`path`'s); says
/// whether any record held whole items (an earlier version's, numbered by record rather than
/// one by one). Reading stops at a record left over from an earlier round, or at one that is
/// torn, which only the last record appended can be. So a record that is intact by its
/// checksum but cannot be read is an error (a bug, or a log of a later version), and so is an
/// intact record of this round after a torn one: the disk lost or changed what it had
/// acknowledged, and reading on as if the log ended there would drop it all silently.
fn read_records(bytes: &[u8], durable: u64, txs: &mut Vec<Tx>, path: &Path) -> StoreResult<bool> {
    let mut whole = false;
    let (mut at, mut last) = (0usize, 0u64);
    while let Some((seq, payload)) = intact_record(bytes, at) {
        if seq <= last {
            // An earlier round's: this round's records end here.
            return Ok(whole);
        }
        let read =
            transactions(seq, payload).map_err(|e| backend(format!("a write-ahead log record up to transaction {seq} is intact but cannot be read ({e})")))?;
        whole |= payload.first() != Some(&TRANSACTIONS);
        txs.extend(read.into_iter().filter(|(tx, _)| *tx > durable));
        (at, last) = (at + HEADER + payload.len(), seq);
    }
    if let Some((found, seq)) = intact_after(bytes, at + 1, last) {
        let path = path.display();
        return Err(backend(format!(
            "the write-ahead log {path} is damaged at byte {at}: an intact record up to transaction {seq} follows at byte {found}, so the disk lost or changed \
             records it had acknowledged. Check the disk; to open the store without what follows the damage, cut the file there (truncate -s {at} {path})"
        )));
    }
    Ok(whole)
}

/// The record at `at` in `bytes`, its number and payload, if one starts there whole: its magic
/// number, its header, its payload and its checksum all there and agreeing.
fn intact_record(bytes: &[u8], at: usize) -> Option<(u64, &[u8])> {
    let header = bytes.get(at..at.checked_add(HEADER)?)?;
    let word = |i: usize| header[i..i + 4].try_into().ok().map(u32::from_le_bytes);
    if word(0)? != MAGIC {
        return None;
    }
    let (len, crc) = (word(4)? as usize, word(8)?);
    let seq = u64::from_le_bytes(header[12..20].try_into().ok()?);
    let payload = bytes.get(at + HEADER..(at + HEADER).checked_add(len)?)?;
    (checksum(seq, payload) == crc).then_some((seq, payload))
}

/// Where in `bytes`, from `from` on, an intact record numbered after `last` starts, and its
/// number. Records are not aligned, so every place the magic number appears is tried.
fn intact_after(bytes: &[u8], from: usize, last: u64) -> Option<(usize, u64)> {
    memchr::memmem::find_iter(bytes.get(from..)?, &MAGIC.to_le_bytes())
        .map(|i| from + i)
        .find_map(|at| intact_record(bytes, at).filter(|(seq, _)| *seq > last).map(|(seq, _)| (at, seq)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The item at `key` in its `n`th version (an item's PK and SK are its key).
    fn item(key: &Key, n: i64) -> Item {
        Item::from([("PK".to_string(), Attr::S(key.pk.clone())), ("SK".to_string(), Attr::S(key.sk.clone())), ("n".to_string(), Attr::S(format!("{n:03}")))])
    }

    /// A payload of transactions `seqs`, each putting version `seq` of the item at `key`.
    fn puts(key: &Key, seqs: impl IntoIterator<Item = u64>) -> Payload {
        let seqs: Vec<u64> = seqs.into_iter().collect();
        let mut payload = Payload::new(seqs.len());
        for seq in seqs {
            payload.tx(seq, 1);
            payload.put(key, &codec::encode(&item(key, seq as i64)));
        }
        payload
    }

    fn seqs(replay: &[Tx]) -> Vec<u64> {
        replay.iter().map(|(s, _)| *s).collect()
    }

    #[test]
    fn transactions_read_back_as_written_and_earlier_records_still_read() {
        let (k1, k2, k3) = (Key::new("P\"q", "S1\n"), Key::new("P", "S2"), Key::new("C", "c"));
        let update = Update::default()
            .set("lease_0000000060_r1", Attr::S("x".into()))
            .set("a name not in the table", Attr::L(vec![Attr::N(-1), Attr::Null]))
            .set_if_absent("ttl", Attr::N(99))
            .add("u_budget", 125)
            .add("u_rpm", -1)
            .remove("lease_0000000000_r0");
        let mut payload = Payload::new(2);
        payload.tx(7, 2);
        payload.put(&k1, &codec::encode(&item(&k1, 1)));
        payload.delete(&k2);
        payload.tx(9, 2);
        payload.update(&k3, false, &update);
        payload.update(&k2, true, &Update::default().add("n", 1));
        let expected = vec![
            (7, vec![(k1.clone(), Logged::Item(item(&k1, 1))), (k2.clone(), Logged::Delete)]),
            (
                9,
                vec![
                    (k3.clone(), Logged::Update { fresh: false, update }),
                    (k2.clone(), Logged::Update { fresh: true, update: Update::default().add("n", 1) }),
                ],
            ),
        ];
        assert_eq!(transactions(9, &payload.bytes).unwrap(), expected);
        for cut in 0..payload.bytes.len() {
            assert!(transactions(9, &payload.bytes[..cut]).is_err(), "a payload cut at {cut} is an error, never a panic");
        }

        // Earlier versions logged whole items per record, in binary or as JSON: one transaction.
        let whole = vec![(5, vec![(k1.clone(), Logged::Item(item(&k1, 1))), (k2.clone(), Logged::Delete)])];
        let mut binary = vec![codec::FORMAT, 2];
        for (key, bytes) in [(&k1, Some(codec::encode(&item(&k1, 1)))), (&k2, None)] {
            codec::put_str(&key.pk, &mut binary);
            codec::put_str(&key.sk, &mut binary);
            encode_varint(bytes.as_ref().map_or(0, |b| b.len() as u64 + 1), &mut binary);
            binary.extend_from_slice(&bytes.unwrap_or_default());
        }
        assert_eq!(transactions(5, &binary).unwrap(), whole);
        let json = serde_json::to_vec(&[(k1.pk.as_str(), k1.sk.as_str(), Some(item(&k1, 1))), (k2.pk.as_str(), k2.sk.as_str(), None)]).unwrap();
        assert_eq!(transactions(5, &json).unwrap(), whole);
    }

    #[test]
    fn records_survive_a_reopen_a_torn_tail_is_ignored_and_only_what_redb_lacks_replays() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("wal");
        let (mut wal, replay) = Wal::open(&base, 0).unwrap();
        assert!(replay.is_empty());
        let (k1, k2) = (Key::new("P", "S1"), Key::new("P", "S2"));
        wal.append(0, 3, &puts(&k1, [1, 2, 3])).unwrap();
        wal.append(0, 6, &puts(&k2, [4, 5, 6])).unwrap();
        // A third record torn half-way.
        let end = wal.files[0].end();
        wal.append(0, 9, &puts(&k2, [9])).unwrap();
        drop(wal);
        let mut first = base.as_os_str().to_owned();
        first.push("-0");
        let file = File::options().write(true).open(first).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&file, &[0xff; 8], end + HEADER as u64 + 2).unwrap();

        let (_, replay) = Wal::open(&base, 0).unwrap();
        assert_eq!(seqs(&replay), [1, 2, 3, 4, 5, 6]);
        assert_eq!(replay[5].1, vec![(k2.clone(), Logged::Item(item(&k2, 6)))]);
        // What redb already holds is skipped, transaction by transaction: a redb commit may
        // fall in the middle of a record.
        let (_, replay) = Wal::open(&base, 4).unwrap();
        assert_eq!(seqs(&replay), [5, 6]);
    }

    /// A torn record is the last one appended; one damaged with intact records of its round
    /// after it is the disk's doing, and opening on the records before it would drop those
    /// silently.
    #[test]
    fn an_intact_record_after_a_damaged_one_refuses_to_open_and_says_where_to_cut() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("wal");
        let (mut wal, _) = Wal::open(&base, 0).unwrap();
        let k = Key::new("P", "S1");
        wal.append(0, 1, &puts(&k, [1])).unwrap();
        let second = wal.files[0].end();
        wal.append(0, 2, &puts(&k, [2])).unwrap();
        wal.append(0, 3, &puts(&k, [3])).unwrap();
        drop(wal);
        let mut first = base.as_os_str().to_owned();
        first.push("-0");
        let file = File::options().write(true).open(&first).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&file, &[0xff; 8], second + HEADER as u64 + 2).unwrap();
        let refused = Wal::open(&base, 0).err().expect("the third record is intact after the damaged second").to_string();
        for said in [format!("damaged at byte {second}"), "up to transaction 3".into(), format!("truncate -s {second} ")] {
            assert!(refused.contains(&said), "{said}: {refused}");
        }
        // Cut where it says, the log opens with what came before.
        file.set_len(second).unwrap();
        let (_, replay) = Wal::open(&base, 0).unwrap();
        assert_eq!(seqs(&replay), [1]);
    }

    #[test]
    fn rounds_alternate_files_and_replay_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("wal");
        drop(Wal::open(&base, 0).unwrap());
        // Written through the page cache: a direct append zeros the rest of its last block, so
        // round 0's leftovers would be gone, and what this test checks (that replay refuses
        // records that do not follow) would go unexercised. A round can end on a block's
        // boundary, and then they are there.
        let buffered = |n: &str| {
            let mut path = base.as_os_str().to_owned();
            path.push(n);
            Appender::open(Path::new(&path), false).unwrap()
        };
        let mut wal = Wal::over([buffered("-0"), buffered("-1")]);
        let k = Key::new("P", "S1");
        let mut seq = 0;
        // Records of equal length, so leftovers sit exactly where a record would.
        for (round, records) in [(0, 4), (1, 4), (2, 2)] {
            for _ in 0..records {
                seq += 1;
                wal.append(round, seq, &puts(&k, [seq])).unwrap();
            }
        }
        // Round 2 overwrote the first two of round 0's records in file 0 (redb held round 0 by
        // then); the other two are left over after them and must not be taken.
        drop(wal);
        let (_, replay) = Wal::open(&base, 4).unwrap();
        assert_eq!(seqs(&replay), [5, 6, 7, 8, 9, 10]);
        // Were redb behind that, the log would lack what it needs: the store must not open on it.
        let lacking = Wal::open(&base, 0).err().expect("transactions 1 to 4 are gone").to_string();
        assert!(lacking.contains("lacks transaction 1 (the next it holds is 5)"), "{lacking}");
        // After the commit that ended round 1, only round 2 is replayed.
        let (_, replay) = Wal::open(&base, 8).unwrap();
        assert_eq!(seqs(&replay), [9, 10]);
        assert_eq!(replay[1].1, vec![(k.clone(), Logged::Item(item(&k, 10)))]);
    }

    #[test]
    fn a_gap_a_repeat_or_an_unreadable_record_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let k = Key::new("P", "S1");
        let open = |name: &str, records: &[(u64, Payload)]| {
            let base = dir.path().join(name);
            let (mut wal, _) = Wal::open(&base, 0).unwrap();
            for (seq, payload) in records {
                wal.append(0, *seq, payload).unwrap();
            }
            drop(wal);
            Wal::open(&base, 0).map(|(_, replay)| seqs(&replay)).map_err(|e| e.to_string())
        };
        assert_eq!(open("whole", &[(2, puts(&k, [1, 2])), (3, puts(&k, [3]))]), Ok(vec![1, 2, 3]));
        let gap = open("gap", &[(2, puts(&k, [1, 2])), (5, puts(&k, [4, 5]))]).unwrap_err();
        assert!(gap.contains("lacks transaction 3"), "{gap}");
        let repeat = open("repeat", &[(2, puts(&k, [1, 2])), (3, puts(&k, [2, 3]))]).unwrap_err();
        assert!(repeat.contains("lacks transaction 3"), "{repeat}");
        // Intact by its checksum, in a form this version does not know.
        let unknown = Payload { bytes: vec![9, 1, 2, 3] };
        let unreadable = open("unreadable", &[(1, puts(&k, [1])), (2, unknown)]).unwrap_err();
        assert!(unreadable.contains("up to transaction 2 is intact but cannot be read"), "{unreadable}");
    }
}

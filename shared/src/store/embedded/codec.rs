//! How the embedded store keeps an item on disk (redb's values and the log's records): a
//! compact binary form, about a third of the item's JSON. Every proxied request writes a usage
//! record of some forty attributes; as JSON (`{"input_tokens":{"N":12},...}`) it took ~1.7 KB,
//! most of it attribute names, type tags and quotes, and encoding and decoding it was a visible
//! share of a request's CPU.
//!
//! ```text
//! item  := FORMAT count attr*          (PK and SK left out: they are the item's key)
//! attr  := name value
//! name  := varint k                    (k >= 1: NAMES[k - 1]; 0: inline, varint length + UTF-8)
//! value := 0 (null) | 1 (false) | 2 (true) | 3 zigzag-varint (N) | 4 varint length + UTF-8 (S)
//!        | 5 count value* (L) | 6 count (name value)* (M)
//! ```
//!
//! A name may come more than once in an item (`codec_ser` writes an entity's fields, then the
//! attributes set over them): the last wins, as inserting each into the item would. Items
//! stored by earlier versions are JSON (they begin with `{`, never with `FORMAT`) and still read. `NAMES` is part of the format: names may be appended, never removed or reordered.

use std::collections::HashMap;

use prost::encoding::{decode_varint, encode_varint};

use crate::store::{Attr, Item, Key, PK, SK, StoreError, StoreResult};

/// The first byte of an item in this form.
pub(super) const FORMAT: u8 = 1;

/// Attribute names given a one-byte code: those of the items written on every request (the
/// usage record, its attempts, its idempotency marker and rollup entry). Others are inline.
const NAMES: &[&str] = &[
    "GSI1PK",
    "GSI1SK",
    "GSI2PK",
    "GSI2SK",
    "ttl",
    "id",
    "request_id",
    "owner",
    "api_key_id",
    "user_id",
    "org_id",
    "project_id",
    "endpoint",
    "model",
    "provider",
    "provider_source",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "reasoning_tokens",
    "cost_micros",
    "input_price_micros",
    "output_price_micros",
    "cached_input_price_micros",
    "cache_write_price_micros",
    "cache_write_1h_price_micros",
    "pricing_source",
    "provider_cost_micros",
    "latency_ms",
    "ttft_ms",
    "status_code",
    "outcome",
    "streamed",
    "cancelled",
    "finish_reason",
    "http_referer",
    "error",
    "candidates",
    "routing",
    "recorded_at",
    "expires_at",
    "deployment",
    "status",
    "usage_pk",
    "usage_sk",
    "r",
];

/// How deep lists and maps may nest in a stored item (ours nest two levels at most).
const MAX_DEPTH: usize = 32;

pub(super) const NULL: u8 = 0;
const FALSE: u8 = 1;
const TRUE: u8 = 2;
const NUMBER: u8 = 3;
pub(super) const STRING: u8 = 4;
pub(super) const LIST: u8 = 5;
pub(super) const MAP: u8 = 6;

/// The stored form of `item`, its PK and SK left out (the store keeps them as its key).
pub(super) fn encode(item: &Item) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.push(FORMAT);
    let attrs = || item.iter().filter(|(name, _)| name.as_str() != PK && name.as_str() != SK);
    encode_varint(attrs().count() as u64, &mut out);
    for (name, value) in attrs() {
        put_name(name, &mut out);
        put_value(value, &mut out);
    }
    out
}

/// The item stored at `key` as `bytes` (this form or, from earlier versions, JSON).
pub(super) fn decode(key: &Key, bytes: &[u8]) -> StoreResult<Item> {
    match bytes.split_first() {
        Some((&FORMAT, mut rest)) => {
            let mut item = Item::new();
            item.insert(PK.into(), Attr::S(key.pk.clone()));
            item.insert(SK.into(), Attr::S(key.sk.clone()));
            for _ in 0..count(&mut rest)? {
                let name = take_name(&mut rest)?;
                item.insert(name, take_value(&mut rest, 0)?);
            }
            Ok(item)
        }
        _ => serde_json::from_slice(bytes).map_err(|e| corrupt(&e.to_string())),
    }
}

/// The entries in the two indexes (GSI1, GSI2) of the item stored at `key` as `bytes`, as
/// `index_key` finds them in the decoded item: read without decoding the rest. The committer
/// needs an item's old entries to replace them; decoding the whole item for them was ~8k
/// instructions per written item that redb already held (`valgrind --tool=callgrind`).
pub(super) fn index_entries(key: &Key, bytes: &[u8]) -> StoreResult<[Option<(String, String)>; 2]> {
    let Some((&FORMAT, mut rest)) = bytes.split_first() else {
        let item = decode(key, bytes)?;
        return Ok([super::index_key(&item, crate::store::Index::Gsi1), super::index_key(&item, crate::store::Index::Gsi2)]);
    };
    // GSI1PK, GSI1SK, GSI2PK, GSI2SK, when they are strings.
    let mut found: [Option<&str>; 4] = [None; 4];
    for _ in 0..count(&mut rest)? {
        let name = borrow_name(&mut rest)?;
        // A name may come twice (an entity's field, then an attribute set over it): the last
        // wins, as in the decoded item, and is no entry unless a string.
        match NAMES[..4].iter().position(|n| *n == name) {
            Some(slot) if rest.first() == Some(&STRING) => {
                rest = &rest[1..];
                found[slot] = Some(borrow_str(&mut rest)?);
            }
            Some(slot) => {
                found[slot] = None;
                skip_value(&mut rest, 0)?;
            }
            None => skip_value(&mut rest, 0)?,
        }
    }
    let pair = |pk: Option<&str>, sk: Option<&str>| Some((pk?.to_string(), sk?.to_string()));
    Ok([pair(found[0], found[1]), pair(found[2], found[3])])
}

/// A string as `put_str` wrote it, borrowed.
fn borrow_str<'a>(bytes: &mut &'a [u8]) -> StoreResult<&'a str> {
    let len = count(bytes)?;
    let (text, rest) = bytes.split_at(len);
    *bytes = rest;
    std::str::from_utf8(text).map_err(|_| corrupt("a string is not UTF-8"))
}

/// Steps over one value as `put_value` wrote it, checking it as `take_value` would.
fn skip_value(bytes: &mut &[u8], depth: usize) -> StoreResult<()> {
    if depth > MAX_DEPTH {
        return Err(corrupt("values nest too deep"));
    }
    let (&tag, rest) = bytes.split_first().ok_or_else(|| corrupt("a value is missing"))?;
    *bytes = rest;
    match tag {
        NULL | FALSE | TRUE => {}
        NUMBER => {
            varint(bytes)?;
        }
        STRING => {
            borrow_str(bytes)?;
        }
        LIST => {
            for _ in 0..count(bytes)? {
                skip_value(bytes, depth + 1)?;
            }
        }
        MAP => {
            for _ in 0..count(bytes)? {
                borrow_name(bytes)?;
                skip_value(bytes, depth + 1)?;
            }
        }
        _ => return Err(corrupt("an unknown value type")),
    }
    Ok(())
}

fn corrupt(why: &str) -> StoreError {
    StoreError::Backend(format!("a stored item cannot be read ({why})"))
}

pub(super) fn put_str(s: &str, out: &mut Vec<u8>) {
    encode_varint(s.len() as u64, out);
    out.extend_from_slice(s.as_bytes());
}

/// Each name of `NAMES` with its code: a hash lookup, where comparing with each name in turn
/// was most of the encoding's cost.
static CODES: std::sync::LazyLock<HashMap<&'static str, u64, foldhash::fast::FixedState>> =
    std::sync::LazyLock::new(|| NAMES.iter().enumerate().map(|(i, name)| (*name, i as u64 + 1)).collect());

pub(super) fn put_name(name: &str, out: &mut Vec<u8>) {
    match CODES.get(name) {
        Some(code) => encode_varint(*code, out),
        None => {
            out.push(0);
            put_str(name, out);
        }
    }
}

pub(super) fn put_value(value: &Attr, out: &mut Vec<u8>) {
    match value {
        Attr::Null => out.push(NULL),
        Attr::Bool(b) => out.push(if *b { TRUE } else { FALSE }),
        Attr::N(n) => {
            out.push(NUMBER);
            // Zigzag: small negative numbers stay short too.
            encode_varint(((n << 1) ^ (n >> 63)) as u64, out);
        }
        Attr::S(s) => {
            out.push(STRING);
            put_str(s, out);
        }
        Attr::L(values) => {
            out.push(LIST);
            encode_varint(values.len() as u64, out);
            values.iter().for_each(|v| put_value(v, out));
        }
        Attr::M(map) => {
            out.push(MAP);
            encode_varint(map.len() as u64, out);
            for (name, v) in map {
                put_name(name, out);
                put_value(v, out);
            }
        }
    }
}

pub(super) fn varint(bytes: &mut &[u8]) -> StoreResult<u64> {
    decode_varint(bytes).map_err(|_| corrupt("a number is cut short"))
}

/// A count of what follows, which cannot exceed the bytes left (each entry takes one at least):
/// a corrupt count must not reserve memory for billions.
pub(super) fn count(bytes: &mut &[u8]) -> StoreResult<usize> {
    let n = varint(bytes)?;
    usize::try_from(n).ok().filter(|n| *n <= bytes.len()).ok_or_else(|| corrupt("a count runs past the end"))
}

pub(super) fn take_str(bytes: &mut &[u8]) -> StoreResult<String> {
    borrow_str(bytes).map(str::to_owned)
}

pub(super) fn take_name(bytes: &mut &[u8]) -> StoreResult<String> {
    borrow_name(bytes).map(str::to_owned)
}

/// A name as `put_name` wrote it, borrowed (from `NAMES` or the bytes).
fn borrow_name<'a>(bytes: &mut &'a [u8]) -> StoreResult<&'a str> {
    match varint(bytes)? {
        0 => borrow_str(bytes),
        k => NAMES.get(k as usize - 1).copied().ok_or_else(|| corrupt("an unknown attribute name code")),
    }
}

/// One value as `put_value` wrote it.
pub(super) fn value(bytes: &mut &[u8]) -> StoreResult<Attr> {
    take_value(bytes, 0)
}

fn take_value(bytes: &mut &[u8], depth: usize) -> StoreResult<Attr> {
    if depth > MAX_DEPTH {
        return Err(corrupt("values nest too deep"));
    }
    let (&tag, rest) = bytes.split_first().ok_or_else(|| corrupt("a value is missing"))?;
    *bytes = rest;
    Ok(match tag {
        NULL => Attr::Null,
        FALSE => Attr::Bool(false),
        TRUE => Attr::Bool(true),
        NUMBER => {
            let z = varint(bytes)?;
            Attr::N(((z >> 1) as i64) ^ -((z & 1) as i64))
        }
        STRING => Attr::S(take_str(bytes)?),
        LIST => {
            let n = count(bytes)?;
            Attr::L((0..n).map(|_| take_value(bytes, depth + 1)).collect::<StoreResult<_>>()?)
        }
        MAP => {
            let n = count(bytes)?;
            let mut map = std::collections::BTreeMap::new();
            for _ in 0..n {
                let name = take_name(bytes)?;
                map.insert(name, take_value(bytes, depth + 1)?);
            }
            Attr::M(map)
        }
        _ => return Err(corrupt("an unknown value type")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Item {
        let nested = Attr::M([("model".to_string(), Attr::S("m".into())), ("not known".to_string(), Attr::N(-3))].into());
        Item::from([
            (PK.to_string(), Attr::S("USAGE#user#1".into())),
            (SK.to_string(), Attr::S("2026-12-05T00:00:00.000000Z#r".into())),
            ("input_tokens".to_string(), Attr::N(12)),
            ("cost_micros".to_string(), Attr::N(i64::MAX)),
            ("a_name_not_in_the_table".to_string(), Attr::N(i64::MIN)),
            ("streamed".to_string(), Attr::Bool(true)),
            ("cancelled".to_string(), Attr::Bool(false)),
            ("error".to_string(), Attr::Null),
            ("model".to_string(), Attr::S("gpt-4o-mini ✓".into())),
            ("routing".to_string(), Attr::L(vec![nested, Attr::L(vec![])])),
        ])
    }

    #[test]
    fn items_round_trip_with_their_key_and_are_smaller_than_json() {
        let item = sample();
        let key = Key::of(&item).unwrap();
        let bytes = encode(&item);
        assert_eq!(decode(&key, &bytes).unwrap(), item);
        assert!(bytes.len() * 2 < serde_json::to_vec(&item).unwrap().len(), "{} bytes", bytes.len());
    }

    #[test]
    fn index_entries_are_read_as_from_the_decoded_item() {
        use crate::store::Index;
        let entries = |item: &Item| [super::super::index_key(item, Index::Gsi1), super::super::index_key(item, Index::Gsi2)];
        let s = |v: &str| Attr::S(v.into());
        let mut both = sample();
        both.extend([("GSI1PK".into(), s("user#1")), ("GSI1SK".into(), s("2026")), ("GSI2PK".into(), s("key#9")), ("GSI2SK".into(), s("é#2"))]);
        let mut one = sample();
        one.extend([("GSI2PK".into(), s("key#9")), ("GSI2SK".into(), s("x"))]);
        let mut halves = sample();
        halves.extend([("GSI1PK".into(), s("only the pk")), ("GSI2SK".into(), s("only the sk"))]);
        let mut not_strings = sample();
        not_strings.extend([("GSI1PK".into(), Attr::N(1)), ("GSI1SK".into(), s("s")), ("GSI2PK".into(), Attr::Null), ("GSI2SK".into(), s("s"))]);
        // A map holding the names (not the item's own entries) and names sorting before them.
        let mut nested = sample();
        nested.extend([
            ("AAA".into(), Attr::M([("GSI1PK".to_string(), s("inner")), ("GSI1SK".to_string(), s("inner"))].into())),
            ("GSI1PK".into(), s("outer")),
            ("GSI1SK".into(), s("outer")),
        ]);
        for item in [sample(), both, one, halves, not_strings, nested] {
            let key = Key::of(&item).unwrap();
            let wanted = entries(&item);
            assert_eq!(index_entries(&key, &encode(&item)).unwrap(), wanted);
            assert_eq!(index_entries(&key, &serde_json::to_vec(&item).unwrap()).unwrap(), wanted, "from JSON");
        }
        // A name written twice, as `codec_ser` may: the last of it, string or not, as decoded.
        let mut twice = encode(&sample());
        // Six attributes more (the sample's count takes one byte).
        twice[1] += 6;
        for (name, value) in
            [("GSI1PK", s("first")), ("GSI1SK", s("sk")), ("GSI1PK", s("second")), ("GSI2PK", s("pk")), ("GSI2SK", s("sk")), ("GSI2SK", Attr::N(1))]
        {
            put_name(name, &mut twice);
            put_value(&value, &mut twice);
        }
        let key = Key::new("p", "s");
        assert_eq!(index_entries(&key, &twice).unwrap(), entries(&decode(&key, &twice).unwrap()));
        assert_eq!(index_entries(&key, &twice).unwrap(), [Some(("second".to_string(), "sk".to_string())), None]);
        let bytes = encode(&sample());
        for cut in 0..bytes.len() {
            let _ = index_entries(&Key::new("p", "s"), &bytes[..cut]);
        }
        for bad in [vec![FORMAT, 1, 0x7f, NULL], vec![FORMAT, 1, 1, 9], vec![FORMAT, 1, 1, STRING, 2, 0xff, 0xfe], vec![FORMAT, 1, 5, MAP, 1, 0x7f, NULL]] {
            assert!(index_entries(&Key::new("p", "s"), &bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn items_stored_as_json_by_earlier_versions_still_read() {
        let item = sample();
        let key = Key::of(&item).unwrap();
        assert_eq!(decode(&key, &serde_json::to_vec(&item).unwrap()).unwrap(), item);
    }

    #[test]
    fn corrupt_bytes_are_an_error_never_a_panic() {
        let key = Key::new("p", "s");
        let bytes = encode(&sample());
        for cut in 0..bytes.len() {
            let _ = decode(&key, &bytes[..cut]);
        }
        // A count of a billion entries with nothing behind it, an unknown name code, an unknown tag.
        for bad in [vec![FORMAT, 0x80, 0x94, 0xeb, 0xdc, 0x03], vec![FORMAT, 1, 0x7f, NULL], vec![FORMAT, 1, 1, 9], vec![FORMAT, 1, 1, STRING, 2, 0xff, 0xfe]] {
            assert!(decode(&key, &bad).is_err(), "{bad:?}");
        }
        let deep = (0..100).fold(Attr::Null, |inner, _| Attr::L(vec![inner]));
        let item = Item::from([("x".to_string(), deep)]);
        assert!(decode(&key, &encode(&item)).is_err(), "nesting past MAX_DEPTH is refused");
    }
}

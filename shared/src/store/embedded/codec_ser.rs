//! The codec's stored form written straight from an entity's fields (a serde serializer), for
//! `Entity` puts: the bytes decode to exactly the item that `codec::encode` of `to_item(entity)`
//! would have stored, without building that item (forty-odd names and values allocated into a
//! map, encoded, then freed: ~40k instructions per usage record, `scripts/bench-instructions`).
//!
//! Values are written as `to_attr` makes them (`attr_ser`): integers only, a finite float
//! refused, an enum variant wrapping its content in a one-entry map. A list's or map's count
//! comes before its entries, and serde may not know it in advance (a flattened struct), so one
//! byte is kept for it and widened in place the rare time it needs more (128 entries or more).

use std::fmt::Display;

use prost::encoding::{decode_varint, encode_varint};
use serde::ser::{self, Serialize};

use super::codec::{FORMAT, LIST, MAP, NULL, STRING, put_name, put_str, put_value};
use crate::store::attr_ser::to_attr;
use crate::store::{Attr, Encoded, PK, SK, StoreError, StoreResult};

/// The stored form of `entity`'s fields, then `extra` (which replace fields of the same name, as
/// inserting them into the entity's item would). PK and SK are left out, as `codec::encode`
/// leaves them: the store keeps them as the item's key. Also says whether any of the entity's
/// own fields is named like an index's key (`GSI...`), which only `extra` sets in ours.
pub(in crate::store) fn encode_entity<T: Serialize + ?Sized>(entity: &T, extra: &[(&'static str, Attr)]) -> StoreResult<Encoded> {
    let mut out = Vec::with_capacity(768);
    let mut indexed = false;
    entity.serialize(Value { out: &mut out, top: Some(&mut indexed) })?;
    // The entity wrote a map, `MAP count (name value)*`; an item is `FORMAT count (name value)*`.
    match out.first_mut() {
        Some(tag) if *tag == MAP => *tag = FORMAT,
        _ => return Err(StoreError::Backend("entity must serialize to an object".into())),
    }
    let mut rest = &out[1..];
    let fields = decode_varint(&mut rest).map_err(|_| StoreError::Backend("an entity's count of fields is cut short".into()))?;
    let mut added = 0;
    for (name, value) in extra.iter().filter(|(name, _)| *name != PK && *name != SK) {
        put_name(name, &mut out);
        put_value(value, &mut out);
        added += 1;
    }
    set_count(&mut out, 1, fields + added);
    Ok(Encoded { bytes: out, names_index_keys: indexed })
}

/// Writes `n` as the count at `at`, where a varint is (one byte when first written).
fn set_count(out: &mut Vec<u8>, at: usize, n: u64) {
    let mut old = &out[at..];
    let before = old.len();
    let _ = decode_varint(&mut old);
    let width = before - old.len();
    // On the stack: this runs for every entity and every map an entity holds.
    let mut buf = [0u8; 10];
    let mut free = &mut buf[..];
    encode_varint(n, &mut free);
    let written = 10 - free.len();
    let count = &buf[..written];
    if count.len() == width {
        out[at..at + width].copy_from_slice(count);
    } else {
        out.splice(at..at + width, count.iter().copied());
    }
}

fn integer<T: TryInto<i64> + Display + Copy>(n: T, out: &mut Vec<u8>) -> StoreResult<()> {
    let n: i64 = n.try_into().map_err(|_| StoreError::Backend(format!("non-integer number {n} in entity")))?;
    put_value(&Attr::N(n), out);
    Ok(())
}

fn string(s: &str, out: &mut Vec<u8>) {
    out.push(STRING);
    put_str(s, out);
}

/// Writes one value. `top`: the entity itself, whose PK and SK fields are left out, with what
/// to set when one of its fields is named like an index's key.
struct Value<'a> {
    out: &'a mut Vec<u8>,
    top: Option<&'a mut bool>,
}

/// A list or map being written: where its count goes, and how many entries it has so far. An
/// enum variant's (`variant`) is wrapped in a one-entry map, written before it.
struct Compound<'a> {
    out: &'a mut Vec<u8>,
    count_at: usize,
    entries: u64,
    top: Option<&'a mut bool>,
    /// Skipping the value of a PK or SK field of the entity: where it began.
    skipping: Option<usize>,
}

impl<'a> Compound<'a> {
    fn open(out: &'a mut Vec<u8>, tag: u8, variant: Option<&'static str>, top: Option<&'a mut bool>) -> Self {
        if let Some(variant) = variant {
            out.push(MAP);
            out.push(1);
            put_name(variant, out);
        }
        out.push(tag);
        let count_at = out.len();
        out.push(0);
        Compound { out, count_at, entries: 0, top: top.filter(|_| variant.is_none()), skipping: None }
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> StoreResult<()> {
        value.serialize(Value { out: self.out, top: None })?;
        self.entries += 1;
        Ok(())
    }

    fn name(&mut self, name: &str) {
        if let Some(indexed) = &mut self.top {
            if name == PK || name == SK {
                self.skipping = Some(self.out.len());
                return;
            }
            **indexed |= name.starts_with("GSI");
        }
        put_name(name, self.out);
    }

    fn value<T: Serialize + ?Sized>(&mut self, value: &T) -> StoreResult<()> {
        value.serialize(Value { out: self.out, top: None })?;
        match self.skipping.take() {
            // Written, so that a value `to_attr` refuses is refused here too, then dropped.
            Some(from) => self.out.truncate(from),
            None => self.entries += 1,
        }
        Ok(())
    }

    fn end(self) -> StoreResult<()> {
        set_count(self.out, self.count_at, self.entries);
        Ok(())
    }
}

impl<'a> ser::Serializer for Value<'a> {
    type Ok = ();
    type Error = StoreError;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    fn serialize_bool(self, v: bool) -> StoreResult<()> {
        put_value(&Attr::Bool(v), self.out);
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> StoreResult<()> {
        integer(v, self.out)
    }
    fn serialize_i16(self, v: i16) -> StoreResult<()> {
        integer(v, self.out)
    }
    fn serialize_i32(self, v: i32) -> StoreResult<()> {
        integer(v, self.out)
    }
    fn serialize_i64(self, v: i64) -> StoreResult<()> {
        integer(v, self.out)
    }
    fn serialize_i128(self, v: i128) -> StoreResult<()> {
        integer(v, self.out)
    }
    fn serialize_u8(self, v: u8) -> StoreResult<()> {
        integer(v, self.out)
    }
    fn serialize_u16(self, v: u16) -> StoreResult<()> {
        integer(v, self.out)
    }
    fn serialize_u32(self, v: u32) -> StoreResult<()> {
        integer(v, self.out)
    }
    fn serialize_u64(self, v: u64) -> StoreResult<()> {
        integer(v, self.out)
    }
    fn serialize_u128(self, v: u128) -> StoreResult<()> {
        integer(v, self.out)
    }
    fn serialize_f32(self, v: f32) -> StoreResult<()> {
        self.serialize_f64(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> StoreResult<()> {
        if v.is_finite() {
            return Err(StoreError::Backend(format!("non-integer number {v} in entity")));
        }
        self.out.push(NULL);
        Ok(())
    }
    fn serialize_char(self, v: char) -> StoreResult<()> {
        string(v.encode_utf8(&mut [0; 4]), self.out);
        Ok(())
    }
    fn serialize_str(self, v: &str) -> StoreResult<()> {
        string(v, self.out);
        Ok(())
    }
    fn collect_str<T: Display + ?Sized>(self, value: &T) -> StoreResult<()> {
        string(&value.to_string(), self.out);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> StoreResult<()> {
        self.out.push(LIST);
        encode_varint(v.len() as u64, self.out);
        for b in v {
            put_value(&Attr::N(i64::from(*b)), self.out);
        }
        Ok(())
    }
    fn serialize_none(self) -> StoreResult<()> {
        self.out.push(NULL);
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> StoreResult<()> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> StoreResult<()> {
        self.out.push(NULL);
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> StoreResult<()> {
        self.out.push(NULL);
        Ok(())
    }
    fn serialize_unit_variant(self, _name: &'static str, _index: u32, variant: &'static str) -> StoreResult<()> {
        string(variant, self.out);
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _name: &'static str, value: &T) -> StoreResult<()> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(self, _name: &'static str, _index: u32, variant: &'static str, value: &T) -> StoreResult<()> {
        self.out.push(MAP);
        self.out.push(1);
        put_name(variant, self.out);
        value.serialize(Value { out: self.out, top: None })
    }
    fn serialize_seq(self, _len: Option<usize>) -> StoreResult<Compound<'a>> {
        Ok(Compound::open(self.out, LIST, None, None))
    }
    fn serialize_tuple(self, len: usize) -> StoreResult<Compound<'a>> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> StoreResult<Compound<'a>> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(self, _name: &'static str, _index: u32, variant: &'static str, _len: usize) -> StoreResult<Compound<'a>> {
        Ok(Compound::open(self.out, LIST, Some(variant), None))
    }
    fn serialize_map(self, _len: Option<usize>) -> StoreResult<Compound<'a>> {
        Ok(Compound::open(self.out, MAP, None, self.top))
    }
    fn serialize_struct(self, _name: &'static str, _len: usize) -> StoreResult<Compound<'a>> {
        Ok(Compound::open(self.out, MAP, None, self.top))
    }
    fn serialize_struct_variant(self, _name: &'static str, _index: u32, variant: &'static str, _len: usize) -> StoreResult<Compound<'a>> {
        Ok(Compound::open(self.out, MAP, Some(variant), self.top))
    }
}

/// serde's four sequence traits differ only in their names: each writes an element.
macro_rules! sequence {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for Compound<'_> {
            type Ok = ();
            type Error = StoreError;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> StoreResult<()> {
                self.element(value)
            }
            fn end(self) -> StoreResult<()> {
                Compound::end(self)
            }
        }
    )*};
}

sequence!(SerializeSeq::serialize_element, SerializeTuple::serialize_element, SerializeTupleStruct::serialize_field, SerializeTupleVariant::serialize_field);

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = StoreError;
    /// Keys become strings, as `to_attr` makes them: strings, numbers, booleans, unit variants.
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> StoreResult<()> {
        match to_attr(key)? {
            Attr::S(s) => self.name(&s),
            Attr::N(n) => self.name(&n.to_string()),
            Attr::Bool(b) => self.name(&b.to_string()),
            _ => return Err(StoreError::Backend("a map key must be a string, a number, a boolean or a unit variant".into())),
        }
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> StoreResult<()> {
        self.value(value)
    }
    fn end(self) -> StoreResult<()> {
        Compound::end(self)
    }
}

/// serde's two struct traits differ only in their names: each writes a field.
macro_rules! fields {
    ($($trait:ident),*) => {$(
        impl ser::$trait for Compound<'_> {
            type Ok = ();
            type Error = StoreError;
            fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> StoreResult<()> {
                self.name(key);
                self.value(value)
            }
            fn end(self) -> StoreResult<()> {
                Compound::end(self)
            }
        }
    )*};
}

fields!(SerializeStruct, SerializeStructVariant);

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use serde::Serialize;

    use super::*;
    use crate::store::attr_ser::tests::{Shape, Tagged, Unit};
    use crate::store::embedded::codec::{decode, encode};
    use crate::store::{Item, Key, to_item};

    #[derive(Serialize)]
    struct Inner {
        note: &'static str,
        ttl: i64,
    }

    #[derive(Serialize)]
    struct Entity {
        #[serde(rename = "PK")]
        pk: &'static str,
        request_id: String,
        model: &'static str,
        input_tokens: u32,
        negative: i16,
        missing: Option<i64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        skipped: Option<i64>,
        letter: char,
        bytes: serde_bytes_like::Bytes,
        shapes: Vec<Shape>,
        tagged: Tagged,
        by_name: BTreeMap<String, i64>,
        by_number: HashMap<u32, bool>,
        many: Vec<u32>,
        pair: (i64, &'static str),
        unit: Unit,
        empty: (),
        nan: f64,
        at: chrono::DateTime<chrono::Utc>,
        #[serde(flatten)]
        inner: Inner,
        #[serde(flatten)]
        wide: BTreeMap<String, i64>,
    }

    /// `serialize_bytes`, which no derive reaches without a helper crate.
    mod serde_bytes_like {
        pub struct Bytes(pub Vec<u8>);
        impl serde::Serialize for Bytes {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(&self.0)
            }
        }
    }

    fn entity() -> Entity {
        Entity {
            pk: "not the key",
            request_id: "req \"quoted\"\n".into(),
            model: "gpt-4o",
            input_tokens: 12,
            negative: -3,
            missing: None,
            skipped: None,
            letter: 'é',
            bytes: serde_bytes_like::Bytes(vec![0, 7, 255]),
            shapes: vec![Shape::Unit, Shape::Newtype(5), Shape::Tuple(1, "x".into()), Shape::Struct { a: true, b: None }],
            tagged: Tagged::OneThing { id: uuid::Uuid::now_v7() },
            // PK and SK are left out of the item only: kept in a map within it.
            by_name: [("k".to_string(), 1), (PK.to_string(), 2)].into(),
            by_number: [(42, true)].into(),
            // Counts of 128 and more take two bytes: the list's and, with `wide`, the item's.
            many: (0..300).collect(),
            pair: (9, "nine"),
            unit: Unit,
            empty: (),
            nan: f64::NAN,
            at: chrono::Utc::now(),
            inner: Inner { note: "flattened", ttl: 5 },
            wide: (0..200).map(|i| (format!("field_{i}"), i)).collect(),
        }
    }

    /// What the embedded store stored before: the entity's item with `extra` inserted, encoded.
    fn via_item<T: Serialize>(entity: &T, key: &Key, extra: &[(&'static str, Attr)]) -> Item {
        let mut item = to_item(entity).unwrap();
        for (name, value) in extra {
            item.insert((*name).to_string(), value.clone());
        }
        decode(key, &encode(&item)).unwrap()
    }

    #[test]
    fn decodes_to_the_item_the_entity_made() {
        let key = Key::new("USAGE#user#1", "2026-12-06#req");
        let extra = [
            ("GSI1PK", Attr::S("USAGEM#user#1#gpt-4o".into())),
            ("GSI1SK", Attr::S("ok#2026-12-06#req".into())),
            // Replaces the entity's own `ttl` (from the flattened `inner`), as an insert would.
            ("ttl", Attr::N(1_900_000_000)),
            // The key is the store's: extras named PK or SK are left out, as fields are.
            (PK, Attr::S("neither".into())),
        ];
        let entity = entity();
        let Encoded { bytes, names_index_keys } = encode_entity(&entity, &extra).unwrap();
        assert!(!names_index_keys);
        assert_eq!(decode(&key, &bytes).unwrap(), via_item(&entity, &key, &extra));
        assert_eq!(decode(&key, &bytes).unwrap()["ttl"], Attr::N(1_900_000_000));
        // Small entities too, and with nothing extra.
        let small = Inner { note: "n", ttl: 1 };
        assert_eq!(decode(&key, &encode_entity(&small, &[]).unwrap().bytes).unwrap(), via_item(&small, &key, &[]));
        // A count that the extras take past one byte of varint (126 fields and 3 extras): spliced
        // in wider than it was first written.
        let wide: std::collections::BTreeMap<String, i64> = (0..126).map(|i| (format!("f{i}"), i)).collect();
        assert_eq!(decode(&key, &encode_entity(&wide, &extra).unwrap().bytes).unwrap(), via_item(&wide, &key, &extra));
        // The indexes are found where the committer looks for them.
        assert_eq!(
            crate::store::embedded::codec::index_entries(&key, &bytes).unwrap()[0],
            Some(("USAGEM#user#1#gpt-4o".to_string(), "ok#2026-12-06#req".to_string()))
        );
    }

    #[test]
    fn its_index_entries_are_the_item_s() {
        use std::sync::Arc;

        use crate::store::embedded::commit::Stored;
        use crate::store::{EntityPut, Index};

        #[derive(Serialize)]
        struct Own {
            #[serde(rename = "GSI2PK")]
            pk: &'static str,
            #[serde(rename = "GSI2SK")]
            sk: &'static str,
            n: i64,
        }
        let key = Key::new("P", "S");
        let check = |put: EntityPut| {
            let (stored, made) = (Stored::encoded(&put).unwrap(), Stored::of(&put.item().unwrap()));
            let decoded = |bytes: &[u8]| decode(&put.key, bytes).unwrap();
            assert_eq!((decoded(&stored.bytes), &stored.indexes), (decoded(&made.bytes), &made.indexes), "{put:?}");
            stored.indexes
        };
        // Named by the extras only; the last of a name wins; a non-string files nothing.
        let mut put = EntityPut::new(key.clone(), Arc::new(Inner { note: "n", ttl: 1 }));
        put.index(Index::Gsi1, "A".into(), "1".into());
        put.set("GSI1SK", Attr::S("2".into()));
        put.set("GSI2PK", Attr::N(3));
        put.set("GSI2SK", Attr::S("x".into()));
        assert_eq!(check(put), [Some(("A".to_string(), "2".to_string())), None]);
        // Named by the entity's own fields (read back from its bytes), an extra over one of them.
        let mut put = EntityPut::new(key, Arc::new(Own { pk: "own", sk: "fields", n: 1 }));
        put.set("GSI2SK", Attr::S("extra".into()));
        assert!(encode_entity(&Own { pk: "", sk: "", n: 0 }, &[]).unwrap().names_index_keys);
        assert_eq!(check(put), [None, Some(("own".to_string(), "extra".to_string()))]);
    }

    #[test]
    fn a_usage_record_is_stored_as_its_item_was() {
        use std::sync::Arc;

        use crate::store::TxOp;
        use crate::store::embedded::commit::Stored;
        use crate::usage::{self, Attempt};

        let at = "2026-12-06T15:00:00.123456Z".parse().unwrap();
        let lease = usage::lease_record("user#7", uuid::Uuid::now_v7(), "gpt-4o", "chat", Some(at));
        let mut record = usage::lost("req-1", &lease, at).expect("a record");
        record.candidates = vec!["gpt-4o".into(), "claude".into()];
        let attempt = |status| Attempt { model: "gpt-4o".into(), provider: "openai".into(), deployment: None, status, latency_ms: 12, error: None };
        record.routing = vec![attempt(Some(502)), Attempt { deployment: Some("eu".into()), ..attempt(Some(200)) }];
        (record.ttft_ms, record.finish_reason, record.expires_at) = (Some(40), Some("stop".into()), Some(at));
        let ops = usage::record_ops(&Arc::new(record)).unwrap();
        // The marker and the pending item are put whole too: the record is the one in USAGE#.
        let record = |op: &&TxOp| matches!(op, TxOp::PutEntity { put, .. } if put.key.pk.starts_with("USAGE#"));
        let Some(TxOp::PutEntity { put, .. }) = ops.iter().find(record) else { panic!("the record is put whole: {ops:?}") };
        let (stored, made) = (Stored::encoded(put).unwrap(), Stored::of(&put.item().unwrap()));
        assert_eq!(decode(&put.key, &stored.bytes).unwrap(), decode(&put.key, &made.bytes).unwrap());
        assert_eq!(stored.indexes, made.indexes);
        assert!(stored.indexes.iter().all(Option::is_some), "filed in both indexes: {:?}", stored.indexes);
    }

    #[test]
    fn refuses_what_the_item_refused() {
        #[derive(Serialize)]
        struct Big {
            n: u64,
        }
        #[derive(Serialize)]
        struct Float {
            price: f64,
        }
        #[derive(Serialize)]
        struct TupleKeys {
            by_price: BTreeMap<(i64, i64), i64>,
        }
        assert!(encode_entity(&Big { n: u64::MAX }, &[]).is_err() && to_item(&Big { n: u64::MAX }).is_err());
        assert!(encode_entity(&Float { price: 0.25 }, &[]).is_err() && to_item(&Float { price: 0.25 }).is_err());
        let keys = TupleKeys { by_price: [((1, 2), 3)].into() };
        assert!(encode_entity(&keys, &[]).is_err() && to_item(&keys).is_err());
        assert!(encode_entity(&"a string", &[]).is_err() && to_item(&"a string").is_err());
        assert!(encode_entity(&vec![1, 2], &[]).is_err() && to_item(&vec![1, 2]).is_err());
    }
}

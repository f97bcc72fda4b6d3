//! Walks every chain from its oldest event kept to its head and names the first event that is
//! not as it was written: edited (its hash no longer seals its content), removed (a sequence
//! number missing, or the head past the last event), or moved (its previous hash is not the
//! hash of the event before it).

use serde::Serialize;

use super::{SHARDS, head, seal};
use crate::store::{Attr, Index, Query, Store, StoreResult};

/// One chain as found.
#[derive(Debug, Serialize)]
pub struct Chain {
    pub shard: u64,
    pub events: usize,
    /// The oldest sequence number kept (past 1 once older events expired).
    pub first: Option<i64>,
    pub last: Option<i64>,
}

/// The first thing found wrong.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Broken {
    pub shard: u64,
    /// The sequence number of the first event that is not as written.
    pub seq: i64,
    pub problem: String,
}

#[derive(Debug, Serialize)]
pub struct Verified {
    pub chains: Vec<Chain>,
    pub broken: Option<Broken>,
}

/// Verifies every chain.
pub async fn verify(store: &dyn Store) -> StoreResult<Verified> {
    let mut chains = Vec::new();
    for shard in 0..SHARDS {
        let (chain, broken) = verify_chain(store, shard).await?;
        chains.push(chain);
        if broken.is_some() {
            return Ok(Verified { chains, broken });
        }
    }
    Ok(Verified { chains, broken: None })
}

async fn verify_chain(store: &dyn Store, shard: u64) -> StoreResult<(Chain, Option<Broken>)> {
    let mut chain = Chain { shard, events: 0, first: None, last: None };
    let broken = |seq: i64, problem: String| Some(Broken { shard, seq, problem });
    let mut previous: Option<(i64, String)> = None;
    let mut cursor = None;
    loop {
        let page = store.query(Query::new(Index::Primary, format!("AUDIT#{shard}")).limit(500).cursor(cursor)).await?;
        for item in &page.items {
            let text = |name: &str| item.get(name).and_then(Attr::as_str).unwrap_or_default().to_string();
            let seq = item.get("seq").and_then(Attr::as_i64).unwrap_or(-1);
            let at_key: i64 = item.get("SK").and_then(Attr::as_str).and_then(|sk| sk.parse().ok()).unwrap_or(-1);
            let (event, prev, hash) = (text("event"), text("prev"), text("hash"));
            if seq != at_key {
                return Ok((chain, broken(at_key, format!("the event kept at place {at_key} says it is number {seq}: it was moved"))));
            }
            match &previous {
                Some((before, _)) if seq != before + 1 => {
                    return Ok((chain, broken(before + 1, format!("events {} to {} are missing: removed", before + 1, seq - 1))));
                }
                Some((_, before_hash)) if &prev != before_hash => {
                    return Ok((chain, broken(seq, "its previous hash is not the hash of the event before it: moved or replaced".into())));
                }
                None if seq == 1 && !prev.is_empty() => {
                    return Ok((chain, broken(seq, "the chain's first event names a previous one".into())));
                }
                _ => {}
            }
            if seal(&prev, &event) != hash || serde_json::from_str::<super::Event>(&event).is_err() {
                return Ok((chain, broken(seq, "its content does not match its hash: edited".into())));
            }
            chain.events += 1;
            chain.first.get_or_insert(seq);
            chain.last = Some(seq);
            previous = Some((seq, hash));
        }
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let (head_seq, head_hash) = head(store, shard).await?;
    let (last_seq, last_hash) = previous.unwrap_or((0, String::new()));
    if head_seq != last_seq || head_hash != last_hash {
        let problem = if head_seq > last_seq {
            format!("the chain's head is at event {head_seq}, but the last event kept is {last_seq}: events removed")
        } else {
            "the chain's head does not match its last event: the head or the event was changed".to_string()
        };
        return Ok((chain, broken(last_seq + 1, problem)));
    }
    Ok((chain, None))
}

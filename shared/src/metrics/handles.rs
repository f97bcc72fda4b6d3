//! Metric handles registered once per label set and found again without allocating: the hot
//! path records into a handle it looks up by borrowed label values (a hash, then a compare),
//! and only a label set never seen before builds its key and registers it.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::RwLock;

/// Handles of one kind (counters or histograms), by metric name and label values.
pub struct Handles<H> {
    map: RwLock<HashMap<u64, Vec<Entry<H>>, foldhash::fast::FixedState>>,
}

/// A metric's name, its label values, and its handle.
type Entry<H> = (&'static str, Vec<String>, H);

impl<H> Default for Handles<H> {
    fn default() -> Self {
        Handles { map: RwLock::new(HashMap::with_hasher(foldhash::fast::FixedState::default())) }
    }
}

fn hash_of(name: &str, labels: &[(&'static str, &str)]) -> u64 {
    use std::hash::BuildHasher;
    let mut hasher = foldhash::fast::FixedState::default().build_hasher();
    name.hash(&mut hasher);
    for (_, value) in labels {
        value.hash(&mut hasher);
    }
    hasher.finish()
}

impl<H: Clone> Handles<H> {
    /// The handle of `name` with `labels` (a metric's label names never vary, so their values
    /// identify the set), registered by `make` the first time.
    pub fn get(&self, name: &'static str, labels: &[(&'static str, &str)], make: impl FnOnce() -> H) -> H {
        let hash = hash_of(name, labels);
        let same = |(n, vs, _): &&Entry<H>| *n == name && vs.iter().map(String::as_str).eq(labels.iter().map(|(_, v)| *v));
        if let Some((_, _, handle)) = self.map.read().expect("metric handles").get(&hash).and_then(|found| found.iter().find(same)) {
            return handle.clone();
        }
        let mut map = self.map.write().expect("metric handles");
        let bucket = map.entry(hash).or_default();
        if let Some((_, _, handle)) = bucket.iter().find(same) {
            return handle.clone();
        }
        let handle = make();
        bucket.push((name, labels.iter().map(|(_, v)| v.to_string()).collect(), handle.clone()));
        handle
    }
}

/// An HTTP status as label text, without allocating.
pub fn status_text(status: i64) -> &'static str {
    static TEXT: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let text = TEXT.get_or_init(|| (0..1000).map(|s| s.to_string()).collect());
    usize::try_from(status).ok().and_then(|s| text.get(s)).map_or("other", String::as_str)
}

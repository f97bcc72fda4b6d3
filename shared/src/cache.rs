//! A small time-bounded cache for the proxy's hot path (API keys by hash, catalog models,
//! provider secrets). Entries older than the TTL are never served, which is what bounds how
//! long a revoked key keeps working in a warm process. A TTL of zero disables caching.
//! Hand-written because it is a dozen lines over std; the well-kept crates (moka, quick_cache)
//! bring far more than a TTL map.

use std::borrow::Borrow;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct TtlCache<K, V> {
    ttl: Duration,
    capacity: usize,
    /// foldhash's randomly seeded hasher, not std's SipHash: a key's lookup hashed its text in
    /// ~260 instructions with SipHash, four lookups a proxied request.
    entries: Mutex<foldhash::HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self { ttl, capacity, entries: Mutex::new(foldhash::HashMap::default()) }
    }

    /// The value cached under `key`, looked up by any borrowed form of it (a `&str` for a
    /// `String` key: no key is made just to look one up).
    pub fn get<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.get(key).filter(|(at, _)| at.elapsed() < self.ttl).map(|(_, v)| v.clone())
    }

    pub fn insert(&self, key: K, value: V) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.capacity {
            let ttl = self.ttl;
            entries.retain(|_, (at, _)| at.elapsed() < ttl);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key, (Instant::now(), value));
    }

    /// The cached value, else what `load` finds (it runs only on a miss), cached when it
    /// finds something (a miss is not remembered, so a value created later is found at once).
    pub async fn get_or_load<E>(&self, key: K, load: impl std::future::Future<Output = Result<Option<V>, E>>) -> Result<Option<V>, E> {
        if let Some(value) = self.get(&key) {
            return Ok(Some(value));
        }
        let loaded = load.await?;
        if let Some(value) = &loaded {
            self.insert(key, value.clone());
        }
        Ok(loaded)
    }

    pub fn remove<Q: Hash + Eq + ?Sized>(&self, key: &Q)
    where
        K: Borrow<Q>,
    {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }

    pub fn clear(&self) {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_zero_ttl_disables() {
        // Only lower bounds on time: a busy machine can make a step slow, never fast.
        let cache = TtlCache::new(Duration::from_secs(3600), 10);
        cache.insert("a", 1);
        assert_eq!(cache.get(&"a"), Some(1));
        let short = TtlCache::new(Duration::from_millis(1), 10);
        short.insert("a", 1);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(short.get(&"a"), None);
        let off = TtlCache::new(Duration::ZERO, 10);
        off.insert("a", 1);
        assert_eq!(off.get(&"a"), None);
    }

    #[test]
    fn capacity_is_bounded() {
        let cache = TtlCache::new(Duration::from_secs(60), 3);
        for i in 0..10 {
            cache.insert(i, i);
        }
        assert!(cache.entries.lock().unwrap().len() <= 3);
        assert_eq!(cache.get(&9), Some(9));
    }

    #[tokio::test]
    async fn a_load_runs_only_on_a_miss_and_a_miss_is_not_remembered() {
        let cache = TtlCache::new(Duration::from_secs(60), 10);
        let loads = std::sync::atomic::AtomicUsize::new(0);
        // Counts the loads that run (a future does nothing until it is awaited).
        let load = |found: Option<i32>| {
            let loads = &loads;
            async move {
                loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok::<_, ()>(found)
            }
        };
        assert_eq!(cache.get_or_load("a", load(None)).await, Ok(None));
        assert_eq!(cache.get_or_load("a", load(Some(7))).await, Ok(Some(7)), "the earlier miss was not cached");
        assert_eq!(cache.get_or_load("a", load(Some(8))).await, Ok(Some(7)), "a hit never runs the load");
        assert_eq!(loads.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}

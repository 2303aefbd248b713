//! Bounded building blocks: a token bucket for per-client rate limits and a TTL cache with a
//! hard entry limit.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// A token bucket: `burst` tokens, refilled at `per_sec`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    burst: f64,
    per_sec: f64,
    updated: Instant,
}

impl TokenBucket {
    pub fn new(now: Instant, burst: u32, per_sec: f64) -> Self {
        Self {
            tokens: f64::from(burst),
            burst: f64::from(burst),
            per_sec,
            updated: now,
        }
    }

    /// Takes one token, or says how long until one is available.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.burst);
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else if self.per_sec > 0.0 {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.per_sec))
        } else {
            Err(Duration::from_secs(3600))
        }
    }
}

/// A cache whose entries expire after a TTL and which never holds more than `capacity`
/// entries: inserting into a full cache evicts the entry that expires first.
#[derive(Debug)]
pub struct TtlCache<K, V> {
    entries: HashMap<K, (Instant, u64, V)>,
    by_expiry: BTreeMap<(Instant, u64), K>,
    capacity: usize,
    next_id: u64,
}

impl<K: Clone + Eq + Hash, V> TtlCache<K, V> {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            by_expiry: BTreeMap::new(),
            capacity,
            next_id: 0,
        }
    }

    pub fn insert(&mut self, now: Instant, key: K, value: V, ttl: Duration) {
        if self.capacity == 0 {
            return;
        }
        self.remove(&key);
        self.expire(now);
        while self.entries.len() >= self.capacity {
            let Some((_, oldest)) = self.by_expiry.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
        let expires = now + ttl;
        self.next_id += 1;
        self.by_expiry.insert((expires, self.next_id), key.clone());
        self.entries.insert(key, (expires, self.next_id, value));
    }

    /// The live value for `key`, if any.
    pub fn get(&self, now: Instant, key: &K) -> Option<&V> {
        match self.entries.get(key) {
            Some((expires, _, value)) if *expires > now => Some(value),
            _ => None,
        }
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        let (expires, id, value) = self.entries.remove(key)?;
        self.by_expiry.remove(&(expires, id));
        Some(value)
    }

    /// Drops expired entries.
    pub fn expire(&mut self, now: Instant) {
        while let Some(entry) = self.by_expiry.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = entry.remove();
            self.entries.remove(&key);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_a_burst_then_the_refill_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(t0, 3, 2.0);
        for _ in 0..3 {
            assert!(bucket.take(t0).is_ok());
        }
        let wait = bucket.take(t0).expect_err("empty");
        assert!(wait <= Duration::from_millis(500) && wait > Duration::ZERO);
        assert!(bucket.take(t0 + Duration::from_millis(500)).is_ok());
        assert!(bucket.take(t0 + Duration::from_millis(500)).is_err());
    }

    #[test]
    fn the_cache_expires_and_stays_within_capacity() {
        let t0 = Instant::now();
        let mut cache = TtlCache::new(3);
        for i in 0..10u32 {
            cache.insert(t0, i, i * 10, Duration::from_secs(u64::from(i) + 1));
            assert!(cache.len() <= 3);
        }
        assert_eq!(cache.get(t0, &9), Some(&90));
        assert_eq!(cache.get(t0, &0), None, "evicted");
        assert_eq!(cache.get(t0 + Duration::from_secs(10), &9), None, "expired");
        cache.expire(t0 + Duration::from_secs(100));
        assert!(cache.is_empty());
    }
}

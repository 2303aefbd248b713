//! The client's host cache: up to 200 supernodes with their measured round-trip times,
//! kept in the profile between runs.

use proto::PublicKey;
use proto::supernode::SupernodeContact;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// The most supernodes a host cache holds.
pub const MAX_HOST_CACHE: usize = 200;

/// One known supernode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostEntry {
    pub contact: SupernodeContact,
    /// The last measured round-trip time, if any.
    pub rtt_millis: Option<u32>,
    /// Consecutive failures (refused, timed out, died, busy); reset by a success.
    pub failures: u32,
    /// When the last failure happened, for skipping recently failed supernodes. Not stored.
    #[serde(skip)]
    pub failed_at: Option<Instant>,
}

/// Up to [`MAX_HOST_CACHE`] supernodes, ranked by health and RTT.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostCache {
    entries: Vec<HostEntry>,
}

/// The stored host cache could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("host cache file is malformed")]
pub struct HostCacheDecodeError;

impl HostCache {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> &[HostEntry] {
        &self.entries
    }

    pub fn entry(&self, key: &PublicKey) -> Option<&HostEntry> {
        self.entries.iter().find(|e| &e.contact.key == key)
    }

    fn entry_mut(&mut self, key: &PublicKey) -> Option<&mut HostEntry> {
        self.entries.iter_mut().find(|e| &e.contact.key == key)
    }

    /// Adds a supernode (or updates its address). A full cache drops its worst entry.
    pub fn insert(&mut self, contact: SupernodeContact) {
        if let Some(entry) = self.entry_mut(&contact.key) {
            entry.contact.addr = contact.addr;
            return;
        }
        if self.entries.len() >= MAX_HOST_CACHE
            && let Some(worst) = self.worst_index()
        {
            self.entries.swap_remove(worst);
        }
        self.entries.push(HostEntry {
            contact,
            rtt_millis: None,
            failures: 0,
            failed_at: None,
        });
    }

    fn worst_index(&self) -> Option<usize> {
        (0..self.entries.len()).max_by_key(|&i| {
            let e = &self.entries[i];
            (
                e.failures,
                e.rtt_millis.is_none(),
                e.rtt_millis.unwrap_or(0),
            )
        })
    }

    pub fn record_rtt(&mut self, key: &PublicKey, rtt_millis: u32) {
        if let Some(entry) = self.entry_mut(key) {
            entry.rtt_millis = Some(rtt_millis);
            entry.failures = 0;
            entry.failed_at = None;
        }
    }

    pub fn record_failure(&mut self, key: &PublicKey, now: Instant) {
        if let Some(entry) = self.entry_mut(key) {
            entry.failures = entry.failures.saturating_add(1);
            entry.failed_at = Some(now);
        }
    }

    pub fn remove(&mut self, key: &PublicKey) {
        self.entries.retain(|e| &e.contact.key != key);
    }

    /// Candidates best first: healthy before failing, measured before unmeasured, then by
    /// RTT. Entries that failed within `skip_failed_for` of `now` come last.
    pub fn ranked(
        &self,
        now: Instant,
        skip_failed_for: std::time::Duration,
    ) -> Vec<SupernodeContact> {
        let mut ranked: Vec<&HostEntry> = self.entries.iter().collect();
        ranked.sort_by_key(|e| {
            let recent = e
                .failed_at
                .is_some_and(|t| now.saturating_duration_since(t) < skip_failed_for);
            (
                recent,
                e.failures.min(3),
                e.rtt_millis.is_none(),
                e.rtt_millis.unwrap_or(u32::MAX),
                e.contact.key,
            )
        });
        ranked.into_iter().map(|e| e.contact).collect()
    }

    /// The encoded form, for the profile.
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("invariant: encoding into a Vec cannot fail")
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, HostCacheDecodeError> {
        let mut cache: Self = postcard::from_bytes(bytes).map_err(|_| HostCacheDecodeError)?;
        cache.entries.truncate(MAX_HOST_CACHE);
        Ok(cache)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::SecretKey;
    use std::time::Duration;

    fn contact(i: u8) -> SupernodeContact {
        SupernodeContact {
            key: SecretKey::from_bytes(&[i; 32]).public(),
            addr: format!("192.0.2.{i}:7500").parse().expect("addr"),
        }
    }

    #[test]
    fn the_cache_ranks_by_rtt_and_health_and_stays_bounded() {
        let now = Instant::now();
        let mut cache = HostCache::new();
        for i in 1..=250u8 {
            cache.insert(contact(i));
        }
        assert_eq!(cache.len(), MAX_HOST_CACHE);
        let keys: Vec<PublicKey> = cache.entries().iter().map(|e| e.contact.key).collect();
        cache.record_rtt(&keys[0], 80);
        cache.record_rtt(&keys[1], 20);
        cache.record_rtt(&keys[2], 5);
        cache.record_failure(&keys[2], now);
        let ranked = cache.ranked(now, Duration::from_secs(60));
        assert_eq!(ranked[0].key, keys[1]);
        assert_eq!(ranked[1].key, keys[0]);
        assert_eq!(ranked.last().map(|c| c.key), Some(keys[2]));
        let restored = HostCache::from_bytes(&cache.to_bytes()).expect("decode");
        assert_eq!(restored.len(), MAX_HOST_CACHE);
        assert_eq!(
            restored.entry(&keys[1]).and_then(|e| e.rtt_millis),
            Some(20)
        );
        assert!(HostCache::from_bytes(&[0xff, 0xff, 0xff]).is_err());
    }
}

//! State time-to-live: an entry not written (or, optionally, read) for the
//! TTL is expired. Expired entries are never returned, are removed when
//! touched, and are swept periodically so that memory falls back.

use std::time::Duration;

/// When an entry's TTL clock restarts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TtlUpdateType {
    /// On creation and on every write (Flink's default).
    OnCreateAndWrite,
    /// On creation, every write and every read.
    OnReadAndWrite,
}

/// Flink's StateTtlConfig. Visibility is always "never return expired".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateTtlConfig {
    /// How long an entry lives after its last update.
    pub ttl: Duration,
    /// What counts as an update.
    pub update_type: TtlUpdateType,
}

impl StateTtlConfig {
    /// Entries live `ttl` after their last write.
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, update_type: TtlUpdateType::OnCreateAndWrite }
    }

    /// Reads also restart the TTL.
    pub fn update_on_read_and_write(mut self) -> Self {
        self.update_type = TtlUpdateType::OnReadAndWrite;
        self
    }

    pub(crate) fn millis(&self) -> i64 {
        self.ttl.as_millis() as i64
    }
}

/// A stored value with the processing time of its last update.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct TtlValue<V> {
    pub(crate) value: V,
    pub(crate) stamp: i64,
}

/// Whether an entry stamped at `stamp` is expired at `now` under `ttl`.
#[inline]
pub(crate) fn is_expired(ttl: Option<&StateTtlConfig>, stamp: i64, now: i64) -> bool {
    ttl.is_some_and(|t| now.saturating_sub(stamp) >= t.millis())
}

/// A per-key stored shape that can drop its expired parts.
pub(crate) trait Expiring {
    /// Removes expired parts; returns whether nothing is left.
    fn remove_expired(&mut self, ttl: &StateTtlConfig, now: i64) -> bool;
}

impl<V> Expiring for TtlValue<V> {
    fn remove_expired(&mut self, ttl: &StateTtlConfig, now: i64) -> bool {
        is_expired(Some(ttl), self.stamp, now)
    }
}

impl<V> Expiring for Vec<TtlValue<V>> {
    fn remove_expired(&mut self, ttl: &StateTtlConfig, now: i64) -> bool {
        self.retain(|v| !is_expired(Some(ttl), v.stamp, now));
        self.is_empty()
    }
}

impl<UK: Eq + std::hash::Hash, UV> Expiring for hashbrown::HashMap<UK, TtlValue<UV>> {
    fn remove_expired(&mut self, ttl: &StateTtlConfig, now: i64) -> bool {
        self.retain(|_, v| !is_expired(Some(ttl), v.stamp, now));
        self.is_empty()
    }
}

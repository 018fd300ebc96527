//! Key groups: the unit in which keyed state is partitioned, snapshotted and
//! redistributed. A key's group is XXH3-64 of the key's postcard bytes modulo
//! `max_parallelism`, and group `g` belongs to subtask
//! `g * parallelism / max_parallelism` — the same in every process, on every
//! machine and in every version, because neither step has a seed.

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use crate::error::{Result, SluiceError};

/// Flink's default upper bound on parallelism, and so the default number of key groups.
pub const DEFAULT_MAX_PARALLELISM: usize = 128;
/// The largest supported `max_parallelism` (key groups are `u16`).
pub const UPPER_BOUND_MAX_PARALLELISM: usize = 1 << 15;

/// The key group of a key given as its serialized bytes.
#[inline]
pub fn key_group_for_bytes(key_bytes: &[u8], max_parallelism: usize) -> usize {
    (xxh3_64(key_bytes) % max_parallelism as u64) as usize
}

/// The subtask (operator index) that owns a key group.
#[inline]
pub fn operator_index_for_key_group(
    max_parallelism: usize,
    parallelism: usize,
    key_group: usize,
) -> usize {
    key_group * parallelism / max_parallelism
}

/// Computes key groups of keys without allocating per key: the serialized
/// bytes go into a scratch buffer that is reused.
#[derive(Debug, Default)]
pub struct KeyHasher {
    scratch: Vec<u8>,
}

impl KeyHasher {
    /// A hasher with an empty scratch buffer.
    pub fn new() -> Self {
        Self { scratch: Vec::with_capacity(64) }
    }

    /// The key group of `key`.
    #[inline]
    pub fn key_group<K: Serialize + ?Sized>(&mut self, key: &K, max_parallelism: usize) -> usize {
        self.scratch.clear();
        // Serializing into a Vec cannot fail for serde-derived types; a
        // failure means a hand-written Serialize that errors, and hashing the
        // partial bytes would still be deterministic.
        let _ = postcard::to_io(key, &mut self.scratch);
        key_group_for_bytes(&self.scratch, max_parallelism)
    }
}

/// A contiguous range of key groups, `start..end` (end exclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyGroupRange {
    /// First key group in the range.
    pub start: usize,
    /// One past the last key group.
    pub end: usize,
}

impl KeyGroupRange {
    /// The range `start..end`.
    pub fn new(start: usize, end: usize) -> Self {
        Self { start, end }
    }

    /// The key groups subtask `index` of `parallelism` owns: exactly those `g`
    /// with `operator_index_for_key_group(max, parallelism, g) == index`.
    pub fn for_operator(max_parallelism: usize, parallelism: usize, index: usize) -> Self {
        let start = (index * max_parallelism).div_ceil(parallelism);
        let end = ((index + 1) * max_parallelism).div_ceil(parallelism);
        Self { start, end }
    }

    /// Number of key groups in the range.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether the range holds no key group.
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// Whether `key_group` is in the range.
    pub fn contains(&self, key_group: usize) -> bool {
        (self.start..self.end).contains(&key_group)
    }
}

/// Checks a `(parallelism, max_parallelism)` pair for an operator.
pub fn check_parallelism(operator: &str, parallelism: usize, max_parallelism: usize) -> Result<()> {
    if max_parallelism == 0 || max_parallelism > UPPER_BOUND_MAX_PARALLELISM {
        return Err(SluiceError::InvalidJob(format!(
            "operator '{operator}': max_parallelism {max_parallelism} is out of range 1..={UPPER_BOUND_MAX_PARALLELISM}"
        )));
    }
    if parallelism == 0 || parallelism > max_parallelism {
        return Err(SluiceError::InvalidJob(format!(
            "operator '{operator}': parallelism {parallelism} is out of range 1..={max_parallelism} (max_parallelism)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fixed vectors: these must never change, or state written by one
    /// version lands on the wrong subtask in another.
    #[test]
    fn key_groups_of_fixed_keys_never_change() {
        let mut h = KeyHasher::new();
        let got: Vec<usize> = ["", "a", "hello", "sluice", "Flink"]
            .iter()
            .map(|k| h.key_group(*k, DEFAULT_MAX_PARALLELISM))
            .collect();
        assert_eq!(got, FIXED_STR_GROUPS);
        let got: Vec<usize> =
            [0u64, 1, 42, 1000, u64::MAX].iter().map(|k| h.key_group(k, 128)).collect();
        assert_eq!(got, FIXED_U64_GROUPS);
        assert_eq!(key_group_for_bytes(b"", 128), (xxh3_64(b"") % 128) as usize);
    }

    // Computed independently of this crate: Python's `xxhash.xxh3_64` over
    // the postcard encoding (varint length + UTF-8 bytes; varint integers).
    const FIXED_STR_GROUPS: [usize; 5] = [91, 68, 19, 87, 70];
    const FIXED_U64_GROUPS: [usize; 5] = [91, 107, 13, 8, 116];

    #[test]
    fn key_group_ranges_partition_all_groups_consistently_with_the_owner_formula() {
        for max in [1, 7, 128, 1000] {
            for p in 1..=max.min(40) {
                let mut next = 0;
                for i in 0..p {
                    let r = KeyGroupRange::for_operator(max, p, i);
                    assert_eq!(r.start, next, "max={max} p={p} i={i}");
                    for g in r.start..r.end {
                        assert_eq!(operator_index_for_key_group(max, p, g), i);
                    }
                    next = r.end;
                }
                assert_eq!(next, max);
            }
        }
    }

    #[test]
    fn parallelism_out_of_range_names_the_operator() {
        let err = check_parallelism("Map", 0, 128).unwrap_err().to_string();
        assert!(err.contains("'Map'") && err.contains("parallelism 0"), "{err}");
        let err = check_parallelism("Map", 129, 128).unwrap_err().to_string();
        assert!(err.contains("parallelism 129"), "{err}");
        assert!(check_parallelism("Map", 128, 128).is_ok());
    }
}

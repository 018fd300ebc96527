//! The exactly-once harness's verifier, shared by the harness's test files:
//! the committed output of a keyed rolling count against its input.
#![allow(dead_code)] // each test file uses part of it

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Records are keyed by index % KEYS; their sequence within the key is index / KEYS.
pub const KEYS: u64 = 13;

/// Checks the committed output under `dir/out` (lines `(key, seq, rolling
/// count)` in part files): every (key, seq) of input indices `0..count`
/// without `absent` exactly once, and per key, in commit order, the rolling
/// counts 0, 1, 2, ... — each record counted once by the keyed state, none
/// skipped, none counted twice, order kept.
pub fn verify_except(dir: &Path, count: u64, absent: &BTreeSet<u64>) -> Result<(), String> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("out"))
        .map_err(|e| e.to_string())?
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    // Commit order across subtasks (a key moves between subtasks on rescale):
    // part-<subtask>-<millis>-<checkpoint>-<token>.
    files.sort_by_key(|p| {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        (name.split('-').nth(2).unwrap_or("").to_string(), name)
    });
    let mut seen: BTreeMap<(u64, u64), u32> = BTreeMap::new();
    let mut next_count: BTreeMap<u64, u64> = BTreeMap::new();
    for f in &files {
        for line in std::fs::read_to_string(f).map_err(|e| e.to_string())?.lines() {
            let (key, seq, rolling): (u64, u64, u64) =
                serde_json::from_str(line).map_err(|e| e.to_string())?;
            *seen.entry((key, seq)).or_default() += 1;
            let expected = next_count.entry(key).or_insert(0);
            if rolling != *expected {
                return Err(format!(
                    "key {key} seq {seq}: state counted {rolling} records before it, {expected} expected \
                     (state lost, replayed or double-counted, or order broken)"
                ));
            }
            *expected += 1;
        }
    }
    let duplicated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).map(|(k, _)| *k).collect();
    if !duplicated.is_empty() {
        return Err(format!(
            "{} record(s) duplicated, first {:?}",
            duplicated.len(),
            duplicated[0]
        ));
    }
    if let Some((key, seq)) = seen.keys().find(|(k, s)| absent.contains(&(k + s * KEYS))) {
        return Err(format!("key {key} seq {seq} is in the output, but not a record of the input"));
    }
    let lost = count - absent.len() as u64 - seen.len() as u64;
    if lost > 0 {
        return Err(format!("{lost} record(s) lost"));
    }
    Ok(())
}

/// How many records the sink under `dir/out` has committed so far.
pub fn committed_records(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir.join("out")) else { return 0 };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .map(|p| std::fs::read_to_string(p).map_or(0, |text| text.lines().count()))
        .sum()
}

//! Snapshots of keyed state, key group by key group. An operator's keyed
//! state is made of parts (state tables, timer services); each part writes
//! the non-empty key groups it holds, and a restore feeds each group back
//! to the part that wrote it, on whichever subtask now owns the group.

use std::collections::BTreeMap;

use sluice_core::{Result, SluiceError};

/// A frozen view of keyed state, taken at a checkpoint barrier and
/// serialized later, off the task thread, while the state changes on.
pub trait KeyGroupedView: Send {
    /// The bytes of every non-empty key group, as they were when the view was taken.
    fn snapshot_groups(&self) -> Result<BTreeMap<usize, Vec<u8>>>;
}

/// A piece of keyed state that snapshots and restores per key group.
pub trait KeyGroupedState {
    /// A view of the state now; cheap, so the barrier does
    /// not wait for serialization.
    fn view(&mut self) -> Box<dyn KeyGroupedView>;
    /// Adds the entries of one key group written by a view's `snapshot_groups`.
    fn restore_group(&mut self, key_group: usize, bytes: &[u8]) -> Result<()>;
}

/// Views of the parts of an operator's keyed state, in order.
pub fn view_key_groups(parts: &mut [&mut dyn KeyGroupedState]) -> Vec<Box<dyn KeyGroupedView>> {
    parts.iter_mut().map(|p| p.view()).collect()
}

/// Serializes views taken by [`view_key_groups`]: per key group, the bytes
/// of every part (empty where a part holds nothing for the group).
pub fn serialize_key_groups(views: &[Box<dyn KeyGroupedView>]) -> Result<Vec<(u32, Vec<u8>)>> {
    let mut groups: BTreeMap<usize, Vec<Option<Vec<u8>>>> = BTreeMap::new();
    for (i, view) in views.iter().enumerate() {
        for (group, bytes) in view.snapshot_groups()? {
            groups.entry(group).or_insert_with(|| vec![None; views.len()])[i] = Some(bytes);
        }
    }
    groups.into_iter().map(|(g, parts)| Ok((g as u32, postcard::to_allocvec(&parts)?))).collect()
}

/// Snapshots the parts of an operator's keyed state right away.
pub fn snapshot_key_groups(parts: &mut [&mut dyn KeyGroupedState]) -> Result<Vec<(u32, Vec<u8>)>> {
    serialize_key_groups(&view_key_groups(parts))
}

/// Restores key groups written by [`snapshot_key_groups`] into the same parts, in the same order.
pub fn restore_key_groups(
    parts: &mut [&mut dyn KeyGroupedState],
    groups: &[(u32, Vec<u8>)],
) -> Result<()> {
    for (group, bytes) in groups {
        let per_part: Vec<Option<Vec<u8>>> = postcard::from_bytes(bytes)?;
        if per_part.len() != parts.len() {
            return Err(SluiceError::InvalidJob(format!(
                "key group {group} was written by an operator with {} state parts, this one has {}: \
                 the operator changed incompatibly",
                per_part.len(),
                parts.len()
            )));
        }
        for (part, bytes) in parts.iter_mut().zip(per_part) {
            if let Some(bytes) = bytes {
                part.restore_group(*group as usize, &bytes)?;
            }
        }
    }
    Ok(())
}

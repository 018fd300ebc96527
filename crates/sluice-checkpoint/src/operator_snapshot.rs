//! What a checkpoint holds for one operator instance: keyed state per key
//! group (so that a restore at another parallelism takes only its groups)
//! and operator list state (source positions, pending commits), which is
//! redistributed round robin on rescale.

use serde::{Deserialize, Serialize};
use sluice_core::{KeyGroupRange, Result};
use sluice_state::{
    restore_key_groups, serialize_key_groups, snapshot_key_groups, view_key_groups, KeyGroupedState,
};

/// An operator's snapshot at a barrier: ready, or views of its state
/// still to be serialized off the task thread.
pub enum PendingSnapshot {
    /// Already complete.
    Ready(OperatorSnapshot),
    /// Serializes the views taken at the barrier.
    Deferred(Box<dyn FnOnce() -> Result<OperatorSnapshot> + Send>),
}

impl std::fmt::Debug for PendingSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PendingSnapshot::Ready(s) => f.debug_tuple("Ready").field(s).finish(),
            PendingSnapshot::Deferred(_) => f.write_str("Deferred"),
        }
    }
}

impl PendingSnapshot {
    /// The snapshot, serializing now if it was deferred.
    pub fn complete(self) -> Result<OperatorSnapshot> {
        match self {
            PendingSnapshot::Ready(s) => Ok(s),
            PendingSnapshot::Deferred(serialize) => serialize(),
        }
    }

    /// Whether serialization is still to do.
    pub fn is_deferred(&self) -> bool {
        matches!(self, PendingSnapshot::Deferred(_))
    }
}

/// One operator instance's state in a checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorSnapshot {
    /// Keyed state: (key group, bytes of all the operator's keyed state for it).
    pub keyed: Vec<(u32, Vec<u8>)>,
    /// Operator state: list entries.
    pub operator: Vec<Vec<u8>>,
}

impl OperatorSnapshot {
    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.keyed.is_empty() && self.operator.is_empty()
    }

    /// A snapshot of keyed state parts, serialized now.
    pub fn of_keyed(parts: &mut [&mut dyn KeyGroupedState]) -> Result<Self> {
        Ok(Self { keyed: snapshot_key_groups(parts)?, operator: Vec::new() })
    }

    /// A snapshot of keyed state parts: views taken now (cheap: nothing is
    /// copied), serialized later off the task thread.
    pub fn deferred_keyed(parts: &mut [&mut dyn KeyGroupedState]) -> PendingSnapshot {
        let views = view_key_groups(parts);
        PendingSnapshot::Deferred(Box::new(move || {
            Ok(OperatorSnapshot { keyed: serialize_key_groups(&views)?, operator: Vec::new() })
        }))
    }

    /// Restores keyed state parts (in the order they were snapshotted).
    pub fn restore_keyed(&self, parts: &mut [&mut dyn KeyGroupedState]) -> Result<()> {
        restore_key_groups(parts, &self.keyed)
    }

    /// The part of several instances' snapshots that subtask `index` of
    /// `parallelism` owns after a rescale: its key groups, and every
    /// `parallelism`-th operator state entry.
    pub fn redistribute(
        old: &[OperatorSnapshot],
        range: KeyGroupRange,
        index: usize,
        parallelism: usize,
    ) -> Self {
        let keyed = old
            .iter()
            .flat_map(|s| s.keyed.iter())
            .filter(|(g, _)| range.contains(*g as usize))
            .cloned()
            .collect();
        let operator = old
            .iter()
            .flat_map(|s| s.operator.iter())
            .skip(index)
            .step_by(parallelism.max(1))
            .cloned()
            .collect();
        Self { keyed, operator }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redistribution_gives_each_subtask_its_key_groups_and_a_share_of_the_operator_state() {
        let old = vec![
            OperatorSnapshot {
                keyed: vec![(0, vec![0]), (70, vec![70])],
                operator: vec![vec![1], vec![2]],
            },
            OperatorSnapshot { keyed: vec![(100, vec![100])], operator: vec![vec![3]] },
        ];
        let a = OperatorSnapshot::redistribute(&old, KeyGroupRange::for_operator(128, 3, 0), 0, 3);
        let b = OperatorSnapshot::redistribute(&old, KeyGroupRange::for_operator(128, 3, 1), 1, 3);
        let c = OperatorSnapshot::redistribute(&old, KeyGroupRange::for_operator(128, 3, 2), 2, 3);
        assert_eq!(a.keyed, vec![(0, vec![0])]);
        assert_eq!(b.keyed, vec![(70, vec![70])]);
        assert_eq!(c.keyed, vec![(100, vec![100])]);
        assert_eq!(
            [a.operator, b.operator, c.operator],
            [vec![vec![1]], vec![vec![2]], vec![vec![3]]]
        );
    }
}

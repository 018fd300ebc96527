//! The ExecutionGraph: every vertex × parallelism as subtasks, each placed
//! in a TaskManager slot. Placement follows Flink's slot sharing: within a
//! slot sharing group, subtask `i` of every vertex shares the group's slot
//! `i`, so a group needs as many slots as its largest parallelism; slots are
//! taken TaskManager by TaskManager. Placement is fixed for the attempt.

use serde::{Deserialize, Serialize};
use sluice_core::{Result, SluiceError};

use crate::job_graph::JobGraph;

/// A slot of a TaskManager.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SlotId {
    /// TaskManager index, from 0.
    pub task_manager: usize,
    /// Slot index within the TaskManager, from 0.
    pub slot: usize,
}

/// One subtask of a vertex and where it runs.
#[derive(Clone, Debug, Serialize)]
pub struct ExecutionVertex {
    /// The job vertex.
    pub vertex: usize,
    /// Subtask index, from 0.
    pub subtask_index: usize,
    /// Name with subtask, e.g. "Map (2/4)".
    pub name: String,
    /// Where it runs.
    pub slot: SlotId,
}

/// The placed job.
#[derive(Clone, Debug, Serialize)]
pub struct ExecutionGraph {
    /// Subtasks per job vertex.
    pub vertices: Vec<Vec<ExecutionVertex>>,
    /// Slots the job occupies.
    pub slots_used: Vec<SlotId>,
}

impl ExecutionGraph {
    /// Slot sharing groups in order of first appearance, each with the
    /// number of slots it needs (its largest parallelism).
    pub fn slot_sharing_groups(job_graph: &JobGraph) -> Vec<(&str, usize)> {
        let mut groups: Vec<(&str, usize)> = Vec::new();
        for v in &job_graph.vertices {
            match groups.iter_mut().find(|(g, _)| *g == v.slot_sharing_group) {
                Some((_, size)) => *size = (*size).max(v.parallelism),
                None => groups.push((&v.slot_sharing_group, v.parallelism)),
            }
        }
        groups
    }

    /// Number of slots the job occupies.
    pub fn slots_needed(job_graph: &JobGraph) -> usize {
        Self::slot_sharing_groups(job_graph).iter().map(|(_, n)| n).sum()
    }

    /// Places every subtask of `job_graph` on `free_slots` (in the order given).
    pub fn schedule(job_graph: &JobGraph, free_slots: &[SlotId]) -> Result<Self> {
        let groups = Self::slot_sharing_groups(job_graph);
        let needed: usize = groups.iter().map(|(_, n)| n).sum();
        if needed > free_slots.len() {
            let detail: Vec<String> =
                groups.iter().map(|(g, n)| format!("'{g}' needs {n}")).collect();
            return Err(SluiceError::Scheduling(format!(
                "the job needs {needed} slots ({}), but the cluster has {} free; \
                 add TaskManagers or slots, or lower the parallelism",
                detail.join(", "),
                free_slots.len()
            )));
        }
        let mut offset = 0;
        let mut first_slot = Vec::new();
        for (g, n) in &groups {
            first_slot.push((*g, offset));
            offset += n;
        }
        let vertices = job_graph
            .vertices
            .iter()
            .map(|v| {
                let base = first_slot
                    .iter()
                    .find(|(g, _)| *g == v.slot_sharing_group)
                    .map(|(_, o)| *o)
                    .unwrap_or(0);
                (0..v.parallelism)
                    .map(|i| ExecutionVertex {
                        vertex: v.id,
                        subtask_index: i,
                        name: format!("{} ({}/{})", v.name, i + 1, v.parallelism),
                        slot: free_slots[base + i],
                    })
                    .collect()
            })
            .collect();
        Ok(Self { vertices, slots_used: free_slots[..needed].to_vec() })
    }
}

//! The plan as a user reads it: StreamGraph, JobGraph (what was chained,
//! and why a chain was broken) and ExecutionGraph (every subtask and its
//! slot), as text and as JSON.

use std::fmt;

use serde::Serialize;

use crate::execution_graph::ExecutionGraph;
use crate::job_graph::JobGraph;
use crate::stream_graph::{ChainingStrategy, NodeKind};

/// All three plan levels of a job, ready to print.
#[derive(Debug, Serialize)]
pub struct Plan {
    /// The job's name.
    pub job_name: String,
    /// The job parameters.
    pub job_parameters: std::collections::BTreeMap<String, String>,
    /// The StreamGraph.
    pub stream_graph: Vec<PlanNode>,
    /// The JobGraph.
    pub job_graph: Vec<PlanVertex>,
    /// The ExecutionGraph.
    pub execution_graph: ExecutionGraph,
    /// The TaskManagers' ids by index, when placed on a standalone cluster
    /// (empty: the mini-cluster's, numbered from 1).
    pub task_managers: Vec<String>,
}

/// A StreamGraph node as shown.
#[derive(Debug, Serialize)]
pub struct PlanNode {
    /// Node id.
    pub id: usize,
    /// Name.
    pub name: String,
    /// uid, if set.
    pub uid: Option<String>,
    /// Source, operator or sink.
    pub kind: NodeKind,
    /// Effective parallelism.
    pub parallelism: usize,
    /// Record type emitted.
    pub output_type: &'static str,
    /// Chaining strategy.
    pub chaining: ChainingStrategy,
    /// Slot sharing group.
    pub slot_sharing_group: String,
    /// Inputs: (upstream node id, partitioner, logical input).
    pub inputs: Vec<PlanInput>,
}

/// An input edge of a node.
#[derive(Debug, Serialize)]
pub struct PlanInput {
    /// Upstream node.
    pub node: usize,
    /// Partitioner name.
    pub partitioner: &'static str,
    /// Logical input of the target.
    pub input: usize,
    /// The side output of the upstream this input reads, if not its main output.
    pub side_output: Option<String>,
}

/// A JobGraph vertex as shown.
#[derive(Debug, Serialize)]
pub struct PlanVertex {
    /// Vertex id.
    pub id: usize,
    /// Chained name.
    pub name: String,
    /// Parallelism.
    pub parallelism: usize,
    /// Slot sharing group.
    pub slot_sharing_group: String,
    /// Stream nodes chained in it.
    pub chained_nodes: Vec<usize>,
    /// Network inputs.
    pub inputs: Vec<PlanVertexInput>,
}

/// A network input of a vertex.
#[derive(Debug, Serialize)]
pub struct PlanVertexInput {
    /// Upstream vertex.
    pub vertex: usize,
    /// Partitioner name.
    pub partitioner: &'static str,
    /// Why the upstream operator was not chained with this vertex's head.
    pub chain_broken_because: Vec<String>,
}

impl Plan {
    /// Describes `job_graph` placed as `execution_graph`.
    pub fn new(job_graph: &JobGraph, execution_graph: ExecutionGraph) -> Self {
        let sg = &job_graph.stream_graph;
        let groups = sg.slot_sharing_groups();
        let stream_graph = sg
            .nodes
            .iter()
            .map(|n| PlanNode {
                id: n.id,
                name: n.name.clone(),
                uid: n.uid.clone(),
                kind: n.kind,
                parallelism: sg.parallelism(n.id),
                output_type: n.output.name,
                chaining: n.chaining,
                slot_sharing_group: groups[n.id].clone(),
                inputs: sg
                    .in_edges(n.id)
                    .map(|(_, e)| PlanInput {
                        node: e.source,
                        partitioner: sg.partitioner(e).name(),
                        input: e.type_number,
                        side_output: e.side_output.as_ref().map(|(tag, _)| tag.clone()),
                    })
                    .collect(),
            })
            .collect();
        let job_vertices = job_graph
            .vertices
            .iter()
            .map(|v| PlanVertex {
                id: v.id,
                name: v.name.clone(),
                parallelism: v.parallelism,
                slot_sharing_group: v.slot_sharing_group.clone(),
                chained_nodes: v.nodes.clone(),
                inputs: job_graph
                    .in_edges(v.id)
                    .map(|e| PlanVertexInput {
                        vertex: e.source_vertex,
                        partitioner: e.partitioner.name(),
                        chain_broken_because: e.chain_break.clone(),
                    })
                    .collect(),
            })
            .collect();
        Self {
            job_name: sg.job_name.clone(),
            job_parameters: sg.config.job_parameters.clone(),
            stream_graph,
            job_graph: job_vertices,
            execution_graph,
            task_managers: Vec::new(),
        }
    }

    /// The plan with the placement's TaskManagers named by their ids.
    pub fn with_task_managers(mut self, ids: Vec<String>) -> Self {
        self.task_managers = ids;
        self
    }

    /// The plan as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a plan is plain data")
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Job '{}'", self.job_name)?;
        for (k, v) in &self.job_parameters {
            writeln!(f, "  parameter {k} = {v}")?;
        }
        writeln!(f, "\n== StreamGraph ==")?;
        for n in &self.stream_graph {
            write!(
                f,
                "  [{}] {} (parallelism {}, emits {}",
                n.id,
                n.name,
                n.parallelism,
                short_type(n.output_type)
            )?;
            if let Some(uid) = &n.uid {
                write!(f, ", uid '{uid}'")?;
            }
            writeln!(f, ")")?;
            for i in &n.inputs {
                let second = if i.input > 0 { " (input 2)" } else { "" };
                let side = i.side_output.as_ref().map(|t| format!(" (side output '{t}')"));
                let side = side.unwrap_or_default();
                writeln!(f, "      <- [{}] {}{second}{side}", i.node, i.partitioner)?;
            }
        }
        writeln!(f, "\n== JobGraph ==")?;
        for v in &self.job_graph {
            writeln!(
                f,
                "  vertex {}: {} (parallelism {}, slot sharing group '{}', chains nodes {:?})",
                v.id, v.name, v.parallelism, v.slot_sharing_group, v.chained_nodes
            )?;
            for i in &v.inputs {
                writeln!(
                    f,
                    "      <- vertex {} by {}; not chained: {}",
                    i.vertex,
                    i.partitioner,
                    i.chain_broken_because.join("; ")
                )?;
            }
        }
        writeln!(f, "\n== ExecutionGraph ==")?;
        for subtasks in &self.execution_graph.vertices {
            for s in subtasks {
                let task_manager = match self.task_managers.get(s.slot.task_manager) {
                    Some(id) => id.clone(),
                    None => (s.slot.task_manager + 1).to_string(),
                };
                writeln!(f, "  {} -> TaskManager {task_manager} slot {}", s.name, s.slot.slot + 1)?;
            }
        }
        write!(f, "  slots used: {}", self.execution_graph.slots_used.len())
    }
}

/// `alloc::string::String` → `String`, `(alloc::string::String, u64)` → `(String, u64)`.
fn short_type(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, part) in name.split("::").enumerate() {
        if i > 0 {
            // Drop the path before the last segment of each type name.
            let cut = out.rfind(|c: char| !(c.is_alphanumeric() || c == '_')).map_or(0, |p| p + 1);
            out.truncate(cut);
        }
        out.push_str(part);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn type_names_are_shortened_to_their_last_segment() {
        assert_eq!(super::short_type("(alloc::string::String, u64)"), "(String, u64)");
        assert_eq!(super::short_type("u64"), "u64");
    }
}

//! The JobGraph: StreamGraph nodes chained into vertices. Two operators are
//! chained (run in one task, calling each other directly) when data can flow
//! between them without a hop; every edge that is not chained records why.

use std::sync::Arc;

use serde::Serialize;
use sluice_core::Result;

use crate::partitioner::{DistributionPattern, PartitionerKind};
use crate::stream_graph::{ChainingStrategy, NodeKind, StreamGraph};

/// A task type: a chain of one or more operators, run at one parallelism.
#[derive(Clone, Debug, Serialize)]
pub struct JobVertex {
    /// Position in [`JobGraph::vertices`].
    pub id: usize,
    /// Chained operator names joined by " -> ", as Flink shows them.
    pub name: String,
    /// Number of subtasks.
    pub parallelism: usize,
    /// Number of key groups.
    pub max_parallelism: usize,
    /// Slot sharing group.
    pub slot_sharing_group: String,
    /// The first node of the chain.
    pub head: usize,
    /// All stream nodes in the chain, head first.
    pub nodes: Vec<usize>,
    /// Whether the head is a source.
    pub is_source: bool,
}

/// A network connection between two vertices.
#[derive(Clone, Debug, Serialize)]
pub struct JobEdge {
    /// Position in [`JobGraph::edges`].
    pub id: usize,
    /// Upstream vertex.
    pub source_vertex: usize,
    /// Downstream vertex.
    pub target_vertex: usize,
    /// Upstream stream node (any node of the chain, not only its tail).
    pub source_node: usize,
    /// Downstream stream node (the target vertex's head).
    pub target_node: usize,
    /// Index of the stream edge this comes from.
    pub stream_edge: usize,
    /// Partitioner.
    pub partitioner: PartitionerKind,
    /// Wiring between subtasks.
    pub distribution: DistributionPattern,
    /// Logical input of the target.
    pub type_number: usize,
    /// Why the two operators were not chained.
    pub chain_break: Vec<String>,
}

/// The chained job.
#[derive(Clone)]
pub struct JobGraph {
    /// The StreamGraph it was made from (the operators' factories live there).
    pub stream_graph: Arc<StreamGraph>,
    /// Vertices, sources first in node order.
    pub vertices: Vec<JobVertex>,
    /// Network edges.
    pub edges: Vec<JobEdge>,
    /// The vertex of every stream node.
    pub vertex_of_node: Vec<usize>,
}

impl JobGraph {
    /// Chains a validated StreamGraph.
    pub fn from_stream_graph(stream_graph: Arc<StreamGraph>) -> Result<Self> {
        stream_graph.validate()?;
        let sg = &*stream_graph;
        let groups = sg.slot_sharing_groups();
        let mut vertex_of_node = vec![usize::MAX; sg.nodes.len()];
        let mut vertices: Vec<JobVertex> = Vec::new();
        let mut chained_edge = vec![false; sg.edges.len()];
        let mut breaks: Vec<Vec<String>> = vec![Vec::new(); sg.edges.len()];

        // Nodes are in topological order, so a node's upstream already has its vertex.
        for node in &sg.nodes {
            let inputs: Vec<_> = sg.in_edges(node.id).collect();
            let mut joined = None;
            if inputs.len() == 1 {
                let (edge_index, edge) = inputs[0];
                let reasons = chain_break_reasons(sg, &groups, edge_index);
                if reasons.is_empty() {
                    joined = Some(vertex_of_node[edge.source]);
                    chained_edge[edge_index] = true;
                } else {
                    breaks[edge_index] = reasons;
                }
            } else {
                for (edge_index, _) in &inputs {
                    breaks[*edge_index] = vec![format!(
                        "'{}' has {} inputs (only one-input operators chain)",
                        node.name,
                        inputs.len()
                    )];
                    breaks[*edge_index].extend(chain_break_reasons(sg, &groups, *edge_index));
                }
            }
            match joined {
                Some(v) => {
                    let vertex = &mut vertices[v];
                    vertex.nodes.push(node.id);
                    vertex.name = format!("{} -> {}", vertex.name, node.name);
                    vertex_of_node[node.id] = v;
                }
                None => {
                    let id = vertices.len();
                    vertex_of_node[node.id] = id;
                    vertices.push(JobVertex {
                        id,
                        name: node.name.clone(),
                        parallelism: sg.parallelism(node.id),
                        max_parallelism: sg.config.max_parallelism,
                        slot_sharing_group: groups[node.id].clone(),
                        head: node.id,
                        nodes: vec![node.id],
                        is_source: node.kind == NodeKind::Source,
                    });
                }
            }
        }

        let edges = sg
            .edges
            .iter()
            .enumerate()
            .filter(|(i, _)| !chained_edge[*i])
            .enumerate()
            .map(|(id, (i, e))| {
                let partitioner = sg.partitioner(e);
                JobEdge {
                    id,
                    source_vertex: vertex_of_node[e.source],
                    target_vertex: vertex_of_node[e.target],
                    source_node: e.source,
                    target_node: e.target,
                    stream_edge: i,
                    partitioner,
                    distribution: partitioner.distribution(),
                    type_number: e.type_number,
                    chain_break: std::mem::take(&mut breaks[i]),
                }
            })
            .collect();
        Ok(Self { stream_graph, vertices, edges, vertex_of_node })
    }

    /// A digest of the job's shape: vertices, chains, operators' state
    /// keys and record types, edges, parallelism and configuration (not the
    /// checkpoint storage, which only the JobMaster writes). Two
    /// builds of a program agree on it when they would run the same job, so
    /// a TaskManager refuses deployments of a job it would build differently.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        use std::fmt::Write;
        let sg = &*self.stream_graph;
        let mut shape = format!("{}|{:?}|{:?}\n", sg.job_name, sg.config, sg.checkpoint_config);
        for v in &self.vertices {
            let _ = write!(
                shape,
                "v {} {} {} {} {}:",
                v.name, v.parallelism, v.max_parallelism, v.slot_sharing_group, v.is_source
            );
            for n in &v.nodes {
                let node = &sg.nodes[*n];
                let _ =
                    write!(shape, " [{} {} {:?}]", node.state_key(), node.output.name, node.kind);
            }
            shape.push('\n');
        }
        for e in &self.edges {
            let _ = writeln!(
                shape,
                "e {}->{} {:?} {:?} {} {}",
                e.source_vertex,
                e.target_vertex,
                e.partitioner,
                e.distribution,
                e.type_number,
                sg.edges[e.stream_edge].output_type(sg).name
            );
        }
        let digest = Sha256::digest(shape.as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Network edges leaving `vertex`.
    pub fn out_edges(&self, vertex: usize) -> impl Iterator<Item = &JobEdge> {
        self.edges.iter().filter(move |e| e.source_vertex == vertex)
    }

    /// Network edges entering `vertex`.
    pub fn in_edges(&self, vertex: usize) -> impl Iterator<Item = &JobEdge> {
        self.edges.iter().filter(move |e| e.target_vertex == vertex)
    }

    /// The network edge made from stream edge `stream_edge`, if it was not chained.
    pub fn edge_for_stream_edge(&self, stream_edge: usize) -> Option<&JobEdge> {
        self.edges.iter().find(|e| e.stream_edge == stream_edge)
    }
}

/// Why a one-input edge cannot be chained; empty when it can (Flink's isChainable).
fn chain_break_reasons(sg: &StreamGraph, groups: &[String], edge_index: usize) -> Vec<String> {
    let edge = &sg.edges[edge_index];
    let (up, down) = (&sg.nodes[edge.source], &sg.nodes[edge.target]);
    let mut reasons = Vec::new();
    if !sg.config.chaining_enabled {
        reasons.push("chaining is disabled for the job".to_string());
    }
    let partitioner = sg.partitioner(edge);
    if partitioner != PartitionerKind::Forward {
        let why = match partitioner {
            PartitionerKind::Hash => " (key_by)",
            _ => "",
        };
        reasons.push(format!("partitioner is {}{why}, not FORWARD", partitioner.name()));
    }
    let (pu, pd) = (sg.parallelism(up.id), sg.parallelism(down.id));
    if pu != pd {
        reasons.push(format!("parallelism differs ({pu} -> {pd})"));
    }
    if up.chaining == ChainingStrategy::Never {
        reasons.push(format!("chaining is disabled on '{}'", up.name));
    }
    match down.chaining {
        ChainingStrategy::Never => reasons.push(format!("chaining is disabled on '{}'", down.name)),
        ChainingStrategy::Head => reasons.push(format!("'{}' starts a new chain", down.name)),
        ChainingStrategy::Always => {}
    }
    if groups[up.id] != groups[down.id] {
        reasons.push(format!(
            "slot sharing groups differ ('{}' vs '{}')",
            groups[up.id], groups[down.id]
        ));
    }
    reasons
}

//! The in-memory shuffle: one bounded channel per (upstream subtask,
//! downstream subtask) pair of every network edge, wired by the edge's
//! distribution pattern. The multi-process cluster will put a TCP
//! connection with credits behind the same sender and receiver ends.

use std::collections::HashMap;

use sluice_runtime::channel::{channel, BatchCodec, InputChannel};
use sluice_runtime::job_graph::JobGraph;
use sluice_runtime::task::OutputChannels;

/// The channel ends of every subtask.
pub struct ShuffleChannels {
    /// Per (vertex, subtask): output channels per job edge id.
    pub outputs: HashMap<(usize, usize), OutputChannels>,
    /// Per (vertex, subtask): input channels.
    pub inputs: HashMap<(usize, usize), Vec<InputChannel>>,
}

/// Creates all channels of a job, each holding `capacity` elements.
pub fn create_channels(job_graph: &JobGraph, capacity: usize) -> ShuffleChannels {
    let mut outputs: HashMap<(usize, usize), OutputChannels> = HashMap::new();
    let mut inputs: HashMap<(usize, usize), Vec<InputChannel>> = HashMap::new();
    let sg = &job_graph.stream_graph;
    for edge in &job_graph.edges {
        let record_type = sg.edges[edge.stream_edge].output_type(sg);
        let up = &job_graph.vertices[edge.source_vertex];
        let down = &job_graph.vertices[edge.target_vertex];
        for i in 0..up.parallelism {
            let senders = outputs.entry((up.id, i)).or_default().entry(edge.id).or_default();
            for j in edge.distribution.targets(i, up.parallelism, down.parallelism) {
                let (tx, rx) = channel(capacity);
                senders.push(tx);
                inputs.entry((down.id, j)).or_default().push(InputChannel {
                    receiver: rx,
                    input: edge.type_number,
                    description: format!("{} ({}/{})", up.name, i + 1, up.parallelism),
                    codec: BatchCodec {
                        encode: record_type.encode_batch,
                        decode: record_type.decode_batch,
                    },
                });
            }
        }
    }
    ShuffleChannels { outputs, inputs }
}

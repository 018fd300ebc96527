//! The shuffle: one channel per (upstream subtask, downstream subtask)
//! pair of every network edge, wired by the edge's distribution pattern.
//! A pair placed on one TaskManager gets an in-memory channel; a pair on
//! two TaskManagers with data planes gets a remote channel over their
//! connection, with the same ends and credits. Each process makes only the
//! ends of the subtasks it runs.

use std::collections::HashMap;
use std::sync::Arc;

use sluice_core::Result;
use sluice_runtime::channel::{channel, BatchCodec, ChannelReceiver, ChannelSender, InputChannel};
use sluice_runtime::execution_graph::ExecutionGraph;
use sluice_runtime::job_graph::JobGraph;
use sluice_runtime::network::frame::ChannelId;
use sluice_runtime::task::OutputChannels;

use crate::task_manager::TaskManager;

/// The channel ends of every subtask.
pub struct ShuffleChannels {
    /// Per (vertex, subtask): output channels per job edge id.
    pub outputs: HashMap<(usize, usize), OutputChannels>,
    /// Per (vertex, subtask): input channels.
    pub inputs: HashMap<(usize, usize), Vec<InputChannel>>,
}

/// Where an attempt's subtasks run, for channels that cross TaskManagers.
pub struct Placement<'a> {
    /// The placed job.
    pub execution_graph: &'a ExecutionGraph,
    /// The TaskManagers, by index.
    pub task_managers: &'a [Arc<TaskManager>],
    /// The job, as the data plane names it.
    pub job: u64,
    /// The attempt the channels belong to.
    pub attempt: u32,
}

/// Creates all channels of a job, each with `capacity` credits; with a
/// placement, pairs on different TaskManagers cross their data planes.
pub fn create_channels(
    job_graph: &JobGraph,
    capacity: usize,
    placement: Option<&Placement<'_>>,
) -> Result<ShuffleChannels> {
    let mut outputs: HashMap<(usize, usize), OutputChannels> = HashMap::new();
    let mut inputs: HashMap<(usize, usize), Vec<InputChannel>> = HashMap::new();
    let mut remote_channels = 0u32;
    let sg = &job_graph.stream_graph;
    for edge in &job_graph.edges {
        let record_type = sg.edges[edge.stream_edge].output_type(sg);
        let codec =
            BatchCodec { encode: record_type.encode_batch, decode: record_type.decode_batch };
        let up = &job_graph.vertices[edge.source_vertex];
        let down = &job_graph.vertices[edge.target_vertex];
        for i in 0..up.parallelism {
            for j in edge.distribution.targets(i, up.parallelism, down.parallelism) {
                let (tx, rx) = match placement {
                    None => {
                        let (tx, rx) = channel(capacity);
                        (Some(tx), Some(rx))
                    }
                    Some(p) => {
                        let tm = |v: usize, s: usize| {
                            &*p.task_managers[p.execution_graph.vertices[v][s].slot.task_manager]
                        };
                        let (from, to) = (tm(up.id, i), tm(down.id, j));
                        match (from.endpoint(), to.endpoint()) {
                            // Every process numbers the crossing channels alike.
                            (Some(_), Some(_)) if from.index() != to.index() => {
                                let id = ChannelId {
                                    job: p.job,
                                    attempt: p.attempt,
                                    index: remote_channels,
                                };
                                remote_channels += 1;
                                remote_ends(from, to, id, capacity as u32, codec)?
                            }
                            _ if from.is_local() => {
                                let (tx, rx) = channel(capacity);
                                (Some(tx), Some(rx))
                            }
                            // Both ends run in another process.
                            _ => (None, None),
                        }
                    }
                };
                if let Some(tx) = tx {
                    outputs.entry((up.id, i)).or_default().entry(edge.id).or_default().push(tx);
                }
                if let Some(rx) = rx {
                    inputs.entry((down.id, j)).or_default().push(InputChannel {
                        receiver: rx,
                        input: edge.type_number,
                        description: format!("{} ({}/{})", up.name, i + 1, up.parallelism),
                        codec,
                    });
                }
            }
        }
    }
    Ok(ShuffleChannels { outputs, inputs })
}

/// The ends of a channel between two TaskManagers that this process runs:
/// the sending end on `from`'s data plane, the receiving end on `to`'s.
fn remote_ends(
    from: &TaskManager,
    to: &TaskManager,
    id: ChannelId,
    capacity: u32,
    codec: BatchCodec,
) -> Result<(Option<ChannelSender>, Option<ChannelReceiver>)> {
    let (Some((from_id, from_address)), Some((to_id, to_address))) =
        (from.endpoint(), to.endpoint())
    else {
        return Ok((None, None));
    };
    let mut ends = (None, None);
    // A connection lost in an earlier attempt is made again.
    if let Some(network) = to.network() {
        network.connect(from_id, from_address)?;
        ends.1 = Some(network.input_channel(from_id, id, capacity, codec.decode)?);
    }
    if let Some(network) = from.network() {
        network.connect(to_id, to_address)?;
        ends.0 = Some(network.output_channel(to_id, id, codec.encode)?);
    }
    Ok(ends)
}

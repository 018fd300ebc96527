//! ConnectedStreams: two streams of possibly different types feeding one
//! two-input operator that can share state between them.

use std::sync::Arc;

use sluice_core::Data;
use sluice_runtime::functions::CoProcessFunction;
use sluice_runtime::operators::co_process::{CoMapOperator, CoProcessOperator};
use sluice_runtime::stream_graph::{NodeBody, NodeKind, OperatorFactory, OutputType};

use crate::data_stream::DataStream;

/// Two streams connected for a two-input operator.
pub struct ConnectedStreams<A, B> {
    first: DataStream<A>,
    second: DataStream<B>,
}

impl<A: Data, B: Data> ConnectedStreams<A, B> {
    pub(crate) fn new(first: DataStream<A>, second: DataStream<B>) -> Self {
        Self { first, second }
    }

    fn add<O: Data>(&self, name: &str, factory: OperatorFactory) -> DataStream<O> {
        let env = self.first.env.clone();
        let mut state = env.borrow_mut();
        let id = state.add_node(
            name.to_string(),
            NodeKind::Operator,
            NodeBody::Operator { factory, inputs: 2 },
            OutputType::of::<O>(),
        );
        state.connect(&self.first.ports, id, 0);
        state.connect(&self.second.ports, id, 1);
        drop(state);
        DataStream::new(env, id)
    }

    /// Maps the first stream with `f1` and the second with `f2` into one stream.
    pub fn map<O: Data, F1, F2>(&self, f1: F1, f2: F2) -> DataStream<O>
    where
        F1: FnMut(A) -> O + Clone + Send + Sync + 'static,
        F2: FnMut(B) -> O + Clone + Send + Sync + 'static,
    {
        let factory: OperatorFactory =
            Arc::new(move || Box::new(CoMapOperator::new(f1.clone(), f2.clone())));
        self.add("Co-Map", factory)
    }

    /// Runs a [`CoProcessFunction`]; each subtask gets a clone.
    pub fn process<O: Data, F>(&self, function: F) -> DataStream<O>
    where
        F: CoProcessFunction<A, B, O> + Clone + Sync + 'static,
    {
        let factory: OperatorFactory =
            Arc::new(move || Box::new(CoProcessOperator::new(function.clone())));
        self.add("Co-Process", factory)
    }
}

//! WindowedStream: a keyed stream cut into windows, waiting for the
//! function that evaluates them.

use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sluice_core::Data;
use sluice_runtime::stream_graph::OperatorFactory;
use sluice_runtime::windowing::evictors::Evictor;
use sluice_runtime::windowing::functions::{
    AggregateWindow, IncrementalProcessWindow, ProcessAllWindow, ProcessWindowFunction,
    ReduceWindow, WindowAggregation,
};
use sluice_runtime::windowing::slicing_window_operator::SlicingWindowOperator;
use sluice_runtime::windowing::triggers::Trigger;
use sluice_runtime::windowing::window_operator::{WindowOperator, WindowSpec};
use sluice_runtime::windowing::WindowAssigner;
use sluice_state::AggregateFunction;

use crate::data_stream::DataStream;
use crate::output_tag::OutputTag;

/// A keyed stream cut into windows (Flink's WindowedStream).
pub struct WindowedStream<T, K, KS, A, Tr, E> {
    pub(crate) stream: DataStream<T>,
    pub(crate) key_selector: KS,
    pub(crate) spec: WindowSpec<A, Tr, E>,
    pub(crate) custom_trigger: bool,
    /// `window_all`: one subtask evaluates every window.
    pub(crate) all: bool,
    pub(crate) _key: std::marker::PhantomData<fn() -> K>,
}

impl<T, K, KS, A, Tr, E> WindowedStream<T, K, KS, A, Tr, E>
where
    T: Data,
    K: Data + Serialize + Eq + Hash,
    KS: Fn(&T) -> K + Clone + Send + Sync + 'static,
    A: WindowAssigner,
    Tr: Trigger,
    E: Evictor<T>,
{
    /// Replaces the assigner's default trigger.
    pub fn trigger<Tr2: Trigger>(self, trigger: Tr2) -> WindowedStream<T, K, KS, A, Tr2, E> {
        WindowedStream {
            stream: self.stream,
            key_selector: self.key_selector,
            spec: WindowSpec {
                assigner: self.spec.assigner,
                trigger,
                evictor: self.spec.evictor,
                allowed_lateness: self.spec.allowed_lateness,
                late_tag: self.spec.late_tag,
            },
            custom_trigger: true,
            all: self.all,
            _key: std::marker::PhantomData,
        }
    }

    /// Removes elements before or after evaluation; windows then keep every element.
    pub fn evictor<E2: Evictor<T>>(self, evictor: E2) -> WindowedStream<T, K, KS, A, Tr, E2> {
        WindowedStream {
            stream: self.stream,
            key_selector: self.key_selector,
            spec: WindowSpec {
                assigner: self.spec.assigner,
                trigger: self.spec.trigger,
                evictor: Some(evictor),
                allowed_lateness: self.spec.allowed_lateness,
                late_tag: self.spec.late_tag,
            },
            custom_trigger: self.custom_trigger,
            all: self.all,
            _key: std::marker::PhantomData,
        }
    }

    /// Event-time windows accept records up to `lateness` after their end,
    /// firing again for each (default: none).
    pub fn allowed_lateness(mut self, lateness: Duration) -> Self {
        self.spec.allowed_lateness = lateness.as_millis() as i64;
        self
    }

    /// Records too late for every window go to this side output instead of being dropped.
    pub fn side_output_late_data(mut self, tag: &OutputTag<T>) -> Self {
        self.spec.late_tag = Some(tag.id().to_string());
        self
    }

    /// Incremental reduce per window.
    pub fn reduce<F>(self, f: F) -> DataStream<T>
    where
        F: FnMut(T, T) -> T + Clone + Send + Sync + 'static,
    {
        self.build("reduce", ReduceWindow(f))
    }

    /// Incremental aggregation per window.
    pub fn aggregate<Ag>(self, aggregate: Ag) -> DataStream<Ag::Out>
    where
        Ag: AggregateFunction<T>,
        Ag::Out: Data,
    {
        self.build("aggregate", AggregateWindow(aggregate))
    }

    /// A process function over all elements of each window.
    pub fn process<O: Data, P>(self, function: P) -> DataStream<O>
    where
        P: ProcessWindowFunction<K, T, O>,
    {
        self.build("process", ProcessAllWindow(function, std::marker::PhantomData))
    }

    /// Incremental reduce, then a process function with the window and the reduced value.
    pub fn reduce_with_process<O: Data, F, P>(self, f: F, function: P) -> DataStream<O>
    where
        F: FnMut(T, T) -> T + Clone + Send + Sync + 'static,
        P: ProcessWindowFunction<K, T, O>,
    {
        self.build(
            "reduce + process",
            IncrementalProcessWindow(ReduceWindow(f), function, std::marker::PhantomData),
        )
    }

    /// Incremental aggregation, then a process function with the window and the result.
    pub fn aggregate_with_process<O: Data, Ag, P>(self, aggregate: Ag, function: P) -> DataStream<O>
    where
        Ag: AggregateFunction<T>,
        Ag::Out: Data,
        P: ProcessWindowFunction<K, Ag::Out, O>,
    {
        let agg = IncrementalProcessWindow(
            AggregateWindow(aggregate),
            function,
            std::marker::PhantomData,
        );
        self.build("aggregate + process", agg)
    }

    fn build<W>(self, function: &str, aggregation: W) -> DataStream<W::Out>
    where
        W: WindowAggregation<K, T> + Sync,
    {
        let ks = self.key_selector;
        let spec = self.spec;
        let aligned =
            spec.assigner.aligned().filter(|_| !self.custom_trigger && spec.evictor.is_none());
        let name = format!("Window({}, {function})", spec.assigner.describe());
        let factory: OperatorFactory = match aligned {
            Some(layout) => {
                let (event_time, lateness, tag) =
                    (spec.assigner.is_event_time(), spec.allowed_lateness, spec.late_tag.clone());
                Arc::new(move || {
                    Box::new(SlicingWindowOperator::new(
                        ks.clone(),
                        layout,
                        event_time,
                        lateness,
                        tag.clone(),
                        aggregation.clone(),
                    ))
                })
            }
            None => Arc::new(move || {
                Box::new(WindowOperator::new(ks.clone(), spec.clone(), aggregation.clone()))
            }),
        };
        let out = self.stream.add_operator(&name, factory);
        if self.all {
            out.set_parallelism(1)
        } else {
            out
        }
    }
}

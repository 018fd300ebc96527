//! KeyedStream: a stream partitioned by key, where every operator sees all
//! records of a key on one subtask and keeps per-key state by key group.

use std::hash::Hash;
use std::ops::AddAssign;

use serde::Serialize;
use sluice_core::Data;
use sluice_runtime::functions::KeyedProcessFunction;
use sluice_runtime::operators::keyed_process::KeyedProcessOperator;
use sluice_runtime::operators::keyed_reduce::KeyedReduceOperator;
use sluice_runtime::stream_graph::OperatorFactory;
use std::sync::Arc;

use sluice_runtime::windowing::evictors::NoEvictor;
use sluice_runtime::windowing::triggers::{CountTrigger, PurgingTrigger};
use sluice_runtime::windowing::window_operator::WindowSpec;
use sluice_runtime::windowing::{GlobalWindows, WindowAssigner};

use crate::data_stream::DataStream;
use crate::windowed_stream::WindowedStream;

/// A stream partitioned by the key `key_selector` computes.
pub struct KeyedStream<T, K, KS> {
    pub(crate) stream: DataStream<T>,
    pub(crate) key_selector: KS,
    _key: std::marker::PhantomData<fn() -> K>,
}

impl<T, K, KS> KeyedStream<T, K, KS>
where
    T: Data,
    K: Data + Serialize + Eq + Hash,
    KS: Fn(&T) -> K + Clone + Send + Sync + 'static,
{
    pub(crate) fn new(stream: DataStream<T>, key_selector: KS) -> Self {
        Self { stream, key_selector, _key: std::marker::PhantomData }
    }

    pub(crate) fn clone_keyed(&self) -> Self {
        Self {
            stream: self.stream.clone(),
            key_selector: self.key_selector.clone(),
            _key: std::marker::PhantomData,
        }
    }

    /// Rolling reduce: per key, emits `f(accumulated, record)` for every
    /// record (the first record of a key is emitted as it is).
    ///
    /// ```
    /// # use sluice_api::StreamExecutionEnvironment;
    /// let env = StreamExecutionEnvironment::new();
    /// let out = env
    ///     .from_collection(vec![(1u8, 5u32), (1, 3), (2, 9), (1, 4)])
    ///     .key_by(|(k, _): &(u8, u32)| *k)
    ///     .reduce(|(k, a), (_, b)| (k, a.max(b)))
    ///     .execute_and_collect("rolling max")?;
    /// assert_eq!(out, vec![(1, 5), (1, 5), (2, 9), (1, 5)]);
    /// # Ok::<(), sluice_api::SluiceError>(())
    /// ```
    pub fn reduce<F>(&self, f: F) -> DataStream<T>
    where
        F: FnMut(T, T) -> T + Clone + Send + Sync + 'static,
    {
        self.reduce_named("Keyed Reduce", f)
    }

    fn reduce_named<F>(&self, name: &str, f: F) -> DataStream<T>
    where
        F: FnMut(T, T) -> T + Clone + Send + Sync + 'static,
    {
        let ks = self.key_selector.clone();
        let factory: OperatorFactory =
            Arc::new(move || Box::new(KeyedReduceOperator::new(ks.clone(), f.clone())));
        self.stream.add_operator(name, factory)
    }

    /// Rolling sum of the field `field` selects; the other fields are the key's first record's.
    pub fn sum<F, A>(&self, field: A) -> DataStream<T>
    where
        F: AddAssign + Copy,
        A: Fn(&mut T) -> &mut F + Clone + Send + Sync + 'static,
    {
        self.reduce_named("Keyed Aggregation", move |mut acc, mut v| {
            *field(&mut acc) += *field(&mut v);
            acc
        })
    }

    /// Rolling minimum of the field `field` selects; the other fields are the key's first record's.
    pub fn min<F, A>(&self, field: A) -> DataStream<T>
    where
        F: PartialOrd + Copy + 'static,
        A: Fn(&mut T) -> &mut F + Clone + Send + Sync + 'static,
    {
        self.keep_field_where(field, |candidate, current| candidate < current)
    }

    /// Rolling maximum of the field `field` selects; the other fields are the key's first record's.
    pub fn max<F, A>(&self, field: A) -> DataStream<T>
    where
        F: PartialOrd + Copy + 'static,
        A: Fn(&mut T) -> &mut F + Clone + Send + Sync + 'static,
    {
        self.keep_field_where(field, |candidate, current| candidate > current)
    }

    /// Replaces the accumulated field by a new record's when `better(new, accumulated)`.
    fn keep_field_where<F, A>(&self, field: A, better: fn(&F, &F) -> bool) -> DataStream<T>
    where
        F: PartialOrd + Copy + 'static,
        A: Fn(&mut T) -> &mut F + Clone + Send + Sync + 'static,
    {
        self.reduce_named("Keyed Aggregation", move |mut acc, mut v| {
            let candidate = *field(&mut v);
            let current = field(&mut acc);
            if better(&candidate, current) {
                *current = candidate;
            }
            acc
        })
    }

    /// Rolling record with the smallest `field` (the earliest one on ties).
    pub fn min_by<F, A>(&self, field: A) -> DataStream<T>
    where
        F: PartialOrd,
        A: Fn(&T) -> F + Clone + Send + Sync + 'static,
    {
        self.reduce_named(
            "Keyed Aggregation",
            move |acc, v| {
                if field(&v) < field(&acc) {
                    v
                } else {
                    acc
                }
            },
        )
    }

    /// Rolling record with the largest `field` (the earliest one on ties).
    pub fn max_by<F, A>(&self, field: A) -> DataStream<T>
    where
        F: PartialOrd,
        A: Fn(&T) -> F + Clone + Send + Sync + 'static,
    {
        self.reduce_named(
            "Keyed Aggregation",
            move |acc, v| {
                if field(&v) > field(&acc) {
                    v
                } else {
                    acc
                }
            },
        )
    }

    /// Cuts the stream into windows per key.
    pub fn window<A: WindowAssigner>(
        &self,
        assigner: A,
    ) -> WindowedStream<T, K, KS, A, A::DefaultTrigger, NoEvictor> {
        let trigger = assigner.default_trigger();
        WindowedStream {
            stream: self.stream.clone(),
            key_selector: self.key_selector.clone(),
            spec: WindowSpec {
                assigner,
                trigger,
                evictor: None,
                allowed_lateness: 0,
                late_tag: None,
            },
            custom_trigger: false,
            all: false,
            _key: std::marker::PhantomData,
        }
    }

    /// Windows of `count` records per key (Flink's countWindow).
    pub fn count_window(
        &self,
        count: u64,
    ) -> WindowedStream<T, K, KS, GlobalWindows, PurgingTrigger<CountTrigger>, NoEvictor> {
        self.window(GlobalWindows::create()).trigger(PurgingTrigger::of(CountTrigger::of(count)))
    }

    /// Runs a [`KeyedProcessFunction`]; each subtask gets a clone.
    pub fn process<O: Data, F>(&self, function: F) -> DataStream<O>
    where
        F: KeyedProcessFunction<K, T, O> + Clone + Sync + 'static,
    {
        let ks = self.key_selector.clone();
        let factory: OperatorFactory =
            Arc::new(move || Box::new(KeyedProcessOperator::new(ks.clone(), function.clone())));
        self.stream.add_operator("KeyedProcess", factory)
    }
}

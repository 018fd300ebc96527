//! What a window computes. Incremental functions (reduce, aggregate) keep
//! one accumulator per window; a process function sees all elements (or,
//! combined with an incremental one, the pre-aggregated result).

use sluice_core::{Data, FunctionResult};
use sluice_state::AggregateFunction;

use crate::functions::Collector;
use crate::windowing::window::TimeWindow;

/// What a window function knows about the window it evaluates.
#[derive(Clone, Copy, Debug)]
pub struct WindowContext {
    /// The window.
    pub window: TimeWindow,
    /// The operator's current watermark.
    pub current_watermark: i64,
    /// The current processing time.
    pub current_processing_time: i64,
}

/// Evaluates a window from its elements (Flink's ProcessWindowFunction).
pub trait ProcessWindowFunction<K, In, Out>: Clone + Send + Sync + 'static {
    /// Emits the window's result(s) for `key`.
    fn process(
        &mut self,
        key: &K,
        ctx: &WindowContext,
        elements: &[In],
        out: &mut Collector<'_, Out>,
    ) -> FunctionResult;
}

impl<K, In, Out, F> ProcessWindowFunction<K, In, Out> for F
where
    F: FnMut(&K, &WindowContext, &[In], &mut Collector<'_, Out>) -> FunctionResult
        + Clone
        + Send
        + Sync
        + 'static,
{
    fn process(
        &mut self,
        key: &K,
        ctx: &WindowContext,
        elements: &[In],
        out: &mut Collector<'_, Out>,
    ) -> FunctionResult {
        self(key, ctx, elements, out)
    }
}

/// How a window operator accumulates and evaluates a window.
pub trait WindowAggregation<K, T>: Clone + Send + 'static {
    /// What is kept per key and window (serializable: it is checkpointed).
    type Acc: Clone + Send + Sync + serde::Serialize + serde::de::DeserializeOwned + 'static;
    /// What a firing emits.
    type Out: Data;

    /// Adds a record to an accumulator (absent for an empty window).
    fn add(&mut self, acc: Option<Self::Acc>, value: T) -> Self::Acc;

    /// Merges two accumulators (session merges, panes of sliding windows).
    fn merge(&mut self, a: Self::Acc, b: Self::Acc) -> Self::Acc;

    /// Emits the result of a window.
    fn emit(
        &mut self,
        key: &K,
        ctx: &WindowContext,
        acc: &Self::Acc,
        out: &mut Collector<'_, Self::Out>,
    ) -> FunctionResult;
}

/// Incremental reduce: the accumulator is a record.
#[derive(Clone, Debug)]
pub struct ReduceWindow<F>(pub F);

impl<K, T: Data, F: FnMut(T, T) -> T + Clone + Send + 'static> WindowAggregation<K, T>
    for ReduceWindow<F>
{
    type Acc = T;
    type Out = T;

    fn add(&mut self, acc: Option<T>, value: T) -> T {
        match acc {
            Some(a) => (self.0)(a, value),
            None => value,
        }
    }

    fn merge(&mut self, a: T, b: T) -> T {
        (self.0)(a, b)
    }

    fn emit(
        &mut self,
        _key: &K,
        _ctx: &WindowContext,
        acc: &T,
        out: &mut Collector<'_, T>,
    ) -> FunctionResult {
        out.collect(acc.clone());
        Ok(())
    }
}

/// Incremental aggregation with an [`AggregateFunction`].
#[derive(Clone, Debug)]
pub struct AggregateWindow<A>(pub A);

impl<K, T, A> WindowAggregation<K, T> for AggregateWindow<A>
where
    A: AggregateFunction<T>,
    A::Out: Data,
{
    type Acc = A::Acc;
    type Out = A::Out;

    fn add(&mut self, acc: Option<A::Acc>, value: T) -> A::Acc {
        let mut acc = acc.unwrap_or_else(|| self.0.create_accumulator());
        self.0.add(value, &mut acc);
        acc
    }

    fn merge(&mut self, a: A::Acc, b: A::Acc) -> A::Acc {
        self.0.merge(a, &b)
    }

    fn emit(
        &mut self,
        _key: &K,
        _ctx: &WindowContext,
        acc: &A::Acc,
        out: &mut Collector<'_, A::Out>,
    ) -> FunctionResult {
        out.collect(self.0.get_result(acc));
        Ok(())
    }
}

/// A process function over all elements of the window.
#[derive(Clone, Debug)]
pub struct ProcessAllWindow<P, O>(pub P, pub std::marker::PhantomData<fn() -> O>);

impl<K, T, O, P> WindowAggregation<K, T> for ProcessAllWindow<P, O>
where
    T: Data,
    O: Data,
    P: ProcessWindowFunction<K, T, O>,
{
    type Acc = Vec<T>;
    type Out = O;

    fn add(&mut self, acc: Option<Vec<T>>, value: T) -> Vec<T> {
        let mut acc = acc.unwrap_or_default();
        acc.push(value);
        acc
    }

    fn merge(&mut self, mut a: Vec<T>, b: Vec<T>) -> Vec<T> {
        a.extend(b);
        a
    }

    fn emit(
        &mut self,
        key: &K,
        ctx: &WindowContext,
        acc: &Vec<T>,
        out: &mut Collector<'_, O>,
    ) -> FunctionResult {
        self.0.process(key, ctx, acc, out)
    }
}

/// An incremental aggregation whose result is handed to a process function
/// (with the window): Flink's `reduce(f, processWindowFunction)`.
#[derive(Clone, Debug)]
pub struct IncrementalProcessWindow<W, P, O>(pub W, pub P, pub std::marker::PhantomData<fn() -> O>);

impl<K, T, O, W, P> WindowAggregation<K, T> for IncrementalProcessWindow<W, P, O>
where
    O: Data,
    W: WindowAggregation<K, T>,
    P: ProcessWindowFunction<K, W::Out, O>,
{
    type Acc = W::Acc;
    type Out = O;

    fn add(&mut self, acc: Option<W::Acc>, value: T) -> W::Acc {
        self.0.add(acc, value)
    }

    fn merge(&mut self, a: W::Acc, b: W::Acc) -> W::Acc {
        self.0.merge(a, b)
    }

    fn emit(
        &mut self,
        key: &K,
        ctx: &WindowContext,
        acc: &W::Acc,
        out: &mut Collector<'_, O>,
    ) -> FunctionResult {
        let mut pre = Vec::with_capacity(1);
        self.0.emit(key, ctx, acc, &mut Collector::new(&mut pre, sluice_core::Timestamp::NONE))?;
        let values: Vec<W::Out> = pre.into_iter().map(|r| r.value).collect();
        self.1.process(key, ctx, &values, out)
    }
}

//! Joins of two streams, as Flink offers them: window joins and co-groups
//! (records of both streams with the same key in the same window), and the
//! interval join of two keyed streams (records close in event time).
//!
//! A window join runs as a keyed window over the union of both streams,
//! each record tagged with its side, exactly as Flink implements it.

use std::hash::Hash;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sluice_core::{Data, FunctionResult};
use sluice_runtime::functions::Collector;
use sluice_runtime::operators::interval_join::{IntervalJoinOperator, ProcessJoinFunction};
use sluice_runtime::stream_graph::{NodeBody, NodeKind, OperatorFactory, OutputType};
use sluice_runtime::windowing::{WindowAssigner, WindowContext};

use crate::data_stream::DataStream;
use crate::keyed_stream::KeyedStream;

/// A record of either of two joined streams (Flink's TaggedUnion).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaggedUnion<A, B> {
    /// From the first stream.
    One(A),
    /// From the second stream.
    Two(B),
}

/// Two streams to co-group or join; name their keys next.
pub struct CoGroupedStreams<A, B> {
    first: DataStream<A>,
    second: DataStream<B>,
}

/// Two streams with their key selectors.
pub struct KeyedCoGroup<A, B, K, KA, KB> {
    first: DataStream<A>,
    second: DataStream<B>,
    first_key: KA,
    second_key: KB,
    _key: std::marker::PhantomData<fn() -> K>,
}

/// Two keyed streams with a window.
pub struct WindowedCoGroup<A, B, K, KA, KB, W> {
    keyed: KeyedCoGroup<A, B, K, KA, KB>,
    assigner: W,
    join: bool,
}

impl<A: Data> DataStream<A> {
    /// Groups this stream with `other` by key and window (Flink's coGroup).
    pub fn co_group<B: Data>(&self, other: &DataStream<B>) -> CoGroupedStreams<A, B> {
        CoGroupedStreams { first: self.clone(), second: other.clone() }
    }

    /// Joins this stream with `other` by key and window: every pair with the
    /// same key in the same window (Flink's join).
    pub fn join<B: Data>(&self, other: &DataStream<B>) -> JoinedStreams<A, B> {
        JoinedStreams(self.co_group(other))
    }
}

/// Two streams to join; name their keys next.
pub struct JoinedStreams<A, B>(CoGroupedStreams<A, B>);

impl<A: Data, B: Data> CoGroupedStreams<A, B> {
    /// The first stream's key.
    pub fn where_key<K, KA>(self, key: KA) -> CoGroupWhere<A, B, K, KA>
    where
        KA: Fn(&A) -> K + Clone + Send + Sync + 'static,
    {
        CoGroupWhere { streams: self, first_key: key, _key: std::marker::PhantomData }
    }
}

impl<A: Data, B: Data> JoinedStreams<A, B> {
    /// The first stream's key.
    pub fn where_key<K, KA>(self, key: KA) -> JoinWhere<A, B, K, KA>
    where
        KA: Fn(&A) -> K + Clone + Send + Sync + 'static,
    {
        JoinWhere(self.0.where_key(key))
    }
}

/// A co-group with the first key named.
pub struct CoGroupWhere<A, B, K, KA> {
    streams: CoGroupedStreams<A, B>,
    first_key: KA,
    _key: std::marker::PhantomData<fn() -> K>,
}

/// A join with the first key named.
pub struct JoinWhere<A, B, K, KA>(CoGroupWhere<A, B, K, KA>);

impl<A: Data, B: Data, K, KA> CoGroupWhere<A, B, K, KA> {
    /// The second stream's key.
    pub fn equal_to<KB>(self, key: KB) -> KeyedCoGroup<A, B, K, KA, KB>
    where
        KB: Fn(&B) -> K + Clone + Send + Sync + 'static,
    {
        KeyedCoGroup {
            first: self.streams.first,
            second: self.streams.second,
            first_key: self.first_key,
            second_key: key,
            _key: std::marker::PhantomData,
        }
    }
}

impl<A: Data, B: Data, K, KA> JoinWhere<A, B, K, KA> {
    /// The second stream's key.
    pub fn equal_to<KB>(self, key: KB) -> KeyedJoin<A, B, K, KA, KB>
    where
        KB: Fn(&B) -> K + Clone + Send + Sync + 'static,
    {
        KeyedJoin(self.0.equal_to(key))
    }
}

/// A join with both keys named.
pub struct KeyedJoin<A, B, K, KA, KB>(KeyedCoGroup<A, B, K, KA, KB>);

impl<A, B, K, KA, KB> KeyedCoGroup<A, B, K, KA, KB> {
    /// The windows to group in.
    pub fn window<W: WindowAssigner>(self, assigner: W) -> WindowedCoGroup<A, B, K, KA, KB, W> {
        WindowedCoGroup { keyed: self, assigner, join: false }
    }
}

impl<A, B, K, KA, KB> KeyedJoin<A, B, K, KA, KB> {
    /// The windows to join in.
    pub fn window<W: WindowAssigner>(self, assigner: W) -> WindowedJoin<A, B, K, KA, KB, W> {
        WindowedJoin(WindowedCoGroup { keyed: self.0, assigner, join: true })
    }
}

/// A windowed join waiting for its function.
pub struct WindowedJoin<A, B, K, KA, KB, W>(WindowedCoGroup<A, B, K, KA, KB, W>);

impl<A, B, K, KA, KB, W> WindowedCoGroup<A, B, K, KA, KB, W>
where
    A: Data,
    B: Data,
    K: Data + Serialize + Eq + Hash,
    KA: Fn(&A) -> K + Clone + Send + Sync + 'static,
    KB: Fn(&B) -> K + Clone + Send + Sync + 'static,
    W: WindowAssigner,
{
    /// Calls `f` once per key and window with the records of both streams.
    pub fn apply<O: Data, F>(self, f: F) -> DataStream<O>
    where
        F: FnMut(&K, &[A], &[B], &mut Collector<'_, O>) -> FunctionResult
            + Clone
            + Send
            + Sync
            + 'static,
    {
        let KeyedCoGroup { first, second, first_key, second_key, .. } = self.keyed;
        let tagged =
            first.map(TaggedUnion::<A, B>::One).union(&[second.map(TaggedUnion::<A, B>::Two)]);
        let key = move |e: &TaggedUnion<A, B>| match e {
            TaggedUnion::One(a) => first_key(a),
            TaggedUnion::Two(b) => second_key(b),
        };
        let name = if self.join { "Join" } else { "CoGroup" };
        let mut f = f;
        tagged
            .key_by(key)
            .window(self.assigner)
            .process(
                move |k: &K,
                      _ctx: &WindowContext,
                      elements: &[TaggedUnion<A, B>],
                      out: &mut Collector<'_, O>| {
                    let (mut ones, mut twos) = (Vec::new(), Vec::new());
                    for e in elements {
                        match e {
                            TaggedUnion::One(a) => ones.push(a.clone()),
                            TaggedUnion::Two(b) => twos.push(b.clone()),
                        }
                    }
                    f(k, &ones, &twos, out)
                },
            )
            .name(name)
    }
}

impl<A, B, K, KA, KB, W> WindowedJoin<A, B, K, KA, KB, W>
where
    A: Data,
    B: Data,
    K: Data + Serialize + Eq + Hash,
    KA: Fn(&A) -> K + Clone + Send + Sync + 'static,
    KB: Fn(&B) -> K + Clone + Send + Sync + 'static,
    W: WindowAssigner,
{
    /// Emits `f(a, b)` for every pair with the same key in the same window.
    pub fn apply<O: Data, F>(self, f: F) -> DataStream<O>
    where
        F: FnMut(&A, &B) -> O + Clone + Send + Sync + 'static,
    {
        let mut f = f;
        self.0.apply(move |_k: &K, ones: &[A], twos: &[B], out: &mut Collector<'_, O>| {
            for a in ones {
                for b in twos {
                    out.collect(f(a, b));
                }
            }
            Ok(())
        })
    }
}

/// Two keyed streams to join by time interval.
pub struct IntervalJoin<A, B, K, KA, KB> {
    first: KeyedStream<A, K, KA>,
    second: KeyedStream<B, K, KB>,
}

/// An interval join with its bounds.
pub struct IntervalJoined<A, B, K, KA, KB> {
    join: IntervalJoin<A, B, K, KA, KB>,
    lower: i64,
    upper: i64,
}

impl<A, K, KA> KeyedStream<A, K, KA>
where
    A: Data,
    K: Data + Serialize + Eq + Hash,
    KA: Fn(&A) -> K + Clone + Send + Sync + 'static,
{
    /// Joins records of this stream with records of `other` with the same
    /// key that are close in event time (Flink's intervalJoin).
    pub fn interval_join<B: Data, KB>(
        &self,
        other: &KeyedStream<B, K, KB>,
    ) -> IntervalJoin<A, B, K, KA, KB>
    where
        KB: Fn(&B) -> K + Clone + Send + Sync + 'static,
    {
        IntervalJoin { first: self.clone_keyed(), second: other.clone_keyed() }
    }
}

impl<A, B, K, KA, KB> IntervalJoin<A, B, K, KA, KB> {
    /// `b` joins `a` when `a.ts + lower_ms <= b.ts <= a.ts + upper_ms`.
    pub fn between(self, lower_ms: i64, upper_ms: i64) -> IntervalJoined<A, B, K, KA, KB> {
        IntervalJoined { join: self, lower: lower_ms, upper: upper_ms }
    }
}

impl<A, B, K, KA, KB> IntervalJoined<A, B, K, KA, KB>
where
    A: Data,
    B: Data,
    K: Data + Serialize + Eq + Hash,
    KA: Fn(&A) -> K + Clone + Send + Sync + 'static,
    KB: Fn(&B) -> K + Clone + Send + Sync + 'static,
{
    /// Runs `function` on every matching pair; results carry the later of the two timestamps.
    pub fn process<O: Data, F>(self, function: F) -> DataStream<O>
    where
        F: ProcessJoinFunction<A, B, O>,
    {
        let (ka, kb) =
            (self.join.first.key_selector.clone(), self.join.second.key_selector.clone());
        let (lower, upper) = (self.lower, self.upper);
        let factory: OperatorFactory = Arc::new(move || {
            Box::new(IntervalJoinOperator::new(
                ka.clone(),
                kb.clone(),
                lower,
                upper,
                function.clone(),
            ))
        });
        let env = self.join.first.stream.env.clone();
        let mut state = env.borrow_mut();
        let body = NodeBody::Operator { factory, inputs: 2 };
        let id =
            state.add_node("IntervalJoin".into(), NodeKind::Operator, body, OutputType::of::<O>());
        state.connect(&self.join.first.stream.ports, id, 0);
        state.connect(&self.join.second.stream.ports, id, 1);
        drop(state);
        DataStream::new(env, id)
    }
}

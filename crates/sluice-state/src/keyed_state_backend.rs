//! The heap keyed state backend: named states (Flink's ValueState,
//! ListState, MapState, ReducingState, AggregatingState) declared by
//! descriptors, each a table of per-key entries partitioned by key group.
//!
//! A function gets a typed handle when it declares a state, and reaches
//! the current key's entry through the handle: no lookup by name per record.

use std::any::Any;
use std::collections::BTreeMap;
use std::hash::Hash;
use std::marker::PhantomData;

use hashbrown::HashMap;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sluice_core::{Key, KeyGroupRange, Result, SluiceError};

use crate::heap_value_state::HeapValueState;
use crate::key_grouped::{KeyGroupedState, KeyGroupedView};
use crate::ttl::{is_expired, Expiring, StateTtlConfig, TtlUpdateType, TtlValue};

/// Flink's AggregateFunction: incremental aggregation through an accumulator.
pub trait AggregateFunction<In>: Clone + Send + Sync + 'static {
    /// The accumulator (serializable: it is checkpointed).
    type Acc: Clone + Send + Sync + Serialize + DeserializeOwned + 'static;
    /// The result.
    type Out;
    /// A fresh accumulator.
    fn create_accumulator(&self) -> Self::Acc;
    /// Adds a value to an accumulator.
    fn add(&self, value: In, acc: &mut Self::Acc);
    /// The result of an accumulator.
    fn get_result(&self, acc: &Self::Acc) -> Self::Out;
    /// Merges two accumulators (session windows, panes of sliding windows).
    fn merge(&self, a: Self::Acc, b: &Self::Acc) -> Self::Acc;
}

/// A state declared by name, with an optional TTL.
#[derive(Clone, Debug)]
pub struct StateDescriptor<S> {
    name: String,
    ttl: Option<StateTtlConfig>,
    kind: S,
}

impl<S> StateDescriptor<S> {
    /// Gives entries of this state a time-to-live.
    pub fn enable_time_to_live(mut self, ttl: StateTtlConfig) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// The state's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Kind marker of a value state.
#[derive(Clone, Debug)]
pub struct Value<V>(PhantomData<fn() -> V>);
/// Kind marker of a list state.
#[derive(Clone, Debug)]
pub struct List<V>(PhantomData<fn() -> V>);
/// Kind marker of a map state.
#[derive(Clone, Debug)]
pub struct Map<UK, UV>(PhantomData<fn() -> (UK, UV)>);
/// Kind marker of a reducing state, with its function.
#[derive(Clone, Debug)]
pub struct Reducing<F>(F);
/// Kind marker of an aggregating state, with its function.
#[derive(Clone, Debug)]
pub struct Aggregating<A>(A);

/// Declares a `ValueState<V>`.
pub type ValueStateDescriptor<V> = StateDescriptor<Value<V>>;
/// Declares a `ListState<V>`.
pub type ListStateDescriptor<V> = StateDescriptor<List<V>>;
/// Declares a `MapState<UK, UV>`.
pub type MapStateDescriptor<UK, UV> = StateDescriptor<Map<UK, UV>>;

impl<V> StateDescriptor<Value<V>> {
    /// A value state named `name`.
    pub fn value(name: &str) -> Self {
        Self { name: name.into(), ttl: None, kind: Value(PhantomData) }
    }
}

impl<V> StateDescriptor<List<V>> {
    /// A list state named `name`.
    pub fn list(name: &str) -> Self {
        Self { name: name.into(), ttl: None, kind: List(PhantomData) }
    }
}

impl<UK, UV> StateDescriptor<Map<UK, UV>> {
    /// A map state named `name`.
    pub fn map(name: &str) -> Self {
        Self { name: name.into(), ttl: None, kind: Map(PhantomData) }
    }
}

impl<F> StateDescriptor<Reducing<F>> {
    /// A reducing state named `name` combining values with `reduce`.
    pub fn reducing(name: &str, reduce: F) -> Self {
        Self { name: name.into(), ttl: None, kind: Reducing(reduce) }
    }
}

impl<A> StateDescriptor<Aggregating<A>> {
    /// An aggregating state named `name` using `aggregate`.
    pub fn aggregating(name: &str, aggregate: A) -> Self {
        Self { name: name.into(), ttl: None, kind: Aggregating(aggregate) }
    }
}

/// Handle on a value state.
#[derive(Clone, Copy, Debug)]
pub struct ValueState<V> {
    table: usize,
    _v: PhantomData<fn() -> V>,
}

/// Handle on a list state.
#[derive(Clone, Copy, Debug)]
pub struct ListState<V> {
    table: usize,
    _v: PhantomData<fn() -> V>,
}

/// Handle on a map state.
#[derive(Clone, Copy, Debug)]
pub struct MapState<UK, UV> {
    table: usize,
    _v: PhantomData<fn() -> (UK, UV)>,
}

/// Handle on a reducing state.
#[derive(Clone, Debug)]
pub struct ReducingState<V, F> {
    table: usize,
    reduce: F,
    _v: PhantomData<fn() -> V>,
}

/// Handle on an aggregating state.
#[derive(Clone, Debug)]
pub struct AggregatingState<In, A> {
    table: usize,
    aggregate: A,
    _v: PhantomData<fn(In)>,
}

/// One named state's entries, with the TTL it was declared with.
struct Table<K, S> {
    entries: HeapValueState<K, S>,
    ttl: Option<StateTtlConfig>,
}

/// What the backend needs of a table without knowing its types.
trait ErasedTable: Send {
    fn as_any(&mut self) -> &mut dyn Any;
    fn remove_expired(&mut self, now: i64);
    fn len(&self) -> usize;
    fn ttl(&self) -> Option<StateTtlConfig>;
    fn extract(&mut self, range: KeyGroupRange) -> Result<Box<dyn Any + Send>>;
    fn insert(&mut self, data: Box<dyn Any + Send>) -> Result<()>;
    fn view(&mut self) -> Box<dyn KeyGroupedView>;
    fn restore_group(&mut self, key_group: usize, bytes: &[u8]) -> Result<()>;
}

impl<K, S> ErasedTable for Table<K, S>
where
    K: Key,
    S: Expiring + Clone + Send + Sync + Serialize + DeserializeOwned + 'static,
{
    fn view(&mut self) -> Box<dyn KeyGroupedView> {
        self.entries.view()
    }

    fn restore_group(&mut self, key_group: usize, bytes: &[u8]) -> Result<()> {
        self.entries.restore_group(key_group, bytes)
    }

    fn as_any(&mut self) -> &mut dyn Any {
        self
    }

    fn remove_expired(&mut self, now: i64) {
        if let Some(ttl) = self.ttl {
            self.entries.retain(|_, s| !s.remove_expired(&ttl, now));
        }
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    fn ttl(&self) -> Option<StateTtlConfig> {
        self.ttl
    }

    fn extract(&mut self, range: KeyGroupRange) -> Result<Box<dyn Any + Send>> {
        Ok(Box::new(self.entries.extract_key_groups(range)?))
    }

    fn insert(&mut self, data: Box<dyn Any + Send>) -> Result<()> {
        let groups = data
            .downcast::<Vec<(usize, Vec<(K, S)>)>>()
            .map_err(|_| SluiceError::Internal("key groups of another state type".into()))?;
        for (group, entries) in *groups {
            self.entries.insert_key_group(group, entries)?;
        }
        Ok(())
    }
}

/// The key groups of every state of an operator, taken out to move them.
pub struct KeyedStateSnapshot {
    tables: Vec<(String, Box<dyn Any + Send>)>,
}

impl std::fmt::Debug for KeyedStateSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.tables.iter().map(|(n, _)| n)).finish()
    }
}

/// The current key of a keyed operator, with its key group and the processing time.
#[derive(Debug)]
pub struct CurrentKey<'a, K> {
    /// The key.
    pub key: &'a K,
    /// Its key group.
    pub key_group: usize,
    /// Processing time, for TTL.
    pub now: i64,
}

/// All keyed state of one operator instance.
pub struct HeapKeyedStateBackend<K> {
    range: KeyGroupRange,
    tables: Vec<(String, Box<dyn ErasedTable>)>,
    next_cleanup: Option<i64>,
    _keys: PhantomData<fn() -> K>,
}

impl<K> std::fmt::Debug for HeapKeyedStateBackend<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeapKeyedStateBackend").field("range", &self.range).finish_non_exhaustive()
    }
}

impl<K: Key> HeapKeyedStateBackend<K> {
    /// An empty backend for the key groups in `range`.
    pub fn new(range: KeyGroupRange) -> Self {
        Self { range, tables: Vec::new(), next_cleanup: None, _keys: PhantomData }
    }

    fn register<S: Expiring + Clone + Send + Sync + Serialize + DeserializeOwned + 'static>(
        &mut self,
        name: &str,
        ttl: Option<StateTtlConfig>,
    ) -> Result<usize> {
        if let Some(i) = self.tables.iter().position(|(n, _)| n == name) {
            if !self.tables[i].1.as_any().is::<Table<K, S>>() {
                return Err(SluiceError::InvalidJob(format!(
                    "state '{name}' is declared twice with different types"
                )));
            }
            return Ok(i);
        }
        self.tables.push((
            name.to_string(),
            Box::new(Table::<K, S> { entries: HeapValueState::new(self.range), ttl }),
        ));
        Ok(self.tables.len() - 1)
    }

    fn table<S: 'static>(&mut self, index: usize) -> &mut Table<K, S> {
        self.tables[index]
            .1
            .as_any()
            .downcast_mut::<Table<K, S>>()
            .expect("a handle matches its table's type")
    }

    /// Declares (or finds) a value state.
    pub fn value_state<V: Clone + Send + Sync + Serialize + DeserializeOwned + 'static>(
        &mut self,
        d: &ValueStateDescriptor<V>,
    ) -> Result<ValueState<V>> {
        Ok(ValueState { table: self.register::<TtlValue<V>>(&d.name, d.ttl)?, _v: PhantomData })
    }

    /// Declares (or finds) a list state.
    pub fn list_state<V: Clone + Send + Sync + Serialize + DeserializeOwned + 'static>(
        &mut self,
        d: &ListStateDescriptor<V>,
    ) -> Result<ListState<V>> {
        Ok(ListState { table: self.register::<Vec<TtlValue<V>>>(&d.name, d.ttl)?, _v: PhantomData })
    }

    /// Declares (or finds) a map state.
    pub fn map_state<UK, UV>(&mut self, d: &MapStateDescriptor<UK, UV>) -> Result<MapState<UK, UV>>
    where
        UK: Key,
        UV: Clone + Send + Sync + Serialize + DeserializeOwned + 'static,
    {
        let table = self.register::<HashMap<UK, TtlValue<UV>>>(&d.name, d.ttl)?;
        Ok(MapState { table, _v: PhantomData })
    }

    /// Declares (or finds) a reducing state.
    pub fn reducing_state<V, F>(
        &mut self,
        d: &StateDescriptor<Reducing<F>>,
    ) -> Result<ReducingState<V, F>>
    where
        V: Clone + Send + Sync + Serialize + DeserializeOwned + 'static,
        F: Fn(V, V) -> V + Clone,
    {
        let table = self.register::<TtlValue<V>>(&d.name, d.ttl)?;
        Ok(ReducingState { table, reduce: d.kind.0.clone(), _v: PhantomData })
    }

    /// Declares (or finds) an aggregating state.
    pub fn aggregating_state<In, A>(
        &mut self,
        d: &StateDescriptor<Aggregating<A>>,
    ) -> Result<AggregatingState<In, A>>
    where
        A: AggregateFunction<In>,
    {
        let table = self.register::<TtlValue<A::Acc>>(&d.name, d.ttl)?;
        Ok(AggregatingState { table, aggregate: d.kind.0.clone(), _v: PhantomData })
    }

    /// The current key's entry of a value state.
    pub fn value<'a, V: Clone + 'static>(
        &'a mut self,
        h: &ValueState<V>,
        key: &'a CurrentKey<'a, K>,
    ) -> ValueRef<'a, K, V> {
        ValueRef { table: self.table(h.table), key }
    }

    /// The current key's entry of a list state.
    pub fn list<'a, V: Clone + 'static>(
        &'a mut self,
        h: &ListState<V>,
        key: &'a CurrentKey<'a, K>,
    ) -> ListRef<'a, K, V> {
        ListRef { table: self.table(h.table), key }
    }

    /// The current key's entry of a map state.
    pub fn map<'a, UK: Clone + 'static, UV: Clone + 'static>(
        &'a mut self,
        h: &MapState<UK, UV>,
        key: &'a CurrentKey<'a, K>,
    ) -> MapRef<'a, K, UK, UV> {
        MapRef { table: self.table(h.table), key }
    }

    /// Adds a value to the current key's reducing state.
    pub fn reduce_add<V: Clone + Send + 'static, F: Fn(V, V) -> V>(
        &mut self,
        h: &ReducingState<V, F>,
        key: &CurrentKey<'_, K>,
        value: V,
    ) {
        let reduce = &h.reduce;
        let mut v = ValueRef { table: self.table::<TtlValue<V>>(h.table), key };
        let new = match v.take() {
            Some(acc) => reduce(acc, value),
            None => value,
        };
        v.update(new);
    }

    /// The current key's reduced value.
    pub fn reduce_get<'a, V: Clone + 'static, F>(
        &'a mut self,
        h: &ReducingState<V, F>,
        key: &'a CurrentKey<'a, K>,
    ) -> Option<&'a V> {
        ValueRef { table: self.table::<TtlValue<V>>(h.table), key }.into_value()
    }

    /// Adds a value to the current key's aggregating state.
    pub fn aggregate_add<In, A: AggregateFunction<In>>(
        &mut self,
        h: &AggregatingState<In, A>,
        key: &CurrentKey<'_, K>,
        value: In,
    ) {
        let mut v = ValueRef { table: self.table::<TtlValue<A::Acc>>(h.table), key };
        let mut acc = v.take().unwrap_or_else(|| h.aggregate.create_accumulator());
        h.aggregate.add(value, &mut acc);
        v.update(acc);
    }

    /// The current key's aggregate result.
    pub fn aggregate_get<In, A: AggregateFunction<In>>(
        &mut self,
        h: &AggregatingState<In, A>,
        key: &CurrentKey<'_, K>,
    ) -> Option<A::Out> {
        let v = ValueRef { table: self.table::<TtlValue<A::Acc>>(h.table), key };
        v.into_value().map(|acc| h.aggregate.get_result(acc))
    }

    /// Number of entries (keys with a value) over all states.
    pub fn len(&self) -> usize {
        self.tables.iter().map(|(_, t)| t.len()).sum()
    }

    /// Whether no state holds an entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Schedules the next sweep for expired entries (a quarter of the
    /// shortest TTL from `now`), unless one is scheduled or no state has a TTL.
    pub fn schedule_cleanup(&mut self, now: i64) {
        if self.next_cleanup.is_none() {
            let interval = self
                .tables
                .iter()
                .filter_map(|(_, t)| t.ttl())
                .map(|t| (t.millis() / 4).max(1))
                .min();
            self.next_cleanup = interval.map(|i| now + i);
        }
    }

    /// When the next sweep for expired entries is due.
    pub fn next_cleanup(&self) -> Option<i64> {
        self.next_cleanup
    }

    /// Removes every expired entry.
    pub fn remove_expired(&mut self, now: i64) {
        for (_, t) in &mut self.tables {
            t.remove_expired(now);
        }
        self.next_cleanup = None;
    }

    /// Takes out every state's entries of the key groups in `range`.
    pub fn extract_key_groups(&mut self, range: KeyGroupRange) -> Result<KeyedStateSnapshot> {
        let tables = self
            .tables
            .iter_mut()
            .map(|(n, t)| Ok((n.clone(), t.extract(range)?)))
            .collect::<Result<_>>()?;
        Ok(KeyedStateSnapshot { tables })
    }

    /// Puts entries taken out by [`Self::extract_key_groups`] into the states
    /// of the same names (declared before this is called).
    pub fn insert_key_groups(&mut self, snapshot: KeyedStateSnapshot) -> Result<()> {
        for (name, data) in snapshot.tables {
            let table = self.tables.iter_mut().find(|(n, _)| *n == name).ok_or_else(|| {
                SluiceError::InvalidJob(format!(
                    "restored state '{name}' is not declared by the operator"
                ))
            })?;
            table.1.insert(data)?;
        }
        Ok(())
    }
}

/// Every state table of a backend, as views.
struct BackendView {
    tables: Vec<(String, Box<dyn KeyGroupedView>)>,
}

impl KeyGroupedView for BackendView {
    fn snapshot_groups(&self) -> Result<BTreeMap<usize, Vec<u8>>> {
        let mut groups: BTreeMap<usize, Vec<(&str, Vec<u8>)>> = BTreeMap::new();
        for (name, table) in &self.tables {
            for (group, bytes) in table.snapshot_groups()? {
                groups.entry(group).or_default().push((name, bytes));
            }
        }
        groups.into_iter().map(|(g, tables)| Ok((g, postcard::to_allocvec(&tables)?))).collect()
    }
}

impl<K: Key> KeyGroupedState for HeapKeyedStateBackend<K> {
    fn view(&mut self) -> Box<dyn KeyGroupedView> {
        Box::new(BackendView {
            tables: self.tables.iter_mut().map(|(n, t)| (n.clone(), t.view())).collect(),
        })
    }

    fn restore_group(&mut self, key_group: usize, bytes: &[u8]) -> Result<()> {
        let tables: Vec<(String, Vec<u8>)> = postcard::from_bytes(bytes)?;
        for (name, data) in tables {
            let table = self.tables.iter_mut().find(|(n, _)| *n == name).ok_or_else(|| {
                SluiceError::InvalidJob(format!(
                    "restored keyed state '{name}' is not declared by the operator"
                ))
            })?;
            table.1.restore_group(key_group, &data)?;
        }
        Ok(())
    }
}

/// Stamps an entry as written now.
fn touch<V>(ttl: Option<&StateTtlConfig>, v: &mut TtlValue<V>, now: i64, read: bool) {
    if !read || ttl.is_some_and(|t| t.update_type == TtlUpdateType::OnReadAndWrite) {
        v.stamp = now;
    }
}

/// The current key's entry of a value state.
pub struct ValueRef<'a, K, V> {
    table: &'a mut Table<K, TtlValue<V>>,
    key: &'a CurrentKey<'a, K>,
}

impl<'a, K: Eq + Hash + Clone, V: Clone> ValueRef<'a, K, V> {
    /// The value, unless absent or expired.
    pub fn get(&mut self) -> Option<&V> {
        let (ttl, now, group, key) =
            (self.table.ttl, self.key.now, self.key.key_group, self.key.key);
        let stamp = self.table.entries.get(group, key)?.stamp;
        if is_expired(ttl.as_ref(), stamp, now) {
            self.table.entries.remove(group, key);
            return None;
        }
        let e = self.table.entries.get_mut(group, key)?;
        touch(ttl.as_ref(), e, now, true);
        Some(&e.value)
    }

    fn into_value(self) -> Option<&'a V> {
        let (ttl, now) = (self.table.ttl, self.key.now);
        let e = self.table.entries.get(self.key.key_group, self.key.key)?;
        if is_expired(ttl.as_ref(), e.stamp, now) {
            return None;
        }
        Some(&e.value)
    }

    /// The value to change in place (no copy of a large value), unless
    /// absent or expired.
    pub fn get_mut(&mut self) -> Option<&mut V> {
        let (ttl, now, group, key) =
            (self.table.ttl, self.key.now, self.key.key_group, self.key.key);
        let stamp = self.table.entries.get(group, key)?.stamp;
        if is_expired(ttl.as_ref(), stamp, now) {
            self.table.entries.remove(group, key);
            return None;
        }
        let e = self.table.entries.get_mut(group, key)?;
        touch(ttl.as_ref(), e, now, false);
        Some(&mut e.value)
    }

    /// Removes the value and returns it, unless absent or expired.
    pub fn take(&mut self) -> Option<V> {
        let e = self.table.entries.remove(self.key.key_group, self.key.key)?;
        (!is_expired(self.table.ttl.as_ref(), e.stamp, self.key.now)).then_some(e.value)
    }

    /// Sets the value.
    pub fn update(&mut self, value: V) {
        let stamp = self.key.now;
        match self.table.entries.get_mut(self.key.key_group, self.key.key) {
            Some(e) => *e = TtlValue { value, stamp },
            None => {
                self.table.entries.put(
                    self.key.key_group,
                    self.key.key.clone(),
                    TtlValue { value, stamp },
                );
            }
        }
    }

    /// Removes the value.
    pub fn clear(&mut self) {
        self.table.entries.remove(self.key.key_group, self.key.key);
    }
}

/// The current key's entry of a list state.
pub struct ListRef<'a, K, V> {
    table: &'a mut Table<K, Vec<TtlValue<V>>>,
    key: &'a CurrentKey<'a, K>,
}

impl<K: Eq + Hash + Clone, V: Clone> ListRef<'_, K, V> {
    /// The elements that have not expired, in insertion order.
    pub fn get(&mut self) -> impl Iterator<Item = &V> {
        let (ttl, now) = (self.table.ttl, self.key.now);
        let list = self.table.entries.get_mut(self.key.key_group, self.key.key);
        list.into_iter().flat_map(move |l| {
            if let Some(t) = ttl.as_ref() {
                l.remove_expired(t, now);
            }
            l.iter_mut().map(move |e| {
                touch(ttl.as_ref(), e, now, true);
                &e.value
            })
        })
    }

    /// Appends an element.
    pub fn add(&mut self, value: V) {
        let e = TtlValue { value, stamp: self.key.now };
        match self.table.entries.get_mut(self.key.key_group, self.key.key) {
            Some(l) => l.push(e),
            None => {
                self.table.entries.put(self.key.key_group, self.key.key.clone(), vec![e]);
            }
        }
    }

    /// Replaces the list.
    pub fn update(&mut self, values: Vec<V>) {
        let now = self.key.now;
        let list: Vec<_> = values.into_iter().map(|value| TtlValue { value, stamp: now }).collect();
        if list.is_empty() {
            self.clear();
        } else {
            self.table.entries.put(self.key.key_group, self.key.key.clone(), list);
        }
    }

    /// Removes the list.
    pub fn clear(&mut self) {
        self.table.entries.remove(self.key.key_group, self.key.key);
    }
}

/// The current key's entry of a map state.
pub struct MapRef<'a, K, UK, UV> {
    table: &'a mut Table<K, HashMap<UK, TtlValue<UV>>>,
    key: &'a CurrentKey<'a, K>,
}

impl<K: Eq + Hash + Clone, UK: Eq + Hash + Clone, UV: Clone> MapRef<'_, K, UK, UV> {
    /// The value of `user_key`, unless absent or expired.
    pub fn get(&mut self, user_key: &UK) -> Option<&UV> {
        let (ttl, now) = (self.table.ttl, self.key.now);
        let map = self.table.entries.get_mut(self.key.key_group, self.key.key)?;
        if map.get(user_key).is_some_and(|e| is_expired(ttl.as_ref(), e.stamp, now)) {
            map.remove(user_key);
            return None;
        }
        let e = map.get_mut(user_key)?;
        touch(ttl.as_ref(), e, now, true);
        Some(&e.value)
    }

    /// Whether `user_key` has a live value.
    pub fn contains(&mut self, user_key: &UK) -> bool {
        self.get(user_key).is_some()
    }

    /// Sets the value of `user_key`.
    pub fn put(&mut self, user_key: UK, value: UV) {
        let e = TtlValue { value, stamp: self.key.now };
        match self.table.entries.get_mut(self.key.key_group, self.key.key) {
            Some(m) => {
                m.insert(user_key, e);
            }
            None => {
                let mut m = HashMap::new();
                m.insert(user_key, e);
                self.table.entries.put(self.key.key_group, self.key.key.clone(), m);
            }
        }
    }

    /// Removes `user_key`.
    pub fn remove(&mut self, user_key: &UK) -> Option<UV> {
        let map = self.table.entries.get_mut(self.key.key_group, self.key.key)?;
        let removed = map.remove(user_key).map(|e| e.value);
        if map.is_empty() {
            self.table.entries.remove(self.key.key_group, self.key.key);
        }
        removed
    }

    /// The live entries.
    pub fn entries(&mut self) -> impl Iterator<Item = (&UK, &UV)> {
        let (ttl, now) = (self.table.ttl, self.key.now);
        let map = self.table.entries.get_mut(self.key.key_group, self.key.key);
        map.into_iter().flat_map(move |m| {
            if let Some(t) = ttl.as_ref() {
                m.remove_expired(t, now);
            }
            m.iter().map(|(k, e)| (k, &e.value))
        })
    }

    /// Removes every entry of the current key.
    pub fn clear(&mut self) {
        self.table.entries.remove(self.key.key_group, self.key.key);
    }
}

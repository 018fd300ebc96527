//! Keyed state, stored per key group so that a snapshot or a rescale touches
//! one key-group range at a time and never scans unrelated keys.
#![deny(missing_docs)]

pub mod heap_value_state;
pub mod key_grouped;
pub mod keyed_state_backend;
pub mod timer_service;
pub mod ttl;

pub use heap_value_state::HeapValueState;
pub use key_grouped::{
    restore_key_groups, serialize_key_groups, snapshot_key_groups, view_key_groups,
    KeyGroupedState, KeyGroupedView,
};
pub use keyed_state_backend::{
    AggregateFunction, AggregatingState, CurrentKey, HeapKeyedStateBackend, KeyedStateSnapshot,
    ListState, ListStateDescriptor, MapState, MapStateDescriptor, ReducingState, StateDescriptor,
    ValueState, ValueStateDescriptor,
};
pub use timer_service::{InternalTimerService, TimeDomain, TimersSnapshot};
pub use ttl::{StateTtlConfig, TtlUpdateType};

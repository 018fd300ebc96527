//! Two-phase commit sinks (Flink's TwoPhaseCommitSinkFunction): records
//! go into a transaction; at a checkpoint barrier the transaction is
//! pre-committed and its committable stored in the checkpoint; when the
//! checkpoint completes it is committed. After a restore, the committables
//! of the restored checkpoint are committed again (so commit must be
//! idempotent) before anything else happens: only then does the sink clean
//! up what earlier attempts left open, and only then does the first new
//! transaction begin. Output becomes visible exactly once, at checkpoint pace.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use sluice_core::{Data, RecordBatch, Result, StreamRecord};

use crate::operator::{FinalCommit, Output, StreamOperator};
use crate::runtime_context::RuntimeContext;
use crate::snapshot::{OperatorSnapshot, PendingSnapshot};

/// A sink with transactions, shared by all its subtasks.
pub trait TwoPhaseCommitSink<T: Data>: Send + Sync + 'static {
    /// An open transaction of one subtask.
    type Transaction: Send;
    /// What a pre-committed transaction leaves to commit (stored in checkpoints).
    type Committable: Serialize + DeserializeOwned + Clone + std::fmt::Debug + Send + 'static;

    /// Called once per subtask before its first transaction, after the
    /// restored transactions were committed: clean up what earlier attempts
    /// left uncommitted and unreferenced.
    fn recover(&self, _ctx: &RuntimeContext) -> Result<()> {
        Ok(())
    }

    /// Opens the transaction that follows checkpoint `after_checkpoint` (the
    /// restored checkpoint, or 0, for the first one).
    fn begin_transaction(
        &self,
        ctx: &RuntimeContext,
        after_checkpoint: u64,
    ) -> Result<Self::Transaction>;

    /// Writes records into the transaction.
    fn write(&self, txn: &mut Self::Transaction, records: Vec<StreamRecord<T>>) -> Result<()>;

    /// Makes the transaction durable but not visible; `None` if it holds nothing.
    fn pre_commit(&self, txn: Self::Transaction) -> Result<Option<Self::Committable>>;

    /// Makes a pre-committed transaction visible. Must be idempotent: after a
    /// restore it may run again for a transaction committed before the failure.
    fn commit(&self, committable: &Self::Committable) -> Result<()>;

    /// Discards a transaction.
    fn abort(&self, txn: Self::Transaction) -> Result<()>;
}

/// Runs a [`TwoPhaseCommitSink`] as the last operator of a chain.
pub struct TwoPhaseCommitSinkOperator<T: Data, S: TwoPhaseCommitSink<T>> {
    sink: Arc<S>,
    ctx: Option<RuntimeContext>,
    current: Option<S::Transaction>,
    /// Pre-committed, not yet committed: by the checkpoint that pre-committed them.
    pending: BTreeMap<u64, Vec<S::Committable>>,
    _records: std::marker::PhantomData<fn(T)>,
}

impl<T: Data, S: TwoPhaseCommitSink<T>> TwoPhaseCommitSinkOperator<T, S> {
    /// A 2PC sink operator for `sink`.
    pub fn new(sink: Arc<S>) -> Self {
        Self {
            sink,
            ctx: None,
            current: None,
            pending: BTreeMap::new(),
            _records: std::marker::PhantomData,
        }
    }

    fn ctx(&self) -> &RuntimeContext {
        self.ctx.as_ref().expect("opened")
    }

    /// The open transaction; the first one begins after the restore's
    /// commits and the sink's clean-up.
    fn current(&mut self) -> Result<&mut S::Transaction> {
        if self.current.is_none() {
            let ctx = self.ctx.as_ref().expect("opened");
            self.sink.recover(ctx)?;
            let after = ctx.restored_checkpoint_id.unwrap_or(0);
            self.current = Some(self.sink.begin_transaction(ctx, after)?);
        }
        Ok(self.current.as_mut().expect("begun above"))
    }

    fn commit_up_to(&mut self, checkpoint_id: u64) -> Result<()> {
        let later = self.pending.split_off(&(checkpoint_id + 1));
        for committable in std::mem::replace(&mut self.pending, later).into_values().flatten() {
            // A fault point for tests: fail between checkpoint completion and commit.
            fail::fail_point!("sluice::sink::commit");
            self.sink.commit(&committable)?;
        }
        Ok(())
    }
}

impl<T: Data, S: TwoPhaseCommitSink<T>> StreamOperator for TwoPhaseCommitSinkOperator<T, S> {
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.ctx = Some(ctx.clone());
        Ok(())
    }

    fn process_batch(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        _out: &mut Output,
    ) -> Result<()> {
        let records = batch.into_records::<T>()?;
        let sink = self.sink.clone();
        sink.write(self.current()?, records)
    }

    fn process_watermark(
        &mut self,
        _watermark: sluice_core::Watermark,
        _out: &mut Output,
    ) -> Result<()> {
        Ok(())
    }

    fn snapshot_state(&mut self, checkpoint_id: u64) -> Result<PendingSnapshot> {
        // Pre-commit at the barrier; what follows goes into a new transaction.
        self.current()?;
        let txn = self.current.take().expect("begun above");
        if let Some(committable) = self.sink.pre_commit(txn)? {
            self.pending.entry(checkpoint_id).or_default().push(committable);
        }
        // A fault point for tests: fail after pre-commit, before the acknowledgement.
        fail::fail_point!("sluice::sink::pre_commit");
        self.current = Some(self.sink.begin_transaction(self.ctx(), checkpoint_id)?);
        let operator = self
            .pending
            .values()
            .flatten()
            .map(postcard::to_allocvec)
            .collect::<std::result::Result<_, _>>()?;
        Ok(PendingSnapshot::Ready(OperatorSnapshot { keyed: Vec::new(), operator }))
    }

    fn restore_state(&mut self, state: OperatorSnapshot) -> Result<()> {
        // The restored checkpoint completed, so what it pre-committed is committed now
        // (again, if the failure came after the commit: commit is idempotent).
        for bytes in &state.operator {
            let committable: S::Committable = postcard::from_bytes(bytes)?;
            self.sink.commit(&committable)?;
            // A fault point for tests: fail while committing restored transactions.
            fail::fail_point!("sluice::sink::restore_commit");
        }
        Ok(())
    }

    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64, _out: &mut Output) -> Result<()> {
        self.commit_up_to(checkpoint_id)
    }

    fn end_input(&mut self, _input: usize, _out: &mut Output) -> Result<()> {
        // No record follows: the open transaction is pre-committed. Nothing
        // becomes visible yet: another task may still fail, and the job
        // restart from an earlier checkpoint. The JobManager commits when
        // every task finished (`take_final_commit`).
        self.current()?;
        if let Some(txn) = self.current.take() {
            if let Some(committable) = self.sink.pre_commit(txn)? {
                self.pending.entry(u64::MAX).or_default().push(committable);
            }
        }
        Ok(())
    }

    fn take_final_commit(&mut self) -> Option<FinalCommit> {
        let committables: Vec<S::Committable> =
            std::mem::take(&mut self.pending).into_values().flatten().collect();
        if committables.is_empty() {
            return None;
        }
        let sink = self.sink.clone();
        Some(FinalCommit(Box::new(move || committables.iter().try_for_each(|c| sink.commit(c)))))
    }

    fn close(&mut self) -> Result<()> {
        match self.current.take() {
            Some(txn) => self.sink.abort(txn),
            None => Ok(()),
        }
    }
}

//! Flink's DataGeneratorSource: record `i` is `generator(i)` for `i` in
//! `0..count` (or without end), split into index ranges across subtasks,
//! optionally rate-limited to a number of records per second in total.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sluice_core::{Data, Result, SluiceError};
use sluice_runtime::source::{
    Boundedness, InputStatus, Source, SourceOutput, SourceReader, SourceSplit,
};
use sluice_runtime::RuntimeContext;

/// Generates records from their index.
pub struct DataGeneratorSource<T, F> {
    generator: Arc<F>,
    count: Option<u64>,
    records_per_second: Option<f64>,
    _records: std::marker::PhantomData<fn() -> T>,
}

impl<T, F: Fn(u64) -> T> DataGeneratorSource<T, F> {
    /// `count` records (`None`: unbounded), record `i` being `generator(i)`.
    pub fn new(generator: F, count: Option<u64>) -> Self {
        Self {
            generator: Arc::new(generator),
            count,
            records_per_second: None,
            _records: std::marker::PhantomData,
        }
    }

    /// Limits the total rate over all subtasks.
    pub fn with_rate(mut self, records_per_second: f64) -> Result<Self> {
        if !(records_per_second.is_finite() && records_per_second > 0.0) {
            return Err(SluiceError::Config(format!(
                "datagen rate must be a positive number of records per second, got {records_per_second}"
            )));
        }
        self.records_per_second = Some(records_per_second);
        Ok(self)
    }
}

impl DataGeneratorSource<u64, fn(u64) -> u64> {
    /// The numbers `0..count` (Flink's `fromSequence`).
    pub fn sequence(count: u64) -> Self {
        Self::new(|i| i, Some(count))
    }
}

/// A range of indices `start..end`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IndexRangeSplit {
    /// Next index to generate.
    pub start: u64,
    /// One past the last index.
    pub end: u64,
    /// Records per second for this split, if limited.
    pub rate: Option<f64>,
}

impl SourceSplit for IndexRangeSplit {
    fn split_id(&self) -> String {
        format!("indices {}..{}", self.start, self.end)
    }
}

impl<T, F> Source<T> for DataGeneratorSource<T, F>
where
    T: Data,
    F: Fn(u64) -> T + Send + Sync + 'static,
{
    type Split = IndexRangeSplit;

    fn boundedness(&self) -> Boundedness {
        if self.count.is_some() {
            Boundedness::Bounded
        } else {
            Boundedness::ContinuousUnbounded
        }
    }

    fn create_splits(&self, parallelism: usize) -> Result<Vec<IndexRangeSplit>> {
        let n = self.count.unwrap_or(u64::MAX) as u128;
        let p = parallelism as u128;
        let rate = self.records_per_second.map(|r| r / parallelism as f64);
        Ok((0..p)
            .map(|i| IndexRangeSplit {
                start: (i * n / p) as u64,
                end: ((i + 1) * n / p) as u64,
                rate,
            })
            .collect())
    }

    fn create_reader(
        &self,
        _ctx: &RuntimeContext,
    ) -> Result<Box<dyn SourceReader<T, IndexRangeSplit>>> {
        Ok(Box::new(GeneratorReader {
            generator: self.generator.clone(),
            splits: Vec::new(),
            next_id: 0,
            started: None,
            emitted: 0,
        }))
    }
}

struct GeneratorReader<F> {
    generator: Arc<F>,
    /// Splits still to read, last first, with the id each has for watermarks.
    splits: Vec<(u32, IndexRangeSplit)>,
    next_id: u32,
    started: Option<Instant>,
    emitted: u64,
}

impl<T: Data, F: Fn(u64) -> T + Send + Sync> SourceReader<T, IndexRangeSplit>
    for GeneratorReader<F>
{
    fn add_splits(&mut self, splits: Vec<IndexRangeSplit>) -> Result<()> {
        let first = self.next_id;
        self.next_id += splits.len() as u32;
        let mut new: Vec<_> = (first..).zip(splits).collect();
        new.reverse();
        new.append(&mut self.splits);
        self.splits = new;
        Ok(())
    }

    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<Vec<IndexRangeSplit>> {
        Ok(self.splits.iter().rev().map(|(_, s)| s.clone()).collect())
    }

    fn poll_next(&mut self, output: &mut SourceOutput<T>) -> Result<InputStatus> {
        let Some((id, split)) = self.splits.last_mut() else {
            return Ok(InputStatus::EndOfInput);
        };
        output.set_split(*id);
        let mut budget = output.remaining() as u64;
        if let Some(rate) = split.rate {
            // Emit only what the rate allows by now; the task waits and polls again.
            let started = *self.started.get_or_insert_with(Instant::now);
            let allowed = (started.elapsed().as_secs_f64() * rate) as u64 + 1;
            budget = budget.min(allowed.saturating_sub(self.emitted));
            if budget == 0 {
                let wait = Duration::from_secs_f64(1.0 / rate).min(Duration::from_millis(1));
                std::thread::sleep(wait);
                return Ok(InputStatus::NothingAvailable);
            }
        }
        let take = budget.min(split.end - split.start);
        let generator = &*self.generator;
        for i in split.start..split.start + take {
            output.collect(generator(i));
        }
        split.start += take;
        self.emitted += take;
        if split.start == split.end {
            output.finish_split(*id);
            self.splits.pop();
        }
        Ok(if self.splits.is_empty() {
            InputStatus::EndOfInput
        } else {
            InputStatus::MoreAvailable
        })
    }
}

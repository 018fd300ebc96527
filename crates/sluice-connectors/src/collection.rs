//! A bounded source over an in-memory collection, split into contiguous
//! ranges so that every element is read exactly once at any parallelism.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sluice_core::{Data, Result};
use sluice_runtime::source::{
    Boundedness, InputStatus, Source, SourceOutput, SourceReader, SourceSplit,
};
use sluice_runtime::RuntimeContext;

/// Reads the elements of a vector, in order within each subtask.
#[derive(Debug)]
pub struct CollectionSource<T> {
    elements: Arc<Vec<T>>,
}

impl<T> CollectionSource<T> {
    /// A source emitting `elements`.
    pub fn new(elements: Vec<T>) -> Self {
        Self { elements: Arc::new(elements) }
    }
}

/// A contiguous range of the collection.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CollectionSplit {
    /// First index.
    pub start: usize,
    /// One past the last index.
    pub end: usize,
}

impl SourceSplit for CollectionSplit {
    fn split_id(&self) -> String {
        format!("elements {}..{}", self.start, self.end)
    }
}

impl<T: Data + Sync> Source<T> for CollectionSource<T> {
    type Split = CollectionSplit;

    fn boundedness(&self) -> Boundedness {
        Boundedness::Bounded
    }

    fn create_splits(&self, parallelism: usize) -> Result<Vec<CollectionSplit>> {
        let n = self.elements.len();
        Ok((0..parallelism)
            .map(|i| CollectionSplit { start: i * n / parallelism, end: (i + 1) * n / parallelism })
            .collect())
    }

    fn create_reader(
        &self,
        _ctx: &RuntimeContext,
    ) -> Result<Box<dyn SourceReader<T, CollectionSplit>>> {
        Ok(Box::new(CollectionReader {
            elements: self.elements.clone(),
            splits: Vec::new(),
            next_id: 0,
        }))
    }
}

struct CollectionReader<T> {
    elements: Arc<Vec<T>>,
    /// Splits still to read, last first, with the id each has for watermarks.
    splits: Vec<(u32, CollectionSplit)>,
    next_id: u32,
}

impl<T: Data + Sync> SourceReader<T, CollectionSplit> for CollectionReader<T> {
    fn add_splits(&mut self, splits: Vec<CollectionSplit>) -> Result<()> {
        let mut new: Vec<(u32, CollectionSplit)> = splits
            .into_iter()
            .map(|split| {
                self.next_id += 1;
                (self.next_id - 1, split)
            })
            .collect();
        new.reverse();
        new.append(&mut self.splits);
        self.splits = new;
        Ok(())
    }

    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<Vec<CollectionSplit>> {
        Ok(self.splits.iter().rev().map(|(_, s)| s.clone()).collect())
    }

    fn poll_next(&mut self, output: &mut SourceOutput<T>) -> Result<InputStatus> {
        while let Some((id, split)) = self.splits.last_mut() {
            output.set_split(*id);
            let take = output.remaining().min(split.end - split.start);
            for e in &self.elements[split.start..split.start + take] {
                output.collect(e.clone());
            }
            split.start += take;
            if split.start == split.end {
                output.finish_split(*id);
                self.splits.pop();
            }
            if output.is_full() {
                let more = !self.splits.is_empty();
                return Ok(if more { InputStatus::MoreAvailable } else { InputStatus::EndOfInput });
            }
        }
        Ok(InputStatus::EndOfInput)
    }
}

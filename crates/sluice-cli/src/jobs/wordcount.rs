//! Word count: lines → lower-case words → (word, 1) → key by word → rolling sum.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice::connectors::FileSource;
use sluice::{Data, Result, StreamRecord};
use sluice::{DataStream, DecodeErrorPolicy, StreamExecutionEnvironment};
use sluice::{RuntimeContext, Sink, SinkWriter};

/// How the word count is laid out.
#[derive(Clone, Debug, Default)]
pub struct WordCountOptions {
    /// Parallelism of the source and the tokenizer (default: the job's).
    pub parallelism: Option<usize>,
    /// Parallelism of the keyed sum and the sink (default: the job's).
    pub reduce_parallelism: Option<usize>,
    /// What to do with a line that is not UTF-8.
    pub on_decode_error: DecodeErrorPolicy,
    /// Keep watching the input directory for new files, listing it this often.
    pub monitor_interval: Option<Duration>,
}

/// Splits a line into lower-case words (runs of letters and digits), as Flink's example does.
pub fn tokenize(line: &str) -> Vec<String> {
    line.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Adds the word count over `input` (a file or directory) and returns the
/// stream of rolling (word, count) updates.
pub fn word_count(
    env: &StreamExecutionEnvironment,
    input: PathBuf,
    options: &WordCountOptions,
) -> DataStream<(String, u64)> {
    fn at<T: Data>(s: DataStream<T>, parallelism: Option<usize>) -> DataStream<T> {
        match parallelism {
            Some(p) => s.set_parallelism(p),
            None => s,
        }
    }
    let mut source = FileSource::lines(input).on_decode_error(options.on_decode_error);
    if let Some(interval) = options.monitor_interval {
        source = source.monitor_continuously(interval);
    }
    let lines = at(env.from_source(source, "words").uid("words"), options.parallelism);
    let words = at(lines.flat_map(|line: String| tokenize(&line)), options.parallelism);
    let pairs = at(words.map(|w| (w, 1u64)), options.parallelism);
    let counts =
        pairs.key_by(|(w, _): &(String, u64)| w.clone()).sum(|(_, c)| c).name("count").uid("count");
    at(counts, options.reduce_parallelism)
}

/// Keeps the latest count of every word: after a bounded job, the final counts.
#[derive(Clone, Debug, Default)]
pub struct FinalCounts {
    counts: Arc<Mutex<HashMap<String, u64>>>,
}

impl FinalCounts {
    /// The counts, largest first, then by word.
    pub fn sorted(&self) -> Vec<(String, u64)> {
        let mut v: Vec<_> =
            self.counts.lock().expect("counts lock").iter().map(|(w, c)| (w.clone(), *c)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v
    }
}

impl Sink<(String, u64)> for FinalCounts {
    fn create_writer(&self, _ctx: &RuntimeContext) -> Result<Box<dyn SinkWriter<(String, u64)>>> {
        Ok(Box::new(SubtaskCounts::default()))
    }

    fn merge_accumulator(&self, accumulated: &[u8]) -> Result<()> {
        let subtask: HashMap<String, u64> = postcard::from_bytes(accumulated)?;
        let mut counts = self.counts.lock().expect("counts lock");
        for (w, c) in subtask {
            let e = counts.entry(w).or_insert(0);
            *e = (*e).max(c);
        }
        Ok(())
    }
}

/// One sink subtask's latest count per word; it reaches the job's
/// [`FinalCounts`] as an accumulator, also from a TaskManager process.
#[derive(Default)]
struct SubtaskCounts(HashMap<String, u64>);

impl SinkWriter<(String, u64)> for SubtaskCounts {
    fn write_batch(&mut self, records: Vec<StreamRecord<(String, u64)>>) -> Result<()> {
        for r in records {
            // A word lives on one subtask and its counts only grow, so the
            // latest update is the largest.
            let (w, c) = r.value;
            let e = self.0.entry(w).or_insert(0);
            *e = (*e).max(c);
        }
        Ok(())
    }

    fn accumulator(&mut self) -> Result<Option<Vec<u8>>> {
        Ok(Some(postcard::to_allocvec(&self.0)?))
    }
}

//! The Nexmark benchmark's queries as DataStream programs. Each query is a
//! function from the stream of [`Event`]s to the stream of its results, so
//! the tests, `sluice bench nexmark` and the CLI run one definition.
//! `docs/NEXMARK.md` defines what each query computes.
#![deny(missing_docs)]

mod aggregations;
pub mod answer;
mod joins;
pub mod latency;
mod stateless;
mod windows;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use std::sync::Arc;

use latency::{LatencyTracker, TrackedSource};
use sluice_api::{DataStream, StreamExecutionEnvironment, WatermarkGenerator, WatermarkStrategy};
use sluice_connectors::nexmark::{file_source, Event, GeneratorConfig, NexmarkSource};
use sluice_core::{Data, Result, SluiceError};
use sluice_runtime::Source;

pub use aggregations::{q15, q16, q17, q18, q19, DayStats, Q15Out, Q16Out, Q17Out};
pub use joins::{q20, q3, q4, q6, q9, Q20Out, Q3Out, Q4Out, Q6Out, Q9Out};
pub use sluice_connectors::nexmark::{Auction, Bid, Person, Text};
pub use stateless::{
    q0, q1, q13, q14, q2, q21, q22, side_input_value, BidTimeType, Q13Out, Q14Out, Q1Out, Q21Out,
    Q22Out, Q2Out,
};
pub use windows::{q11, q12, q5, q7, q8, Q11Out, Q12Out, Q5Out, Q7Out, Q8Out};

/// Flink's `WATERMARK FOR dateTime AS dateTime - INTERVAL '4' SECOND`.
pub const FILE_OUT_OF_ORDERNESS: Duration = Duration::from_secs(4);

/// A Nexmark query.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Query {
    /// Pass-through.
    Q0,
    /// Currency conversion.
    Q1,
    /// Selection.
    Q2,
    /// Local item suggestion (incremental join).
    Q3,
    /// Average price per category.
    Q4,
    /// Hot items (sliding windows).
    Q5,
    /// Average selling price by seller.
    Q6,
    /// Highest bid (tumbling windows).
    Q7,
    /// Monitor new users (window join).
    Q8,
    /// Winning bids.
    Q9,
    /// User sessions.
    Q11,
    /// Processing-time windows.
    Q12,
    /// Bounded side input join.
    Q13,
    /// Calculation.
    Q14,
    /// Bidding statistics report.
    Q15,
    /// Channel statistics report.
    Q16,
    /// Auction statistics report.
    Q17,
    /// Find last bid.
    Q18,
    /// Auction top-k price.
    Q19,
    /// Expand bid with auction.
    Q20,
    /// Add channel id.
    Q21,
    /// Get URL directories.
    Q22,
}

impl Query {
    /// Every query, in order.
    pub const ALL: [Query; 22] = [
        Query::Q0,
        Query::Q1,
        Query::Q2,
        Query::Q3,
        Query::Q4,
        Query::Q5,
        Query::Q6,
        Query::Q7,
        Query::Q8,
        Query::Q9,
        Query::Q11,
        Query::Q12,
        Query::Q13,
        Query::Q14,
        Query::Q15,
        Query::Q16,
        Query::Q17,
        Query::Q18,
        Query::Q19,
        Query::Q20,
        Query::Q21,
        Query::Q22,
    ];

    /// Whether results follow processing time rather than event time.
    pub fn is_processing_time(self) -> bool {
        self == Query::Q12
    }

    /// How the rows the query emits make up its answer.
    pub fn rows(self) -> answer::Rows {
        match self {
            Query::Q18 | Query::Q19 => answer::Rows::Changelog,
            // The average so far of a category (q4) or seller (q6).
            Query::Q4 | Query::Q6 => answer::Rows::Upserts { key_fields: 1 },
            _ => answer::Rows::Inserts,
        }
    }

    /// Adds the query to the job reading `events` and hands its results to `sink`.
    pub fn add_to(self, events: &DataStream<Event>, sink: &mut impl QuerySink) {
        match self {
            Query::Q0 => sink.sink(q0(events)),
            Query::Q1 => sink.sink(q1(events)),
            Query::Q2 => sink.sink(q2(events)),
            Query::Q3 => sink.sink(q3(events)),
            Query::Q4 => sink.sink(q4(events)),
            Query::Q5 => sink.sink(q5(events)),
            Query::Q6 => sink.sink(q6(events)),
            Query::Q7 => sink.sink(q7(events)),
            Query::Q8 => sink.sink(q8(events)),
            Query::Q9 => sink.sink(q9(events)),
            Query::Q11 => sink.sink(q11(events)),
            Query::Q12 => sink.sink(q12(events)),
            Query::Q13 => sink.sink(q13(events)),
            Query::Q14 => sink.sink(q14(events)),
            Query::Q15 => sink.sink(q15(events)),
            Query::Q16 => sink.sink(q16(events)),
            Query::Q17 => sink.sink(q17(events)),
            Query::Q18 => sink.sink(q18(events)),
            Query::Q19 => sink.sink(q19(events)),
            Query::Q20 => sink.sink(q20(events)),
            Query::Q21 => sink.sink(q21(events)),
            Query::Q22 => sink.sink(q22(events)),
        }
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", format!("{self:?}").to_lowercase())
    }
}

impl FromStr for Query {
    type Err = SluiceError;

    fn from_str(text: &str) -> Result<Self> {
        Query::ALL.into_iter().find(|q| q.to_string() == text.to_lowercase()).ok_or_else(|| {
            let known: Vec<String> = Query::ALL.iter().map(Query::to_string).collect();
            SluiceError::Config(format!(
                "unknown Nexmark query '{text}' (known: {}; q10 is not implemented)",
                known.join(", ")
            ))
        })
    }
}

/// Where a query's results go; generic over the result type, which differs per query.
pub trait QuerySink {
    /// Attaches a sink to the query's result stream.
    fn sink<T: Data>(&mut self, results: DataStream<T>);
}

/// Where the events come from.
#[derive(Clone, Debug)]
pub enum NexmarkInput {
    /// The built-in generator: `events` events (`None`: without end).
    Generator {
        /// The generator's settings.
        config: GeneratorConfig,
        /// How many events.
        events: Option<u64>,
    },
    /// An NDJSON file (or directory) written by `sluice nexmark gen`.
    File(PathBuf),
}

/// The event stream with event time and watermarks: the generator's own
/// out-of-orderness bound, or Flink's Nexmark table's 4 s for files.
pub fn events(env: &StreamExecutionEnvironment, input: &NexmarkInput) -> Result<DataStream<Event>> {
    events_from(env, input, None)
}

/// [`events`] whose source readers stamp their progress into `tracker`,
/// for the benchmark's latency.
pub fn tracked_events(
    env: &StreamExecutionEnvironment,
    input: &NexmarkInput,
    tracker: Arc<LatencyTracker>,
) -> Result<DataStream<Event>> {
    events_from(env, input, Some(tracker))
}

fn events_from(
    env: &StreamExecutionEnvironment,
    input: &NexmarkInput,
    tracker: Option<Arc<LatencyTracker>>,
) -> Result<DataStream<Event>> {
    Ok(match input {
        NexmarkInput::Generator { config, events } => {
            let bound = config.out_of_orderness();
            let source = NexmarkSource::new(config.clone(), *events)?;
            let strategy = WatermarkStrategy::for_bounded_out_of_orderness(bound);
            add_source(env, source, strategy, "Nexmark", tracker)
        }
        NexmarkInput::File(path) => {
            let strategy = WatermarkStrategy::for_bounded_out_of_orderness(FILE_OUT_OF_ORDERNESS)
                .with_timestamp_assigner(|e: &Event, _| e.date_time());
            add_source(env, file_source(path), strategy, "Nexmark file", tracker)
        }
    })
}

fn add_source<S, G, Gen, A>(
    env: &StreamExecutionEnvironment,
    source: S,
    strategy: WatermarkStrategy<Event, G, A>,
    name: &str,
    tracker: Option<Arc<LatencyTracker>>,
) -> DataStream<Event>
where
    S: Source<Event>,
    G: Fn() -> Gen + Clone + Send + Sync + 'static,
    Gen: WatermarkGenerator<Event> + 'static,
    A: Fn(&Event, i64) -> i64 + Clone + Send + Sync + 'static,
{
    match tracker {
        Some(tracker) => {
            env.from_source_with_watermarks(TrackedSource::new(source, tracker), strategy, name)
        }
        None => env.from_source_with_watermarks(source, strategy, name),
    }
}

/// How a query updates a result it emitted before (Flink's `RowKind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RowKind {
    /// A new row.
    Insert,
    /// The old value of a row about to change.
    UpdateBefore,
    /// The new value of a changed row.
    UpdateAfter,
    /// A row removed.
    Delete,
}

/// One change of a query's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change<T> {
    /// What kind of change.
    pub kind: RowKind,
    /// The row.
    pub row: T,
}

/// The bids of the event stream.
pub fn bids(events: &DataStream<Event>) -> DataStream<Bid> {
    events.flat_map(Event::into_bid).name("Bids")
}

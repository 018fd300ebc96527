//! Windowed queries: q5 (sliding), q7 (tumbling max), q8 (window join),
//! q11 (sessions), q12 (processing time).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_api::{
    AggregateFunction, Collector, DataStream, EventTimeSessionWindows, SlidingEventTimeWindows,
    TumblingEventTimeWindows, TumblingProcessingTimeWindows, WindowContext,
};
use sluice_connectors::nexmark::Event;
use sluice_core::FunctionResult;

use crate::Text;

const TEN_SECONDS: Duration = Duration::from_secs(10);
const TWO_SECONDS: Duration = Duration::from_secs(2);

/// Counts what it is given.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Count;

impl<T> AggregateFunction<T> for Count {
    type Acc = u64;
    type Out = u64;

    fn create_accumulator(&self) -> u64 {
        0
    }
    fn add(&self, _value: T, acc: &mut u64) {
        *acc += 1;
    }
    fn get_result(&self, acc: &u64) -> u64 {
        *acc
    }
    fn merge(&self, a: u64, b: &u64) -> u64 {
        a + b
    }
}

/// An auction with the most bids of a window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Q5Out {
    /// Auction id.
    pub auction: u64,
    /// Its bids in the window.
    pub count: u64,
    /// End of the window (exclusive).
    pub window_end: i64,
}

/// q5: the auctions with the most bids in each 10 s window, every 2 s.
pub fn q5(events: &DataStream<Event>) -> DataStream<Q5Out> {
    // Only the auction id crosses the exchange: the bid's text stays behind.
    events
        .flat_map(|e: Event| e.into_bid().map(|b| b.auction))
        .key_by(|auction: &u64| *auction)
        .window(SlidingEventTimeWindows::of(TEN_SECONDS, TWO_SECONDS))
        .aggregate_with_process(
            Count,
            |auction: &u64, ctx: &WindowContext, counts: &[u64], out: &mut Collector<'_, Q5Out>| {
                for &count in counts {
                    out.collect(Q5Out { auction: *auction, count, window_end: ctx.window.end });
                }
                Ok(())
            },
        )
        .name("q5: bids per auction")
        // Each window's counts carry the timestamp end - 1, so they meet in one
        // 2 s tumbling window per window end.
        .key_by(|c: &Q5Out| c.window_end)
        .window(TumblingEventTimeWindows::of(TWO_SECONDS))
        .process(
            |_end: &i64, _ctx: &WindowContext, counts: &[Q5Out], out: &mut Collector<'_, Q5Out>| {
                let max = counts.iter().map(|c| c.count).max().unwrap_or(0);
                for c in counts.iter().filter(|c| c.count == max) {
                    out.collect(c.clone());
                }
                Ok(())
            },
        )
        .name("q5: hottest auctions")
}

/// A bid with the highest price of its window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Q7Out {
    /// Auction id.
    pub auction: u64,
    /// Price.
    pub price: u64,
    /// Bidder id.
    pub bidder: u64,
    /// Event time.
    pub date_time: i64,
    /// Padding.
    pub extra: Text,
}

/// The highest bids of a window so far: every bid at the highest price.
#[derive(Clone, Debug, Default)]
pub(crate) struct MaxBids;

impl AggregateFunction<Q7Out> for MaxBids {
    type Acc = Vec<Q7Out>;
    type Out = Vec<Q7Out>;

    fn create_accumulator(&self) -> Vec<Q7Out> {
        Vec::new()
    }
    fn add(&self, bid: Q7Out, acc: &mut Vec<Q7Out>) {
        match acc.first().map(|b| b.price) {
            Some(max) if bid.price < max => {}
            Some(max) if bid.price == max => acc.push(bid),
            _ => {
                acc.clear();
                acc.push(bid);
            }
        }
    }
    fn get_result(&self, acc: &Vec<Q7Out>) -> Vec<Q7Out> {
        acc.clone()
    }
    fn merge(&self, mut a: Vec<Q7Out>, b: &Vec<Q7Out>) -> Vec<Q7Out> {
        for bid in b {
            self.add(bid.clone(), &mut a);
        }
        a
    }
}

/// q7: the highest bids of each 10 s window, found per auction in
/// parallel, then across auctions. Bids are cut down to the result's
/// columns before the exchange.
pub fn q7(events: &DataStream<Event>) -> DataStream<Q7Out> {
    fn emit_all(bids: &[Vec<Q7Out>], out: &mut Collector<'_, Q7Out>) -> FunctionResult {
        for b in bids.iter().flatten() {
            out.collect(b.clone());
        }
        Ok(())
    }
    events
        .flat_map(|e: Event| {
            e.into_bid().map(|b| Q7Out {
                auction: b.auction,
                price: b.price,
                bidder: b.bidder,
                date_time: b.date_time,
                extra: b.extra,
            })
        })
        .key_by(|b: &Q7Out| b.auction)
        .window(TumblingEventTimeWindows::of(TEN_SECONDS))
        .aggregate_with_process(
            MaxBids,
            |_: &u64, _: &WindowContext, bids: &[Vec<Q7Out>], out: &mut Collector<'_, Q7Out>| {
                emit_all(bids, out)
            },
        )
        .name("q7: highest bids per auction")
        .window_all(TumblingEventTimeWindows::of(TEN_SECONDS))
        .aggregate_with_process(
            MaxBids,
            |_: &(), _: &WindowContext, bids: &[Vec<Q7Out>], out: &mut Collector<'_, Q7Out>| {
                emit_all(bids, out)
            },
        )
        .name("q7: highest bids")
}

/// A person who opened an auction in the window they registered in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Q8Out {
    /// Person id.
    pub id: u64,
    /// Name.
    pub name: Text,
    /// Start of the window.
    pub window_start: i64,
}

/// q8's inputs, keyed by person id.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum NewPersonOrSeller {
    Person { id: u64, name: Text },
    Seller(u64),
}

/// q8: people who registered and opened an auction in the same 10 s window.
pub fn q8(events: &DataStream<Event>) -> DataStream<Q8Out> {
    events
        .flat_map(|e: Event| match e {
            Event::Person(p) => Some(NewPersonOrSeller::Person { id: p.id, name: p.name }),
            Event::Auction(a) => Some(NewPersonOrSeller::Seller(a.seller)),
            Event::Bid(_) => None,
        })
        .key_by(|e: &NewPersonOrSeller| match e {
            NewPersonOrSeller::Person { id, .. } | NewPersonOrSeller::Seller(id) => *id,
        })
        .window(TumblingEventTimeWindows::of(TEN_SECONDS))
        .process(
            |id: &u64,
             ctx: &WindowContext,
             events: &[NewPersonOrSeller],
             out: &mut Collector<'_, Q8Out>| {
                if !events.iter().any(|e| matches!(e, NewPersonOrSeller::Seller(_))) {
                    return Ok(());
                }
                let mut names: Vec<&Text> = events
                    .iter()
                    .filter_map(|e| match e {
                        NewPersonOrSeller::Person { name, .. } => Some(name),
                        NewPersonOrSeller::Seller(_) => None,
                    })
                    .collect();
                names.sort_unstable();
                names.dedup();
                for name in names {
                    out.collect(Q8Out {
                        id: *id,
                        name: name.clone(),
                        window_start: ctx.window.start,
                    });
                }
                Ok(())
            },
        )
        .name("q8: new sellers")
}

/// A bidder's bids in a window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BidderCount {
    /// Bidder id.
    pub bidder: u64,
    /// Bids in the window.
    pub count: u64,
    /// Start of the window.
    pub start: i64,
    /// End of the window (exclusive).
    pub end: i64,
}

/// q11's result: bids per bidder session.
pub type Q11Out = BidderCount;
/// q12's result: bids per bidder and processing-time window.
pub type Q12Out = BidderCount;

fn bidder_count(
    bidder: &u64,
    ctx: &WindowContext,
    counts: &[u64],
    out: &mut Collector<'_, BidderCount>,
) -> FunctionResult {
    for &count in counts {
        out.collect(BidderCount {
            bidder: *bidder,
            count,
            start: ctx.window.start,
            end: ctx.window.end,
        });
    }
    Ok(())
}

/// The bidder of every bid: all q11 and q12 send across the exchange.
fn bidders(events: &DataStream<Event>) -> DataStream<u64> {
    events.flat_map(|e: Event| e.into_bid().map(|b| b.bidder)).name("Bidders")
}

/// q11: bids per bidder in sessions that close after 10 s without a bid.
pub fn q11(events: &DataStream<Event>) -> DataStream<Q11Out> {
    bidders(events)
        .key_by(|bidder: &u64| *bidder)
        .window(EventTimeSessionWindows::with_gap(TEN_SECONDS))
        .aggregate_with_process(Count, bidder_count)
        .name("q11: bidder sessions")
}

/// q12: bids per bidder in 10 s processing-time windows.
pub fn q12(events: &DataStream<Event>) -> DataStream<Q12Out> {
    bidders(events)
        .key_by(|bidder: &u64| *bidder)
        .window(TumblingProcessingTimeWindows::of(TEN_SECONDS))
        .aggregate_with_process(Count, bidder_count)
        .name("q12: processing-time windows")
}

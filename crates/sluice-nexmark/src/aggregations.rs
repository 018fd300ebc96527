//! Keyed aggregations: per-day statistics (q15, q16, q17), deduplication
//! (q18) and top-k (q19).

use std::cmp::Reverse;
use std::time::Duration;

use hashbrown::HashSet;
use serde::{Deserialize, Serialize};
use sluice_api::{
    AggregateFunction, Collector, DataStream, KeyedContext, KeyedOpenContext, KeyedProcessFunction,
    StateDescriptor, TumblingEventTimeWindows, ValueState, WindowContext,
};
use sluice_connectors::nexmark::datetime::{
    day_start, format_date, format_minute_of_day, minute_of_day,
};
use sluice_connectors::nexmark::Event;
use sluice_core::FunctionResult;

use crate::{bids, Bid, Change, RowKind, Text};

const ONE_DAY: Duration = Duration::from_secs(86_400);
/// Bids in q19's top list per auction.
const TOP_BIDS: usize = 10;

/// The price range of a bid: below 10,000, below 1,000,000, or above.
#[inline]
fn price_rank(price: u64) -> usize {
    match price {
        0..10_000 => 0,
        10_000..1_000_000 => 1,
        _ => 2,
    }
}

/// Bid counts and distinct bidders and auctions of a day, in total and per price range.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayStats {
    /// Bids.
    pub total_bids: u64,
    /// Bids per price range (below 10,000; below 1,000,000; from 1,000,000).
    pub rank_bids: [u64; 3],
    /// Distinct bidders.
    pub total_bidders: u64,
    /// Distinct bidders per price range.
    pub rank_bidders: [u64; 3],
    /// Distinct auctions.
    pub total_auctions: u64,
    /// Distinct auctions per price range.
    pub rank_auctions: [u64; 3],
}

/// What q15–q17 need of a bid: projected before the exchange, so the bid's
/// text never crosses it.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) struct BidFacts {
    auction: u64,
    bidder: u64,
    price: u64,
    date_time: i64,
}

impl BidFacts {
    fn of(bid: &Bid) -> Self {
        Self {
            auction: bid.auction,
            bidder: bid.bidder,
            price: bid.price,
            date_time: bid.date_time,
        }
    }
}

/// The facts of every bid.
fn bid_facts(events: &DataStream<Event>) -> DataStream<BidFacts> {
    events.flat_map(|e: Event| e.into_bid().map(|b| BidFacts::of(&b))).name("Bid facts")
}

/// Distinct-counting accumulator of [`DayStats`], plus the latest minute of the day.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct DistinctAcc {
    bids: [u64; 4],
    bidders: [HashSet<u64>; 4],
    auctions: [HashSet<u64>; 4],
    last_minute: u32,
}

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct DistinctStats;

impl AggregateFunction<(Text, BidFacts)> for DistinctStats {
    type Acc = DistinctAcc;
    type Out = (DayStats, u32);

    fn create_accumulator(&self) -> DistinctAcc {
        DistinctAcc::default()
    }
    fn add(&self, (_channel, bid): (Text, BidFacts), acc: &mut DistinctAcc) {
        AggregateFunction::<BidFacts>::add(self, bid, acc)
    }
    fn get_result(&self, acc: &DistinctAcc) -> (DayStats, u32) {
        AggregateFunction::<BidFacts>::get_result(self, acc)
    }
    fn merge(&self, a: DistinctAcc, b: &DistinctAcc) -> DistinctAcc {
        AggregateFunction::<BidFacts>::merge(self, a, b)
    }
}

impl AggregateFunction<BidFacts> for DistinctStats {
    type Acc = DistinctAcc;
    type Out = (DayStats, u32);

    fn create_accumulator(&self) -> DistinctAcc {
        DistinctAcc::default()
    }

    fn add(&self, bid: BidFacts, acc: &mut DistinctAcc) {
        let rank = 1 + price_rank(bid.price);
        for slot in [0, rank] {
            acc.bids[slot] += 1;
            acc.bidders[slot].insert(bid.bidder);
            acc.auctions[slot].insert(bid.auction);
        }
        acc.last_minute = acc.last_minute.max(minute_of_day(bid.date_time));
    }

    fn get_result(&self, acc: &DistinctAcc) -> (DayStats, u32) {
        let stats = DayStats {
            total_bids: acc.bids[0],
            rank_bids: [acc.bids[1], acc.bids[2], acc.bids[3]],
            total_bidders: acc.bidders[0].len() as u64,
            rank_bidders: [1, 2, 3].map(|i| acc.bidders[i].len() as u64),
            total_auctions: acc.auctions[0].len() as u64,
            rank_auctions: [1, 2, 3].map(|i| acc.auctions[i].len() as u64),
        };
        (stats, acc.last_minute)
    }

    fn merge(&self, mut a: DistinctAcc, b: &DistinctAcc) -> DistinctAcc {
        for i in 0..4 {
            a.bids[i] += b.bids[i];
            a.bidders[i].extend(&b.bidders[i]);
            a.auctions[i].extend(&b.auctions[i]);
        }
        a.last_minute = a.last_minute.max(b.last_minute);
        a
    }
}

/// One day's bidding statistics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Q15Out {
    /// The day, `yyyy-MM-dd`.
    pub day: Text,
    /// Its statistics.
    pub stats: DayStats,
}

/// q15: bidding statistics per day.
pub fn q15(events: &DataStream<Event>) -> DataStream<Q15Out> {
    bid_facts(events)
        .key_by(|b: &BidFacts| day_start(b.date_time))
        .window(TumblingEventTimeWindows::of(ONE_DAY))
        .aggregate_with_process(
            DistinctStats,
            |_: &i64,
             ctx: &WindowContext,
             results: &[(DayStats, u32)],
             out: &mut Collector<'_, Q15Out>| {
                for (stats, _) in results {
                    out.collect(Q15Out {
                        day: format_date(ctx.window.start).into(),
                        stats: stats.clone(),
                    });
                }
                Ok(())
            },
        )
        .name("q15: statistics per day")
}

/// One channel's bidding statistics of a day.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Q16Out {
    /// The channel.
    pub channel: Text,
    /// The day, `yyyy-MM-dd`.
    pub day: Text,
    /// The latest `HH:mm` of the day's bids on the channel.
    pub minute: Text,
    /// Its statistics.
    pub stats: DayStats,
}

/// q16: bidding statistics per channel and day.
pub fn q16(events: &DataStream<Event>) -> DataStream<Q16Out> {
    events
        .flat_map(|e: Event| {
            e.into_bid().map(|b| {
                let facts = BidFacts::of(&b);
                (b.channel, facts)
            })
        })
        .key_by(|(channel, b): &(Text, BidFacts)| (channel.clone(), day_start(b.date_time)))
        .window(TumblingEventTimeWindows::of(ONE_DAY))
        .aggregate_with_process(
            DistinctStats,
            |(channel, _): &(Text, i64),
             ctx: &WindowContext,
             results: &[(DayStats, u32)],
             out: &mut Collector<'_, Q16Out>| {
                for (stats, minute) in results {
                    out.collect(Q16Out {
                        channel: channel.clone(),
                        day: format_date(ctx.window.start).into(),
                        minute: format_minute_of_day(*minute).into(),
                        stats: stats.clone(),
                    });
                }
                Ok(())
            },
        )
        .name("q16: statistics per channel and day")
}

/// Count, range counts, min, max and sum of prices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PriceAcc {
    bids: [u64; 4],
    min: u64,
    max: u64,
    sum: u64,
}

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PriceStats;

impl AggregateFunction<BidFacts> for PriceStats {
    type Acc = PriceAcc;
    type Out = PriceAcc;

    fn create_accumulator(&self) -> PriceAcc {
        PriceAcc { bids: [0; 4], min: u64::MAX, max: 0, sum: 0 }
    }
    fn add(&self, bid: BidFacts, acc: &mut PriceAcc) {
        acc.bids[0] += 1;
        acc.bids[1 + price_rank(bid.price)] += 1;
        acc.min = acc.min.min(bid.price);
        acc.max = acc.max.max(bid.price);
        acc.sum += bid.price;
    }
    fn get_result(&self, acc: &PriceAcc) -> PriceAcc {
        *acc
    }
    fn merge(&self, a: PriceAcc, b: &PriceAcc) -> PriceAcc {
        PriceAcc {
            bids: [0, 1, 2, 3].map(|i| a.bids[i] + b.bids[i]),
            min: a.min.min(b.min),
            max: a.max.max(b.max),
            sum: a.sum + b.sum,
        }
    }
}

/// One auction's statistics of a day.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Q17Out {
    /// Auction id.
    pub auction: u64,
    /// The day, `yyyy-MM-dd`.
    pub day: Text,
    /// Bids.
    pub total_bids: u64,
    /// Bids per price range.
    pub rank_bids: [u64; 3],
    /// Lowest price.
    pub min_price: u64,
    /// Highest price.
    pub max_price: u64,
    /// Average price.
    pub avg_price: f64,
    /// Sum of prices.
    pub sum_price: u64,
}

/// q17: bid statistics per auction and day.
pub fn q17(events: &DataStream<Event>) -> DataStream<Q17Out> {
    bid_facts(events)
        .key_by(|b: &BidFacts| (b.auction, day_start(b.date_time)))
        .window(TumblingEventTimeWindows::of(ONE_DAY))
        .aggregate_with_process(
            PriceStats,
            |(auction, _): &(u64, i64),
             ctx: &WindowContext,
             results: &[PriceAcc],
             out: &mut Collector<'_, Q17Out>| {
                for acc in results {
                    out.collect(Q17Out {
                        auction: *auction,
                        day: format_date(ctx.window.start).into(),
                        total_bids: acc.bids[0],
                        rank_bids: [acc.bids[1], acc.bids[2], acc.bids[3]],
                        min_price: acc.min,
                        max_price: acc.max,
                        avg_price: acc.sum as f64 / acc.bids[0] as f64,
                        sum_price: acc.sum,
                    });
                }
                Ok(())
            },
        )
        .name("q17: statistics per auction and day")
}

/// q18: the last bid of each bidder on each auction, as a changelog.
pub fn q18(events: &DataStream<Event>) -> DataStream<Change<Bid>> {
    bids(events)
        .key_by(|b: &Bid| (b.bidder, b.auction))
        .process(LastBid::default())
        .name("q18: last bid")
}

#[derive(Clone, Default)]
struct LastBid {
    last: Option<ValueState<Bid>>,
}

impl KeyedProcessFunction<(u64, u64), Bid, Change<Bid>> for LastBid {
    fn open(&mut self, ctx: &mut KeyedOpenContext<'_, (u64, u64)>) -> FunctionResult {
        self.last = Some(ctx.state.value_state(&StateDescriptor::value("last bid"))?);
        Ok(())
    }

    fn process_element(
        &mut self,
        bid: Bid,
        ctx: &mut KeyedContext<'_, (u64, u64)>,
        out: &mut Collector<'_, Change<Bid>>,
    ) -> FunctionResult {
        let mut last = ctx.value(self.last.as_ref().unwrap());
        match last.get_mut() {
            None => {
                out.collect(Change { kind: RowKind::Insert, row: bid.clone() });
                last.update(bid);
            }
            Some(previous) if bid.date_time >= previous.date_time => {
                let before = std::mem::replace(previous, bid.clone());
                out.collect(Change { kind: RowKind::UpdateBefore, row: before });
                out.collect(Change { kind: RowKind::UpdateAfter, row: bid });
            }
            Some(_) => {}
        }
        Ok(())
    }
}

/// q19: the ten highest bids of each auction, as a changelog.
pub fn q19(events: &DataStream<Event>) -> DataStream<Change<Bid>> {
    bids(events).key_by(|b: &Bid| b.auction).process(TopBids::default()).name("q19: top 10 bids")
}

#[derive(Clone, Default)]
struct TopBids {
    /// Highest [`top_rank`] first.
    top: Option<ValueState<Vec<Bid>>>,
}

/// How q19 ranks an auction's bids: by price, and among equal prices the
/// earlier bid, then the lower bidder id, first. A total order, so the answer
/// does not depend on the order in which parallel readers deliver bids.
fn top_rank(b: &Bid) -> (u64, Reverse<i64>, Reverse<u64>) {
    (b.price, Reverse(b.date_time), Reverse(b.bidder))
}

impl KeyedProcessFunction<u64, Bid, Change<Bid>> for TopBids {
    fn open(&mut self, ctx: &mut KeyedOpenContext<'_, u64>) -> FunctionResult {
        self.top = Some(ctx.state.value_state(&StateDescriptor::value("top bids"))?);
        Ok(())
    }

    fn process_element(
        &mut self,
        bid: Bid,
        ctx: &mut KeyedContext<'_, u64>,
        out: &mut Collector<'_, Change<Bid>>,
    ) -> FunctionResult {
        let mut state = ctx.value(self.top.as_ref().unwrap());
        let Some(top) = state.get_mut() else {
            out.collect(Change { kind: RowKind::Insert, row: bid.clone() });
            state.update(vec![bid]);
            return Ok(());
        };
        let rank = top_rank(&bid);
        if top.len() == TOP_BIDS && rank <= top_rank(&top[TOP_BIDS - 1]) {
            return Ok(());
        }
        let at = top.partition_point(|b| top_rank(b) >= rank);
        top.insert(at, bid.clone());
        out.collect(Change { kind: RowKind::Insert, row: bid });
        if top.len() > TOP_BIDS {
            let pushed_out = top.pop().unwrap();
            out.collect(Change { kind: RowKind::Delete, row: pushed_out });
        }
        Ok(())
    }
}

//! Keyed joins of auctions with persons or bids: q3, q4, q9, q20. All
//! events arrive on one stream, so a join is one keyed process function
//! over the events of both sides; either side may arrive first.

use serde::{Deserialize, Serialize};
use sluice_api::{
    Collector, DataStream, KeyedContext, KeyedOpenContext, KeyedProcessFunction, ListState,
    StateDescriptor, ValueState,
};
use sluice_connectors::nexmark::Event;
use sluice_core::{Data, FunctionResult};

use crate::{Auction, Bid, Text};

/// A seller of a category-10 auction living in OR, ID or CA.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Q3Out {
    /// Seller's name.
    pub name: Text,
    /// Seller's city.
    pub city: Text,
    /// Seller's state.
    pub state: Text,
    /// Auction id.
    pub auction: u64,
}

/// q3's inputs, keyed by person id.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum SellerOrAuction {
    Seller { id: u64, name: Text, city: Text, state: Text },
    Auction { seller: u64, id: u64 },
}

/// q3: category-10 auctions joined with their sellers in OR, ID or CA
/// (an unbounded incremental join, as Flink's regular join).
pub fn q3(events: &DataStream<Event>) -> DataStream<Q3Out> {
    events
        .flat_map(|e: Event| match e {
            Event::Person(p) if matches!(&*p.state, "OR" | "ID" | "CA") => {
                let p = *p;
                Some(SellerOrAuction::Seller {
                    id: p.id,
                    name: p.name,
                    city: p.city,
                    state: p.state,
                })
            }
            Event::Auction(a) if a.category == 10 => {
                Some(SellerOrAuction::Auction { seller: a.seller, id: a.id })
            }
            _ => None,
        })
        .key_by(|e: &SellerOrAuction| match e {
            SellerOrAuction::Seller { id, .. } => *id,
            SellerOrAuction::Auction { seller, .. } => *seller,
        })
        .process(LocalItemSuggestion::default())
        .name("q3: join")
}

#[derive(Clone, Default)]
struct LocalItemSuggestion {
    /// The seller's (name, city, state), once seen.
    seller: Option<ValueState<(Text, Text, Text)>>,
    /// Auctions that arrived before their seller.
    waiting: Option<ListState<u64>>,
}

impl KeyedProcessFunction<u64, SellerOrAuction, Q3Out> for LocalItemSuggestion {
    fn open(&mut self, ctx: &mut KeyedOpenContext<'_, u64>) -> FunctionResult {
        self.seller = Some(ctx.state.value_state(&StateDescriptor::value("seller"))?);
        self.waiting = Some(ctx.state.list_state(&StateDescriptor::list("waiting auctions"))?);
        Ok(())
    }

    fn process_element(
        &mut self,
        value: SellerOrAuction,
        ctx: &mut KeyedContext<'_, u64>,
        out: &mut Collector<'_, Q3Out>,
    ) -> FunctionResult {
        let (seller, waiting) = (self.seller.as_ref().unwrap(), self.waiting.as_ref().unwrap());
        match value {
            SellerOrAuction::Seller { name, city, state, .. } => {
                let auctions: Vec<u64> = ctx.list(waiting).get().copied().collect();
                ctx.list(waiting).clear();
                for auction in auctions {
                    out.collect(Q3Out {
                        name: name.clone(),
                        city: city.clone(),
                        state: state.clone(),
                        auction,
                    });
                }
                ctx.value(seller).update((name, city, state));
            }
            SellerOrAuction::Auction { id, .. } => match ctx.value(seller).get() {
                Some((name, city, state)) => out.collect(Q3Out {
                    name: name.clone(),
                    city: city.clone(),
                    state: state.clone(),
                    auction: id,
                }),
                None => ctx.list(waiting).add(id),
            },
        }
        Ok(())
    }
}

/// What the winning-bid join needs to know of an auction.
pub(crate) trait AuctionSide: Data {
    fn id(&self) -> u64;
    fn opens(&self) -> i64;
    fn expires(&self) -> i64;
}

/// What the winning-bid join needs to know of a bid.
pub(crate) trait BidSide: Data {
    fn auction(&self) -> u64;
    fn price(&self) -> u64;
    fn date_time(&self) -> i64;
}

impl AuctionSide for Auction {
    fn id(&self) -> u64 {
        self.id
    }
    fn opens(&self) -> i64 {
        self.date_time
    }
    fn expires(&self) -> i64 {
        self.expires
    }
}

impl BidSide for Bid {
    fn auction(&self) -> u64 {
        self.auction
    }
    fn price(&self) -> u64 {
        self.price
    }
    fn date_time(&self) -> i64 {
        self.date_time
    }
}

/// An auction or a bid, keyed by auction id.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(bound = "A: AuctionSide, B: BidSide")]
pub(crate) enum AuctionOrBid<A, B> {
    Auction(A),
    Bid(B),
}

impl<A: AuctionSide, B: BidSide> AuctionOrBid<A, B> {
    fn auction_id(&self) -> u64 {
        match self {
            AuctionOrBid::Auction(a) => a.id(),
            AuctionOrBid::Bid(b) => b.auction(),
        }
    }
}

/// The highest valid bid of each auction, emitted with the auction when the
/// watermark passes its expiry; valid bids fall within the auction's
/// lifetime, both ends included. Ties go to the earlier bid.
#[derive(Clone)]
pub(crate) struct WinningBid<A: AuctionSide, B: BidSide> {
    auction: Option<ValueState<A>>,
    best: Option<ValueState<B>>,
    /// Bids that arrived before their auction.
    early: Option<ListState<B>>,
}

impl<A: AuctionSide, B: BidSide> Default for WinningBid<A, B> {
    fn default() -> Self {
        Self { auction: None, best: None, early: None }
    }
}

fn beats<B: BidSide>(bid: &B, best: Option<&B>) -> bool {
    best.is_none_or(|best| {
        bid.price() > best.price()
            || (bid.price() == best.price() && bid.date_time() < best.date_time())
    })
}

fn within<A: AuctionSide, B: BidSide>(auction: &A, bid: &B) -> bool {
    (auction.opens()..=auction.expires()).contains(&bid.date_time())
}

impl<A: AuctionSide, B: BidSide> KeyedProcessFunction<u64, AuctionOrBid<A, B>, (A, B)>
    for WinningBid<A, B>
{
    fn open(&mut self, ctx: &mut KeyedOpenContext<'_, u64>) -> FunctionResult {
        self.auction = Some(ctx.state.value_state(&StateDescriptor::value("auction"))?);
        self.best = Some(ctx.state.value_state(&StateDescriptor::value("best bid"))?);
        self.early = Some(ctx.state.list_state(&StateDescriptor::list("early bids"))?);
        Ok(())
    }

    fn process_element(
        &mut self,
        value: AuctionOrBid<A, B>,
        ctx: &mut KeyedContext<'_, u64>,
        _out: &mut Collector<'_, (A, B)>,
    ) -> FunctionResult {
        let auction_state = self.auction.as_ref().unwrap();
        let best_state = self.best.as_ref().unwrap();
        let early_state = self.early.as_ref().unwrap();
        match value {
            AuctionOrBid::Auction(auction) => {
                let early: Vec<B> = ctx.list(early_state).get().cloned().collect();
                ctx.list(early_state).clear();
                let mut best: Option<B> = None;
                for bid in early.into_iter().filter(|b| within(&auction, b)) {
                    if beats(&bid, best.as_ref()) {
                        best = Some(bid);
                    }
                }
                if let Some(best) = best {
                    ctx.value(best_state).update(best);
                }
                ctx.register_event_time_timer(auction.expires());
                ctx.value(auction_state).update(auction);
            }
            AuctionOrBid::Bid(bid) => {
                let valid = match ctx.value(auction_state).get() {
                    Some(auction) => within(auction, &bid),
                    None => {
                        // The auction may still come, and must open no later than this bid.
                        ctx.register_event_time_timer(bid.date_time());
                        ctx.list(early_state).add(bid);
                        return Ok(());
                    }
                };
                if valid && beats(&bid, ctx.value(best_state).get()) {
                    ctx.value(best_state).update(bid);
                }
            }
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        timestamp: i64,
        ctx: &mut KeyedContext<'_, u64>,
        out: &mut Collector<'_, (A, B)>,
    ) -> FunctionResult {
        let auction_state = self.auction.as_ref().unwrap();
        let best_state = self.best.as_ref().unwrap();
        let early_state = self.early.as_ref().unwrap();
        match ctx.value(auction_state).get() {
            Some(auction) if timestamp >= auction.expires() => {
                let auction = ctx.value(auction_state).take().unwrap();
                if let Some(best) = ctx.value(best_state).take() {
                    out.collect((auction, best));
                }
            }
            Some(_) => {}
            None => {
                // No auction arriving from now on can open at or before these bids.
                let watermark = ctx.current_watermark().0;
                let early: Vec<B> = ctx.list(early_state).get().cloned().collect();
                let keep: Vec<B> =
                    early.into_iter().filter(|b| b.date_time() > watermark).collect();
                ctx.list(early_state).update(keep);
            }
        }
        Ok(())
    }
}

/// An auction's id, seller, category and lifetime: all q4 and q6 keep of it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct AuctionLifetime {
    id: u64,
    seller: u64,
    category: u64,
    opens: i64,
    expires: i64,
}

impl AuctionSide for AuctionLifetime {
    fn id(&self) -> u64 {
        self.id
    }
    fn opens(&self) -> i64 {
        self.opens
    }
    fn expires(&self) -> i64 {
        self.expires
    }
}

/// A bid's auction, price and time: all q4 and q6 keep of it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct PricedBid {
    auction: u64,
    price: u64,
    date_time: i64,
}

impl BidSide for PricedBid {
    fn auction(&self) -> u64 {
        self.auction
    }
    fn price(&self) -> u64 {
        self.price
    }
    fn date_time(&self) -> i64 {
        self.date_time
    }
}

/// The average closing price of a category so far.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Q4Out {
    /// Category.
    pub category: u64,
    /// Average of the winning prices of the category's closed auctions.
    pub average: f64,
}

/// Each auction with a valid bid and its winning bid, when it closes, from
/// projected auctions and bids (q4, q6).
fn closed_auctions(events: &DataStream<Event>) -> DataStream<(AuctionLifetime, PricedBid)> {
    events
        .flat_map(|e: Event| match e {
            Event::Auction(a) => Some(AuctionOrBid::Auction(AuctionLifetime {
                id: a.id,
                seller: a.seller,
                category: a.category,
                opens: a.date_time,
                expires: a.expires,
            })),
            Event::Bid(b) => Some(AuctionOrBid::Bid(PricedBid {
                auction: b.auction,
                price: b.price,
                date_time: b.date_time,
            })),
            Event::Person(_) => None,
        })
        .key_by(AuctionOrBid::auction_id)
        .process(WinningBid::<AuctionLifetime, PricedBid>::default())
        .name("winning bids")
}

/// q4: the average winning price per category, updated as auctions close.
pub fn q4(events: &DataStream<Event>) -> DataStream<Q4Out> {
    closed_auctions(events)
        .map(|(auction, bid): (AuctionLifetime, PricedBid)| (auction.category, bid.price))
        .key_by(|(category, _): &(u64, u64)| *category)
        .process(CategoryAverage::default())
        .name("q4: average per category")
}

#[derive(Clone, Default)]
struct CategoryAverage {
    /// (sum of winning prices, closed auctions).
    totals: Option<ValueState<(u64, u64)>>,
}

impl KeyedProcessFunction<u64, (u64, u64), Q4Out> for CategoryAverage {
    fn open(&mut self, ctx: &mut KeyedOpenContext<'_, u64>) -> FunctionResult {
        self.totals = Some(ctx.state.value_state(&StateDescriptor::value("totals"))?);
        Ok(())
    }

    fn process_element(
        &mut self,
        (category, price): (u64, u64),
        ctx: &mut KeyedContext<'_, u64>,
        out: &mut Collector<'_, Q4Out>,
    ) -> FunctionResult {
        let state = self.totals.as_ref().unwrap();
        let (sum, count) = ctx.value(state).get().copied().unwrap_or((0, 0));
        let (sum, count) = (sum + price, count + 1);
        ctx.value(state).update((sum, count));
        out.collect(Q4Out { category, average: sum as f64 / count as f64 });
        Ok(())
    }
}

/// A seller's average selling price over their last closed auctions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Q6Out {
    /// Seller id.
    pub seller: u64,
    /// Average winning price of the seller's last (up to) 10 closed auctions.
    pub average: f64,
}

/// Closed auctions per seller that q6 averages.
const Q6_LAST_AUCTIONS: usize = 10;

/// q6: per seller, the average winning price of their last 10 closed
/// auctions, updated as each closes. "Last" is by closing time, then auction
/// id, so the answer does not depend on the order parallel subtasks deliver.
pub fn q6(events: &DataStream<Event>) -> DataStream<Q6Out> {
    closed_auctions(events)
        .map(|(a, bid): (AuctionLifetime, PricedBid)| (a.seller, (a.expires, a.id, bid.price)))
        .key_by(|(seller, _): &(u64, (i64, u64, u64))| *seller)
        .process(SellerAverage::default())
        .name("q6: average per seller")
}

#[derive(Clone, Default)]
struct SellerAverage {
    /// The last closed auctions as (expires, auction id, price), oldest first.
    last: Option<ValueState<Vec<(i64, u64, u64)>>>,
}

impl KeyedProcessFunction<u64, (u64, (i64, u64, u64)), Q6Out> for SellerAverage {
    fn open(&mut self, ctx: &mut KeyedOpenContext<'_, u64>) -> FunctionResult {
        self.last = Some(ctx.state.value_state(&StateDescriptor::value("last closed"))?);
        Ok(())
    }

    fn process_element(
        &mut self,
        (seller, closed): (u64, (i64, u64, u64)),
        ctx: &mut KeyedContext<'_, u64>,
        out: &mut Collector<'_, Q6Out>,
    ) -> FunctionResult {
        let mut state = ctx.value(self.last.as_ref().unwrap());
        let Some(last) = state.get_mut() else {
            state.update(vec![closed]);
            out.collect(Q6Out { seller, average: closed.2 as f64 });
            return Ok(());
        };
        let at = last.partition_point(|c| c < &closed);
        last.insert(at, closed);
        if last.len() > Q6_LAST_AUCTIONS {
            last.remove(0);
        }
        let sum: u64 = last.iter().map(|c| c.2).sum();
        out.collect(Q6Out { seller, average: sum as f64 / last.len() as f64 });
        Ok(())
    }
}

/// An auction with its winning bid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Q9Out {
    /// The auction.
    pub auction: Auction,
    /// Its winning bid.
    pub bid: Bid,
}

/// q9: the winning bid of each auction, when the auction closes.
pub fn q9(events: &DataStream<Event>) -> DataStream<Q9Out> {
    events
        .flat_map(|e: Event| match e {
            Event::Auction(a) => Some(AuctionOrBid::Auction(*a)),
            Event::Bid(b) => Some(AuctionOrBid::Bid(b)),
            Event::Person(_) => None,
        })
        .key_by(AuctionOrBid::<Auction, Bid>::auction_id)
        .process(WinningBid::<Auction, Bid>::default())
        .name("q9: winning bids")
        .map(|(auction, bid): (Auction, Bid)| Q9Out { auction, bid })
}

/// A bid with its category-10 auction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Q20Out {
    /// The bid.
    pub bid: Bid,
    /// Its auction.
    pub auction: Auction,
}

/// q20: bids joined with their auction, for auctions of category 10
/// (an unbounded join: bids wait for an auction that has not arrived).
pub fn q20(events: &DataStream<Event>) -> DataStream<Q20Out> {
    events
        .flat_map(|e: Event| match e {
            Event::Auction(a) => Some(AuctionOrBid::Auction(*a)),
            Event::Bid(b) => Some(AuctionOrBid::Bid(b)),
            Event::Person(_) => None,
        })
        .key_by(AuctionOrBid::<Auction, Bid>::auction_id)
        .process(ExpandBid::default())
        .name("q20: join")
}

#[derive(Clone, Default)]
struct ExpandBid {
    /// The auction if it is of category 10, `None` if of another: ids are unique.
    auction: Option<ValueState<Option<Auction>>>,
    /// Bids that arrived before their auction.
    early: Option<ListState<Bid>>,
}

impl KeyedProcessFunction<u64, AuctionOrBid<Auction, Bid>, Q20Out> for ExpandBid {
    fn open(&mut self, ctx: &mut KeyedOpenContext<'_, u64>) -> FunctionResult {
        self.auction = Some(ctx.state.value_state(&StateDescriptor::value("auction"))?);
        self.early = Some(ctx.state.list_state(&StateDescriptor::list("early bids"))?);
        Ok(())
    }

    fn process_element(
        &mut self,
        value: AuctionOrBid<Auction, Bid>,
        ctx: &mut KeyedContext<'_, u64>,
        out: &mut Collector<'_, Q20Out>,
    ) -> FunctionResult {
        let (auction_state, early_state) =
            (self.auction.as_ref().unwrap(), self.early.as_ref().unwrap());
        match value {
            AuctionOrBid::Auction(auction) => {
                let auction = (auction.category == 10).then_some(auction);
                if let Some(auction) = &auction {
                    for bid in ctx.list(early_state).get() {
                        out.collect(Q20Out { bid: bid.clone(), auction: auction.clone() });
                    }
                }
                ctx.list(early_state).clear();
                ctx.value(auction_state).update(auction);
            }
            AuctionOrBid::Bid(bid) => match ctx.value(auction_state).get() {
                Some(Some(auction)) => out.collect(Q20Out { bid, auction: auction.clone() }),
                Some(None) => {}
                None => ctx.list(early_state).add(bid),
            },
        }
        Ok(())
    }
}

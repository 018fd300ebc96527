//! The Nexmark queries of docs/NEXMARK.md, one function each, as plain single-threaded loops.
//!
//! Every query sees the events in file order and advances the watermark (`max dateTime − 4 s
//! − 1 ms`) after each event; windows `[start, end)` fire once the watermark reaches `end − 1`,
//! timers at `t` once it reaches `t`, and whatever is still open fires at the end of input.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt::Debug;
use std::hint::black_box;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use hashbrown::hash_map::Entry;
use hashbrown::{HashMap, HashSet};
use serde::Serialize;

use crate::event::{
    format_day, format_hh_mm, hour_of, Auction, Bid, Event, Events, Watermark, DAY_MS,
};

/// Names of the implemented queries, in the order `--query all` runs them.
pub const QUERIES: &[&str] = &[
    "q0", "q1", "q2", "q3", "q4", "q5", "q7", "q8", "q9", "q11", "q12", "q13", "q14", "q15", "q16",
    "q17", "q18", "q19", "q20", "q21", "q22",
];

/// Where a query's output rows go.
pub trait Sink {
    /// Takes one output row (Debug for the tests' expectations).
    fn emit<R: Serialize + Debug>(&mut self, row: R);
}

/// Counts rows, passing each through `black_box` so that building it is not optimised away.
#[derive(Debug, Default)]
pub struct Count(pub u64);

impl Sink for Count {
    #[inline]
    fn emit<R: Serialize + Debug>(&mut self, row: R) {
        black_box(row);
        self.0 += 1;
    }
}

/// The kind of a changelog row, as Flink's `RowKind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RowKind {
    /// `+I`
    Insert,
    /// `-U`
    UpdateBefore,
    /// `+U`
    UpdateAfter,
    /// `-D`
    Delete,
}

/// Runs query `name` over `events`; returns the number of events read.
pub fn run(name: &str, events: impl Events, out: &mut impl Sink) -> Result<u64> {
    match name {
        "q0" => q0(events, out),
        "q1" => q1(events, out),
        "q2" => q2(events, out),
        "q3" => q3(events, out),
        "q4" => q4(events, out),
        "q5" => q5(events, out),
        "q7" => q7(events, out),
        "q8" => q8(events, out),
        "q9" => q9(events, out),
        "q11" => q11(events, out),
        "q12" => q12(events, out),
        "q13" => q13(events, out),
        "q14" => q14(events, out),
        "q15" => q15(events, out),
        "q16" => q16(events, out),
        "q17" => q17(events, out),
        "q18" => q18(events, out),
        "q19" => q19(events, out),
        "q20" => q20(events, out),
        "q21" => q21(events, out),
        "q22" => q22(events, out),
        _ => bail!("unknown query {name:?}; expected one of {}", QUERIES.join(", ")),
    }
}

// ---------------------------------------------------------------------------------------------
// State helpers

/// A bid kept in state beyond the line it was parsed from.
#[derive(Debug, Clone)]
struct OwnedBid {
    auction: i64,
    bidder: i64,
    price: i64,
    channel: String,
    url: String,
    date_time: i64,
    extra: String,
}

impl OwnedBid {
    fn new(b: &Bid<'_>) -> Self {
        OwnedBid {
            auction: b.auction,
            bidder: b.bidder,
            price: b.price,
            channel: b.channel.to_string(),
            url: b.url.to_string(),
            date_time: b.date_time,
            extra: b.extra.to_string(),
        }
    }

    // Overwrites in place so that replacing a kept bid reuses its strings' buffers.
    fn assign(&mut self, b: &Bid<'_>) {
        self.auction = b.auction;
        self.bidder = b.bidder;
        self.price = b.price;
        copy_into(&mut self.channel, &b.channel);
        copy_into(&mut self.url, &b.url);
        self.date_time = b.date_time;
        copy_into(&mut self.extra, &b.extra);
    }

    fn view(&self) -> Bid<'_> {
        Bid {
            auction: self.auction,
            bidder: self.bidder,
            price: self.price,
            channel: Cow::Borrowed(&self.channel),
            url: Cow::Borrowed(&self.url),
            date_time: self.date_time,
            extra: Cow::Borrowed(&self.extra),
        }
    }
}

fn copy_into(dst: &mut String, src: &str) {
    dst.clear();
    dst.push_str(src);
}

/// An auction kept in state beyond the line it was parsed from.
#[derive(Debug, Clone)]
struct OwnedAuction {
    id: i64,
    item_name: String,
    description: String,
    initial_bid: i64,
    reserve: i64,
    date_time: i64,
    expires: i64,
    seller: i64,
    category: i64,
    extra: String,
}

impl OwnedAuction {
    fn new(a: &Auction<'_>) -> Self {
        OwnedAuction {
            id: a.id,
            item_name: a.item_name.to_string(),
            description: a.description.to_string(),
            initial_bid: a.initial_bid,
            reserve: a.reserve,
            date_time: a.date_time,
            expires: a.expires,
            seller: a.seller,
            category: a.category,
            extra: a.extra.to_string(),
        }
    }

    fn view(&self) -> Auction<'_> {
        Auction {
            id: self.id,
            item_name: Cow::Borrowed(&self.item_name),
            description: Cow::Borrowed(&self.description),
            initial_bid: self.initial_bid,
            reserve: self.reserve,
            date_time: self.date_time,
            expires: self.expires,
            seller: self.seller,
            category: self.category,
            extra: Cow::Borrowed(&self.extra),
        }
    }
}

/// Epoch-aligned tumbling windows of one size, oldest first.
struct Tumbling<S> {
    size: i64,
    open: VecDeque<(i64, S)>,
}

impl<S: Default> Tumbling<S> {
    fn new(size: i64) -> Self {
        Tumbling { size, open: VecDeque::new() }
    }

    /// The state of the window containing `t`, created if needed.
    #[inline]
    fn at(&mut self, t: i64) -> &mut S {
        let start = t - t.rem_euclid(self.size);
        // Searching from the newest end finds an in-order event's window at once.
        let i = match self.open.iter().rposition(|(s, _)| *s <= start) {
            Some(i) if self.open[i].0 == start => i,
            Some(i) => {
                self.open.insert(i + 1, (start, S::default()));
                i + 1
            }
            None => {
                self.open.push_front((start, S::default()));
                0
            }
        };
        &mut self.open[i].1
    }

    /// Removes and hands over `(start, state)` of every window the watermark `wm` completes.
    #[inline]
    fn fire(&mut self, wm: i64, mut f: impl FnMut(i64, S)) {
        while self.open.front().is_some_and(|(start, _)| start + self.size - 1 <= wm) {
            let (start, state) = self.open.pop_front().expect("front exists");
            f(start, state);
        }
    }
}

/// A min-heap of `(time, key)` timers.
#[derive(Default)]
struct Timers(BinaryHeap<Reverse<(i64, i64)>>);

impl Timers {
    fn add(&mut self, time: i64, key: i64) {
        self.0.push(Reverse((time, key)));
    }

    /// Pops the earliest timer due at watermark `wm`.
    #[inline]
    fn pop_due(&mut self, wm: i64) -> Option<(i64, i64)> {
        match self.0.peek() {
            Some(Reverse((t, _))) if *t <= wm => self.0.pop().map(|Reverse(x)| x),
            _ => None,
        }
    }
}

/// The range of q15–q17: `price < 10,000`, `< 1,000,000`, or above.
#[inline]
fn price_range(price: i64) -> usize {
    if price < 10_000 {
        0
    } else if price < 1_000_000 {
        1
    } else {
        2
    }
}

// ---------------------------------------------------------------------------------------------
// Stateless queries

/// q0: every bid unchanged.
pub fn q0(events: impl Events, out: &mut impl Sink) -> Result<u64> {
    events.for_each_event(|e| {
        if let Event::Bid(b) = e {
            out.emit(b);
        }
    })
}

/// q1: every bid with its price converted to euros.
pub fn q1(events: impl Events, out: &mut impl Sink) -> Result<u64> {
    events.for_each_event(|e| {
        if let Event::Bid(b) = e {
            out.emit((b.auction, b.bidder, b.price as f64 * 0.908, b.date_time, b.extra));
        }
    })
}

/// q2: `(auction, price)` of the bids on auctions divisible by 123.
pub fn q2(events: impl Events, out: &mut impl Sink) -> Result<u64> {
    events.for_each_event(|e| {
        if let Event::Bid(b) = e {
            if b.auction % 123 == 0 {
                out.emit((b.auction, b.price));
            }
        }
    })
}

/// q13: every bid joined with the bounded side input on `auction % 10000`.
pub fn q13(events: impl Events, out: &mut impl Sink) -> Result<u64> {
    // Loading the side input is part of the query's work, as it is for the engine.
    let side: Vec<String> = (0..10_000).map(|k| format!("nexmark-side-{k}")).collect();
    events.for_each_event(|e| {
        if let Event::Bid(b) = e {
            let value = side[b.auction.rem_euclid(10_000) as usize].as_str();
            out.emit((b.auction, b.bidder, b.price, b.date_time, value));
        }
    })
}

/// q14: euro-priced bids in a price band, with the time-of-day class and `c` count.
pub fn q14(events: impl Events, out: &mut impl Sink) -> Result<u64> {
    events.for_each_event(|e| {
        if let Event::Bid(b) = e {
            let price = b.price as f64 * 0.908;
            if price > 1_000_000.0 && price < 50_000_000.0 {
                let time_type = match hour_of(b.date_time) {
                    8..=18 => "dayTime",
                    h if h <= 6 || h >= 20 => "nightTime",
                    _ => "otherTime",
                };
                let c_counts = b.extra.bytes().filter(|&c| c == b'c').count() as i64;
                out.emit((b.auction, b.bidder, price, time_type, b.date_time, b.extra, c_counts));
            }
        }
    })
}

/// q21's `channel_id`: fixed for the four named channels, else taken from the url.
pub fn channel_id<'a>(channel: &str, url: &'a str) -> Option<&'a str> {
    // LOWER(channel) = 'apple' etc.; the names are ASCII, so an ASCII case fold matches alike.
    const FIXED: [(&str, &str); 4] =
        [("apple", "0"), ("google", "1"), ("facebook", "2"), ("baidu", "3")];
    if let Some((_, id)) = FIXED.iter().find(|(name, _)| channel.eq_ignore_ascii_case(name)) {
        return Some(id);
    }
    // REGEXP_EXTRACT(url, '(&|^)channel_id=([^&]*)', 2): the leftmost match wins.
    const KEY: &str = "channel_id=";
    let (at, _) =
        url.match_indices(KEY).find(|&(at, _)| at == 0 || url.as_bytes()[at - 1] == b'&')?;
    let rest = &url[at + KEY.len()..];
    Some(rest.split('&').next().unwrap_or(""))
}

/// q21: bids with a channel id.
pub fn q21(events: impl Events, out: &mut impl Sink) -> Result<u64> {
    events.for_each_event(|e| {
        if let Event::Bid(b) = e {
            if let Some(id) = channel_id(&b.channel, &b.url) {
                out.emit((b.auction, b.bidder, b.price, &*b.channel, id));
            }
        }
    })
}

/// q22's directories: the 4th, 5th and 6th `/`-separated parts of `url`, empty if missing.
pub fn url_dirs(url: &str) -> (&str, &str, &str) {
    let mut parts = url.split('/').skip(3);
    let mut next = || parts.next().unwrap_or("");
    (next(), next(), next())
}

/// q22: every bid with its url split into directories.
pub fn q22(events: impl Events, out: &mut impl Sink) -> Result<u64> {
    events.for_each_event(|e| {
        if let Event::Bid(b) = e {
            let (dir1, dir2, dir3) = url_dirs(&b.url);
            out.emit((b.auction, b.bidder, b.price, &*b.channel, dir1, dir2, dir3));
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Regular joins

/// The columns of a q3 seller.
struct Seller {
    name: String,
    city: String,
    state: String,
}

/// q3: category-10 auctions joined with their sellers from OR, ID or CA.
pub fn q3(events: impl Events, out: &mut impl Sink) -> Result<u64> {
    // Person ids are unique: once a seller is known, their auctions join at once, so only
    // auctions that precede their seller wait.
    let mut sellers: HashMap<i64, Seller> = HashMap::new();
    let mut waiting: HashMap<i64, Vec<i64>> = HashMap::new();
    events.for_each_event(|e| match e {
        Event::Person(p) if matches!(&*p.state, "OR" | "ID" | "CA") => {
            for id in waiting.remove(&p.id).into_iter().flatten() {
                out.emit((&*p.name, &*p.city, &*p.state, id));
            }
            let seller = Seller {
                name: p.name.into_owned(),
                city: p.city.into_owned(),
                state: p.state.into_owned(),
            };
            sellers.insert(p.id, seller);
        }
        Event::Auction(a) if a.category == 10 => match sellers.get(&a.seller) {
            Some(s) => out.emit((s.name.as_str(), s.city.as_str(), s.state.as_str(), a.id)),
            None => waiting.entry(a.seller).or_default().push(a.id),
        },
        _ => {}
    })
}

/// q20: bids joined with their category-10 auctions.
pub fn q20(events: impl Events, out: &mut impl Sink) -> Result<u64> {
    // Auction ids are unique: a bid whose auction has arrived joins (or not) at once and is
    // never needed again, so only bids that precede their auction are kept.
    let mut category10: HashMap<i64, OwnedAuction> = HashMap::new();
    let mut other: HashSet<i64> = HashSet::new();
    let mut waiting: HashMap<i64, Vec<OwnedBid>> = HashMap::new();
    events.for_each_event(|e| match e {
        Event::Bid(b) => {
            if let Some(a) = category10.get(&b.auction) {
                out.emit((b, a.view()));
            } else if !other.contains(&b.auction) {
                waiting.entry(b.auction).or_default().push(OwnedBid::new(&b));
            }
        }
        Event::Auction(a) => {
            let bids = waiting.remove(&a.id);
            if a.category == 10 {
                for bid in bids.iter().flatten() {
                    out.emit((bid.view(), a.clone()));
                }
                category10.insert(a.id, OwnedAuction::new(&a));
            } else {
                other.insert(a.id);
            }
        }
        Event::Person(_) => {}
    })
}

// ---------------------------------------------------------------------------------------------
// Auctions closing on the watermark (q4, q9)

/// Bids seen before their auction, dropped once the watermark passes their `dateTime`.
struct EarlyBids<B> {
    bids: HashMap<i64, Vec<B>>,
    timers: Timers,
}

impl<B> Default for EarlyBids<B> {
    fn default() -> Self {
        EarlyBids { bids: HashMap::new(), timers: Timers::default() }
    }
}

impl<B> EarlyBids<B> {
    fn add(&mut self, auction: i64, date_time: i64, bid: B) {
        self.bids.entry(auction).or_default().push(bid);
        self.timers.add(date_time, auction);
    }

    fn take(&mut self, auction: i64) -> Vec<B> {
        self.bids.remove(&auction).unwrap_or_default()
    }

    // An auction arriving later has `dateTime` > watermark ≥ the bid's, so the bid is invalid.
    fn expire(&mut self, wm: i64, date_time: impl Fn(&B) -> i64) {
        while let Some((_, auction)) = self.timers.pop_due(wm) {
            if let Entry::Occupied(mut bids) = self.bids.entry(auction) {
                bids.get_mut().retain(|b| date_time(b) > wm);
                if bids.get().is_empty() {
                    bids.remove();
                }
            }
        }
    }
}

/// An open auction of q4 and the best valid price so far.
struct OpenQ4 {
    category: i64,
    date_time: i64,
    expires: i64,
    max: Option<i64>,
}

impl OpenQ4 {
    #[inline]
    fn offer(&mut self, date_time: i64, price: i64) {
        if self.date_time <= date_time && date_time <= self.expires {
            self.max = Some(self.max.map_or(price, |m| m.max(price)));
        }
    }
}

/// q4's state.
#[derive(Default)]
struct Q4 {
    open: HashMap<i64, OpenQ4>,
    closing: Timers,
    early: EarlyBids<(i64, i64)>,
    /// Per category: sum and count of the winning prices.
    categories: HashMap<i64, (i64, i64)>,
}

impl Q4 {
    fn on_event(&mut self, e: Event<'_>) {
        match e {
            Event::Auction(a) => {
                let (category, date_time, expires) = (a.category, a.date_time, a.expires);
                let mut state = OpenQ4 { category, date_time, expires, max: None };
                for (date_time, price) in self.early.take(a.id) {
                    state.offer(date_time, price);
                }
                self.open.insert(a.id, state);
                self.closing.add(a.expires, a.id);
            }
            Event::Bid(b) => match self.open.get_mut(&b.auction) {
                Some(state) => state.offer(b.date_time, b.price),
                None => self.early.add(b.auction, b.date_time, (b.date_time, b.price)),
            },
            Event::Person(_) => {}
        }
    }

    fn advance(&mut self, wm: i64, out: &mut impl Sink) {
        while let Some((_, id)) = self.closing.pop_due(wm) {
            let Some(OpenQ4 { category, max: Some(max), .. }) = self.open.remove(&id) else {
                continue;
            };
            // One row per closed auction: the category's new average replaces the old one.
            let (sum, count) = self.categories.entry(category).or_insert((0, 0));
            *sum += max;
            *count += 1;
            out.emit((category, *sum as f64 / *count as f64));
        }
        self.early.expire(wm, |&(date_time, _)| date_time);
    }
}

/// q4: per category, the average winning price of its closed auctions, as each one closes.
pub fn q4(events: impl Events, out: &mut impl Sink) -> Result<u64> {
    let mut q = Q4::default();
    let mut wm = Watermark::default();
    let n = events.for_each_event(|e| {
        let t = e.timestamp();
        q.on_event(e);
        q.advance(wm.observe(t), out);
    })?;
    q.advance(i64::MAX, out);
    Ok(n)
}

/// An open auction of q9 and its winning bid so far.
struct OpenQ9 {
    auction: OwnedAuction,
    winner: Option<OwnedBid>,
}

impl OpenQ9 {
    // Valid and better: highest price, then earliest dateTime; on a full tie the bid
    // already kept stays, as it arrived first.
    fn improves(&self, b: &Bid<'_>) -> bool {
        let valid = self.auction.date_time <= b.date_time && b.date_time <= self.auction.expires;
        valid
            && self.winner.as_ref().is_none_or(|w| {
                b.price > w.price || (b.price == w.price && b.date_time < w.date_time)
            })
    }
}

/// q9's state.
#[derive(Default)]
struct Q9 {
    open: HashMap<i64, OpenQ9>,
    closing: Timers,
    early: EarlyBids<OwnedBid>,
}

impl Q9 {
    fn on_event(&mut self, e: Event<'_>) {
        match e {
            Event::Auction(a) => {
                let mut state = OpenQ9 { auction: OwnedAuction::new(&a), winner: None };
                for bid in self.early.take(a.id) {
                    if state.improves(&bid.view()) {
                        state.winner = Some(bid);
                    }
                }
                self.open.insert(a.id, state);
                self.closing.add(a.expires, a.id);
            }
            Event::Bid(b) => match self.open.get_mut(&b.auction) {
                Some(state) => {
                    if state.improves(&b) {
                        match &mut state.winner {
                            Some(w) => w.assign(&b),
                            None => state.winner = Some(OwnedBid::new(&b)),
                        }
                    }
                }
                None => self.early.add(b.auction, b.date_time, OwnedBid::new(&b)),
            },
            Event::Person(_) => {}
        }
    }

    fn advance(&mut self, wm: i64, out: &mut impl Sink) {
        while let Some((_, id)) = self.closing.pop_due(wm) {
            if let Some(OpenQ9 { auction, winner: Some(bid) }) = self.open.remove(&id) {
                out.emit((auction.view(), bid.view()));
            }
        }
        self.early.expire(wm, |b| b.date_time);
    }
}

/// q9: every closed auction with its winning bid.
pub fn q9(events: impl Events, out: &mut impl Sink) -> Result<u64> {
    let mut q = Q9::default();
    let mut wm = Watermark::default();
    let n = events.for_each_event(|e| {
        let t = e.timestamp();
        q.on_event(e);
        q.advance(wm.observe(t), out);
    })?;
    q.advance(i64::MAX, out);
    Ok(n)
}

// ---------------------------------------------------------------------------------------------
// Windows

/// q5's state: bid counts per auction in 2 s panes, oldest first.
// A window sums its five panes when it fires, so a bid costs one map update instead of five.
#[derive(Default)]
struct Q5 {
    panes: VecDeque<(i64, HashMap<i64, u64>)>,
    /// Emptied maps of dropped panes, reused to skip regrowing.
    spare: Vec<HashMap<i64, u64>>,
    merged: HashMap<i64, u64>,
    /// No window ending before this is left to fire.
    next_end: Option<i64>,
}

impl Q5 {
    const SIZE: i64 = 10_000;
    const SLIDE: i64 = 2_000;

    #[inline]
    fn add(&mut self, auction: i64, t: i64) {
        let start = t - t.rem_euclid(Self::SLIDE);
        let i = match self.panes.iter().rposition(|(s, _)| *s <= start) {
            Some(i) if self.panes[i].0 == start => i,
            found => {
                let i = found.map_or(0, |i| i + 1);
                self.panes.insert(i, (start, self.spare.pop().unwrap_or_default()));
                i
            }
        };
        *self.panes[i].1.entry(auction).or_insert(0) += 1;
    }

    #[inline]
    fn advance(&mut self, wm: i64, out: &mut impl Sink) {
        while let Some(&(first, _)) = self.panes.front() {
            // The earliest window not fired yet that holds data.
            let end = self.next_end.map_or(i64::MIN, |e| e).max(first + Self::SLIDE);
            if end - 1 > wm {
                break;
            }
            self.merged.clear();
            for (_, pane) in self.panes.iter().take_while(|(start, _)| *start < end) {
                for (&auction, &count) in pane {
                    *self.merged.entry(auction).or_insert(0) += count;
                }
            }
            let top = self.merged.values().copied().max().unwrap_or(0);
            for (&auction, &count) in &self.merged {
                if count == top {
                    out.emit((auction, count, end));
                }
            }
            let next_end = end + Self::SLIDE;
            self.next_end = Some(next_end);
            while self.panes.front().is_some_and(|(start, _)| *start < next_end - Self::SIZE) {
                let (_, mut pane) = self.panes.pop_front().expect("front exists");
                pane.clear();
                self.spare.push(pane);
            }
        }
    }
}

/// q5: per sliding window (10 s every 2 s), the auctions with the most bids.
pub fn q5(events: impl Events, out: &mut impl Sink) -> Result<u64> {
    let mut q = Q5::default();
    let mut wm = Watermark::default();
    let n = events.for_each_event(|e| {
        let t = e.timestamp();
        if let Event::Bid(b) = e {
            q.add(b.auction, t);
        }
        q.advance(wm.observe(t), out);
    })?;
    q.advance(i64::MAX, out);
    Ok(n)
}

/// q7's window: the highest price so far and the bids that have it.
#[derive(Default)]
struct HighestBids {
    price: i64,
    bids: Vec<(i64, i64, i64, i64, String)>,
}

/// q7: per 10 s tumbling window, the bids with the highest price.
pub fn q7(events: impl Events, out: &mut impl Sink) -> Result<u64> {
    fn fire(windows: &mut Tumbling<HighestBids>, wm: i64, out: &mut impl Sink) {
        windows.fire(wm, |_, w| w.bids.into_iter().for_each(|row| out.emit(row)));
    }
    let mut windows: Tumbling<HighestBids> = Tumbling::new(10_000);
    let mut wm = Watermark::default();
    let n = events.for_each_event(|e| {
        let t = e.timestamp();
        if let Event::Bid(b) = e {
            let w = windows.at(t);
            if w.bids.is_empty() || b.price > w.price {
                w.price = b.price;
                w.bids.clear();
            }
            if b.price == w.price {
                w.bids.push((b.auction, b.price, b.bidder, b.date_time, b.extra.into_owned()));
            }
        }
        fire(&mut windows, wm.observe(t), out);
    })?;
    fire(&mut windows, i64::MAX, out);
    Ok(n)
}

/// q8's window: the persons and the sellers seen in it.
#[derive(Default)]
struct NewSellers {
    persons: HashSet<(i64, String)>,
    sellers: HashSet<i64>,
}

/// q8: per 10 s tumbling window, the persons who also opened an auction in it.
pub fn q8(events: impl Events, out: &mut impl Sink) -> Result<u64> {
    fn fire(windows: &mut Tumbling<NewSellers>, wm: i64, out: &mut impl Sink) {
        windows.fire(wm, |start, w| {
            for (id, name) in &w.persons {
                if w.sellers.contains(id) {
                    out.emit((*id, name.as_str(), start));
                }
            }
        });
    }
    let mut windows: Tumbling<NewSellers> = Tumbling::new(10_000);
    let mut wm = Watermark::default();
    let n = events.for_each_event(|e| {
        let t = e.timestamp();
        match e {
            Event::Person(p) => {
                windows.at(t).persons.insert((p.id, p.name.into_owned()));
            }
            Event::Auction(a) => {
                windows.at(t).sellers.insert(a.seller);
            }
            Event::Bid(_) => {}
        }
        fire(&mut windows, wm.observe(t), out);
    })?;
    fire(&mut windows, i64::MAX, out);
    Ok(n)
}

/// A q11 session: its first and last bid, the bid count, and the timer registered for it.
struct Session {
    start: i64,
    last: i64,
    count: u64,
    timer: i64,
}

/// q11: per bidder, the bid count of each session (10 s gap).
pub fn q11(events: impl Events, out: &mut impl Sink) -> Result<u64> {
    const GAP: i64 = 10_000;
    let mut sessions: HashMap<i64, Session> = HashMap::new();
    // One live timer per session, at its end − 1 as of arming; a session extended since then
    // re-arms when the stale timer fires, so extending a session costs no heap operation.
    let mut timers = Timers::default();
    let mut wm = Watermark::default();
    let n = events.for_each_event(|e| {
        let t = e.timestamp();
        if let Event::Bid(b) = e {
            let fresh = Session { start: t, last: t, count: 1, timer: t + GAP - 1 };
            match sessions.entry(b.bidder) {
                // Windows that touch merge, as Flink's session windows do.
                Entry::Occupied(mut s) if t <= s.get().last + GAP && s.get().start <= t + GAP => {
                    let s = s.get_mut();
                    s.start = s.start.min(t);
                    s.last = s.last.max(t);
                    s.count += 1;
                }
                Entry::Occupied(mut s) => {
                    // In order, a bid past the gap means the old session can grow no more.
                    let old = std::mem::replace(s.get_mut(), fresh);
                    out.emit((b.bidder, old.count, old.start, old.last + GAP));
                    timers.add(t + GAP - 1, b.bidder);
                }
                Entry::Vacant(v) => {
                    v.insert(fresh);
                    timers.add(t + GAP - 1, b.bidder);
                }
            }
        }
        let wm = wm.observe(t);
        while let Some((time, bidder)) = timers.pop_due(wm) {
            let Entry::Occupied(mut s) = sessions.entry(bidder) else { continue };
            if s.get().timer != time {
                continue;
            }
            let end = s.get().last + GAP;
            if end - 1 <= wm {
                let s = s.remove();
                out.emit((bidder, s.count, s.start, end));
            } else {
                s.get_mut().timer = end - 1;
                timers.add(end - 1, bidder);
            }
        }
    })?;
    let mut rest: Vec<_> = sessions.into_iter().collect();
    rest.sort_unstable_by_key(|(bidder, s)| (s.last, *bidder));
    for (bidder, s) in rest {
        out.emit((bidder, s.count, s.start, s.last + GAP));
    }
    Ok(n)
}

/// q12: per bidder, bids in 10 s processing-time (wall clock) tumbling windows.
pub fn q12(events: impl Events, out: &mut impl Sink) -> Result<u64> {
    const SIZE: i64 = 10_000;
    // Reading the clock once per 128 bids costs nothing measurable and shifts a bid's
    // processing time by microseconds at most.
    const CLOCK_EVERY: u32 = 128;
    fn flush(counts: &mut HashMap<i64, u64>, start: i64, out: &mut impl Sink) {
        for (&bidder, &count) in counts.iter() {
            out.emit((bidder, count, start, start + SIZE));
        }
        counts.clear();
    }
    let wall_origin =
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let origin = Instant::now();
    let now = || wall_origin + origin.elapsed().as_millis() as i64;
    let mut counts: HashMap<i64, u64> = HashMap::new();
    let mut start = now();
    start -= start.rem_euclid(SIZE);
    let mut until_clock = 0;
    let n = events.for_each_event(|e| {
        if let Event::Bid(b) = e {
            if until_clock == 0 {
                until_clock = CLOCK_EVERY;
                let t = now();
                if t >= start + SIZE {
                    flush(&mut counts, start, out);
                    start = t - t.rem_euclid(SIZE);
                }
            }
            until_clock -= 1;
            *counts.entry(b.bidder).or_insert(0) += 1;
        }
    })?;
    flush(&mut counts, start, out);
    Ok(n)
}

/// q15's counters: bids and distinct bidders and auctions, in total and per price range.
#[derive(Default)]
struct DistinctStats {
    bids: [u64; 4],
    // One bit per price range the bidder or auction was seen in: two map updates per bid
    // instead of eight set insertions.
    bidders: HashMap<i64, u8>,
    auctions: HashMap<i64, u8>,
}

/// q15's columns after the day: `[total, price < 10k, < 1M, ≥ 1M]` each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DistinctCounts {
    /// Bid counts.
    pub bids: [u64; 4],
    /// Distinct bidder counts.
    pub bidders: [u64; 4],
    /// Distinct auction counts.
    pub auctions: [u64; 4],
}

impl DistinctStats {
    #[inline]
    fn add(&mut self, b: &Bid<'_>) {
        let range = price_range(b.price);
        self.bids[0] += 1;
        self.bids[range + 1] += 1;
        *self.bidders.entry(b.bidder).or_insert(0) |= 1 << range;
        *self.auctions.entry(b.auction).or_insert(0) |= 1 << range;
    }

    fn counts(&self) -> DistinctCounts {
        let distinct = |seen: &HashMap<i64, u8>| {
            let mut counts = [seen.len() as u64, 0, 0, 0];
            for &bits in seen.values() {
                for (range, count) in counts[1..].iter_mut().enumerate() {
                    *count += u64::from(bits >> range & 1);
                }
            }
            counts
        };
        DistinctCounts {
            bids: self.bids,
            bidders: distinct(&self.bidders),
            auctions: distinct(&self.auctions),
        }
    }
}

/// q15: per day, bid counts and distinct bidders and auctions by price range.
pub fn q15(events: impl Events, out: &mut impl Sink) -> Result<u64> {
    fn fire(days: &mut Tumbling<DistinctStats>, wm: i64, out: &mut impl Sink) {
        days.fire(wm, |start, stats| out.emit((format_day(start), stats.counts())));
    }
    let mut days: Tumbling<DistinctStats> = Tumbling::new(DAY_MS);
    let mut wm = Watermark::default();
    let n = events.for_each_event(|e| {
        let t = e.timestamp();
        if let Event::Bid(b) = e {
            days.at(t).add(&b);
        }
        fire(&mut days, wm.observe(t), out);
    })?;
    fire(&mut days, i64::MAX, out);
    Ok(n)
}

/// q16's state of one channel on one day.
struct ChannelDay {
    stats: DistinctStats,
    latest: i64,
}

impl Default for ChannelDay {
    fn default() -> Self {
        ChannelDay { stats: DistinctStats::default(), latest: i64::MIN }
    }
}

/// q16: q15 per channel and day, with the latest `HH:mm` of the channel's bids.
pub fn q16(events: impl Events, out: &mut impl Sink) -> Result<u64> {
    type Channels = HashMap<String, ChannelDay>;
    fn fire(days: &mut Tumbling<Channels>, wm: i64, out: &mut impl Sink) {
        days.fire(wm, |start, channels| {
            let day = format_day(start);
            for (channel, c) in &channels {
                let minute = format_hh_mm(c.latest);
                out.emit((channel.as_str(), day.as_str(), minute, c.stats.counts()));
            }
        });
    }
    let mut days: Tumbling<Channels> = Tumbling::new(DAY_MS);
    let mut wm = Watermark::default();
    let n = events.for_each_event(|e| {
        let t = e.timestamp();
        if let Event::Bid(b) = e {
            // Looked up by `&str`: the channel is copied only the first time it shows up.
            let c = days.at(t).entry_ref(&*b.channel).or_default();
            c.stats.add(&b);
            c.latest = c.latest.max(t);
        }
        fire(&mut days, wm.observe(t), out);
    })?;
    fire(&mut days, i64::MAX, out);
    Ok(n)
}

/// q17's state of one auction on one day.
struct AuctionDay {
    ranges: [u64; 3],
    count: u64,
    min: i64,
    max: i64,
    sum: i64,
}

/// q17: per auction and day, bid counts by price range and min, max, average and sum of price.
pub fn q17(events: impl Events, out: &mut impl Sink) -> Result<u64> {
    fn fire(days: &mut Tumbling<HashMap<i64, AuctionDay>>, wm: i64, out: &mut impl Sink) {
        days.fire(wm, |start, auctions| {
            let day = format_day(start);
            for (&auction, a) in &auctions {
                let avg = a.sum as f64 / a.count as f64;
                let [r1, r2, r3] = a.ranges;
                out.emit((auction, day.as_str(), a.count, r1, r2, r3, a.min, a.max, avg, a.sum));
            }
        });
    }
    let mut days: Tumbling<HashMap<i64, AuctionDay>> = Tumbling::new(DAY_MS);
    let mut wm = Watermark::default();
    let n = events.for_each_event(|e| {
        let t = e.timestamp();
        if let Event::Bid(b) = e {
            let a = days.at(t).entry(b.auction).or_insert(AuctionDay {
                ranges: [0; 3],
                count: 0,
                min: i64::MAX,
                max: i64::MIN,
                sum: 0,
            });
            a.ranges[price_range(b.price)] += 1;
            a.count += 1;
            a.min = a.min.min(b.price);
            a.max = a.max.max(b.price);
            a.sum += b.price;
        }
        fire(&mut days, wm.observe(t), out);
    })?;
    fire(&mut days, i64::MAX, out);
    Ok(n)
}

// ---------------------------------------------------------------------------------------------
// Changelog queries

/// q18: per (bidder, auction), the last bid, as a changelog.
pub fn q18(events: impl Events, out: &mut impl Sink) -> Result<u64> {
    let mut last: HashMap<(i64, i64), OwnedBid> = HashMap::new();
    events.for_each_event(|e| {
        if let Event::Bid(b) = e {
            match last.entry((b.bidder, b.auction)) {
                Entry::Vacant(v) => {
                    v.insert(OwnedBid::new(&b));
                    out.emit((RowKind::Insert, b));
                }
                // A tie in dateTime goes to the later arrival.
                Entry::Occupied(mut o) if b.date_time >= o.get().date_time => {
                    out.emit((RowKind::UpdateBefore, o.get().view()));
                    o.get_mut().assign(&b);
                    out.emit((RowKind::UpdateAfter, b));
                }
                Entry::Occupied(_) => {}
            }
        }
    })
}

/// q19: per auction, the ten highest bids, as a changelog.
pub fn q19(events: impl Events, out: &mut impl Sink) -> Result<u64> {
    const TOP: usize = 10;
    // Highest price first; among equal prices the earlier bid, then the lower bidder id.
    let rank =
        |price: i64, date_time: i64, bidder: i64| (price, Reverse(date_time), Reverse(bidder));
    let mut tops: HashMap<i64, Vec<OwnedBid>> = HashMap::new();
    events.for_each_event(|e| {
        let Event::Bid(b) = e else { return };
        let top = tops.entry(b.auction).or_default();
        let new = rank(b.price, b.date_time, b.bidder);
        if top.len() == TOP
            && new <= rank(top[TOP - 1].price, top[TOP - 1].date_time, top[TOP - 1].bidder)
        {
            return;
        }
        let pushed_out = if top.len() == TOP { top.pop() } else { None };
        // The insert comes before the delete, as the engine emits them.
        out.emit((RowKind::Insert, &b));
        let kept = match pushed_out {
            Some(mut bid) => {
                out.emit((RowKind::Delete, bid.view()));
                // The pushed-out bid's buffers take the new one.
                bid.assign(&b);
                bid
            }
            None => OwnedBid::new(&b),
        };
        let at = top.partition_point(|k| rank(k.price, k.date_time, k.bidder) >= new);
        top.insert(at, kept);
    })
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;

    use super::*;
    use crate::event::Person;

    /// Hands over a list of events, publishing how many have been handed over so far.
    struct Tracked(Vec<Event<'static>>, Rc<Cell<usize>>);

    /// `Tracked`'s position once the input has ended.
    const END: usize = usize::MAX;

    impl Events for Tracked {
        fn for_each_event(self, mut f: impl FnMut(Event<'_>)) -> Result<u64> {
            let n = self.0.len() as u64;
            for (i, e) in self.0.into_iter().enumerate() {
                self.1.set(i + 1);
                f(e);
            }
            self.1.set(END);
            Ok(n)
        }
    }

    /// Collects rows as Debug text, with the number of events seen when each was emitted.
    struct Collect(Vec<(usize, String)>, Rc<Cell<usize>>);

    impl Sink for Collect {
        fn emit<R: Serialize + Debug>(&mut self, row: R) {
            self.0.push((self.1.get(), format!("{row:?}")));
        }
    }

    const T0: i64 = 1_436_918_400_000; // 2015-07-15 00:00:00.000

    fn bid(auction: i64, bidder: i64, price: i64, t: i64) -> Event<'static> {
        Event::Bid(Bid {
            auction,
            bidder,
            price,
            channel: Cow::Borrowed("Google"),
            url: Cow::Borrowed("https://www.nexmark.com/a/b/c/item.htm?query=1"),
            date_time: T0 + t,
            extra: Cow::Borrowed(""),
        })
    }

    fn auction(id: i64, seller: i64, category: i64, t: i64, expires: i64) -> Event<'static> {
        Event::Auction(Auction {
            id,
            item_name: Cow::Borrowed("item"),
            description: Cow::Borrowed("d"),
            initial_bid: 1,
            reserve: 2,
            date_time: T0 + t,
            expires: T0 + expires,
            seller,
            category,
            extra: Cow::Borrowed(""),
        })
    }

    fn person(id: i64, name: &'static str, state: &'static str, t: i64) -> Event<'static> {
        Event::Person(Person {
            id,
            name: Cow::Borrowed(name),
            email_address: Cow::Borrowed("e"),
            credit_card: Cow::Borrowed("c"),
            city: Cow::Borrowed("Boise"),
            state: Cow::Borrowed(state),
            date_time: T0 + t,
            extra: Cow::Borrowed(""),
        })
    }

    /// The rows of `query` with the number of events seen when each came out (`END`: after).
    fn timed_rows(query: &str, events: Vec<Event<'static>>) -> Vec<(usize, String)> {
        let seen = Rc::new(Cell::new(0));
        let mut out = Collect(Vec::new(), seen.clone());
        let n = events.len() as u64;
        assert_eq!(run(query, Tracked(events, seen), &mut out).unwrap(), n);
        out.0
    }

    fn rows(query: &str, events: Vec<Event<'static>>) -> Vec<String> {
        timed_rows(query, events).into_iter().map(|(_, row)| row).collect()
    }

    fn sorted(mut rows: Vec<String>) -> Vec<String> {
        rows.sort();
        rows
    }

    /// The text after `name: ` in a Debug row, up to the next comma.
    fn field<'r>(row: &'r str, name: &str) -> &'r str {
        let from = row.find(&format!("{name}: ")).unwrap_or_else(|| panic!("{name} in {row}"));
        row[from + name.len() + 2..].split([',', ' ']).next().unwrap()
    }

    /// The `RowKind` of a changelog row.
    fn kind(row: &str) -> &str {
        row.trim_start_matches('(').split(',').next().unwrap()
    }

    #[test]
    fn q21_channel_id_from_name_or_url() {
        let url = "https://www.nexmark.com/a/b/c/item.htm?query=1";
        assert_eq!(channel_id("Apple", url), Some("0"));
        assert_eq!(channel_id("GOOGLE", url), Some("1"));
        assert_eq!(channel_id("facebook", url), Some("2"));
        assert_eq!(channel_id("Baidu", url), Some("3"));
        assert_eq!(channel_id("channel-7", url), None);
        assert_eq!(channel_id("channel-7", &format!("{url}&channel_id=42")), Some("42"));
        assert_eq!(channel_id("channel-7", &format!("{url}&channel_id=42&x=1")), Some("42"));
        assert_eq!(channel_id("x", "channel_id=5&y"), Some("5"));
        assert_eq!(channel_id("x", "a&channel_id="), Some(""));
        assert_eq!(channel_id("x", "a&channel_id=&b"), Some(""));
        // Only at the start or after `&`; a later occurrence that qualifies still counts.
        assert_eq!(channel_id("x", "a?channel_id=9"), None);
        assert_eq!(channel_id("x", "xchannel_id=1&channel_id=2"), Some("2"));
        // The named channels win over the url.
        assert_eq!(channel_id("apple", "channel_id=9"), Some("0"));
    }

    #[test]
    fn q22_splits_url_into_directories() {
        let url = "https://www.nexmark.com/fj/qf/xu/item.htm?query=1";
        assert_eq!(url_dirs(url), ("fj", "qf", "xu"));
        assert_eq!(url_dirs("https://host/a"), ("a", "", ""));
        assert_eq!(url_dirs("no-slashes"), ("", "", ""));
        assert_eq!(url_dirs("a/b/c/d/e/f/g"), ("d", "e", "f"));
        assert_eq!(url_dirs("///"), ("", "", ""));
    }

    #[test]
    fn stateless_queries() {
        let events = || vec![bid(246, 1, 100, 0), bid(247, 2, 200, 1), person(3, "P", "OR", 2)];
        assert_eq!(rows("q0", events()).len(), 2);
        assert_eq!(rows("q2", events()), ["(246, 100)"]);
        assert_eq!(rows("q1", events())[0], format!("(246, 1, {:?}, {T0}, \"\")", 100.0 * 0.908));
        let side = format!("(247, 2, 200, {}, \"nexmark-side-247\")", T0 + 1);
        assert_eq!(rows("q13", events())[1], side);
        let r = rows("q22", events());
        assert_eq!(r[0], "(246, 1, 100, \"Google\", \"a\", \"b\", \"c\")");
        let r = rows("q21", events());
        assert_eq!(r, ["(246, 1, 100, \"Google\", \"1\")", "(247, 2, 200, \"Google\", \"1\")"]);
    }

    #[test]
    fn q14_filters_by_euro_price_and_classifies_hours() {
        let mut night = bid(1, 2, 2_000_000, 0);
        if let Event::Bid(b) = &mut night {
            b.extra = Cow::Borrowed("abcc");
        }
        let hour = 3_600_000;
        let events = vec![
            night,
            bid(1, 2, 1_000_000, 0), // 908,000 after conversion: too low
            bid(1, 2, 2_000_000, 7 * hour),
            bid(1, 2, 2_000_000, 8 * hour),
            bid(1, 2, 2_000_000, 19 * hour),
            bid(1, 2, 2_000_000, 20 * hour),
            bid(1, 2, 60_000_000, 20 * hour), // 54.48M: too high
        ];
        let r = rows("q14", events);
        let kinds: Vec<_> = r.iter().map(|r| r.split(", ").nth(3).unwrap()).collect();
        let expected = ["nightTime", "otherTime", "dayTime", "otherTime", "nightTime"];
        assert_eq!(kinds, expected.map(|k| format!("{k:?}")));
        assert!(r[0].ends_with("\"abcc\", 2)"), "{}", r[0]);
    }

    #[test]
    fn q3_and_q20_join_either_side_first() {
        let events = vec![
            auction(10, 1, 10, 0, 1000),
            auction(11, 1, 11, 0, 1000), // not category 10
            person(1, "Ann", "OR", 1),
            person(2, "Bob", "WA", 2), // not OR, ID or CA
            auction(12, 2, 10, 3, 1000),
            auction(13, 1, 10, 4, 1000),
        ];
        let ann = "(\"Ann\", \"Boise\", \"OR\", ";
        assert_eq!(rows("q3", events), [format!("{ann}10)"), format!("{ann}13)")]);

        let events = vec![
            bid(20, 1, 5, 0),
            bid(21, 1, 6, 0),
            auction(20, 1, 10, 1, 1000),
            auction(21, 1, 11, 1, 1000),
            bid(20, 2, 7, 2),
            bid(21, 2, 8, 2),
            bid(22, 2, 9, 2),
        ];
        let r = timed_rows("q20", events);
        let summary: Vec<_> = r
            .iter()
            .map(|(at, r)| (*at, field(r, "bidder"), field(r, "price"), field(r, "category")))
            .collect();
        assert_eq!(summary, [(3, "1", "5", "10"), (5, "2", "7", "10")]);
    }

    #[test]
    fn q4_and_q9_emit_when_the_auction_closes() {
        // Auctions 1 (0..=1000 ms) and 2 (5..=2000 ms) are in category 10; auction 3
        // (category 11, 0..=1000 ms) gets no valid bid.
        let events = vec![
            bid(2, 9, 70, 6), // before its auction: kept, and valid
            auction(1, 1, 10, 0, 1000),
            auction(2, 1, 10, 5, 2000),
            auction(3, 1, 11, 0, 1000),
            bid(1, 7, 50, 10),
            bid(1, 8, 80, 20),
            bid(1, 6, 80, 20),   // ties price and time: the first stays the winner
            bid(2, 7, 90, 2001), // after expires: invalid
            bid(3, 7, 95, 1001), // after expires: invalid
            person(5, "P", "OR", 5002), // watermark 1001: auctions 1 and 3 close
            bid(2, 8, 60, 1999), // out of order but not late: valid, lower
        ];
        let r = timed_rows("q4", events.clone());
        let r: Vec<_> = r.iter().map(|(at, row)| (*at, row.as_str())).collect();
        assert_eq!(r, [(10, "(10, 80.0)"), (END, "(10, 75.0)")]);

        let r = timed_rows("q9", events);
        let summary: Vec<_> = r
            .iter()
            .map(|(at, r)| (*at, field(r, "id"), field(r, "bidder"), field(r, "price")))
            .collect();
        assert_eq!(summary, [(10, "1", "8", "80"), (END, "2", "9", "70")]);
    }

    #[test]
    fn q4_and_q9_drop_closed_auctions_and_stale_early_bids() {
        let events = vec![
            bid(7, 1, 100, 0),            // auction 7 has not arrived yet
            person(1, "P", "OR", 4001),   // watermark 0: the early bid is dropped
            auction(7, 1, 10, 0, 10_000), // out of order, so it could have taken the bid
            auction(8, 1, 10, 4001, 5000),
            bid(8, 1, 10, 4500),
            person(2, "P", "OR", 9001), // watermark 5000: auction 8 closes
            bid(8, 1, 99, 5000),        // late for a closed auction: ignored
        ];
        assert_eq!(timed_rows("q4", events.clone()), [(6, "(10, 10.0)".to_owned())]);
        let r = timed_rows("q9", events);
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].0, field(&r[0].1, "id"), field(&r[0].1, "price")), (6, "8", "10"));
    }

    #[test]
    fn q5_sliding_windows_emit_the_top_auctions() {
        let events = vec![
            bid(1, 1, 1, 0),
            bid(1, 1, 1, 500),
            bid(2, 1, 1, 1000),
            bid(2, 1, 1, 2500),
            bid(3, 1, 1, 11_000), // watermark 6999: windows ending at 2 s … 6 s fire
        ];
        let r = timed_rows("q5", events);
        // T0 is a multiple of 10 s, so windows end at T0 + multiples of 2 s.
        let end = |ms: i64| T0 + ms;
        let mut expected = vec![(5, format!("(1, 2, {})", end(2000)))];
        for ms in [4000, 6000] {
            expected.push((5, format!("(1, 2, {})", end(ms))));
            expected.push((5, format!("(2, 2, {})", end(ms))));
        }
        for ms in [8000, 10_000] {
            expected.push((END, format!("(1, 2, {})", end(ms))));
            expected.push((END, format!("(2, 2, {})", end(ms))));
        }
        // [2 s, 12 s) holds one bid of auction 2 and one of auction 3.
        expected.push((END, format!("(2, 1, {})", end(12_000))));
        for ms in (12_000..=20_000).step_by(2000) {
            expected.push((END, format!("(3, 1, {})", end(ms))));
        }
        expected.sort();
        let mut r = r;
        r.sort();
        assert_eq!(r, expected);
    }

    #[test]
    fn q7_tumbling_window_fires_when_the_watermark_reaches_its_end() {
        let events = vec![
            bid(1, 1, 5, 0),
            bid(2, 2, 9, 1),
            bid(3, 3, 9, 2),
            bid(4, 4, 3, 10_000),         // next window
            bid(5, 5, 3, 13_999),         // watermark 9998: nothing fires yet
            person(1, "P", "OR", 14_000), // watermark 9999: [0, 10 s) fires
        ];
        let row = |n: i64, price: i64, t: i64| format!("({n}, {price}, {n}, {}, \"\")", T0 + t);
        assert_eq!(
            timed_rows("q7", events),
            [
                (6, row(2, 9, 1)),
                (6, row(3, 9, 2)),
                (END, row(4, 3, 10_000)),
                (END, row(5, 3, 13_999))
            ]
        );
    }

    #[test]
    fn q8_joins_persons_and_sellers_of_the_same_window() {
        let events = vec![
            person(1, "Ann", "OR", 0),
            person(2, "Bob", "OR", 9_999),
            auction(100, 1, 10, 5_000, 20_000),
            auction(101, 1, 10, 6_000, 20_000), // a second auction: Ann still comes out once
            auction(102, 2, 10, 10_000, 20_000), // Bob's auction is in the next window
            auction(103, 3, 10, 14_000, 20_000), // watermark 9999
        ];
        assert_eq!(timed_rows("q8", events), [(6, format!("(1, \"Ann\", {T0})"))]);
    }

    #[test]
    fn q11_sessions_split_on_a_gap() {
        let events = vec![
            bid(1, 7, 1, 0),
            bid(1, 7, 1, 10_000), // touches the first session's end: merges
            bid(1, 8, 1, 15_000),
            bid(1, 7, 1, 20_001), // past the gap: a new session
            bid(1, 8, 1, 40_000), // watermark 35999: bidder 7's second session closes
        ];
        let session = |bidder: i64, count: u64, start: i64, last: i64| {
            format!("({bidder}, {count}, {}, {})", T0 + start, T0 + last + 10_000)
        };
        assert_eq!(
            timed_rows("q11", events),
            [
                (4, session(7, 2, 0, 10_000)),
                (5, session(8, 1, 15_000, 15_000)),
                (5, session(7, 1, 20_001, 20_001)),
                (END, session(8, 1, 40_000, 40_000)),
            ]
        );
    }

    #[test]
    fn q12_counts_per_bidder_in_one_short_run() {
        let events = vec![bid(1, 7, 1, 0), bid(1, 7, 1, 1), bid(1, 8, 1, 2)];
        let r = sorted(rows("q12", events));
        // A run this short lies in one 10 s window unless it straddles a boundary.
        if r.len() == 2 {
            assert!(r[0].starts_with("(7, 2, ") && r[1].starts_with("(8, 1, "), "{r:?}");
            let fields: Vec<i64> =
                r[0].trim_matches(['(', ')']).split(", ").map(|f| f.parse().unwrap()).collect();
            assert_eq!((fields[2] % 10_000, fields[3] - fields[2]), (0, 10_000));
        }
    }

    #[test]
    fn day_windows_count_by_price_range() {
        let mut other_channel = bid(2, 8, 2_000_000, 60_000);
        if let Event::Bid(b) = &mut other_channel {
            b.channel = Cow::Borrowed("channel-1");
        }
        let events = vec![
            bid(1, 7, 100, 0),
            bid(1, 7, 20_000, 1),
            bid(2, 8, 100, 2),
            other_channel,
            bid(1, 7, 5, DAY_MS + 3_999), // next day; watermark = the first day's end − 2
            bid(1, 7, 5, DAY_MS + 4_000), // watermark = the first day's end − 1: it fires
            bid(1, 7, 5, DAY_MS + 3_600_000),
        ];
        let counts = |b: [u64; 4], p: [u64; 4], a: [u64; 4]| {
            format!("{:?}", DistinctCounts { bids: b, bidders: p, auctions: a })
        };
        let r = timed_rows("q15", events.clone());
        assert_eq!(
            r,
            [
                (
                    6,
                    format!(
                        "(\"2015-07-15\", {})",
                        counts([4, 2, 1, 1], [2, 2, 1, 1], [2, 2, 1, 1])
                    )
                ),
                (
                    END,
                    format!(
                        "(\"2015-07-16\", {})",
                        counts([3, 3, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0])
                    )
                ),
            ]
        );
        let r = sorted(rows("q16", events.clone()));
        assert_eq!(
            r,
            [
                format!(
                    "(\"Google\", \"2015-07-15\", \"00:00\", {})",
                    counts([3, 2, 1, 0], [2, 2, 1, 0], [2, 2, 1, 0])
                ),
                format!(
                    "(\"Google\", \"2015-07-16\", \"01:00\", {})",
                    counts([3, 3, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0])
                ),
                format!(
                    "(\"channel-1\", \"2015-07-15\", \"00:01\", {})",
                    counts([1, 0, 0, 1], [1, 0, 0, 1], [1, 0, 0, 1])
                ),
            ]
        );
        let r = sorted(rows("q17", events));
        assert_eq!(
            r,
            [
                "(1, \"2015-07-15\", 2, 1, 1, 0, 100, 20000, 10050.0, 20100)",
                "(1, \"2015-07-16\", 3, 3, 0, 0, 5, 5, 5.0, 15)",
                "(2, \"2015-07-15\", 2, 1, 0, 1, 100, 2000000, 1000050.0, 2000100)",
            ]
        );
    }

    #[test]
    fn q18_keeps_the_last_bid_as_a_changelog() {
        let events = vec![
            bid(1, 7, 10, 5),
            bid(1, 8, 11, 5),
            bid(1, 7, 12, 4), // older: no change
            bid(1, 7, 13, 5), // same time, later arrival: replaces
            bid(1, 7, 14, 6),
        ];
        let r = rows("q18", events);
        let summary: Vec<_> = r.iter().map(|r| (kind(r), field(r, "price"))).collect();
        assert_eq!(
            summary,
            [
                ("Insert", "10"),
                ("Insert", "11"),
                ("UpdateBefore", "10"),
                ("UpdateAfter", "13"),
                ("UpdateBefore", "13"),
                ("UpdateAfter", "14"),
            ]
        );
    }

    #[test]
    fn q19_evicts_the_lowest_and_latest_from_the_top_ten() {
        // Prices 20, 30, …, 100 from bidders 1…9.
        let mut events: Vec<_> = (1..=9).map(|i| bid(1, i, i * 10 + 10, i)).collect();
        events.push(bid(1, 100, 20, 10)); // ties the lowest: takes the tenth place
        events.push(bid(1, 101, 20, 11)); // ties the lowest of a full top ten: rejected
        events.push(bid(1, 102, 500, 12)); // pushes out the later of the two 20s
        events.push(bid(1, 103, 600, 13)); // pushes out the other 20
        events.push(bid(1, 104, 25, 14)); // below the lowest kept price (30): rejected
        events.push(bid(2, 105, 1, 15)); // another auction
        let r = rows("q19", events);
        let summary: Vec<_> =
            r.iter().map(|r| format!("{} {}", kind(r), field(r, "bidder"))).collect();
        let mut expected: Vec<String> = (1..=9).map(|i| format!("Insert {i}")).collect();
        expected.extend(
            ["Insert 100", "Insert 102", "Delete 100", "Insert 103", "Delete 1", "Insert 105"]
                .map(String::from),
        );
        assert_eq!(summary, expected);
    }
}

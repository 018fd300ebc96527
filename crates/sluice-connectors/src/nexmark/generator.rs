//! The Nexmark generator: event `n` is a pure function of the seed and `n`,
//! following the reference generator's proportions, id ranges, hot-item
//! skew and sizes (see docs/NEXMARK.md). Every event draws from its own
//! small random generator seeded by its id, so any subtask can produce any
//! event without producing the ones before it.

use std::sync::LazyLock;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sluice_core::{Result, SluiceError};

use super::{Auction, Bid, Event, Person, Text};

const FIRST_PERSON_ID: u64 = 1000;
const FIRST_AUCTION_ID: u64 = 1000;
const FIRST_CATEGORY_ID: u64 = 10;
const NUM_CATEGORIES: u64 = 5;
/// How far past the last generated id a bid or auction may refer.
const PERSON_ID_LEAD: u64 = 10;
const AUCTION_ID_LEAD: u64 = 10;
/// Hot auctions, sellers and bidders are the most recent multiple of these.
const HOT_AUCTION_RATIO: u64 = 100;
const HOT_SELLER_RATIO: u64 = 100;
const HOT_BIDDER_RATIO: u64 = 100;
const CHANNELS: usize = 10_000;
const HOT_CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];
const FIRST_NAMES: [&str; 11] = [
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter",
];
const LAST_NAMES: [&str; 9] =
    ["Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris"];
const US_STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];
const US_CITIES: [&str; 10] = [
    "Phoenix",
    "Los Angeles",
    "San Francisco",
    "Boise",
    "Portland",
    "Bend",
    "Redmond",
    "Seattle",
    "Kent",
    "Cheyenne",
];
/// 2015-07-15 00:00:00 UTC.
const DEFAULT_BASE_TIME: i64 = 1_436_918_400_000;

/// What the generator produces; the defaults are the reference generator's.
#[derive(Clone, Debug, PartialEq)]
pub struct GeneratorConfig {
    /// Seed: the same seed gives the same events.
    pub seed: u64,
    /// Event time of event 0, ms since the epoch.
    pub base_time: i64,
    /// Events per second of event time (the generator itself runs as fast as it can).
    pub event_rate: u64,
    /// Persons per block of `person + auction + bid` proportions.
    pub person_proportion: u64,
    /// Auctions per block.
    pub auction_proportion: u64,
    /// Bids per block.
    pub bid_proportion: u64,
    /// Events are shuffled within groups of this many (1: in order).
    pub out_of_order_group_size: u64,
    /// People who bid and sell at any time.
    pub num_active_people: u64,
    /// Auctions open at any time.
    pub num_in_flight_auctions: u64,
    /// One in this many bids goes to a cold auction.
    pub hot_auction_ratio: u32,
    /// One in this many auctions has a cold seller.
    pub hot_sellers_ratio: u32,
    /// One in this many bids has a cold bidder.
    pub hot_bidders_ratio: u32,
    /// Distinct cold bid channels, at most 10000 (besides the four hot ones).
    pub num_channels: usize,
    /// Average size of a person in bytes.
    pub avg_person_bytes: usize,
    /// Average size of an auction in bytes.
    pub avg_auction_bytes: usize,
    /// Average size of a bid in bytes.
    pub avg_bid_bytes: usize,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            base_time: DEFAULT_BASE_TIME,
            event_rate: 10_000,
            person_proportion: 1,
            auction_proportion: 3,
            bid_proportion: 46,
            out_of_order_group_size: 1,
            num_active_people: 1000,
            num_in_flight_auctions: 100,
            hot_auction_ratio: 2,
            hot_sellers_ratio: 4,
            hot_bidders_ratio: 4,
            num_channels: CHANNELS,
            avg_person_bytes: 200,
            avg_auction_bytes: 500,
            avg_bid_bytes: 100,
        }
    }
}

impl GeneratorConfig {
    /// Refuses settings the generator cannot honour, naming the setting.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("event_rate", self.event_rate),
            ("person_proportion", self.person_proportion),
            ("auction_proportion", self.auction_proportion),
            ("bid_proportion", self.bid_proportion),
            ("out_of_order_group_size", self.out_of_order_group_size),
            ("num_active_people", self.num_active_people),
            ("num_in_flight_auctions", self.num_in_flight_auctions),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(SluiceError::Config(format!("nexmark {name} must be at least 1")));
            }
        }
        let ratios = [
            ("hot_auction_ratio", self.hot_auction_ratio),
            ("hot_sellers_ratio", self.hot_sellers_ratio),
            ("hot_bidders_ratio", self.hot_bidders_ratio),
        ];
        for (name, value) in ratios {
            if value == 0 {
                return Err(SluiceError::Config(format!("nexmark {name} must be at least 1")));
            }
        }
        if self.num_channels == 0 || self.num_channels > CHANNELS {
            return Err(SluiceError::Config(format!(
                "nexmark num_channels {} must be between 1 and {CHANNELS}",
                self.num_channels
            )));
        }
        if self.out_of_order_group_size.is_multiple_of(953) {
            return Err(SluiceError::Config(format!(
                "nexmark out_of_order_group_size {} must not be a multiple of 953",
                self.out_of_order_group_size
            )));
        }
        Ok(())
    }

    fn total_proportion(&self) -> u64 {
        self.person_proportion + self.auction_proportion + self.bid_proportion
    }

    /// Event time of event `id`, ms since the epoch.
    #[inline]
    pub fn timestamp(&self, id: u64) -> i64 {
        let ms = match id.checked_mul(1000) {
            Some(scaled) => scaled / self.event_rate,
            None => (u128::from(id) * 1000 / u128::from(self.event_rate)) as u64,
        };
        self.base_time + ms as i64
    }

    /// How far event time can run ahead of the emission order: the span of
    /// one out-of-order group. Watermarks may lag by this much.
    pub fn out_of_orderness(&self) -> Duration {
        let group = self.out_of_order_group_size;
        if group <= 1 {
            Duration::ZERO
        } else {
            Duration::from_millis(self.timestamp(group) as u64 - self.base_time as u64 + 1)
        }
    }

    /// The id of the event emitted at position `n` of `total` (`None`: no end):
    /// positions are shuffled within out-of-order groups.
    #[inline]
    pub fn event_id_at(&self, n: u64, total: Option<u64>) -> u64 {
        let group = self.out_of_order_group_size;
        if group <= 1 {
            return n;
        }
        let base = n / group * group;
        // The last group of a bounded run may be short: shuffle within what exists.
        let size = total.map_or(group, |t| group.min(t - base));
        base + n * 953 % size
    }

    /// The event at position `n` of `total`.
    #[inline]
    pub fn event_at(&self, n: u64, total: Option<u64>) -> Event {
        self.event(self.event_id_at(n, total))
    }

    /// Event `id`.
    pub fn event(&self, id: u64) -> Event {
        let mut rng = SmallRng::seed_from_u64(self.seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let timestamp = self.timestamp(id);
        // One division per event: the id's block and place in it.
        let block =
            Block { epoch: id / self.total_proportion(), offset: id % self.total_proportion() };
        if block.offset < self.person_proportion {
            Event::Person(Box::new(self.person(block, &mut rng, timestamp)))
        } else if block.offset < self.person_proportion + self.auction_proportion {
            Event::Auction(Box::new(self.auction(id, block, &mut rng, timestamp)))
        } else {
            Event::Bid(self.bid(block, &mut rng, timestamp))
        }
    }

    /// Persons generated up to and including the event at `block`, minus one.
    fn last_base0_person_id(&self, block: Block) -> u64 {
        block.epoch * self.person_proportion + block.offset.min(self.person_proportion - 1)
    }

    /// Auctions generated up to and including the event at `block`, minus one (saturating).
    fn last_base0_auction_id(&self, block: Block) -> u64 {
        let Block { mut epoch, mut offset } = block;
        if offset < self.person_proportion {
            // Before this block's first auction: the last one of the previous block.
            if epoch == 0 {
                return 0;
            }
            epoch -= 1;
            offset = self.auction_proportion - 1;
        } else if offset >= self.person_proportion + self.auction_proportion {
            offset = self.auction_proportion - 1;
        } else {
            offset -= self.person_proportion;
        }
        epoch * self.auction_proportion + offset
    }

    /// An active person, possibly one a little ahead of the last generated.
    fn next_base0_person_id(&self, block: Block, rng: &mut SmallRng) -> u64 {
        let people = self.last_base0_person_id(block) + 1;
        let active = people.min(self.num_active_people);
        people - active + rng.random_range(0..active + PERSON_ID_LEAD)
    }

    /// An auction in flight, possibly one a little ahead of the last generated.
    fn next_base0_auction_id(&self, block: Block, rng: &mut SmallRng) -> u64 {
        let max = self.last_base0_auction_id(block);
        let min = max.saturating_sub(self.num_in_flight_auctions);
        min + rng.random_range(0..max - min + 1 + AUCTION_ID_LEAD)
    }

    fn person(&self, block: Block, rng: &mut SmallRng, timestamp: i64) -> Person {
        let name = Text::Borrowed(&PERSON_NAMES[rng.random_range(0..PERSON_NAMES.len())]);
        let email_address =
            Text::Owned(format!("{}@{}.com", next_string(rng, 7), next_string(rng, 5)));
        let credit_card = Text::Owned(format!(
            "{:04} {:04} {:04} {:04}",
            rng.random_range(0..10_000),
            rng.random_range(0..10_000),
            rng.random_range(0..10_000),
            rng.random_range(0..10_000)
        ));
        let city = Text::Borrowed(US_CITIES[rng.random_range(0..US_CITIES.len())]);
        let state = Text::Borrowed(US_STATES[rng.random_range(0..US_STATES.len())]);
        let size = 8 + name.len() + email_address.len() + credit_card.len() + city.len() + 2;
        let extra = next_extra(rng, size, self.avg_person_bytes);
        Person {
            id: self.last_base0_person_id(block) + FIRST_PERSON_ID,
            name,
            email_address,
            credit_card,
            city,
            state,
            date_time: timestamp,
            extra,
        }
    }

    fn auction(&self, id: u64, block: Block, rng: &mut SmallRng, timestamp: i64) -> Auction {
        let seller = if rng.random_range(0..self.hot_sellers_ratio) > 0 {
            self.last_base0_person_id(block) / HOT_SELLER_RATIO * HOT_SELLER_RATIO
        } else {
            self.next_base0_person_id(block, rng)
        };
        let category = FIRST_CATEGORY_ID + rng.random_range(0..NUM_CATEGORIES);
        let initial_bid = next_price(rng);
        let expires = timestamp + self.next_auction_length_ms(id, rng, timestamp);
        let item_name = next_string(rng, 20);
        let description = next_string(rng, 100);
        let reserve = initial_bid + next_price(rng);
        let size = 8 + item_name.len() + description.len() + 8 + 8 + 8 + 8 + 8;
        let extra = next_extra(rng, size, self.avg_auction_bytes);
        Auction {
            id: self.last_base0_auction_id(block) + FIRST_AUCTION_ID,
            item_name,
            description,
            initial_bid,
            reserve,
            date_time: timestamp,
            expires,
            seller: seller + FIRST_PERSON_ID,
            category,
            extra,
        }
    }

    /// An auction lasts long enough for about `num_in_flight_auctions` to be open at once.
    fn next_auction_length_ms(&self, id: u64, rng: &mut SmallRng, timestamp: i64) -> i64 {
        let events_for_auctions =
            self.num_in_flight_auctions * self.total_proportion() / self.auction_proportion;
        let horizon = self.timestamp(id + events_for_auctions) - timestamp;
        1 + rng.random_range(0..(horizon * 2).max(1))
    }

    fn bid(&self, block: Block, rng: &mut SmallRng, timestamp: i64) -> Bid {
        let auction = if rng.random_range(0..self.hot_auction_ratio) > 0 {
            self.last_base0_auction_id(block) / HOT_AUCTION_RATIO * HOT_AUCTION_RATIO
        } else {
            self.next_base0_auction_id(block, rng)
        };
        let bidder = if rng.random_range(0..self.hot_bidders_ratio) > 0 {
            self.last_base0_person_id(block) / HOT_BIDDER_RATIO * HOT_BIDDER_RATIO + 1
        } else {
            self.next_base0_person_id(block, rng)
        };
        let price = next_price(rng);
        let (channel, url) = if rng.random_bool(0.5) {
            let i = rng.random_range(0..HOT_CHANNELS.len());
            (HOT_CHANNELS[i], CHANNEL_CACHE.hot_urls[i].as_str())
        } else {
            let (channel, url) = &CHANNEL_CACHE.channels[rng.random_range(0..self.num_channels)];
            (channel.as_str(), url.as_str())
        };
        let extra = next_extra(rng, 32, self.avg_bid_bytes);
        Bid {
            auction: auction + FIRST_AUCTION_ID,
            bidder: bidder + FIRST_PERSON_ID,
            price,
            channel: Text::Borrowed(channel),
            url: Text::Borrowed(url),
            date_time: timestamp,
            extra,
        }
    }
}

/// Where an event falls: its block of `total_proportion` events and its place in it.
#[derive(Clone, Copy)]
struct Block {
    epoch: u64,
    offset: u64,
}

/// A price in cents, log-uniform between $1 and $1,000,000.
#[inline]
fn next_price(rng: &mut SmallRng) -> u64 {
    ((rng.random::<f64>() * 6.0 * std::f64::consts::LOG2_10).exp2() * 100.0 + 0.5) as u64
}

/// Random lowercase text with spaces, copied from a fixed pool rather than
/// drawn letter by letter: the generator must outrun the queries.
static TEXT_POOL: LazyLock<String> = LazyLock::new(|| {
    let mut rng = SmallRng::seed_from_u64(0x006e_6578_6d61_726b);
    (0..1 << 16)
        .map(|_| if rng.random_range(0..13) == 0 { ' ' } else { rng.random_range('a'..='z') })
        .collect()
});

/// Every "first last" name.
static PERSON_NAMES: LazyLock<Vec<String>> = LazyLock::new(|| {
    FIRST_NAMES.iter().flat_map(|f| LAST_NAMES.iter().map(move |l| format!("{f} {l}"))).collect()
});

/// Text of exactly `len` bytes.
#[inline]
fn next_exact_string(rng: &mut SmallRng, len: usize) -> Text {
    let start = rng.random_range(0..TEXT_POOL.len() - len);
    Text::Borrowed(&TEXT_POOL[start..start + len])
}

/// Text of 3 to `max_len - 1` bytes.
fn next_string(rng: &mut SmallRng, max_len: usize) -> Text {
    let len = 3 + rng.random_range(0..max_len - 3);
    next_exact_string(rng, len)
}

/// Padding that brings an event of `current` bytes to about `average` (± 20%).
#[inline]
fn next_extra(rng: &mut SmallRng, current: usize, average: usize) -> Text {
    if current >= average {
        return Text::Borrowed("");
    }
    let wanted = average - current;
    let delta = (wanted * 2 + 5) / 10; // 20%, rounded
    let len = wanted - delta + if delta == 0 { 0 } else { rng.random_range(0..2 * delta) };
    next_exact_string(rng, len)
}

/// The bid channels and their urls, drawn once, as the reference generator caches them.
struct ChannelCache {
    hot_urls: Vec<String>,
    channels: Vec<(String, String)>,
}

static CHANNEL_CACHE: LazyLock<ChannelCache> = LazyLock::new(|| {
    let mut rng = SmallRng::seed_from_u64(0x0063_6861_6e6e_656c);
    let base_url = |rng: &mut SmallRng| {
        format!(
            "https://www.nexmark.com/{}/{}/{}/item.htm?query=1",
            next_string(rng, 5).replace(' ', "_"),
            next_string(rng, 5).replace(' ', "_"),
            next_string(rng, 5).replace(' ', "_")
        )
    };
    let hot_urls = HOT_CHANNELS.iter().map(|_| base_url(&mut rng)).collect();
    let channels = (0..CHANNELS)
        .map(|k| {
            let mut url = base_url(&mut rng);
            if rng.random_range(0..10) > 0 {
                url.push_str(&format!("&channel_id={}", (k as i32).reverse_bits().unsigned_abs()));
            }
            (format!("channel-{k}"), url)
        })
        .collect();
    ChannelCache { hot_urls, channels }
});

#[cfg(test)]
mod tests {
    use super::*;

    fn events(config: &GeneratorConfig, n: u64) -> Vec<Event> {
        (0..n).map(|i| config.event_at(i, Some(n))).collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_events_and_another_seed_others() {
        let config = GeneratorConfig::default();
        assert_eq!(events(&config, 500), events(&config, 500));
        let other = GeneratorConfig { seed: 7, ..GeneratorConfig::default() };
        assert_ne!(events(&config, 500), events(&other, 500));
    }

    #[test]
    fn blocks_of_fifty_hold_one_person_three_auctions_and_46_bids() {
        let config = GeneratorConfig::default();
        let all = events(&config, 5000);
        let persons = all.iter().filter(|e| matches!(e, Event::Person(_))).count();
        let auctions = all.iter().filter(|e| matches!(e, Event::Auction(_))).count();
        assert_eq!((persons, auctions, all.len() - persons - auctions), (100, 300, 4600));
        assert!(matches!(all[0], Event::Person(_)) && matches!(all[1], Event::Auction(_)));
    }

    #[test]
    fn event_time_is_base_time_plus_the_event_number_at_the_event_rate() {
        let config = GeneratorConfig { event_rate: 1000, ..GeneratorConfig::default() };
        for (i, e) in events(&config, 100).iter().enumerate() {
            assert_eq!(e.date_time(), DEFAULT_BASE_TIME + i as i64);
        }
    }

    #[test]
    fn ids_start_at_1000_and_persons_and_auctions_are_numbered_in_order() {
        let config = GeneratorConfig::default();
        let all = events(&config, 10_000);
        let persons: Vec<u64> =
            all.iter().filter_map(|e| e.clone().into_person()).map(|p| p.id).collect();
        let auctions: Vec<u64> =
            all.iter().filter_map(|e| e.clone().into_auction()).map(|a| a.id).collect();
        assert_eq!(persons, (1000..1200).collect::<Vec<_>>());
        assert_eq!(auctions, (1000..1600).collect::<Vec<_>>());
        for bid in all.into_iter().filter_map(Event::into_bid) {
            assert!((1000..1610).contains(&bid.auction), "{}", bid.auction);
            assert!((1000..1210).contains(&bid.bidder), "{}", bid.bidder);
        }
    }

    #[test]
    fn half_the_bids_go_to_the_hot_auction() {
        let config = GeneratorConfig::default();
        let bids: Vec<Bid> =
            events(&config, 100_000).into_iter().filter_map(Event::into_bid).collect();
        let hot =
            bids.iter().filter(|b| (b.auction - FIRST_AUCTION_ID).is_multiple_of(100)).count();
        let share = hot as f64 / bids.len() as f64;
        // 1/2 hot, plus the cold bids that land on a multiple of 100 by chance.
        assert!((0.49..0.53).contains(&share), "{share}");
    }

    /// Distinct auctions, bidders and channels among the bids of the last
    /// 20,000 of `n` events (the keys in flight), and the top auction's share.
    fn bid_shape(config: &GeneratorConfig, n: u64) -> (usize, usize, usize, f64) {
        let all = events(config, n);
        let bids: Vec<Bid> =
            all.into_iter().skip(n as usize - 20_000).filter_map(Event::into_bid).collect();
        let mut per_auction: std::collections::HashMap<u64, usize> =
            std::collections::HashMap::new();
        for b in &bids {
            *per_auction.entry(b.auction).or_default() += 1;
        }
        let bidders: std::collections::HashSet<u64> = bids.iter().map(|b| b.bidder).collect();
        let channels: std::collections::HashSet<&str> = bids.iter().map(|b| &*b.channel).collect();
        let top = per_auction.values().max().copied().unwrap_or(0) as f64 / bids.len() as f64;
        (per_auction.len(), bidders.len(), channels.len(), top)
    }

    #[test]
    fn the_shape_options_set_the_keys_in_flight_the_hot_set_and_the_channels() {
        let n = 200_000;
        let (auctions, bidders, channels, top) = bid_shape(&GeneratorConfig::default(), n);
        let wide = GeneratorConfig {
            num_in_flight_auctions: 10_000,
            num_active_people: 100_000,
            ..GeneratorConfig::default()
        };
        let (w_auctions, w_bidders, ..) = bid_shape(&wide, n);
        assert!(w_auctions > 3 * auctions, "{w_auctions} vs {auctions} auctions");
        // Bounded by the 4,000 people created so far.
        assert!(w_bidders > 2 * bidders, "{w_bidders} vs {bidders} bidders");
        // No hot set: no auction stands out.
        let uniform = GeneratorConfig {
            hot_auction_ratio: 1,
            hot_bidders_ratio: 1,
            hot_sellers_ratio: 1,
            ..GeneratorConfig::default()
        };
        let (.., u_top) = bid_shape(&uniform, n);
        assert!(top > 10.0 * u_top, "top auction's share: {top} hot, {u_top} uniform");
        let few = GeneratorConfig { num_channels: 3, ..GeneratorConfig::default() };
        let (.., f_channels, _) = bid_shape(&few, n);
        assert_eq!(f_channels, 3 + HOT_CHANNELS.len());
        assert!(channels > 1000, "{channels}");
        let bad = GeneratorConfig { num_channels: 10_001, ..GeneratorConfig::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("num_channels 10001"));
    }

    #[test]
    fn average_sizes_follow_the_reference() {
        let config = GeneratorConfig::default();
        let mut sizes = [(0usize, 0usize); 3];
        for e in events(&config, 50_000) {
            let slot = match e {
                Event::Person(_) => 0,
                Event::Auction(_) => 1,
                Event::Bid(_) => 2,
            };
            sizes[slot].0 += e_size(&e);
            sizes[slot].1 += 1;
        }
        let avg: Vec<usize> = sizes.iter().map(|(total, n)| total / n).collect();
        assert!((180..=220).contains(&avg[0]), "person {avg:?}");
        assert!((450..=550).contains(&avg[1]), "auction {avg:?}");
        assert!((90..=200).contains(&avg[2]), "bid {avg:?}");
    }

    /// The reference generator's size measure: strings plus 8 bytes per number.
    fn e_size(e: &Event) -> usize {
        match e {
            Event::Person(p) => {
                8 + p.name.len()
                    + p.email_address.len()
                    + p.credit_card.len()
                    + p.city.len()
                    + p.state.len()
                    + 8
                    + p.extra.len()
            }
            Event::Auction(a) => {
                8 + a.item_name.len() + a.description.len() + 5 * 8 + a.extra.len()
            }
            Event::Bid(b) => 32 + b.channel.len() + b.url.len() + b.extra.len(),
        }
    }

    #[test]
    fn auctions_expire_after_they_open_and_within_twice_the_in_flight_horizon() {
        let config = GeneratorConfig::default();
        for a in events(&config, 20_000).into_iter().filter_map(Event::into_auction) {
            assert!(a.expires > a.date_time);
            assert!(a.expires - a.date_time <= 2 * 167 + 1, "{}", a.expires - a.date_time);
            assert!((10..15).contains(&a.category));
        }
    }

    #[test]
    fn out_of_order_groups_are_a_permutation_within_each_group() {
        let config = GeneratorConfig { out_of_order_group_size: 10, ..GeneratorConfig::default() };
        let ids: Vec<u64> = (0..25).map(|n| config.event_id_at(n, Some(25))).collect();
        assert_ne!(ids, (0..25).collect::<Vec<_>>());
        for (g, chunk) in ids.chunks(10).enumerate() {
            let mut sorted = chunk.to_vec();
            sorted.sort();
            let start = g as u64 * 10;
            assert_eq!(sorted, (start..start + chunk.len() as u64).collect::<Vec<_>>());
        }
        assert!(config.out_of_orderness() >= Duration::from_millis(1));
    }

    #[test]
    fn prices_are_log_uniform_between_one_and_a_million_dollars() {
        let mut rng = SmallRng::seed_from_u64(3);
        let prices: Vec<u64> = (0..60_000).map(|_| next_price(&mut rng)).collect();
        assert!(prices.iter().all(|p| (100..=100_000_000).contains(p)));
        // Each decade of the six holds about a sixth of the prices.
        for decade in 0..6 {
            let (low, high) = (100 * 10u64.pow(decade), 100 * 10u64.pow(decade + 1));
            let share = prices.iter().filter(|&&p| p >= low && p < high).count() as f64 / 60_000.0;
            assert!((0.15..0.18).contains(&share), "decade {decade}: {share}");
        }
    }

    #[test]
    fn bad_settings_are_refused_by_name() {
        let config = GeneratorConfig { event_rate: 0, ..GeneratorConfig::default() };
        assert!(config.validate().unwrap_err().to_string().contains("event_rate"));
        let config = GeneratorConfig { out_of_order_group_size: 953, ..GeneratorConfig::default() };
        assert!(config.validate().unwrap_err().to_string().contains("953"));
    }
}

//! Queries that look at one bid at a time: q0, q1, q2, q13, q14, q21, q22.

use std::fmt;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};
use sluice_api::DataStream;
use sluice_connectors::nexmark::datetime::hour_of_day;
use sluice_connectors::nexmark::Event;

use crate::{bids, Bid, Text};

/// Euros per dollar in q1 and q14.
const EUROS_PER_DOLLAR: f64 = 0.908;
/// Keys of q13's side input.
const SIDE_INPUT_KEYS: u64 = 10_000;

/// q0: every bid, unchanged: what the source and sink cost.
pub fn q0(events: &DataStream<Event>) -> DataStream<Bid> {
    bids(events)
}

/// A bid with its price in euros.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Q1Out {
    /// Auction id.
    pub auction: u64,
    /// Bidder id.
    pub bidder: u64,
    /// Price in euro cents.
    pub price: f64,
    /// Event time.
    pub date_time: i64,
    /// Padding.
    pub extra: Text,
}

/// q1: bid prices converted to euros.
pub fn q1(events: &DataStream<Event>) -> DataStream<Q1Out> {
    bids(events)
        .map(|b: Bid| Q1Out {
            auction: b.auction,
            bidder: b.bidder,
            price: b.price as f64 * EUROS_PER_DOLLAR,
            date_time: b.date_time,
            extra: b.extra,
        })
        .name("q1: to euros")
}

/// An auction and a price.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Q2Out {
    /// Auction id.
    pub auction: u64,
    /// Price.
    pub price: u64,
}

/// q2: the bids on every 123rd auction.
pub fn q2(events: &DataStream<Event>) -> DataStream<Q2Out> {
    events
        .flat_map(|e: Event| match e {
            Event::Bid(b) if b.auction % 123 == 0 => {
                Some(Q2Out { auction: b.auction, price: b.price })
            }
            _ => None,
        })
        .name("q2: auction % 123 == 0")
}

/// The value q13's side input holds for `key`.
pub fn side_input_value(key: u64) -> String {
    format!("nexmark-side-{key}")
}

/// A bid with the side input's value for its auction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Q13Out {
    /// Auction id.
    pub auction: u64,
    /// Bidder id.
    pub bidder: u64,
    /// Price.
    pub price: u64,
    /// Event time.
    pub date_time: i64,
    /// The side input's value for `auction % 10000`.
    pub value: Text,
}

/// q13: bids joined with a bounded side input held in memory by every
/// subtask (a lookup join).
pub fn q13(events: &DataStream<Event>) -> DataStream<Q13Out> {
    static SIDE_INPUT: LazyLock<Vec<String>> =
        LazyLock::new(|| (0..SIDE_INPUT_KEYS).map(side_input_value).collect());
    bids(events)
        .map(move |b: Bid| Q13Out {
            auction: b.auction,
            bidder: b.bidder,
            price: b.price,
            date_time: b.date_time,
            value: Text::Borrowed(&SIDE_INPUT[(b.auction % SIDE_INPUT_KEYS) as usize]),
        })
        .name("q13: side input lookup")
}

/// When in the day a bid was made (q14), written as Flink's query names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum BidTimeType {
    /// 08:00 to 18:59.
    DayTime,
    /// 20:00 to 06:59.
    NightTime,
    /// 07:00 to 07:59 and 19:00 to 19:59.
    OtherTime,
}

impl BidTimeType {
    /// The bucket of a bid at `date_time`.
    pub fn of(date_time: i64) -> Self {
        match hour_of_day(date_time) {
            8..=18 => BidTimeType::DayTime,
            0..=6 | 20.. => BidTimeType::NightTime,
            _ => BidTimeType::OtherTime,
        }
    }
}

impl fmt::Display for BidTimeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BidTimeType::DayTime => "dayTime",
            BidTimeType::NightTime => "nightTime",
            BidTimeType::OtherTime => "otherTime",
        })
    }
}

/// A mid-priced bid, bucketed by time of day.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Q14Out {
    /// Auction id.
    pub auction: u64,
    /// Bidder id.
    pub bidder: u64,
    /// Price in euro cents.
    pub price: f64,
    /// Time-of-day bucket.
    pub bid_time_type: BidTimeType,
    /// Event time.
    pub date_time: i64,
    /// Padding.
    pub extra: Text,
    /// How many `c` characters `extra` holds (the suite's user function).
    pub c_counts: usize,
}

/// q14: bids between 1M and 50M euro cents, with computed columns.
pub fn q14(events: &DataStream<Event>) -> DataStream<Q14Out> {
    events
        .flat_map(|e: Event| {
            let b = e.into_bid()?;
            let price = b.price as f64 * EUROS_PER_DOLLAR;
            (price > 1_000_000.0 && price < 50_000_000.0).then(|| Q14Out {
                auction: b.auction,
                bidder: b.bidder,
                price,
                bid_time_type: BidTimeType::of(b.date_time),
                date_time: b.date_time,
                c_counts: b.extra.bytes().filter(|&c| c == b'c').count(),
                extra: b.extra,
            })
        })
        .name("q14: calculation")
}

/// A bid with the channel id derived from its channel or url.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Q21Out {
    /// Auction id.
    pub auction: u64,
    /// Bidder id.
    pub bidder: u64,
    /// Price.
    pub price: u64,
    /// Channel.
    pub channel: Text,
    /// The channel id.
    pub channel_id: Text,
}

/// The id of a well-known channel, case-insensitively.
fn known_channel_id(channel: &str) -> Option<&'static str> {
    const KNOWN: [(&str, &str); 4] =
        [("apple", "0"), ("google", "1"), ("facebook", "2"), ("baidu", "3")];
    KNOWN.iter().find(|(name, _)| channel.eq_ignore_ascii_case(name)).map(|(_, id)| *id)
}

/// The parts `f` picks of `text`, borrowed where `text` is (no copy of generated text).
fn sub_texts<const N: usize>(
    text: &Text,
    f: impl for<'a> Fn(&'a str) -> [Option<&'a str>; N],
) -> [Option<Text>; N] {
    match text {
        Text::Borrowed(s) => f(s).map(|part| part.map(Text::Borrowed)),
        Text::Owned(s) => f(s).map(|part| part.map(|p| Text::Owned(p.to_string()))),
    }
}

/// `REGEXP_EXTRACT(url, '(&|^)channel_id=([^&]*)', 2)`: the value of the
/// first `channel_id` parameter at the start of `url` or after a `&`.
fn url_channel_id(url: &str) -> Option<&str> {
    const PARAM: &str = "channel_id=";
    let mut from = 0;
    while let Some(i) = url[from..].find(PARAM) {
        let at = from + i;
        if at == 0 || url.as_bytes()[at - 1] == b'&' {
            let value = &url[at + PARAM.len()..];
            return Some(value.split('&').next().unwrap_or(""));
        }
        from = at + 1;
    }
    None
}

/// q21: bids with a channel id from a known channel name or the url.
pub fn q21(events: &DataStream<Event>) -> DataStream<Q21Out> {
    events
        .flat_map(|e: Event| {
            let b = e.into_bid()?;
            let channel_id = known_channel_id(&b.channel).map(Text::Borrowed).or_else(|| {
                let [id] = sub_texts(&b.url, |url| [url_channel_id(url)]);
                id
            })?;
            Some(Q21Out {
                auction: b.auction,
                bidder: b.bidder,
                price: b.price,
                channel_id,
                channel: b.channel,
            })
        })
        .name("q21: channel id")
}

/// A bid with the first three directories of its url.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Q22Out {
    /// Auction id.
    pub auction: u64,
    /// Bidder id.
    pub bidder: u64,
    /// Price.
    pub price: u64,
    /// Channel.
    pub channel: Text,
    /// 4th part of the url split on `/`.
    pub dir1: Text,
    /// 5th part.
    pub dir2: Text,
    /// 6th part.
    pub dir3: Text,
}

/// q22: url directories (`SPLIT_INDEX(url, '/', 3..=5)`).
pub fn q22(events: &DataStream<Event>) -> DataStream<Q22Out> {
    bids(events)
        .map(|b: Bid| {
            // One pass over the url for all three parts.
            let [dir1, dir2, dir3] = sub_texts(&b.url, |url| {
                let mut parts = url.split('/').skip(3);
                [parts.next(), parts.next(), parts.next()]
            })
            .map(Option::unwrap_or_default);
            Q22Out {
                auction: b.auction,
                bidder: b.bidder,
                price: b.price,
                channel: b.channel,
                dir1,
                dir2,
                dir3,
            }
        })
        .name("q22: url directories")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_ids_come_from_known_names_then_from_the_url() {
        assert_eq!(known_channel_id("Google"), Some("1"));
        assert_eq!(known_channel_id("BAIDU"), Some("3"));
        assert_eq!(known_channel_id("channel-7"), None);
        assert_eq!(url_channel_id("https://x/item.htm?query=1&channel_id=42"), Some("42"));
        assert_eq!(url_channel_id("channel_id=7&x=1"), Some("7"));
        assert_eq!(url_channel_id("https://x/?query=1&channel_id="), Some(""));
        assert_eq!(url_channel_id("https://x/?xchannel_id=5"), None);
        assert_eq!(url_channel_id("https://x/?xchannel_id=5&channel_id=6"), Some("6"));
    }

    #[test]
    fn bid_time_types_follow_the_hour_of_day() {
        let at = |h: i64| h * 3_600_000;
        assert_eq!(BidTimeType::of(at(8)), BidTimeType::DayTime);
        assert_eq!(BidTimeType::of(at(18)), BidTimeType::DayTime);
        assert_eq!(BidTimeType::of(at(19)), BidTimeType::OtherTime);
        assert_eq!(BidTimeType::of(at(7)), BidTimeType::OtherTime);
        assert_eq!(BidTimeType::of(at(6)), BidTimeType::NightTime);
        assert_eq!(BidTimeType::of(at(20)), BidTimeType::NightTime);
    }
}

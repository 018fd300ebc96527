//! Nexmark events as read from the NDJSON file, and the timestamp helpers the queries need.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Serializer;
use serde::{Deserialize, Serialize};

/// Milliseconds in a UTC day.
pub const DAY_MS: i64 = 86_400_000;

/// A person registering to buy or sell.
// Strings borrow from the line unless they contain escapes; `Cow` keeps escaped text correct
// without paying an allocation for the common case.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Person<'a> {
    /// Person id.
    pub id: i64,
    /// Full name.
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    /// E-mail address.
    #[serde(borrow)]
    pub email_address: Cow<'a, str>,
    /// Credit card number.
    #[serde(borrow)]
    pub credit_card: Cow<'a, str>,
    /// City.
    #[serde(borrow)]
    pub city: Cow<'a, str>,
    /// US state code.
    #[serde(borrow)]
    pub state: Cow<'a, str>,
    /// Event time, epoch milliseconds.
    #[serde(deserialize_with = "de_timestamp", serialize_with = "ser_timestamp")]
    pub date_time: i64,
    /// Padding.
    #[serde(borrow)]
    pub extra: Cow<'a, str>,
}

/// An auction opened by a seller.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Auction<'a> {
    /// Auction id.
    pub id: i64,
    /// Item name.
    #[serde(borrow)]
    pub item_name: Cow<'a, str>,
    /// Item description.
    #[serde(borrow)]
    pub description: Cow<'a, str>,
    /// Starting price.
    pub initial_bid: i64,
    /// Reserve price.
    pub reserve: i64,
    /// Event time, epoch milliseconds.
    #[serde(deserialize_with = "de_timestamp", serialize_with = "ser_timestamp")]
    pub date_time: i64,
    /// Closing time, epoch milliseconds.
    #[serde(deserialize_with = "de_timestamp", serialize_with = "ser_timestamp")]
    pub expires: i64,
    /// Person id of the seller.
    pub seller: i64,
    /// Category, 10..=14.
    pub category: i64,
    /// Padding.
    #[serde(borrow)]
    pub extra: Cow<'a, str>,
}

/// A bid on an auction.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bid<'a> {
    /// Auction id.
    pub auction: i64,
    /// Person id of the bidder.
    pub bidder: i64,
    /// Price.
    pub price: i64,
    /// Channel the bid came through.
    #[serde(borrow)]
    pub channel: Cow<'a, str>,
    /// Item URL.
    #[serde(borrow)]
    pub url: Cow<'a, str>,
    /// Event time, epoch milliseconds.
    #[serde(deserialize_with = "de_timestamp", serialize_with = "ser_timestamp")]
    pub date_time: i64,
    /// Padding.
    #[serde(borrow)]
    pub extra: Cow<'a, str>,
}

/// One line of the file.
#[derive(Debug, Clone, PartialEq)]
pub enum Event<'a> {
    /// `event_type` 0.
    Person(Person<'a>),
    /// `event_type` 1.
    Auction(Auction<'a>),
    /// `event_type` 2.
    Bid(Bid<'a>),
}

impl Event<'_> {
    /// The event's `dateTime`, which is its event time.
    pub fn timestamp(&self) -> i64 {
        match self {
            Event::Person(p) => p.date_time,
            Event::Auction(a) => a.date_time,
            Event::Bid(b) => b.date_time,
        }
    }
}

/// Parses one NDJSON line.
pub fn parse_line(line: &str) -> anyhow::Result<Event<'_>> {
    // `from_str`, not `from_slice`: the caller has checked UTF-8 for a whole chunk at once.
    Ok(serde_json::from_str(line)?)
}

// A hand-written visitor builds the event in place: deserializing into a struct of three
// optional objects first costs copies of that large struct on every line.
impl<'de: 'a, 'a> Deserialize<'de> for Event<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(field_identifier, rename_all = "snake_case")]
        enum Key {
            EventType,
            Person,
            Auction,
            Bid,
            #[serde(other)]
            Other,
        }

        struct LineVisitor<'a>(PhantomData<Event<'a>>);

        impl<'de: 'a, 'a> Visitor<'de> for LineVisitor<'a> {
            type Value = Event<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object with event_type and a person, auction or bid")
            }

            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Event<'a>, M::Error> {
                let mut event_type: Option<u8> = None;
                let mut event: Option<Event<'a>> = None;
                while let Some(key) = map.next_key()? {
                    let object = match key {
                        Key::EventType => {
                            event_type = Some(map.next_value()?);
                            None
                        }
                        Key::Person => map.next_value::<Option<Person>>()?.map(Event::Person),
                        Key::Auction => map.next_value::<Option<Auction>>()?.map(Event::Auction),
                        Key::Bid => map.next_value::<Option<Bid>>()?.map(Event::Bid),
                        Key::Other => {
                            map.next_value::<IgnoredAny>()?;
                            None
                        }
                    };
                    if object.is_some() && event.replace(object.unwrap()).is_some() {
                        return Err(de::Error::custom("more than one of person, auction, bid"));
                    }
                }
                match (event_type, event) {
                    (Some(0), Some(e @ Event::Person(_)))
                    | (Some(1), Some(e @ Event::Auction(_)))
                    | (Some(2), Some(e @ Event::Bid(_))) => Ok(e),
                    (Some(t), _) => Err(de::Error::custom(format!(
                        "event_type {t} needs exactly its object (0 person, 1 auction, 2 bid)"
                    ))),
                    (None, _) => Err(de::Error::missing_field("event_type")),
                }
            }
        }

        d.deserialize_map(LineVisitor(PhantomData))
    }
}

/// Something that hands its events, in order, to a callback: the file reader, or a test's list.
pub trait Events {
    /// Calls `f` on every event in order; returns the number of events.
    fn for_each_event(self, f: impl FnMut(Event<'_>)) -> anyhow::Result<u64>;
}

impl<'a> Events for Vec<Event<'a>> {
    fn for_each_event(self, mut f: impl FnMut(Event<'_>)) -> anyhow::Result<u64> {
        let n = self.len() as u64;
        self.into_iter().for_each(&mut f);
        Ok(n)
    }
}

/// The watermark of Flink's bounded out-of-orderness strategy with a 4 s bound.
#[derive(Debug, Clone, Copy)]
pub struct Watermark(pub i64);

impl Default for Watermark {
    fn default() -> Self {
        Watermark(i64::MIN)
    }
}

impl Watermark {
    /// Bound on out-of-orderness that Flink's Nexmark tables declare.
    pub const DELAY_MS: i64 = 4_000;

    /// Advances the watermark past an event with time `t` (it never goes back).
    #[inline]
    pub fn observe(&mut self, t: i64) -> i64 {
        self.0 = self.0.max(t - Self::DELAY_MS - 1);
        self.0
    }
}

fn de_timestamp<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    struct TimestampVisitor;
    impl Visitor<'_> for TimestampVisitor {
        type Value = i64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a timestamp yyyy-MM-dd HH:mm:ss.SSS")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<i64, E> {
            parse_timestamp(s).ok_or_else(|| E::custom(format!("bad timestamp {s:?}")))
        }
    }
    d.deserialize_str(TimestampVisitor)
}

/// Parses `yyyy-MM-dd HH:mm:ss.SSS` (UTC) to epoch milliseconds; `None` if malformed.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 23 || b[4] != b'-' || b[7] != b'-' || b[10] != b' ' {
        return None;
    }
    if b[13] != b':' || b[16] != b':' || b[19] != b'.' {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        b[from..to]
            .iter()
            .try_fold(0i64, |acc, &c| c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0')))
    };
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second, milli) = (num(11, 13)?, num(14, 16)?, num(17, 19)?, num(20, 23)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + milli)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `(year, month, day)` of a day number since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Writes epoch milliseconds as the file has them, `yyyy-MM-dd HH:mm:ss.SSS` (UTC).
fn ser_timestamp<S: Serializer>(t: &i64, s: S) -> Result<S::Ok, S::Error> {
    let ms = t.rem_euclid(DAY_MS);
    let (h, m, sec, milli) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    s.collect_str(&format_args!("{} {h:02}:{m:02}:{sec:02}.{milli:03}", format_day(*t)))
}

/// `yyyy-MM-dd` of the UTC day containing epoch millisecond `t`.
pub fn format_day(t: i64) -> String {
    let (y, m, d) = civil_from_days(t.div_euclid(DAY_MS));
    format!("{y:04}-{m:02}-{d:02}")
}

/// UTC hour of the day of epoch millisecond `t`.
pub fn hour_of(t: i64) -> i64 {
    t.rem_euclid(DAY_MS) / 3_600_000
}

/// `HH:mm` of epoch millisecond `t` in UTC.
pub fn format_hh_mm(t: i64) -> String {
    let minutes = t.rem_euclid(DAY_MS) / 60_000;
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_timestamps_to_epoch_millis() {
        assert_eq!(parse_timestamp("1970-01-01 00:00:00.000"), Some(0));
        assert_eq!(parse_timestamp("2015-07-15 00:00:00.000"), Some(1_436_918_400_000));
        assert_eq!(parse_timestamp("2015-07-15 00:00:01.132"), Some(1_436_918_401_132));
        assert_eq!(parse_timestamp("2000-02-29 23:59:59.999"), Some(951_868_799_999));
        assert_eq!(parse_timestamp("1969-12-31 23:59:59.999"), Some(-1));
        assert_eq!(parse_timestamp("2024-12-31 12:34:56.789"), Some(1_735_648_496_789));
    }

    #[test]
    fn rejects_malformed_timestamps() {
        for bad in [
            "",
            "2015-07-15",
            "2015-07-15T00:00:00.000",
            "2015-07-15 00:00:00.00",
            "2015-07-15 00:00:00.0000",
            "2015-13-15 00:00:00.000",
            "2015-07-15 24:00:00.000",
            "2015-07-1a 00:00:00.000",
            "+015-07-15 00:00:00.000",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn civil_dates_round_trip() {
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn formats_day_hour_and_minute() {
        let t = parse_timestamp("2015-07-15 19:05:42.001").unwrap();
        assert_eq!(format_day(t), "2015-07-15");
        assert_eq!(hour_of(t), 19);
        assert_eq!(format_hh_mm(t), "19:05");
        assert_eq!(format_day(-1), "1969-12-31");
        let mut json = serde_json::Serializer::new(Vec::new());
        ser_timestamp(&t, &mut json).unwrap();
        assert_eq!(json.into_inner(), b"\"2015-07-15 19:05:42.001\"");
        assert_eq!(format_hh_mm(-1), "23:59");
    }

    #[test]
    fn parses_the_documented_lines() {
        let bid = r#"{"event_type":2,"bid":{"auction":1000,"bidder":1001,"price":2130,"channel":"Google","url":"https://www.nexmark.com/fj/qf/xu/item.htm?query=1","dateTime":"2015-07-15 00:00:00.000","extra":"a\"b"}}"#;
        let Event::Bid(b) = parse_line(bid).unwrap() else { panic!("not a bid") };
        assert_eq!((b.auction, b.bidder, b.price), (1000, 1001, 2130));
        assert!(matches!(b.channel, Cow::Borrowed("Google")));
        assert_eq!(b.extra, "a\"b");
        assert_eq!(b.date_time, 1_436_918_400_000);
        let auction = r#"{"event_type":1,"auction":{"id":1000,"itemName":"i","description":"d","initialBid":1250,"reserve":2788,"dateTime":"2015-07-15 00:00:00.000","expires":"2015-07-15 00:00:01.132","seller":1000,"category":11,"extra":""}}"#;
        let Event::Auction(a) = parse_line(auction).unwrap() else { panic!("not an auction") };
        assert_eq!(a.expires - a.date_time, 1132);
        let person = r#"{"person":{"id":1000,"name":"Peter Jones","emailAddress":"e","creditCard":"c","city":"Phoenix","state":"OR","dateTime":"2015-07-15 00:00:00.000","extra":""},"event_type":0}"#;
        let Event::Person(p) = parse_line(person).unwrap() else { panic!("not a person") };
        assert_eq!((p.id, &*p.state), (1000, "OR"));
        assert!(parse_line(r#"{"event_type":2,"person":null}"#).is_err());
        assert!(parse_line(r#"{"event_type":1,"bid":null,"x":[1],"auction":{}}"#).is_err());
        let object = &bid[bid.find(":{").unwrap() + 1..bid.len() - 1];
        assert!(parse_line(&format!(r#"{{"event_type":2,"bid":{object}}}"#)).is_ok());
        let two = format!(r#"{{"event_type":2,"bid":{object},"bid":{object}}}"#);
        assert!(parse_line(&two).is_err());
        let mut other = bid.replace(r#""event_type":2,"#, r#""x":{"y":[null]},"#);
        assert!(parse_line(&other).is_err(), "no event_type");
        other.insert_str(other.len() - 1, r#","event_type":2"#);
        assert!(matches!(parse_line(&other).unwrap(), Event::Bid(_)), "{other}");
    }
}

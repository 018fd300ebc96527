//! The NDJSON file format of Nexmark events: one event per line,
//! `{"event_type":0|1|2,"person"|"auction"|"bid":{…}}`, with the reference
//! implementation's field names and timestamps as Flink SQL writes them.

use std::io::Write;

use serde::{Deserialize, Serialize};

use super::{Auction, Bid, Event, Person};

/// Serde for event-time fields: a `yyyy-MM-dd HH:mm:ss.SSS` string in
/// human-readable formats (JSON), plain milliseconds in binary ones (state
/// and checkpoints).
pub mod timestamp {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    use super::super::datetime::{format_timestamp, parse_timestamp};

    /// Writes epoch milliseconds.
    pub fn serialize<S: Serializer>(ms: &i64, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&format_timestamp(*ms))
        } else {
            serializer.serialize_i64(*ms)
        }
    }

    /// Reads epoch milliseconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
        if deserializer.is_human_readable() {
            let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
            parse_timestamp(&text).map_err(D::Error::custom)
        } else {
            i64::deserialize(deserializer)
        }
    }
}

#[derive(Serialize)]
struct EventRef<'a> {
    event_type: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    person: Option<&'a Person>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auction: Option<&'a Auction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bid: Option<&'a Bid>,
}

/// One line of the file as JSON gives it, before its type and object are
/// checked ([`event`]); public so that other JSON parsers can be tried on it.
#[derive(Debug, Deserialize)]
pub struct EventLine {
    event_type: u8,
    person: Option<Person>,
    auction: Option<Auction>,
    bid: Option<Bid>,
}

/// Writes `event` as one JSON line.
pub fn write_event(event: &Event, out: &mut impl Write) -> std::io::Result<()> {
    let line = match event {
        Event::Person(p) => EventRef { event_type: 0, person: Some(p), auction: None, bid: None },
        Event::Auction(a) => EventRef { event_type: 1, person: None, auction: Some(a), bid: None },
        Event::Bid(b) => EventRef { event_type: 2, person: None, auction: None, bid: Some(b) },
    };
    serde_json::to_writer(&mut *out, &line)?;
    out.write_all(b"\n")
}

/// Parses one line; the error says what is wrong with it.
pub fn parse_event(line: &str) -> Result<Event, String> {
    event(serde_json::from_str(line).map_err(|e| e.to_string())?)
}

/// The event a parsed line holds, if its type and object agree.
pub fn event(line: EventLine) -> Result<Event, String> {
    let EventLine { event_type, person, auction, bid } = line;
    match (event_type, person, auction, bid) {
        (0, Some(p), None, None) => Ok(Event::Person(Box::new(p))),
        (1, None, Some(a), None) => Ok(Event::Auction(Box::new(a))),
        (2, None, None, Some(b)) => Ok(Event::Bid(b)),
        (0..=2, ..) => Err(format!(
            "event_type {event_type} needs exactly the \"{}\" object",
            ["person", "auction", "bid"][event_type as usize]
        )),
        _ => Err(format!("unknown event_type {event_type} (0 person, 1 auction, 2 bid)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bid() -> Bid {
        Bid {
            auction: 1000,
            bidder: 1001,
            price: 2130,
            channel: "Google".into(),
            url: "https://www.nexmark.com/a/b/c/item.htm?query=1".into(),
            date_time: 1_436_918_400_001,
            extra: "".into(),
        }
    }

    #[test]
    fn a_bid_is_written_with_the_reference_field_names() {
        let mut out = Vec::new();
        write_event(&Event::Bid(bid()), &mut out).unwrap();
        let line = String::from_utf8(out).unwrap();
        assert_eq!(
            line,
            "{\"event_type\":2,\"bid\":{\"auction\":1000,\"bidder\":1001,\"price\":2130,\
             \"channel\":\"Google\",\"url\":\"https://www.nexmark.com/a/b/c/item.htm?query=1\",\
             \"dateTime\":\"2015-07-15 00:00:00.001\",\"extra\":\"\"}}\n"
        );
        assert_eq!(parse_event(line.trim_end()), Ok(Event::Bid(bid())));
    }

    #[test]
    fn binary_formats_keep_timestamps_as_numbers() {
        let bytes = postcard::to_allocvec(&bid()).unwrap();
        assert!(bytes.len() < 80, "{} bytes", bytes.len());
        assert_eq!(postcard::from_bytes::<Bid>(&bytes).unwrap(), bid());
    }

    #[test]
    fn a_line_whose_type_and_object_disagree_is_refused() {
        let mut line = Vec::new();
        write_event(&Event::Bid(bid()), &mut line).unwrap();
        let line = String::from_utf8(line).unwrap().replace("\"event_type\":2", "\"event_type\":0");
        let err = parse_event(&line).unwrap_err();
        assert!(err.contains("person"), "{err}");
        let err = parse_event(r#"{"event_type":7}"#).unwrap_err();
        assert!(err.contains("unknown event_type 7"), "{err}");
    }

    #[test]
    fn a_malformed_timestamp_is_named_in_the_error() {
        let line = r#"{"event_type":2,"bid":{"auction":1,"bidder":2,"price":3,"channel":"c","url":"u","dateTime":"yesterday","extra":""}}"#;
        let err = parse_event(line).unwrap_err();
        assert!(err.contains("yesterday"), "{err}");
    }
}

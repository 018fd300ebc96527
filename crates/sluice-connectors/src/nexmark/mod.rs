//! Nexmark: the auction-site event model, its deterministic generator (a
//! built-in source), and the NDJSON file format other engines read.
//! `docs/NEXMARK.md` describes the events, the file format and the queries.

pub mod datetime;
mod generator;
pub mod json;
mod source;

pub use generator::GeneratorConfig;
pub use source::{NexmarkSource, NexmarkSplit};

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::FileSource;

/// Reads Nexmark events from NDJSON files in the format of [`json`]; a
/// malformed line fails the job with its file, line number and reason.
pub fn file_source(path: impl Into<PathBuf>) -> FileSource<Event> {
    FileSource::with_decoder(path, json::parse_event)
}

/// Text of an event. Generated events borrow their text from the
/// generator's static pools (no allocation per event); parsed events own it.
pub type Text = std::borrow::Cow<'static, str>;

/// A person registering on the auction site.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Person {
    /// Unique id, from 1000.
    pub id: u64,
    /// First and last name.
    pub name: Text,
    /// E-mail address.
    pub email_address: Text,
    /// Credit card number, four groups of four digits.
    pub credit_card: Text,
    /// City.
    pub city: Text,
    /// US state: AZ, CA, ID, OR, WA or WY.
    pub state: Text,
    /// Event time, ms since the epoch.
    #[serde(with = "json::timestamp")]
    pub date_time: i64,
    /// Padding to the average size.
    pub extra: Text,
}

/// An item put up for auction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Auction {
    /// Unique id, from 1000.
    pub id: u64,
    /// Item name.
    pub item_name: Text,
    /// Item description.
    pub description: Text,
    /// Opening price.
    pub initial_bid: u64,
    /// Reserve price.
    pub reserve: u64,
    /// Event time (the auction opens), ms since the epoch.
    #[serde(with = "json::timestamp")]
    pub date_time: i64,
    /// When the auction closes, ms since the epoch.
    #[serde(with = "json::timestamp")]
    pub expires: i64,
    /// Id of the selling person.
    pub seller: u64,
    /// Category, 10 to 14.
    pub category: u64,
    /// Padding to the average size.
    pub extra: Text,
}

/// A bid on an auction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bid {
    /// Id of the auction bid on.
    pub auction: u64,
    /// Id of the bidding person.
    pub bidder: u64,
    /// Price in cents.
    pub price: u64,
    /// Where the bid came from: a hot channel (`Google`, …) or `channel-<k>`.
    pub channel: Text,
    /// The page the bid was made on.
    pub url: Text,
    /// Event time, ms since the epoch.
    #[serde(with = "json::timestamp")]
    pub date_time: i64,
    /// Padding to the average size.
    pub extra: Text,
}

/// One Nexmark event. Persons and auctions are boxed: they are 8% of the
/// events, and boxing keeps every event, bids included, at a bid's size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// A new person.
    Person(Box<Person>),
    /// A new auction.
    Auction(Box<Auction>),
    /// A bid.
    Bid(Bid),
}

impl Event {
    /// The event time, ms since the epoch.
    #[inline]
    pub fn date_time(&self) -> i64 {
        match self {
            Event::Person(p) => p.date_time,
            Event::Auction(a) => a.date_time,
            Event::Bid(b) => b.date_time,
        }
    }

    /// The bid, if this event is one.
    #[inline]
    pub fn into_bid(self) -> Option<Bid> {
        match self {
            Event::Bid(b) => Some(b),
            _ => None,
        }
    }

    /// The auction, if this event is one.
    #[inline]
    pub fn into_auction(self) -> Option<Auction> {
        match self {
            Event::Auction(a) => Some(*a),
            _ => None,
        }
    }

    /// The person, if this event is one.
    #[inline]
    pub fn into_person(self) -> Option<Person> {
        match self {
            Event::Person(p) => Some(*p),
            _ => None,
        }
    }
}

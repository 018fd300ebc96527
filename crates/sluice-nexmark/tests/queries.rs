//! Every Nexmark query, run on the mini-cluster over a small generated
//! input at parallelism 2, gives what a plain reference implementation of
//! docs/NEXMARK.md computes from the same events (no engine involved).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Debug;

use sluice_api::{DataStream, StreamExecutionEnvironment};
use sluice_connectors::nexmark::datetime::{
    day_start, format_date, format_minute_of_day, minute_of_day,
};
use sluice_connectors::nexmark::{Event, GeneratorConfig};
use sluice_core::Data;
use sluice_nexmark::*;

const EVENTS: u64 = 30_000;

/// 100 events per second of event time: 300 s, so ten-second windows,
/// sessions and auction lifetimes (up to ~33 s) all occur many times, and
/// every event has its own millisecond.
fn config() -> GeneratorConfig {
    GeneratorConfig { event_rate: 100, seed: 42, ..GeneratorConfig::default() }
}

fn input() -> Vec<Event> {
    let config = config();
    (0..EVENTS).map(|n| config.event_at(n, Some(EVENTS))).collect()
}

fn input_bids() -> Vec<Bid> {
    input().into_iter().filter_map(Event::into_bid).collect()
}

fn run<T: Data>(query: fn(&DataStream<Event>) -> DataStream<T>) -> Vec<T> {
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(2);
    let generator = NexmarkInput::Generator { config: config(), events: Some(EVENTS) };
    let events = events(&env, &generator).unwrap();
    query(&events).execute_and_collect("nexmark query test").unwrap()
}

/// Order-insensitive comparison: results from parallel subtasks interleave.
fn assert_same_results<T: Debug>(actual: Vec<T>, expected: Vec<T>) {
    let sorted = |v: Vec<T>| {
        let mut v: Vec<String> = v.iter().map(|x| format!("{x:?}")).collect();
        v.sort();
        v
    };
    let (actual, expected) = (sorted(actual), sorted(expected));
    assert!(!expected.is_empty(), "the reference produced nothing: the input is too small");
    assert_eq!(actual.len(), expected.len(), "number of results");
    assert_eq!(actual, expected);
}

#[test]
fn q0_passes_every_bid_through() {
    assert_same_results(run(q0), input_bids());
}

#[test]
fn q1_converts_prices_to_euros() {
    let expected = input_bids()
        .into_iter()
        .map(|b| Q1Out {
            auction: b.auction,
            bidder: b.bidder,
            price: b.price as f64 * 0.908,
            date_time: b.date_time,
            extra: b.extra,
        })
        .collect();
    assert_same_results(run(q1), expected);
}

#[test]
fn q2_selects_bids_on_every_123rd_auction() {
    let expected = input_bids()
        .into_iter()
        .filter(|b| b.auction % 123 == 0)
        .map(|b| Q2Out { auction: b.auction, price: b.price })
        .collect();
    assert_same_results(run(q2), expected);
}

#[test]
fn q3_joins_category_10_auctions_with_sellers_in_or_id_ca() {
    let events = input();
    let sellers: HashMap<u64, Person> = events
        .iter()
        .filter_map(|e| e.clone().into_person())
        .filter(|p| ["OR", "ID", "CA"].contains(&&*p.state))
        .map(|p| (p.id, p))
        .collect();
    let expected = events
        .iter()
        .filter_map(|e| e.clone().into_auction())
        .filter(|a| a.category == 10)
        .filter_map(|a| {
            let p = sellers.get(&a.seller)?;
            Some(Q3Out {
                name: p.name.clone(),
                city: p.city.clone(),
                state: p.state.clone(),
                auction: a.id,
            })
        })
        .collect();
    assert_same_results(run(q3), expected);
}

/// The winning bid of each auction that has a valid one.
fn reference_winners() -> Vec<(Auction, Bid)> {
    let events = input();
    let mut bids_by_auction: HashMap<u64, Vec<Bid>> = HashMap::new();
    for b in events.iter().filter_map(|e| e.clone().into_bid()) {
        bids_by_auction.entry(b.auction).or_default().push(b);
    }
    events
        .iter()
        .filter_map(|e| e.clone().into_auction())
        .filter_map(|a| {
            let winner = bids_by_auction
                .get(&a.id)?
                .iter()
                .filter(|b| a.date_time <= b.date_time && b.date_time <= a.expires)
                .max_by(|x, y| x.price.cmp(&y.price).then(y.date_time.cmp(&x.date_time)))?
                .clone();
            Some((a, winner))
        })
        .collect()
}

#[test]
fn q4_averages_the_winning_prices_per_category() {
    let mut sums: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for (a, b) in reference_winners() {
        let entry = sums.entry(a.category).or_default();
        *entry = (entry.0 + b.price, entry.1 + 1);
    }
    let updates = run(q4);
    let closed: u64 = sums.values().map(|(_, n)| n).sum();
    assert_eq!(updates.len() as u64, closed, "one update per closed auction with a valid bid");
    let mut last: BTreeMap<u64, f64> = BTreeMap::new();
    for u in updates {
        last.insert(u.category, u.average);
    }
    let expected: BTreeMap<u64, f64> =
        sums.into_iter().map(|(c, (sum, n))| (c, sum as f64 / n as f64)).collect();
    assert_eq!(last, expected);
}

#[test]
fn q5_finds_the_auctions_with_the_most_bids_per_sliding_window() {
    let mut counts: BTreeMap<i64, HashMap<u64, u64>> = BTreeMap::new();
    for b in input_bids() {
        // Windows of 10 s every 2 s holding t end in (t, t + 10 s].
        let first_end = (b.date_time / 2000 + 1) * 2000;
        for end in (first_end..=b.date_time + 10_000).step_by(2000) {
            *counts.entry(end).or_default().entry(b.auction).or_default() += 1;
        }
    }
    let mut expected = Vec::new();
    for (window_end, per_auction) in counts {
        let max = *per_auction.values().max().unwrap();
        for (&auction, &count) in &per_auction {
            if count == max {
                expected.push(Q5Out { auction, count, window_end });
            }
        }
    }
    assert_same_results(run(q5), expected);
}

#[test]
fn q7_emits_the_highest_bids_of_each_tumbling_window() {
    let mut windows: BTreeMap<i64, Vec<Bid>> = BTreeMap::new();
    for b in input_bids() {
        windows.entry(b.date_time.div_euclid(10_000)).or_default().push(b);
    }
    let mut expected = Vec::new();
    for bids in windows.values() {
        let max = bids.iter().map(|b| b.price).max().unwrap();
        expected.extend(bids.iter().filter(|b| b.price == max).map(|b| Q7Out {
            auction: b.auction,
            price: b.price,
            bidder: b.bidder,
            date_time: b.date_time,
            extra: b.extra.clone(),
        }));
    }
    assert_same_results(run(q7), expected);
}

#[test]
fn q8_finds_people_who_sold_in_the_window_they_registered() {
    let events = input();
    let window = |t: i64| t.div_euclid(10_000) * 10_000;
    let sellers: BTreeSet<(u64, i64)> = events
        .iter()
        .filter_map(|e| e.clone().into_auction())
        .map(|a| (a.seller, window(a.date_time)))
        .collect();
    let expected = events
        .iter()
        .filter_map(|e| e.clone().into_person())
        .filter(|p| sellers.contains(&(p.id, window(p.date_time))))
        .map(|p| Q8Out { id: p.id, name: p.name, window_start: window(p.date_time) })
        .collect();
    assert_same_results(run(q8), expected);
}

#[test]
fn q6_averages_each_sellers_last_ten_winning_prices() {
    let mut closed: BTreeMap<u64, Vec<(i64, u64, u64)>> = BTreeMap::new();
    for (a, b) in reference_winners() {
        closed.entry(a.seller).or_default().push((a.expires, a.id, b.price));
    }
    let updates = run(q6);
    assert_eq!(updates.len(), closed.values().map(Vec::len).sum::<usize>(), "one per closing");
    let mut last: BTreeMap<u64, f64> = BTreeMap::new();
    for u in updates {
        last.insert(u.seller, u.average);
    }
    let expected: BTreeMap<u64, f64> = closed
        .into_iter()
        .map(|(seller, mut auctions)| {
            auctions.sort();
            let recent = &auctions[auctions.len().saturating_sub(10)..];
            let sum: u64 = recent.iter().map(|c| c.2).sum();
            (seller, sum as f64 / recent.len() as f64)
        })
        .collect();
    assert_eq!(last, expected);
}

#[test]
fn q9_emits_each_auction_with_its_winning_bid() {
    let expected =
        reference_winners().into_iter().map(|(auction, bid)| Q9Out { auction, bid }).collect();
    assert_same_results(run(q9), expected);
}

#[test]
fn q11_counts_bids_per_bidder_session() {
    let mut times: BTreeMap<u64, Vec<i64>> = BTreeMap::new();
    for b in input_bids() {
        times.entry(b.bidder).or_default().push(b.date_time);
    }
    let mut expected = Vec::new();
    for (bidder, mut ts) in times {
        ts.sort();
        let mut start = 0;
        for i in 1..=ts.len() {
            // Flink's session windows [t, t + gap) merge when they touch.
            if i == ts.len() || ts[i] > ts[i - 1] + 10_000 {
                expected.push(Q11Out {
                    bidder,
                    count: (i - start) as u64,
                    start: ts[start],
                    end: ts[i - 1] + 10_000,
                });
                start = i;
            }
        }
    }
    assert_same_results(run(q11), expected);
}

#[test]
fn q12_counts_every_bid_of_every_bidder_in_processing_time_windows() {
    let mut expected: BTreeMap<u64, u64> = BTreeMap::new();
    for b in input_bids() {
        *expected.entry(b.bidder).or_default() += 1;
    }
    let mut actual: BTreeMap<u64, u64> = BTreeMap::new();
    for c in run(q12) {
        assert_eq!(c.end - c.start, 10_000);
        assert_eq!(c.start % 10_000, 0);
        *actual.entry(c.bidder).or_default() += c.count;
    }
    assert_eq!(actual, expected);
}

#[test]
fn q13_joins_bids_with_the_side_input() {
    let expected = input_bids()
        .into_iter()
        .map(|b| Q13Out {
            auction: b.auction,
            bidder: b.bidder,
            price: b.price,
            date_time: b.date_time,
            value: format!("nexmark-side-{}", b.auction % 10_000).into(),
        })
        .collect();
    assert_same_results(run(q13), expected);
}

#[test]
fn q14_keeps_mid_priced_bids_with_computed_columns() {
    let expected = input_bids()
        .into_iter()
        .filter_map(|b| {
            let price = b.price as f64 * 0.908;
            if !(price > 1_000_000.0 && price < 50_000_000.0) {
                return None;
            }
            let hour = b.date_time.rem_euclid(86_400_000) / 3_600_000;
            let bid_time_type = if (8..=18).contains(&hour) {
                BidTimeType::DayTime
            } else if hour <= 6 || hour >= 20 {
                BidTimeType::NightTime
            } else {
                BidTimeType::OtherTime
            };
            Some(Q14Out {
                auction: b.auction,
                bidder: b.bidder,
                price,
                bid_time_type,
                date_time: b.date_time,
                c_counts: b.extra.matches('c').count(),
                extra: b.extra,
            })
        })
        .collect();
    assert_same_results(run(q14), expected);
}

fn reference_day_stats(bids: &[&Bid]) -> DayStats {
    let rank = |p: u64| {
        if p < 10_000 {
            0
        } else if p < 1_000_000 {
            1
        } else {
            2
        }
    };
    let distinct = |f: &dyn Fn(&Bid) -> u64, r: Option<usize>| {
        bids.iter()
            .filter(|b| r.is_none_or(|r| rank(b.price) == r))
            .map(|b| f(b))
            .collect::<BTreeSet<_>>()
            .len() as u64
    };
    DayStats {
        total_bids: bids.len() as u64,
        rank_bids: [0, 1, 2].map(|r| bids.iter().filter(|b| rank(b.price) == r).count() as u64),
        total_bidders: distinct(&|b| b.bidder, None),
        rank_bidders: [0, 1, 2].map(|r| distinct(&|b| b.bidder, Some(r))),
        total_auctions: distinct(&|b| b.auction, None),
        rank_auctions: [0, 1, 2].map(|r| distinct(&|b| b.auction, Some(r))),
    }
}

#[test]
fn q15_reports_bidding_statistics_per_day() {
    let bids = input_bids();
    let mut days: BTreeMap<i64, Vec<&Bid>> = BTreeMap::new();
    for b in &bids {
        days.entry(day_start(b.date_time)).or_default().push(b);
    }
    let expected = days
        .into_iter()
        .map(|(day, bids)| Q15Out {
            day: format_date(day).into(),
            stats: reference_day_stats(&bids),
        })
        .collect();
    assert_same_results(run(q15), expected);
}

#[test]
fn q16_reports_bidding_statistics_per_channel_and_day() {
    let bids = input_bids();
    let mut groups: BTreeMap<(Text, i64), Vec<&Bid>> = BTreeMap::new();
    for b in &bids {
        groups.entry((b.channel.clone(), day_start(b.date_time))).or_default().push(b);
    }
    let expected = groups
        .into_iter()
        .map(|((channel, day), bids)| Q16Out {
            channel,
            day: format_date(day).into(),
            minute: Text::from(format_minute_of_day(
                bids.iter().map(|b| minute_of_day(b.date_time)).max().unwrap(),
            )),
            stats: reference_day_stats(&bids),
        })
        .collect();
    assert_same_results(run(q16), expected);
}

#[test]
fn q17_reports_price_statistics_per_auction_and_day() {
    let bids = input_bids();
    let mut groups: BTreeMap<(u64, i64), Vec<&Bid>> = BTreeMap::new();
    for b in &bids {
        groups.entry((b.auction, day_start(b.date_time))).or_default().push(b);
    }
    let expected = groups
        .into_iter()
        .map(|((auction, day), bids)| {
            let prices: Vec<u64> = bids.iter().map(|b| b.price).collect();
            let sum: u64 = prices.iter().sum();
            Q17Out {
                auction,
                day: format_date(day).into(),
                total_bids: prices.len() as u64,
                rank_bids: [
                    prices.iter().filter(|&&p| p < 10_000).count() as u64,
                    prices.iter().filter(|&&p| (10_000..1_000_000).contains(&p)).count() as u64,
                    prices.iter().filter(|&&p| p >= 1_000_000).count() as u64,
                ],
                min_price: *prices.iter().min().unwrap(),
                max_price: *prices.iter().max().unwrap(),
                avg_price: sum as f64 / prices.len() as f64,
                sum_price: sum,
            }
        })
        .collect();
    assert_same_results(run(q17), expected);
}

/// Applies a changelog keyed by `key`, checking each change is consistent.
fn apply<K: Ord, T: PartialEq + Debug>(
    changes: Vec<Change<T>>,
    key: impl Fn(&T) -> K,
) -> BTreeMap<K, Vec<T>> {
    let mut table: BTreeMap<K, Vec<T>> = BTreeMap::new();
    for Change { kind, row } in changes {
        let rows = table.entry(key(&row)).or_default();
        match kind {
            RowKind::Insert | RowKind::UpdateAfter => rows.push(row),
            RowKind::UpdateBefore | RowKind::Delete => {
                let at = rows
                    .iter()
                    .position(|r| *r == row)
                    .unwrap_or_else(|| panic!("retracting {row:?}, which is not there"));
                rows.remove(at);
            }
        }
    }
    table.retain(|_, rows| !rows.is_empty());
    table
}

#[test]
fn q18_keeps_the_last_bid_per_bidder_and_auction() {
    let mut expected: BTreeMap<(u64, u64), Vec<Bid>> = BTreeMap::new();
    for b in input_bids() {
        // Every event has its own millisecond here, so "last" is unambiguous.
        expected.insert((b.bidder, b.auction), vec![b]);
    }
    assert_eq!(apply(run(q18), |b: &Bid| (b.bidder, b.auction)), expected);
}

#[test]
fn q19_keeps_the_ten_highest_bids_per_auction() {
    let mut expected: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for b in input_bids() {
        expected.entry(b.auction).or_default().push(b.price);
    }
    for prices in expected.values_mut() {
        prices.sort_unstable_by(|a, b| b.cmp(a));
        prices.truncate(10);
    }
    // Bids of equal price may enter in either order from parallel sources: compare prices.
    let actual: BTreeMap<u64, Vec<u64>> = apply(run(q19), |b: &Bid| b.auction)
        .into_iter()
        .map(|(auction, bids)| {
            let mut prices: Vec<u64> = bids.iter().map(|b| b.price).collect();
            prices.sort_unstable_by(|a, b| b.cmp(a));
            (auction, prices)
        })
        .collect();
    assert_eq!(actual, expected);
}

#[test]
fn q20_joins_bids_with_their_category_10_auctions() {
    let events = input();
    let auctions: HashMap<u64, Auction> = events
        .iter()
        .filter_map(|e| e.clone().into_auction())
        .filter(|a| a.category == 10)
        .map(|a| (a.id, a))
        .collect();
    let expected = input_bids()
        .into_iter()
        .filter_map(|bid| Some(Q20Out { auction: auctions.get(&bid.auction)?.clone(), bid }))
        .collect();
    assert_same_results(run(q20), expected);
}

#[test]
fn q21_derives_channel_ids() {
    let expected = input_bids()
        .into_iter()
        .filter_map(|b| {
            let known = match b.channel.to_lowercase().as_str() {
                "apple" => Some("0"),
                "google" => Some("1"),
                "facebook" => Some("2"),
                "baidu" => Some("3"),
                _ => None,
            };
            let from_url =
                b.url.split(['?', '&']).skip(1).find_map(|p| p.strip_prefix("channel_id="));
            let channel_id = known.or(from_url)?.to_string();
            Some(Q21Out {
                auction: b.auction,
                bidder: b.bidder,
                price: b.price,
                channel: b.channel,
                channel_id: channel_id.into(),
            })
        })
        .collect();
    assert_same_results(run(q21), expected);
}

#[test]
fn q22_splits_urls_into_directories() {
    let expected = input_bids()
        .into_iter()
        .map(|b| {
            let parts: Vec<&str> = b.url.split('/').collect();
            let dir = |i: usize| Text::from(parts.get(i).unwrap_or(&"").to_string());
            Q22Out {
                auction: b.auction,
                bidder: b.bidder,
                price: b.price,
                dir1: dir(3),
                dir2: dir(4),
                dir3: dir(5),
                channel: b.channel,
            }
        })
        .collect();
    assert_same_results(run(q22), expected);
}

fn write_file(events: &[Event]) -> tempfile::NamedTempFile {
    use std::io::Write;
    let mut file = tempfile::NamedTempFile::new().unwrap();
    let mut out = std::io::BufWriter::new(file.as_file_mut());
    for e in events {
        sluice_connectors::nexmark::json::write_event(e, &mut out).unwrap();
    }
    out.flush().unwrap();
    drop(out);
    file
}

fn run_on_file<T: Data>(
    query: fn(&DataStream<Event>) -> DataStream<T>,
    path: &std::path::Path,
) -> sluice_core::Result<Vec<T>> {
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(2);
    let events = events(&env, &NexmarkInput::File(path.to_path_buf()))?;
    query(&events).execute_and_collect("nexmark file test")
}

#[test]
fn a_generated_file_gives_the_same_answers_as_the_generator() {
    let file = write_file(&input());
    assert_same_results(run_on_file(q9, file.path()).unwrap(), run(q9));
    assert_same_results(run_on_file(q5, file.path()).unwrap(), run(q5));
}

#[test]
fn a_malformed_line_fails_the_job_naming_the_file_and_line() {
    let mut events = input();
    events.truncate(10);
    let file = write_file(&events);
    let mut text = std::fs::read_to_string(file.path()).unwrap();
    text.push_str("{\"event_type\":2,\"bid\":{\"auction\":1}}\n");
    std::fs::write(file.path(), text).unwrap();
    let err = run_on_file(q0, file.path()).unwrap_err().report().to_string();
    let name = file.path().display().to_string();
    assert!(err.contains(&name) && err.contains("line 11"), "{err}");
    assert!(err.contains("missing field"), "{err}");
}

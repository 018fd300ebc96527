//! UTC calendar arithmetic on epoch milliseconds, for the timestamp layout
//! Flink SQL's JSON format uses (`yyyy-MM-dd HH:mm:ss.SSS`) and for queries
//! that group by day or hour. The layout is fixed, so parsing is a few
//! digit reads instead of a format-string interpreter on the hot path.

const MS_PER_DAY: i64 = 86_400_000;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
#[inline]
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The (year, month, day) of a day number since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// `yyyy-MM-dd HH:mm:ss.SSS` (UTC) of epoch milliseconds.
pub fn format_timestamp(ms: i64) -> String {
    let (year, month, day) = civil_from_days(ms.div_euclid(MS_PER_DAY));
    let t = ms.rem_euclid(MS_PER_DAY);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03}",
        t / 3_600_000,
        t / 60_000 % 60,
        t / 1000 % 60,
        t % 1000
    )
}

/// Epoch milliseconds of `yyyy-MM-dd HH:mm:ss.SSS` (UTC); the fraction may
/// have 0 to 3 digits, and a `T` may stand for the space.
pub fn parse_timestamp(text: &str) -> Result<i64, String> {
    // Hand-written rather than jiff or chrono: every file query parses one
    // per event, and a profile put this at 7.8% of q0's time before the fast
    // path became plain byte arithmetic with the message built on failure only.
    parse_millis(text.as_bytes())
        .ok_or_else(|| format!("'{text}' is not a timestamp like 2015-07-15 00:00:00.000"))
}

#[inline]
fn parse_millis(b: &[u8]) -> Option<i64> {
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b' ' | b'T') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    #[inline]
    fn num(digits: &[u8]) -> Option<i64> {
        digits.iter().try_fold(0i64, |acc, &c| {
            let d = c.wrapping_sub(b'0');
            (d < 10).then_some(acc * 10 + i64::from(d))
        })
    }
    let (year, month, day) = (num(&b[0..4])?, num(&b[5..7])?, num(&b[8..10])?);
    let (hour, minute, second) = (num(&b[11..13])?, num(&b[14..16])?, num(&b[17..19])?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 59 {
        return None;
    }
    let millis = match &b[19..] {
        [] => 0,
        [b'.', digits @ ..] if (1..=3).contains(&digits.len()) => {
            num(digits)? * 10i64.pow(3 - digits.len() as u32)
        }
        _ => return None,
    };
    let days = days_from_civil(year, month as u32, day as u32);
    Some(days * MS_PER_DAY + ((hour * 60 + minute) * 60 + second) * 1000 + millis)
}

/// Start of the UTC day holding `ms`, in epoch milliseconds.
#[inline]
pub fn day_start(ms: i64) -> i64 {
    ms - ms.rem_euclid(MS_PER_DAY)
}

/// `yyyy-MM-dd` (UTC) of epoch milliseconds.
pub fn format_date(ms: i64) -> String {
    let (year, month, day) = civil_from_days(ms.div_euclid(MS_PER_DAY));
    format!("{year:04}-{month:02}-{day:02}")
}

/// The UTC hour of the day, 0 to 23.
#[inline]
pub fn hour_of_day(ms: i64) -> u32 {
    (ms.rem_euclid(MS_PER_DAY) / 3_600_000) as u32
}

/// Minutes since the start of the UTC day, 0 to 1439 (`HH:mm` as a number).
#[inline]
pub fn minute_of_day(ms: i64) -> u32 {
    (ms.rem_euclid(MS_PER_DAY) / 60_000) as u32
}

/// `HH:mm` of a minute of the day.
pub fn format_minute_of_day(minute: u32) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nexmark_base_time_formats_and_parses_back() {
        let base = 1_436_918_400_000; // 2015-07-15T00:00:00Z
        assert_eq!(format_timestamp(base), "2015-07-15 00:00:00.000");
        assert_eq!(parse_timestamp("2015-07-15 00:00:00.000"), Ok(base));
        assert_eq!(format_timestamp(base + 3_723_004), "2015-07-15 01:02:03.004");
    }

    #[test]
    fn timestamps_round_trip_across_leap_years_and_before_the_epoch() {
        for ms in [-86_400_001, 0, 951_782_400_000, 4_107_542_399_999, 1_709_164_800_123] {
            assert_eq!(parse_timestamp(&format_timestamp(ms)), Ok(ms), "{ms}");
        }
        assert_eq!(format_timestamp(951_782_400_000), "2000-02-29 00:00:00.000");
    }

    #[test]
    fn short_fractions_and_iso_separators_parse() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:01.5"), Ok(1500));
        assert_eq!(parse_timestamp("1970-01-01 00:00:01"), Ok(1000));
    }

    #[test]
    fn malformed_timestamps_are_refused_with_the_text() {
        for text in ["2015-07-15", "2015-13-01 00:00:00.000", "2015-07-15 00:00:00.0000", "x"] {
            let err = parse_timestamp(text).unwrap_err();
            assert!(err.contains(text), "{err}");
        }
    }

    #[test]
    fn days_and_hours_are_utc() {
        let t = parse_timestamp("2015-07-15 19:59:59.999").unwrap();
        assert_eq!(format_date(t), "2015-07-15");
        assert_eq!(hour_of_day(t), 19);
        assert_eq!(format_minute_of_day(minute_of_day(t)), "19:59");
        assert_eq!(day_start(t), parse_timestamp("2015-07-15 00:00:00.000").unwrap());
    }
}

//! Timestamps: parsing the ones providers send and formatting RFC 3339 UTC.
//!
//! Providers send ISO-8601 / RFC 3339 strings in several shapes, or epoch seconds or
//! milliseconds as JSON numbers; [`parse_json_timestamp`] and [`parse_iso8601`] read them all to
//! [`EpochMillis`], and [`format_rfc3339`] writes one canonical UTC form. Gateway-side date
//! filters, sorting and the `normalized` response format use this module.
//!
//! Calendar arithmetic is Howard Hinnant's days-from-civil / civil-from-days on the proleptic
//! Gregorian calendar, with Euclidean division so dates before 1970 work. Only years 0000-9999
//! are accepted: every value the parsers return formats as valid RFC 3339.

use serde_json::Value;

/// Milliseconds since the Unix epoch (UTC).
pub type EpochMillis = i64;

const MILLIS_PER_SECOND: i64 = 1_000;
const MILLIS_PER_MINUTE: i64 = 60 * MILLIS_PER_SECOND;
const MILLIS_PER_HOUR: i64 = 60 * MILLIS_PER_MINUTE;
const MILLIS_PER_DAY: i64 = 24 * MILLIS_PER_HOUR;

/// `0000-01-01T00:00:00.000Z`, the earliest instant the parsers return.
const MIN_MILLIS: EpochMillis = days_from_civil(0, 1, 1) * MILLIS_PER_DAY;
/// `9999-12-31T23:59:59.999Z`, the latest instant the parsers return.
const MAX_MILLIS: EpochMillis = days_from_civil(10_000, 1, 1) * MILLIS_PER_DAY - 1;

/// JSON numbers with a magnitude below this are epoch seconds, the rest epoch milliseconds.
/// 1e11 seconds is in the year 5138; 1e11 milliseconds is in March 1973.
const SECONDS_LIMIT: i64 = 100_000_000_000;

/// Parses an ISO-8601 / RFC 3339 timestamp as providers send them, to UTC milliseconds.
///
/// Accepts `YYYY-MM-DD` (midnight UTC), `YYYY-MM-DDTHH:MM` and `YYYY-MM-DDTHH:MM:SS`; seconds
/// may carry a fraction of one or more digits, truncated to milliseconds. The separator is `T`,
/// `t` or a space. The time forms take an optional zone: `Z`, `z`, `±HH:MM`, `±HHMM` or `±HH`
/// (offset hours 00-23, minutes 00-59); without one the time is UTC.
///
/// Fields are range-checked (month 1-12, day within the month including leap years, hour 0-23,
/// minute 0-59, second 0-60). A leap second `60` is read as `59`. Returns `None` for anything
/// else, including surrounding whitespace, and for instants outside years 0000-9999 UTC.
pub fn parse_iso8601(text: &str) -> Option<EpochMillis> {
    let mut cursor = Cursor::new(text);

    let year = cursor.number(4)?;
    cursor.expect(b'-')?;
    let month = cursor.number(2)?;
    cursor.expect(b'-')?;
    let day = cursor.number(2)?;
    if !(1..=12).contains(&month) || !(1..=days_in_month(year, month)).contains(&day) {
        return None;
    }
    let midnight = days_from_civil(year, month, day) * MILLIS_PER_DAY;
    if cursor.is_done() {
        return Some(midnight);
    }

    cursor.expect_any(b"Tt ")?;
    let hour = cursor.number(2)?;
    cursor.expect(b':')?;
    let minute = cursor.number(2)?;
    let (second, millis) = if cursor.eat(b':') {
        let second = cursor.number(2)?;
        let millis = if cursor.eat(b'.') {
            cursor.fraction_millis()?
        } else {
            0
        };
        (second, millis)
    } else {
        (0, 0)
    };
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let offset_minutes = cursor.zone()?;
    if !cursor.is_done() {
        return None;
    }

    let local = midnight
        + hour * MILLIS_PER_HOUR
        + minute * MILLIS_PER_MINUTE
        + second.min(59) * MILLIS_PER_SECOND
        + millis;
    let utc = local - offset_minutes * MILLIS_PER_MINUTE;
    (MIN_MILLIS..=MAX_MILLIS).contains(&utc).then_some(utc)
}

/// The `exp` claim of a JWT, epoch seconds (read, not verified: the provider that issued the
/// token checks it); `None` for a token that is not a JWT.
pub fn jwt_expiry(token: &str) -> Option<i64> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("exp")?.as_i64()
}

/// Reads a timestamp from a JSON value: an ISO string as [`parse_iso8601`] reads it, or a number
/// of epoch seconds (magnitude below 1e11) or epoch milliseconds (otherwise). Milliseconds that
/// close to the epoch (October 1966 to March 1973) are therefore read as seconds.
///
/// Fractional numbers are rounded to the nearest millisecond, since `f64` cannot hold most
/// decimal fractions exactly. Returns `None` for other values and for instants outside years
/// 0000-9999 UTC.
pub fn parse_json_timestamp(value: &Value) -> Option<EpochMillis> {
    let millis = match value {
        Value::String(text) => return parse_iso8601(text),
        Value::Number(number) => match number.as_i64() {
            Some(whole) if whole.unsigned_abs() < SECONDS_LIMIT.unsigned_abs() => {
                whole * MILLIS_PER_SECOND
            }
            Some(whole) => whole,
            None => {
                // A float, or an integer beyond i64 (which the range check below rejects).
                let float = number.as_f64()?;
                let millis = if float.abs() < SECONDS_LIMIT as f64 {
                    float * MILLIS_PER_SECOND as f64
                } else {
                    float
                }
                .round();
                if !(MIN_MILLIS as f64..=MAX_MILLIS as f64).contains(&millis) {
                    return None;
                }
                millis as i64
            }
        },
        _ => return None,
    };
    (MIN_MILLIS..=MAX_MILLIS)
        .contains(&millis)
        .then_some(millis)
}

/// RFC 3339 UTC: `YYYY-MM-DDTHH:MM:SSZ`, or `YYYY-MM-DDTHH:MM:SS.mmmZ` when the milliseconds are
/// not zero.
///
/// Instants outside years 0000-9999 (which the parsers never return) do not fit RFC 3339; they
/// are written with a signed, expanded year such as `-0001-…` or `+10000-…` rather than panicking.
pub fn format_rfc3339(millis: EpochMillis) -> String {
    let days = millis.div_euclid(MILLIS_PER_DAY);
    let of_day = millis.rem_euclid(MILLIS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    let hour = of_day / MILLIS_PER_HOUR;
    let minute = of_day % MILLIS_PER_HOUR / MILLIS_PER_MINUTE;
    let second = of_day % MILLIS_PER_MINUTE / MILLIS_PER_SECOND;
    let fraction = of_day % MILLIS_PER_SECOND;

    let year = if (0..=9999).contains(&year) {
        format!("{year:04}")
    } else {
        format!("{year:+05}")
    };
    let mut out = format!("{year}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}");
    if fraction != 0 {
        out.push_str(&format!(".{fraction:03}"));
    }
    out.push('Z');
    out
}

fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// Days in `month` (1-12) of `year`.
fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given proleptic Gregorian date (Hinnant's `days_from_civil`).
const fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    // Count years from March, so the leap day is the last day of the year.
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400; // [0, 399]
    let march_month = (month + 9) % 12; // March = 0 … February = 11
    let day_of_year = (153 * march_month + 2) / 5 + day - 1; // [0, 365]
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian `(year, month, day)` that is `days` after 1970-01-01 (Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468; // Days from 0000-03-01.
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097; // [0, 146096]
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let march_month = (5 * day_of_year + 2) / 153; // March = 0 … February = 11
    let day = day_of_year - (153 * march_month + 2) / 5 + 1;
    let month = if march_month < 10 {
        march_month + 3
    } else {
        march_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A byte cursor over the timestamp text; every method consumes only on success.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Cursor {
            bytes: text.as_bytes(),
            pos: 0,
        }
    }

    fn is_done(&self) -> bool {
        self.pos == self.bytes.len()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// Consumes `byte` if it is next.
    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        if found {
            self.pos += 1;
        }
        found
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        self.eat(byte).then_some(())
    }

    /// Consumes the next byte if it is one of `set`.
    fn expect_any(&mut self, set: &[u8]) -> Option<u8> {
        let byte = self.peek().filter(|byte| set.contains(byte))?;
        self.pos += 1;
        Some(byte)
    }

    /// Exactly `width` ASCII digits, as a number.
    fn number(&mut self, width: usize) -> Option<i64> {
        let digits = self.bytes.get(self.pos..self.pos + width)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.pos += width;
        Some(
            digits
                .iter()
                .fold(0, |acc, digit| acc * 10 + i64::from(digit - b'0')),
        )
    }

    /// One or more digits of a decimal fraction, truncated to milliseconds.
    fn fraction_millis(&mut self) -> Option<i64> {
        let digits = self.bytes[self.pos..]
            .iter()
            .take_while(|byte| byte.is_ascii_digit())
            .count();
        if digits == 0 {
            return None;
        }
        let millis = self.bytes[self.pos..self.pos + digits]
            .iter()
            .chain(b"000")
            .take(3)
            .fold(0, |acc, digit| acc * 10 + i64::from(digit - b'0'));
        self.pos += digits;
        Some(millis)
    }

    /// An optional zone, as minutes east of UTC: none, `Z`, `z`, `±HH:MM`, `±HHMM` or `±HH`.
    /// `None` when a zone is present but malformed or out of range.
    fn zone(&mut self) -> Option<i64> {
        let sign = match self.peek() {
            None => return Some(0),
            Some(b'Z' | b'z') => {
                self.pos += 1;
                return Some(0);
            }
            Some(b'+') => 1,
            Some(b'-') => -1,
            Some(_) => return None,
        };
        self.pos += 1;
        let hours = self.number(2)?;
        let minutes = if self.eat(b':') || self.peek().is_some_and(|byte| byte.is_ascii_digit()) {
            self.number(2)?
        } else {
            0
        };
        (hours <= 23 && minutes <= 59).then_some(sign * (hours * 60 + minutes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_jwt_expiry_without_verifying_it() {
        use base64::Engine as _;
        let encode = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let token = format!(
            "{}.{}.sig",
            encode(r#"{"alg":"HS256"}"#),
            encode(r#"{"sub":"admin","exp":1893456000}"#)
        );
        assert_eq!(jwt_expiry(&token), Some(1_893_456_000));
        assert_eq!(jwt_expiry("opaque-token"), None);
    }
    use serde_json::json;

    #[test]
    fn parses_valid_forms_to_exact_millis() {
        let cases: &[(&str, EpochMillis)] = &[
            ("1970-01-01", 0),
            ("2024-01-01", 1_704_067_200_000),
            ("2024-01-01T10:00", 1_704_103_200_000),
            ("2024-01-01T10:00:30", 1_704_103_230_000),
            ("2024-01-01T10:00:30Z", 1_704_103_230_000),
            ("2024-01-01t10:00:30z", 1_704_103_230_000),
            ("2024-01-01 10:00:30Z", 1_704_103_230_000),
            ("2024-01-01T10:00Z", 1_704_103_200_000),
            // 12:00:00.5 at +01:30 is 10:30:00.5 UTC; 2024-02-29 is day 19782 (19723 + 31 + 28).
            ("2024-02-29T12:00:00.5+01:30", 1_709_202_600_500),
            ("2024-02-29T12:00:00.5+0130", 1_709_202_600_500),
            ("2024-01-01T10:00:30.1Z", 1_704_103_230_100),
            ("2024-01-01T10:00:30.12Z", 1_704_103_230_120),
            ("2024-01-01T10:00:30.123Z", 1_704_103_230_123),
            ("2024-01-01T10:00:30.9999Z", 1_704_103_230_999),
            ("2024-01-01T10:00:30.123456789Z", 1_704_103_230_123),
            ("2024-01-01T10:00:30.1234567890123Z", 1_704_103_230_123),
            ("2024-01-01T10:00:30.000", 1_704_103_230_000),
            // 10:00 at -05:00 is 15:00 UTC, however the offset is spelled.
            ("2024-01-01T10:00-05:00", 1_704_121_200_000),
            ("2024-01-01T10:00-0500", 1_704_121_200_000),
            ("2024-01-01T10:00-05", 1_704_121_200_000),
            ("2024-01-01T10:00:30+00:00", 1_704_103_230_000),
            ("2024-01-01T10:00:30-00:00", 1_704_103_230_000),
            ("2024-01-01T10:00:30+00", 1_704_103_230_000),
            // The offset moves the instant into the previous day (and year).
            ("2024-01-01T00:30+01:00", 1_704_065_400_000),
            ("2024-01-01T23:59:59.999-23:59", 1_704_239_939_999),
            // A leap second reads as second 59.
            ("2016-12-31T23:59:60Z", 1_483_228_799_000),
            ("2016-12-31T23:59:60.5Z", 1_483_228_799_500),
            ("2000-02-29", 951_782_400_000),
            // Before 1970.
            ("1969-12-31T23:59:59.999Z", -1),
            ("1969-12-31T23:59:59.9999Z", -1),
            ("1969-12-31T23:59:59Z", -1_000),
            ("1969-12-31", -86_400_000),
            ("1970-01-01T00:00+05:30", -19_800_000),
            ("1969-07-20T20:17:40Z", -14_182_940_000),
            ("1900-01-01", -2_208_988_800_000),
            ("1600-02-29", -11_670_998_400_000),
            // The range ends.
            ("0000-01-01", -62_167_219_200_000),
            ("0000-02-29", -62_162_121_600_000),
            ("9999-12-31T23:59:59.999Z", 253_402_300_799_999),
            ("9999-12-31T23:59:59Z", 253_402_300_799_000),
        ];
        for &(text, expected) in cases {
            assert_eq!(parse_iso8601(text), Some(expected), "{text:?}");
        }
    }

    #[test]
    fn rejects_invalid_forms() {
        let cases = [
            "",
            "yesterday",
            " 2024-01-01",
            "2024-01-01 ",
            "2024-01-01T10:00:00Z ",
            "\t2024-01-01T10:00:00Z",
            // Out-of-range fields.
            "2023-02-29",
            "1900-02-29",
            "2024-02-30",
            "2024-04-31",
            "2024-13-01",
            "2024-00-10",
            "2024-01-00",
            "2024-01-32",
            "2024-01-01T24:00",
            "2024-01-01T10:60",
            "2024-01-01T10:00:61",
            "2024-01-01T10:00:00+25:00",
            "2024-01-01T10:00:00+24",
            "2024-01-01T10:00:00+05:60",
            // Malformed shapes.
            "2024",
            "2024-01",
            "2024-1-01",
            "2024-01-1",
            "24-01-01",
            "12024-01-01",
            "+2024-01-01",
            "-0001-01-01",
            "2024/01/01",
            "20240101",
            "2024-01-01T",
            "2024-01-01T10",
            "2024-01-01T1000",
            "2024-01-01T10:0",
            "2024-01-01T10:00:",
            "2024-01-01T10:00:0",
            "2024-01-01T10:00:00.",
            "2024-01-01T10:00:00.Z",
            "2024-01-01T10:00:00,5Z",
            "2024-01-01T10:00.5",
            "2024-01-01x10:00",
            "2024-01-01_10:00",
            "2024-01-01  10:00",
            "2024-01-01Z",
            "2024-01-01+01:00",
            "2024-01-01T10:00:00 Z",
            "2024-01-01T10:00:00ZZ",
            "2024-01-01T10:00:00UTC",
            "2024-01-01T10:00:00+5",
            "2024-01-01T10:00:00+05:",
            "2024-01-01T10:00:00+05:0",
            "2024-01-01T10:00:00+050",
            "2024-01-01T10:00:00+05:00:00",
            "2024-01-01T10:00:00+",
            "２０２４-01-01",
            "2024-01-01T10:00:00.５Z",
            // Valid shape, but the instant falls outside years 0000-9999 UTC.
            "0000-01-01T00:30+01:00",
            "9999-12-31T23:30-01:00",
        ];
        for text in cases {
            assert_eq!(parse_iso8601(text), None, "{text:?}");
        }
    }

    #[test]
    fn formats_rfc3339_utc() {
        let cases: &[(EpochMillis, &str)] = &[
            (0, "1970-01-01T00:00:00Z"),
            (1, "1970-01-01T00:00:00.001Z"),
            (-1, "1969-12-31T23:59:59.999Z"),
            (-1_000, "1969-12-31T23:59:59Z"),
            (1_709_202_600_500, "2024-02-29T10:30:00.500Z"),
            (1_704_103_230_120, "2024-01-01T10:00:30.120Z"),
            (1_483_228_799_000, "2016-12-31T23:59:59Z"),
            (-14_182_940_000, "1969-07-20T20:17:40Z"),
            (-2_208_988_800_000, "1900-01-01T00:00:00Z"),
            (MIN_MILLIS, "0000-01-01T00:00:00Z"),
            (MAX_MILLIS, "9999-12-31T23:59:59.999Z"),
            // Outside the parsers' range: expanded, signed years.
            (MIN_MILLIS - 1, "-0001-12-31T23:59:59.999Z"),
            (MAX_MILLIS + 1, "+10000-01-01T00:00:00Z"),
        ];
        for &(millis, expected) in cases {
            assert_eq!(format_rfc3339(millis), expected, "{millis}");
        }
    }

    #[test]
    fn formats_extreme_values_without_panicking() {
        for millis in [i64::MIN, i64::MIN + 1, i64::MAX] {
            let text = format_rfc3339(millis);
            assert!(text.ends_with('Z'), "{text}");
            assert_eq!(parse_iso8601(&text), None, "{text}");
        }
    }

    #[test]
    fn round_trips_canonical_text() {
        let cases = [
            "1970-01-01T00:00:00Z",
            "2024-02-29T10:30:00.500Z",
            "2024-12-31T23:59:59.999Z",
            "1969-12-31T23:59:59.001Z",
            "1969-07-20T20:17:40Z",
            "1600-03-01T00:00:00Z",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999Z",
        ];
        for text in cases {
            let millis = parse_iso8601(text).unwrap_or_else(|| panic!("{text:?} should parse"));
            assert_eq!(format_rfc3339(millis), text);
        }
    }

    #[test]
    fn normalizes_other_forms_to_canonical_text() {
        let cases = [
            ("2024-02-29T12:00:00.5+01:30", "2024-02-29T10:30:00.500Z"),
            ("2024-01-01", "2024-01-01T00:00:00Z"),
            ("2024-01-01 10:00", "2024-01-01T10:00:00Z"),
            ("2024-01-01T00:30+01", "2023-12-31T23:30:00Z"),
            ("1969-12-31t19:00:00.25-0500", "1970-01-01T00:00:00.250Z"),
        ];
        for (text, expected) in cases {
            assert_eq!(
                parse_iso8601(text).map(format_rfc3339).as_deref(),
                Some(expected)
            );
        }
    }

    #[test]
    fn round_trips_millis() {
        let step = 7_777_777_777; // About 90 days, not a multiple of a second.
        let mut millis = MIN_MILLIS;
        while millis <= MAX_MILLIS {
            assert_eq!(
                parse_iso8601(&format_rfc3339(millis)),
                Some(millis),
                "{millis}"
            );
            millis += step;
        }
        for millis in [MIN_MILLIS, -86_400_001, -1, 0, 1, 999, 1_000, MAX_MILLIS] {
            assert_eq!(
                parse_iso8601(&format_rfc3339(millis)),
                Some(millis),
                "{millis}"
            );
        }
    }

    #[test]
    fn civil_conversions_match_a_day_by_day_walk() {
        let mut days = days_from_civil(0, 1, 1);
        assert_eq!(days * MILLIS_PER_DAY, MIN_MILLIS);
        for year in 0..=9999 {
            for month in 1..=12 {
                for day in 1..=days_in_month(year, month) {
                    assert_eq!(days_from_civil(year, month, day), days);
                    assert_eq!(civil_from_days(days), (year, month, day));
                    days += 1;
                }
            }
        }
        assert_eq!(days * MILLIS_PER_DAY, MAX_MILLIS + 1);
        assert_eq!(days_from_civil(1970, 1, 1), 0);
    }

    #[test]
    fn reads_json_timestamps() {
        let cases = [
            (
                json!("2024-02-29T12:00:00.5+01:30"),
                Some(1_709_202_600_500),
            ),
            (json!("1969-12-31"), Some(-86_400_000)),
            (json!("not a date"), None),
            (json!(" 2024-01-01"), None),
            // Epoch seconds below 1e11 in magnitude, epoch millis otherwise.
            (json!(0), Some(0)),
            (json!(1_704_067_200), Some(1_704_067_200_000)),
            (json!(1_704_067_200_000_i64), Some(1_704_067_200_000)),
            (json!(99_999_999_999_i64), Some(99_999_999_999_000)),
            (json!(100_000_000_000_i64), Some(100_000_000_000)),
            (json!(-14_182_940), Some(-14_182_940_000)),
            (json!(-62_167_219_200_i64), Some(MIN_MILLIS)),
            (json!(-62_167_219_201_i64), None),
            (json!(-99_999_999_999_i64), None),
            (json!(-100_000_000_000_i64), Some(-100_000_000_000)),
            // Millis within 1e11 of the epoch (Oct 1966 to Mar 1973) read as seconds: the
            // rule's known blind spot. 1969-07-20 in millis becomes a date in 1520.
            (json!(-14_182_940_000_i64), Some(-14_182_940_000_000)),
            // Fractions round to the nearest millisecond.
            (json!(1_704_067_200.5), Some(1_704_067_200_500)),
            (json!(1_704_067_200.123), Some(1_704_067_200_123)),
            (json!(1_704_067_200.000_4), Some(1_704_067_200_000)),
            (json!(-0.25), Some(-250)),
            (json!(1_704_067_200_000.4), Some(1_704_067_200_000)),
            (json!(1.0e12), Some(1_000_000_000_000)),
            // Outside years 0000-9999.
            (json!(MAX_MILLIS), Some(MAX_MILLIS)),
            (json!(MAX_MILLIS + 1), None),
            (json!(MIN_MILLIS), Some(MIN_MILLIS)),
            (json!(MIN_MILLIS - 1), None),
            (json!(i64::MAX), None),
            (json!(i64::MIN), None),
            (json!(u64::MAX), None),
            (json!(1.0e300), None),
            (json!(-1.0e300), None),
            // Other JSON types.
            (json!(null), None),
            (json!(true), None),
            (json!(["2024-01-01"]), None),
            (json!({ "at": "2024-01-01" }), None),
        ];
        for (value, expected) in cases {
            assert_eq!(parse_json_timestamp(&value), expected, "{value}");
        }
    }
}

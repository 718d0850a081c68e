//! Timestamps as servers write them, turned into UTC instants (milliseconds
//! since the Unix epoch). Hand-written rather than chrono's `strptime` because
//! this runs once per line; `$time_local` results are cached per distinct second.

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() {
        return None;
    }
    b.iter().try_fold(0u32, |acc, &d| {
        d.is_ascii_digit().then(|| acc * 10 + u32::from(d - b'0'))
    })
}

fn month_of(b: &[u8]) -> Option<u32> {
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    MONTHS
        .iter()
        .position(|m| m[..] == *b)
        .map(|i| i as u32 + 1)
}

fn valid_date(month: u32, day: u32) -> bool {
    (1..=12).contains(&month) && (1..=31).contains(&day)
}

/// Local wall-clock time plus an offset east of UTC, in milliseconds since the epoch.
fn instant(
    (year, month, day): (i64, u32, u32),
    (hour, min, sec): (u32, u32, u32),
    millis: u32,
    offset_secs: i64,
) -> Option<i64> {
    if !valid_date(month, day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + min * 60 + sec) - offset_secs;
    Some(secs * 1000 + i64::from(millis))
}

/// `+hhmm`, `-hhmm`, `+hh:mm` or `Z`, in seconds east of UTC.
fn offset(b: &[u8]) -> Option<i64> {
    if b == b"Z" || b == b"z" {
        return Some(0);
    }
    let sign = match b.first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (h, m) = match b.len() {
        5 => (digits(&b[1..3])?, digits(&b[3..5])?),
        6 if b[3] == b':' => (digits(&b[1..3])?, digits(&b[4..6])?),
        3 => (digits(&b[1..3])?, 0),
        _ => return None,
    };
    (h <= 23 && m <= 59).then(|| sign * i64::from(h * 3600 + m * 60))
}

/// Fractional seconds `.f…` (any number of digits), as milliseconds.
fn fraction_millis(b: &[u8]) -> Option<u32> {
    let d = b.strip_prefix(b".")?;
    if d.is_empty() || !d.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut ms = 0;
    for i in 0..3 {
        ms = ms * 10 + d.get(i).map_or(0, |c| u32::from(c - b'0'));
    }
    Some(ms)
}

/// nginx `$time_local` / Apache `%t`: `28/Sep/1970:12:00:00 +0600`.
/// Also accepts fractional seconds (`12:00:00.123 +0600`).
pub fn parse_time_local(b: &[u8]) -> Option<i64> {
    if b.len() < 26
        || b[2] != b'/'
        || b[6] != b'/'
        || b[11] != b':'
        || b[14] != b':'
        || b[17] != b':'
    {
        return None;
    }
    let (secs_end, millis) = match b[20] {
        b' ' => (20, 0),
        b'.' => {
            let sp = memchr::memchr(b' ', &b[20..])? + 20;
            (sp, fraction_millis(&b[20..sp])?)
        }
        _ => return None,
    };
    if b.len() != secs_end + 6 {
        return None;
    }
    instant(
        (
            i64::from(digits(&b[7..11])?),
            month_of(&b[3..6])?,
            digits(&b[0..2])?,
        ),
        (
            digits(&b[12..14])?,
            digits(&b[15..17])?,
            digits(&b[18..20])?,
        ),
        millis,
        offset(&b[secs_end + 1..])?,
    )
}

/// `$time_iso8601` and RFC 3339: `1970-09-28T12:00:00+06:00`, `…00.123Z`, `… 12:00:00`.
/// Without an offset the time is taken as UTC.
pub fn parse_iso8601(b: &[u8]) -> Option<i64> {
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let rest = &b[19..];
    let frac_len = if rest.first() == Some(&b'.') {
        1 + rest[1..].iter().take_while(|c| c.is_ascii_digit()).count()
    } else {
        0
    };
    let millis = if frac_len > 0 {
        fraction_millis(&rest[..frac_len])?
    } else {
        0
    };
    let tz = &rest[frac_len..];
    let off = if tz.is_empty() { 0 } else { offset(tz)? };
    instant(
        (
            i64::from(digits(&b[0..4])?),
            digits(&b[5..7])?,
            digits(&b[8..10])?,
        ),
        (
            digits(&b[11..13])?,
            digits(&b[14..16])?,
            digits(&b[17..19])?,
        ),
        millis,
        off,
    )
}

/// Epoch seconds with an optional fraction: nginx `$msec` (`1713687672.123`),
/// Caddy `ts` (`1761019828.6153953`).
pub fn parse_epoch_seconds(b: &[u8]) -> Option<i64> {
    let dot = memchr::memchr(b'.', b).unwrap_or(b.len());
    let secs = b[..dot].iter().try_fold(0i64, |acc, &d| {
        d.is_ascii_digit()
            .then(|| acc.checked_mul(10)?.checked_add(i64::from(d - b'0')))
            .flatten()
    })?;
    if dot == 0 || secs > 100_000_000_000 {
        return None;
    }
    let millis = if dot < b.len() {
        fraction_millis(&b[dot..])?
    } else {
        0
    };
    Some(secs * 1000 + i64::from(millis))
}

/// Seconds with a fraction (`$request_time`, `0.004`; Caddy `duration`), as milliseconds.
pub fn parse_seconds_as_millis(b: &[u8]) -> Option<u32> {
    let ms = parse_epoch_seconds(b)?;
    u32::try_from(ms).ok()
}

/// Remembers the last `$time_local` string and its instant, and the last
/// date and offset: consecutive lines almost always share the second, and
/// nearly always the day, so the full parse runs about once per day of log.
#[derive(Default)]
pub struct TimeCache {
    last: [u8; 26],
    value: i64,
    /// `dd/Mon/yyyy` and `+hhmm` of the last line, and that day's midnight
    /// in that offset, in seconds since the epoch.
    day: [u8; 16],
    day_start: i64,
}

/// Compares 26 bytes as two overlapping 16-byte words (no `memcmp` call).
#[inline]
fn same26(a: &[u8], b: &[u8; 26]) -> bool {
    let word = |x: &[u8], at: usize| {
        let mut w = [0u8; 16];
        w.copy_from_slice(&x[at..at + 16]);
        u128::from_ne_bytes(w)
    };
    a.len() == 26 && word(a, 0) == word(b, 0) && word(a, 10) == word(b, 10)
}

impl TimeCache {
    /// Parses a `$time_local` value, reusing earlier work where the bytes repeat.
    pub fn time_local(&mut self, b: &[u8]) -> Option<i64> {
        if b.len() != 26 {
            return parse_time_local(b);
        }
        if self.value != 0 && same26(b, &self.last) {
            return Some(self.value);
        }
        let mut day = [0u8; 16];
        day[..11].copy_from_slice(&b[..11]);
        day[11..].copy_from_slice(&b[21..26]);
        let v = if self.day_start != 0
            && day == self.day
            && b[11] == b':'
            && b[14] == b':'
            && b[17] == b':'
            && b[20] == b' '
        {
            let (h, m, s) = (
                digits(&b[12..14])?,
                digits(&b[15..17])?,
                digits(&b[18..20])?,
            );
            if h > 23 || m > 59 || s > 60 {
                return None;
            }
            (self.day_start + i64::from(h * 3600 + m * 60 + s)) * 1000
        } else {
            let v = parse_time_local(b)?;
            let secs = v.div_euclid(1000);
            let (h, m, s) = (
                digits(&b[12..14])?,
                digits(&b[15..17])?,
                digits(&b[18..20])?,
            );
            self.day = day;
            self.day_start = secs - i64::from(h * 3600 + m * 60 + s);
            v
        };
        self.last.copy_from_slice(b);
        self.value = v;
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_local_with_offsets() {
        assert_eq!(parse_time_local(b"01/Jan/1970:00:00:00 +0000"), Some(0));
        assert_eq!(
            parse_time_local(b"28/Sep/1970:12:00:00 +0600"),
            Some(23_349_600_000)
        );
        // +0330 is half an hour and three hours ahead of UTC.
        assert_eq!(
            parse_time_local(b"22/Jan/2019:03:56:14 +0330"),
            parse_iso8601(b"2019-01-22T00:26:14Z")
        );
        assert_eq!(
            parse_time_local(b"22/Jan/2019:03:56:14.250 +0000").map(|t| t % 1000),
            Some(250)
        );
        assert_eq!(parse_time_local(b"32/Jan/2019:03:56:14 +0000"), None);
        assert_eq!(parse_time_local(b"22/Jxn/2019:03:56:14 +0000"), None);
    }

    #[test]
    fn cache_agrees_with_the_parser() {
        let mut c = TimeCache::default();
        for t in [
            "22/Jan/2019:03:56:14 +0330",
            "22/Jan/2019:03:56:14 +0330",
            "22/Jan/2019:23:59:59 +0330",
            "23/Jan/2019:00:00:00 +0330",
            "23/Jan/2019:00:00:00 -0700",
            "23/Jan/2019:25:00:00 -0700",
            "23/Jan/2019:00:00:00.5 -0700",
        ] {
            assert_eq!(
                c.time_local(t.as_bytes()),
                parse_time_local(t.as_bytes()),
                "{t}"
            );
        }
    }

    #[test]
    fn iso_and_epoch() {
        assert_eq!(
            parse_iso8601(b"1970-09-28T12:00:00+06:00"),
            Some(23_349_600_000)
        );
        assert_eq!(
            parse_iso8601(b"2018-11-30T22:23:00.186641Z"),
            Some(1_543_616_580_186)
        );
        assert_eq!(
            parse_epoch_seconds(b"1713687672.123"),
            Some(1_713_687_672_123)
        );
        assert_eq!(
            parse_epoch_seconds(b"1761019828.6153953"),
            Some(1_761_019_828_615)
        );
        assert_eq!(parse_seconds_as_millis(b"0.004"), Some(4));
        assert_eq!(parse_epoch_seconds(b"-"), None);
        assert_eq!(parse_epoch_seconds(b".5"), None);
    }
}

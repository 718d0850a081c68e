//! The time zone in which days are cut. Log times are UTC instants; a day of
//! usage is a calendar day in this zone.

use chrono::{DateTime, FixedOffset, NaiveDate, Offset, TimeZone, Utc};
use chrono_tz::Tz;

#[derive(Clone, Debug)]
pub enum Zone {
    Utc,
    Fixed(FixedOffset),
    Named(Tz),
}

impl Zone {
    /// `UTC`, an IANA name (`Europe/Berlin`), a fixed offset (`+03:30`), or
    /// `local` (the `TZ` variable, else `/etc/localtime`, else UTC).
    pub fn parse(s: &str) -> Result<Zone, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("utc") || s == "Z" || s.eq_ignore_ascii_case("etc/utc") {
            return Ok(Zone::Utc);
        }
        if s.eq_ignore_ascii_case("local") {
            return Ok(Zone::local());
        }
        if let Some(off) = parse_offset(s) {
            return Ok(Zone::Fixed(off));
        }
        s.parse::<Tz>().map(Zone::Named).map_err(|_| {
            format!("unknown time zone {s:?}: use UTC, local, an IANA name such as Europe/Berlin, or an offset such as +03:30")
        })
    }

    /// The machine's zone.
    pub fn local() -> Zone {
        let from_env = std::env::var("TZ")
            .ok()
            .map(|v| v.trim_start_matches(':').to_string());
        let from_link = || {
            let target = std::fs::read_link("/etc/localtime").ok()?;
            let target = target.to_string_lossy();
            let name = target.split("zoneinfo/").nth(1)?;
            Some(name.to_string())
        };
        let name = from_env.filter(|v| !v.is_empty()).or_else(from_link);
        match name.as_deref().map(Zone::parse) {
            Some(Ok(z)) => z,
            _ => Zone::Utc,
        }
    }

    /// The name printed in summaries (`UTC`, `Europe/Berlin`, `+03:30`).
    pub fn name(&self) -> String {
        match self {
            Zone::Utc => "UTC".into(),
            Zone::Fixed(o) => o.to_string(),
            Zone::Named(tz) => tz.name().into(),
        }
    }

    fn offset_secs(&self, ms: i64) -> i32 {
        let Some(t) = DateTime::<Utc>::from_timestamp_millis(ms) else {
            return 0;
        };
        match self {
            Zone::Utc => 0,
            Zone::Fixed(o) => o.local_minus_utc(),
            Zone::Named(tz) => tz
                .offset_from_utc_datetime(&t.naive_utc())
                .fix()
                .local_minus_utc(),
        }
    }

    /// The wall-clock time of day in this zone of an instant.
    pub fn local_time(&self, ms: i64) -> chrono::NaiveTime {
        let local = ms.div_euclid(1000) + i64::from(self.offset_secs(ms));
        let secs = u32::try_from(local.rem_euclid(86_400)).unwrap_or(0);
        chrono::NaiveTime::from_num_seconds_from_midnight_opt(secs, 0).unwrap_or_default()
    }

    /// The calendar day in this zone of an instant.
    pub fn day_of(&self, ms: i64) -> NaiveDate {
        let local = ms.div_euclid(1000) + i64::from(self.offset_secs(ms));
        let days = local.div_euclid(86_400);
        NaiveDate::from_num_days_from_ce_opt((days + 719_163) as i32).unwrap_or_default()
    }

    /// RFC 3339 text of an instant, in this zone.
    pub fn rfc3339(&self, ms: i64) -> String {
        let Some(t) = DateTime::<Utc>::from_timestamp_millis(ms) else {
            return String::new();
        };
        let off = FixedOffset::east_opt(self.offset_secs(ms)).unwrap_or(Utc.fix());
        let local = t.with_timezone(&off);
        if self.offset_secs(ms) == 0 {
            local.format("%Y-%m-%dT%H:%M:%SZ").to_string()
        } else {
            local.format("%Y-%m-%dT%H:%M:%S%:z").to_string()
        }
    }
}

fn parse_offset(s: &str) -> Option<FixedOffset> {
    let b = s.as_bytes();
    let sign = match b.first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits: String = s[1..].chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let h: i32 = digits[..2].parse().ok()?;
    let m: i32 = digits[2..].parse().ok()?;
    FixedOffset::east_opt(sign * (h * 3600 + m * 60))
}

/// Caches the current day's bounds so most lines need one comparison.
pub struct DayCutter {
    zone: Zone,
    start: i64,
    end: i64,
    day: NaiveDate,
}

impl DayCutter {
    pub fn new(zone: Zone) -> Self {
        DayCutter {
            zone,
            start: 0,
            end: 0,
            day: NaiveDate::default(),
        }
    }

    /// The 5-minute bucket of the day of `ms`, from 0. Call after [`Self::day`].
    pub fn bucket_5m(&self, ms: i64) -> u16 {
        u16::try_from(((ms - self.start) / 300_000).clamp(0, 400)).unwrap_or(400)
    }

    pub fn day(&mut self, ms: i64) -> NaiveDate {
        if ms >= self.start && ms < self.end {
            return self.day;
        }
        let day = self.zone.day_of(ms);
        // Bounds of the same day, found by probing whole hours around `ms`
        // (zone offsets change on hour or half-hour boundaries).
        let step = 15 * 60 * 1000;
        let mut start = ms - ms.rem_euclid(step);
        while self.zone.day_of(start - step) == day && ms - start < 2 * 86_400_000 {
            start -= step;
        }
        let mut end = start + step;
        while self.zone.day_of(end) == day && end - ms < 2 * 86_400_000 {
            end += step;
        }
        self.start = start;
        self.end = end;
        self.day = day;
        day
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_follow_the_zone() {
        let ms = 1_700_000_000_000; // 2023-11-14T22:13:20Z
        assert_eq!(Zone::Utc.day_of(ms).to_string(), "2023-11-14");
        assert_eq!(
            Zone::parse("Asia/Tokyo").unwrap().day_of(ms).to_string(),
            "2023-11-15"
        );
        assert_eq!(
            Zone::parse("-05:00").unwrap().day_of(ms).to_string(),
            "2023-11-14"
        );
        assert_eq!(
            Zone::parse("Asia/Tokyo").unwrap().rfc3339(ms),
            "2023-11-15T07:13:20+09:00"
        );
        assert!(Zone::parse("Mars/Olympus").is_err());
    }

    #[test]
    fn cutter_agrees_with_day_of_across_dst() {
        let zone = Zone::parse("Europe/Berlin").unwrap();
        let mut cut = DayCutter::new(zone.clone());
        // Every 7 minutes over four days around the March 2024 DST change.
        let start = 1_711_238_400_000i64;
        for i in 0..(4 * 24 * 60 / 7) {
            let ms = start + i * 7 * 60_000;
            assert_eq!(cut.day(ms), zone.day_of(ms), "at {ms}");
        }
    }
}

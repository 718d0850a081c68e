//! When to try a delivery again, and when to stop.
//!
//! The verdict on one attempt depends only on what the receiver answered;
//! the delay before the next attempt on the attempt number, a random draw and
//! the receiver's `Retry-After`. Both are pure so the rules can be tested
//! without a network.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// Retry pacing for one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay before the first retry; doubled on each further attempt.
    pub initial: Duration,
    /// No computed delay exceeds this.
    pub max_delay: Duration,
    /// The longest `Retry-After` honoured as given; a longer one is cut to
    /// this so a receiver cannot park the queue for days.
    pub max_retry_after: Duration,
    /// A notice still undelivered this long after it was queued expires and
    /// is reported.
    pub expire_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial: Duration::from_secs(5),
            max_delay: Duration::from_secs(10 * 60),
            max_retry_after: Duration::from_secs(60 * 60),
            expire_after: Duration::from_secs(24 * 60 * 60),
        }
    }
}

/// What one attempt's outcome means for the notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The receiver took it; the notice is done.
    Delivered,
    /// A passing failure: try again, after at least the given delay when the
    /// receiver named one.
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// The receiver refused this notice for good; retrying would not help.
    Rejected { reason: String },
    /// The receiver says the endpoint is gone (410): stop sending to it until
    /// its configuration changes.
    Disable { reason: String },
}

/// The verdict on an HTTP answer. 2xx delivers; 408, 429 and 5xx are retried
/// (honouring `Retry-After`); 410 disables the endpoint; any other status is
/// a permanent rejection (a 3xx is not followed: a webhook that redirects is
/// misconfigured, and following it could send a signed alert elsewhere).
pub fn http_verdict(
    status: u16,
    retry_after: Option<&str>,
    now: DateTime<Utc>,
    policy: &RetryPolicy,
) -> Verdict {
    match status {
        200..=299 => Verdict::Delivered,
        408 | 429 | 500..=599 => Verdict::Retry {
            reason: format!("HTTP {status}"),
            after: retry_after
                .and_then(|v| parse_retry_after(v, now))
                .map(|d| d.min(policy.max_retry_after)),
        },
        410 => Verdict::Disable {
            reason: "HTTP 410 Gone: the receiver removed this endpoint".into(),
        },
        _ => Verdict::Rejected {
            reason: format!("HTTP {status}"),
        },
    }
}

/// Reads a `Retry-After` value: delay-seconds or an HTTP date. A date in the
/// past means "now"; anything unreadable is ignored.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

/// The delay before retry number `attempt` (1 for the first retry):
/// exponential from `initial`, capped at `max_delay`, with "equal jitter" —
/// a uniform draw between half the step and the whole step, from `draw` in
/// `[0, 1)` — so many notices failing together do not retry together, yet
/// none retries much sooner than the schedule. A receiver's `Retry-After`
/// is a floor.
pub fn delay(
    policy: &RetryPolicy,
    attempt: u32,
    draw: f64,
    retry_after: Option<Duration>,
) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(31));
    let step = policy
        .initial
        .checked_mul(factor)
        .unwrap_or(policy.max_delay)
        .min(policy.max_delay);
    let draw = draw.clamp(0.0, 1.0);
    let jittered = step / 2 + step.mul_f64(0.5 * draw);
    match retry_after {
        Some(floor) => jittered.max(floor),
        None => jittered,
    }
}

/// A uniform draw in `[0, 1)` for [`delay`], from the system's random source.
pub fn random_draw() -> f64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 7, 0, 0).unwrap()
    }

    #[test]
    fn statuses_map_to_verdicts() {
        let p = RetryPolicy::default();
        assert_eq!(http_verdict(200, None, now(), &p), Verdict::Delivered);
        assert_eq!(http_verdict(204, None, now(), &p), Verdict::Delivered);
        for retried in [408, 429, 500, 502, 503, 599] {
            assert!(
                matches!(
                    http_verdict(retried, None, now(), &p),
                    Verdict::Retry { .. }
                ),
                "{retried}"
            );
        }
        for rejected in [301, 400, 401, 403, 404, 413, 422] {
            assert!(
                matches!(
                    http_verdict(rejected, None, now(), &p),
                    Verdict::Rejected { .. }
                ),
                "{rejected}"
            );
        }
        assert!(matches!(
            http_verdict(410, None, now(), &p),
            Verdict::Disable { .. }
        ));
    }

    #[test]
    fn retry_after_is_honoured_and_capped() {
        let p = RetryPolicy::default();
        let v = http_verdict(429, Some("120"), now(), &p);
        assert_eq!(
            v,
            Verdict::Retry {
                reason: "HTTP 429".into(),
                after: Some(Duration::from_secs(120))
            }
        );
        let v = http_verdict(503, Some("Sat, 28 Nov 2026 07:01:30 GMT"), now(), &p);
        assert!(matches!(v, Verdict::Retry { after: Some(d), .. } if d == Duration::from_secs(90)));
        let v = http_verdict(503, Some("9999999"), now(), &p);
        assert!(matches!(v, Verdict::Retry { after: Some(d), .. } if d == p.max_retry_after));
        assert_eq!(
            parse_retry_after("Fri, 27 Nov 2026 07:00:00 GMT", now()),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now()), None);
    }

    #[test]
    fn delays_grow_with_jitter_and_stay_capped() {
        let p = RetryPolicy::default();
        assert_eq!(delay(&p, 1, 0.0, None), Duration::from_millis(2500));
        assert_eq!(delay(&p, 1, 1.0, None), Duration::from_secs(5));
        assert_eq!(delay(&p, 3, 1.0, None), Duration::from_secs(20));
        for attempt in [10, 31, 32, 1000, u32::MAX] {
            let d = delay(&p, attempt, 0.999, None);
            assert!(d <= p.max_delay && d >= p.max_delay / 2, "{attempt}: {d:?}");
        }
        assert_eq!(
            delay(&p, 1, 0.0, Some(Duration::from_secs(60))),
            Duration::from_secs(60)
        );
        let draws: Vec<f64> = (0..32).map(|_| random_draw()).collect();
        assert!(draws.iter().all(|d| (0.0..1.0).contains(d)));
        assert!(draws.windows(2).any(|w| w[0] != w[1]));
    }
}

//! Range checks of every setting whose type alone lets nonsense through (a
//! port of 0, a factor of NaN, a share of 2, a window of 0 minutes, a host
//! with a line break…). Each error names the line, the setting, the value
//! and the valid range, so a typo is caught by `keywatch check`, not by a
//! rule that silently never fires.

use std::time::Duration;

use super::{Config, Dur};

/// One problem: the table the setting is in, the setting, and what is wrong.
struct Problem {
    table: String,
    key: String,
    message: String,
}

#[derive(Default)]
pub(crate) struct Checks {
    problems: Vec<Problem>,
}

impl Checks {
    pub(crate) fn bad(&mut self, table: &str, key: &str, message: String) {
        self.problems.push(Problem {
            table: table.to_owned(),
            key: key.to_owned(),
            message,
        });
    }

    pub(crate) fn int(&mut self, table: &str, key: &str, v: u64, min: u64, max: u64) {
        if v < min || v > max {
            self.bad(
                table,
                key,
                format!("{v} is out of range; use {min} to {max}"),
            );
        }
    }

    pub(crate) fn float(
        &mut self,
        table: &str,
        key: &str,
        v: f64,
        min: f64,
        max: f64,
        open_min: bool,
    ) {
        let low_ok = if open_min { v > min } else { v >= min };
        if !v.is_finite() || !low_ok || v > max {
            let from = if open_min { "more than " } else { "" };
            self.bad(
                table,
                key,
                format!("{v} is out of range; use a number {from}{min} up to {max}"),
            );
        }
    }

    fn dur(&mut self, table: &str, key: &str, v: Option<Dur>, min: Duration, max: Duration) {
        if let Some(Dur(d)) = v
            && (d < min || d > max)
        {
            self.bad(
                table,
                key,
                format!(
                    "{} is out of range; use {} to {}",
                    show(d),
                    show(min),
                    show(max)
                ),
            );
        }
    }

    fn text(&mut self, table: &str, key: &str, v: &str, what: &str) {
        if v.is_empty() {
            self.bad(table, key, format!("is empty; give {what}"));
        } else if v.chars().any(|c| c.is_control()) {
            self.bad(
                table,
                key,
                format!("holds a line break or control character; give {what}"),
            );
        }
    }
}

fn show(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(86_400_000) && ms > 0 {
        format!("{}d", ms / 86_400_000)
    } else if ms.is_multiple_of(3_600_000) && ms > 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) && ms > 0 {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

const TENTH: Duration = Duration::from_millis(100);
const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// Checks every ranged setting of `config`; `text` is the file, for line
/// numbers. The first problem is returned as `line N: setting: message`.
pub fn check(config: &Config, text: &str) -> Result<(), String> {
    let mut c = Checks::default();
    if let Some(n) = config.format.max_line_length {
        c.int("format", "max_line_length", n as u64, 1024, 64 << 20);
    }
    let k = &config.keys;
    for p in &k.prefixes {
        if p.is_empty() || p.len() > 24 || !p.bytes().all(|b| b.is_ascii_graphic()) {
            c.bad(
                "keys",
                "prefixes",
                format!("{p:?}: a prefix is 1 to 24 printable characters without spaces, such as \"kw_live_\""),
            );
        }
    }
    if let Some(n) = k.logged_prefix_length {
        c.int("keys", "logged_prefix_length", n as u64, 4, 256);
    }
    for (key, list) in [
        ("fields", k.fields.as_deref().unwrap_or(&[])),
        ("query_params", k.query_params.as_deref().unwrap_or(&[])),
        ("extra_query_params", &k.extra_query_params[..]),
    ] {
        for v in list {
            if v.trim().is_empty() || v.chars().any(|ch| ch.is_control() || ch.is_whitespace()) {
                c.bad("keys", key, format!("{v:?}: give a name without spaces"));
            }
        }
    }
    for (i, n) in k.names.iter().enumerate() {
        let table = format!("keys.names[{i}]");
        if n.name.trim().is_empty() {
            c.bad(
                &table,
                "name",
                "is empty; give the name shown next to the key".into(),
            );
        }
    }
    if let Err(e) = crate::clients::Proxies::parse(&config.clients.trusted_proxies) {
        c.bad("clients", "trusted_proxies", e);
    }
    let r = &config.rules;
    c.int(
        "rules",
        "ipv6_client_prefix",
        r.ipv6_client_prefix.into(),
        16,
        128,
    );
    r.check(&mut c);
    if let Some(days) = config.summary.rotation_days {
        c.int("summary", "rotation_days", days.into(), 1, 3650);
    }
    pacing(&mut c, "alerts", &config.alerts);
    for (name, ch) in &config.channels {
        let t = format!("channels.{name}");
        c.dur(&t, "group_wait", ch.group_wait, Duration::ZERO, DAY);
        c.dur(&t, "group_interval", ch.group_interval, TENTH, DAY);
        c.dur(&t, "repeat_interval", ch.repeat_interval, MINUTE, 30 * DAY);
        c.dur(&t, "connect_timeout", ch.connect_timeout, TENTH, 5 * MINUTE);
        c.dur(&t, "timeout", ch.timeout, TENTH, 10 * MINUTE);
        if let Some(port) = ch.port {
            c.int(&t, "port", port.into(), 1, 65_535);
        }
        if let Some(host) = &ch.host {
            c.text(&t, "host", host, "the mail server's name or address");
            if host.contains(char::is_whitespace) || host.len() > 253 {
                c.bad(
                    &t,
                    "host",
                    format!("{:?} is not a host name", host.escape_debug().to_string()),
                );
            }
        }
        for (key, v) in [("username", &ch.username), ("from", &ch.from)] {
            if let Some(v) = v {
                c.text(&t, key, v, "one line of text");
            }
        }
        for to in &ch.to {
            c.text(&t, "to", to, "a mail address");
        }
    }
    let Some(p) = c.problems.into_iter().next() else {
        return Ok(());
    };
    let line =
        setting_line(text, &p.table, &p.key).map_or_else(String::new, |l| format!("line {l}: "));
    Err(format!("{line}{}.{}: {}", p.table, p.key, p.message))
}

fn pacing(c: &mut Checks, t: &str, a: &crate::alert::channels::AlertsConfig) {
    c.dur(t, "group_wait", a.group_wait, Duration::ZERO, DAY);
    c.dur(t, "group_interval", a.group_interval, TENTH, DAY);
    c.dur(t, "repeat_interval", a.repeat_interval, MINUTE, 30 * DAY);
    c.dur(t, "retry_initial", a.retry_initial, TENTH, HOUR);
    c.dur(t, "retry_max", a.retry_max, TENTH, DAY);
    c.dur(t, "expire_after", a.expire_after, SECOND, 30 * DAY);
    let d = crate::deliver::retry::RetryPolicy::default();
    let initial = a.retry_initial.map_or(d.initial, |x| x.0);
    let max = a.retry_max.map_or(d.max_delay, |x| x.0);
    if initial > max {
        c.bad(
            t,
            if a.retry_max.is_some() { "retry_max" } else { "retry_initial" },
            format!(
                "retry_initial ({}) is above retry_max ({}); the first retry cannot wait longer than the longest",
                show(initial),
                show(max)
            ),
        );
    }
}

/// The line of `key` in `[table]` (or written dotted, `table.key = …`).
pub(super) fn setting_line(text: &str, table: &str, key: &str) -> Option<usize> {
    let header = |l: &str| {
        let l = l.trim();
        l.starts_with('[').then(|| {
            l.trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("")
                .replace(['"', ' '], "")
        })
    };
    let is_key = |l: &str, k: &str| {
        let l = l.trim_start();
        l.strip_prefix(k)
            .is_some_and(|rest| rest.trim_start().starts_with('='))
    };
    // `[keys.names[0]]` style tables are arrays: match their base name.
    let base = table.split('[').next().unwrap_or(table);
    let mut current = String::new();
    let mut table_line = None;
    for (n, l) in text.lines().enumerate() {
        if let Some(h) = header(l) {
            current = h;
            if current == base && table_line.is_none() {
                table_line = Some(n + 1);
            }
            continue;
        }
        if current == base && is_key(l, key) {
            return Some(n + 1);
        }
        let dotted = if current.is_empty() {
            format!("{base}.{key}")
        } else {
            base.strip_prefix(&format!("{current}."))
                .map_or_else(String::new, |rest| format!("{rest}.{key}"))
        };
        if !dotted.is_empty() && is_key(l, &dotted) {
            return Some(n + 1);
        }
    }
    table_line
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    fn err(text: &str) -> String {
        Config::parse(text).err().unwrap_or_default()
    }

    #[test]
    fn nonsense_values_are_refused_with_line_setting_and_range() {
        for (text, want) in [
            (
                "[rules.key_rate_spike]\nfactor = nan\n",
                "line 2: rules.key_rate_spike.factor: NaN is out of range",
            ),
            (
                "[rules.key_rate_spike]\nfactor = -1.0\n",
                "line 2: rules.key_rate_spike.factor: -1 is out of range",
            ),
            (
                "[rules.rejected_key_repeated]\n\nmin_share = 2.0\n",
                "line 3: rules.rejected_key_repeated.min_share: 2 is out of range; use a number more than 0 up to 1",
            ),
            (
                "[rules.rejected_key_repeated]\nwindow_minutes = 0\n",
                "line 2: rules.rejected_key_repeated.window_minutes: 0 is out of range; use 1 to 10080",
            ),
            (
                "[alerts]\nretry_initial = \"30m\"\nretry_max = \"10s\"\n",
                "line 3: alerts.retry_max: retry_initial (30m) is above retry_max (10s)",
            ),
            ("[keys]\nprefixes = [\"\"]\n", "line 2: keys.prefixes: \"\""),
            (
                "[rules.revoked_key_in_use]\nprefixes = [\"\"]\n",
                "line 2: rules.revoked_key_in_use.prefixes",
            ),
            (
                "[channels.m]\ntype = \"email\"\nport = 0\n",
                "line 3: channels.m.port: 0 is out of range; use 1 to 65535",
            ),
            (
                "[channels.m]\ntype = \"email\"\nhost = \"a\\r\\nRCPT TO:<x@y>\"\n",
                "line 3: channels.m.host: holds a line break",
            ),
            (
                "rules.key_bruteforce.capacity = 0\n",
                "line 1: rules.key_bruteforce.capacity: 0 is out of range",
            ),
        ] {
            let e = err(text);
            assert!(e.starts_with(want), "{text:?}\n  got: {e}\n want: {want}");
        }
        assert!(
            Config::parse("[rules.key_rate_spike]\nfactor = 4.0\nextreme_factor = 12.0\n").is_ok()
        );
    }
}

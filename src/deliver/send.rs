//! Sending queued notices: one attempt over SMTP or HTTP, and the sender
//! that takes due notices from the outbox, tries them and records each
//! outcome. The sender runs on its own thread with its own store
//! connection, so a slow or dead receiver never holds up reading logs.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use lettre::Transport;
use lettre::address::Envelope;
use lettre::transport::smtp::SmtpTransport;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};

use super::retry::{self, RetryPolicy, Verdict};
use super::safe;
use super::sign::signature_headers;
use crate::alert::channels::{Channel, EmailTarget, HttpTarget, Target, TlsMode};
use crate::store::outbox::Attempt;
use crate::store::{Store, StoreError};

/// What one attempt came to, and what the receiver said (printable, one
/// line, with no URL beyond its host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub verdict: Verdict,
    pub answer: String,
}

/// Tries to deliver `body` (notice `id`) through `channel` once.
pub fn attempt(channel: &Channel, id: &str, body: &[u8], policy: &RetryPolicy) -> Outcome {
    match &channel.target {
        Target::Http(t) => http(t, id, body, policy, Utc::now()),
        Target::Email(t) => smtp(t, body),
    }
}

fn http(
    t: &HttpTarget,
    id: &str,
    body: &[u8],
    policy: &RetryPolicy,
    now: DateTime<Utc>,
) -> Outcome {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(t.connect_timeout))
        .timeout_global(Some(t.timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .user_agent(concat!("keywatch/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut req = agent
        .post(&t.url)
        .header("Content-Type", "application/json");
    match &t.secret {
        Some(secret) => {
            for (k, v) in signature_headers(secret, id, now.timestamp(), body, t.github) {
                req = req.header(k, v);
            }
        }
        None => {
            req = req
                .header("webhook-id", id)
                .header("webhook-timestamp", now.timestamp().to_string());
        }
    }
    for (k, v) in &t.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    match req.send(body) {
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let mut head = Vec::new();
            let _ = resp.body_mut().as_reader().take(512).read_to_end(&mut head);
            let said = safe::one_line(&head, 200);
            let answer = if said.trim().is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {}", said.trim())
            };
            let verdict = match retry::http_verdict(status, retry_after.as_deref(), now, policy) {
                Verdict::Rejected { .. } => Verdict::Rejected {
                    reason: answer.clone(),
                },
                v => v,
            };
            Outcome { verdict, answer }
        }
        Err(e) => {
            // Errors may quote the URL, which can be the credential itself.
            let text = e.to_string().replace(&t.url, &t.shown);
            let answer = safe::one_line(format!("{}: {text}", t.shown).as_bytes(), 300);
            Outcome {
                verdict: Verdict::Retry {
                    reason: answer.clone(),
                    after: None,
                },
                answer,
            }
        }
    }
}

fn smtp(t: &EmailTarget, message: &[u8]) -> Outcome {
    let fail = |answer: String, permanent: bool| Outcome {
        verdict: if permanent {
            Verdict::Rejected {
                reason: answer.clone(),
            }
        } else {
            Verdict::Retry {
                reason: answer.clone(),
                after: None,
            }
        },
        answer,
    };
    let envelope = match Envelope::new(
        Some(t.from.email.clone()),
        t.to.iter().map(|m| m.email.clone()).collect(),
    ) {
        Ok(e) => e,
        Err(e) => return fail(format!("envelope: {e}"), true),
    };
    let mut builder = SmtpTransport::builder_dangerous(&t.host)
        .port(t.port)
        .timeout(Some(t.timeout));
    if t.tls != TlsMode::None {
        let mut params = TlsParameters::builder(t.host.clone());
        if let Some(pem) = &t.ca_pem {
            match Certificate::from_pem(pem) {
                Ok(c) => params = params.add_root_certificate(c),
                Err(e) => return fail(format!("ca_file: {e}"), true),
            }
        }
        let params = match params.build_rustls() {
            Ok(p) => p,
            Err(e) => return fail(format!("TLS settings: {e}"), true),
        };
        builder = builder.tls(if t.tls == TlsMode::Tls {
            Tls::Wrapper(params)
        } else {
            Tls::Required(params)
        });
    }
    if let Some((user, pass)) = &t.credentials {
        builder = builder.credentials(Credentials::new(user.clone(), pass.clone()));
    }
    let shown = format!("smtp://{}:{}", t.host, t.port);
    match builder.build().send_raw(&envelope, message) {
        Ok(resp) => {
            let said: Vec<&str> = resp.message().collect();
            Outcome {
                verdict: Verdict::Delivered,
                answer: safe::one_line(
                    format!("{} {}", resp.code(), said.join(" ")).as_bytes(),
                    200,
                ),
            }
        }
        Err(e) => fail(
            safe::one_line(format!("{shown}: {e}").as_bytes(), 300),
            e.is_permanent(),
        ),
    }
}

/// Takes due notices from the outbox and delivers them.
pub struct Sender {
    store: Store,
    channels: Vec<Channel>,
    policy: RetryPolicy,
    last_prune: Option<std::time::Instant>,
}

/// Finished notices and quiet alerts are kept this long for `keywatch alerts`.
const KEEP_MS: i64 = 30 * 24 * 60 * 60 * 1000;

/// What one pass over the outbox did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Pass {
    pub tried: usize,
    /// Due notices left alone because their channel is disabled.
    pub held: usize,
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

impl Sender {
    pub fn new(store: Store, channels: Vec<Channel>, policy: RetryPolicy) -> Sender {
        Sender {
            store,
            channels,
            policy,
            last_prune: None,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Expires old notices, re-enables channels whose settings changed, and
    /// tries every notice due now (each group's oldest only). Reports on
    /// standard error what failed.
    pub fn pass(&mut self, stop: &AtomicBool) -> Result<Pass, StoreError> {
        let now = now_ms();
        let expire_ms = i64::try_from(self.policy.expire_after.as_millis()).unwrap_or(i64::MAX);
        for d in self.store.expire(now.saturating_sub(expire_ms), now)? {
            eprintln!(
                "keywatch: channel {}: notice {} expired undelivered after {} attempts (last error: {})",
                d.channel,
                d.id,
                d.attempts,
                d.last_error.as_deref().unwrap_or("none")
            );
        }
        if self
            .last_prune
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(3_600))
        {
            self.last_prune = Some(std::time::Instant::now());
            self.store.prune_outbox(now - KEEP_MS)?;
            self.store.prune_alerts(now - KEEP_MS)?;
        }
        let mut disabled = Vec::new();
        for d in self.store.disabled_channels()? {
            match self.channels.iter().find(|c| c.name == d.channel) {
                Some(c) if c.fingerprint != d.fingerprint => {
                    self.store.enable_channel(&d.channel)?;
                    eprintln!(
                        "keywatch: channel {}: settings changed since the receiver disabled it; sending again",
                        d.channel
                    );
                }
                _ => disabled.push(d.channel),
            }
        }
        let mut pass = Pass::default();
        for q in self.store.due(now, 100)? {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            if disabled.contains(&q.channel) {
                pass.held += 1;
                continue;
            }
            let Some(ch) = self.channels.iter().find(|c| c.name == q.channel) else {
                let error = format!(
                    "channel {} is no longer configured; the notice cannot be sent",
                    q.channel
                );
                eprintln!("keywatch: notice {}: {error}", q.id);
                self.store
                    .record_attempt(q.seq, &Attempt::Rejected { error }, now_ms())?;
                continue;
            };
            pass.tried += 1;
            let out = attempt(ch, &q.id, &q.body, &self.policy);
            let at = now_ms();
            let recorded = match out.verdict {
                Verdict::Delivered => Attempt::Delivered,
                Verdict::Retry { reason, after } => {
                    let wait =
                        retry::delay(&self.policy, q.attempts + 1, retry::random_draw(), after);
                    eprintln!(
                        "keywatch: channel {}: notice {} not delivered ({reason}); trying again in {:.1}s",
                        ch.name,
                        q.id,
                        wait.as_secs_f64()
                    );
                    Attempt::Retry {
                        error: reason,
                        next_ms: at + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 2),
                    }
                }
                Verdict::Rejected { reason } => {
                    eprintln!(
                        "keywatch: channel {}: notice {} refused for good: {reason}",
                        ch.name, q.id
                    );
                    Attempt::Rejected { error: reason }
                }
                Verdict::Disable { reason } => {
                    eprintln!(
                        "keywatch: channel {}: {reason}; the channel is disabled until its settings change",
                        ch.name
                    );
                    self.store
                        .disable_channel(&ch.name, &ch.fingerprint, &reason, at)?;
                    disabled.push(ch.name.clone());
                    Attempt::Rejected { error: reason }
                }
            };
            self.store.record_attempt(q.seq, &recorded, at)?;
        }
        Ok(pass)
    }

    /// How long to sleep before the next pass: until the next notice is
    /// due, between 50 ms and 1 s.
    pub fn idle(&self, pass: Pass) -> Duration {
        if pass.held > 0 && pass.tried == 0 {
            return Duration::from_secs(1);
        }
        let next = self.store.next_due_ms().ok().flatten();
        let ms = next.map_or(1_000, |n| (n - now_ms()).clamp(50, 1_000));
        Duration::from_millis(u64::try_from(ms).unwrap_or(1_000))
    }

    /// Runs until `stop`; `wake` cuts a sleep short when notices are queued.
    pub fn run(mut self, stop: Arc<AtomicBool>, wake: crossbeam_channel::Receiver<()>) {
        while !stop.load(Ordering::Relaxed) {
            let pass = match self.pass(&stop) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("keywatch: alert sender: {e}");
                    Pass::default()
                }
            };
            match wake.recv_timeout(self.idle(pass)) {
                Ok(()) | Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Delivers until nothing deliverable is queued or `deadline` passes;
    /// returns how many notices are still queued for enabled channels.
    pub fn drain(&mut self, deadline: std::time::Instant) -> Result<usize, StoreError> {
        let never = AtomicBool::new(false);
        loop {
            let pass = self.pass(&never)?;
            let disabled: Vec<String> = self
                .store
                .disabled_channels()?
                .into_iter()
                .map(|d| d.channel)
                .collect();
            let queued: usize = self
                .store
                .outbox_counts()?
                .iter()
                .filter(|(ch, state, _)| state == "queued" && !disabled.contains(ch))
                .map(|(_, _, n)| n)
                .sum();
            if queued == 0 || std::time::Instant::now() >= deadline {
                return Ok(queued);
            }
            let wait = self
                .idle(pass)
                .min(deadline.saturating_duration_since(std::time::Instant::now()));
            std::thread::sleep(wait);
        }
    }
}

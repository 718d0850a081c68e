//! The alert outbox: notices waiting to be delivered, kept in the store.
//!
//! A notice is queued in the same transaction as the state that produced it
//! ([`Store::commit`]), so after a crash either both exist or neither does.
//! A sender takes due notices ([`Store::due`]), tries them, and records each
//! attempt ([`Store::record_attempt`]). Within one channel and group only the
//! oldest queued notice is ever due, so a group's notices arrive in order.
//! Finished rows stay for `keywatch alerts` until [`Store::prune_outbox`].

use rusqlite::{OptionalExtension, Transaction, params};

use super::{Store, StoreError};

/// A notice to queue for one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The notice id, carried on every attempt; `(id, channel)` is queued
    /// at most once.
    pub id: String,
    pub channel: String,
    /// Notices of one group are delivered in the order they were queued.
    pub group: String,
    /// The rendered body, exactly as it will be sent.
    pub body: Vec<u8>,
    pub created_ms: i64,
}

/// A queued notice as the sender sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub seq: i64,
    pub id: String,
    pub channel: String,
    pub group: String,
    pub body: Vec<u8>,
    pub created_ms: i64,
    /// Attempts made so far.
    pub attempts: u32,
}

/// Where a notice stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    Queued,
    Delivered,
    /// The receiver refused it for good (a 4xx other than 408/429).
    Rejected,
    /// It kept failing until it expired.
    Expired,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Queued => "queued",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Rejected => "rejected",
            DeliveryState::Expired => "expired",
        }
    }

    fn parse(s: &str) -> DeliveryState {
        match s {
            "delivered" => DeliveryState::Delivered,
            "rejected" => DeliveryState::Rejected,
            "expired" => DeliveryState::Expired,
            _ => DeliveryState::Queued,
        }
    }
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Delivered,
    /// Failed for now; due again at `next_ms`.
    Retry {
        error: String,
        next_ms: i64,
    },
    /// Failed for good.
    Rejected {
        error: String,
    },
}

/// One notice's delivery record, for `keywatch alerts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: String,
    pub channel: String,
    pub group: String,
    pub state: DeliveryState,
    pub attempts: u32,
    pub created_ms: i64,
    pub done_ms: Option<i64>,
    pub last_error: Option<String>,
}

pub(crate) fn enqueue(tx: &Transaction<'_>, notices: &[Outgoing]) -> rusqlite::Result<()> {
    if notices.is_empty() {
        return Ok(());
    }
    let mut insert = tx.prepare_cached(
        "INSERT OR IGNORE INTO outbox (id, channel, grp, body, created_ms, next_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
    )?;
    for n in notices {
        insert.execute(params![n.id, n.channel, n.group, n.body, n.created_ms])?;
    }
    Ok(())
}

impl Store {
    /// Queues notices on their own (for notices no log state produced, such
    /// as `alert-test`).
    pub fn enqueue(&mut self, notices: &[Outgoing]) -> Result<(), StoreError> {
        let sql = self.sql();
        let tx = self.conn.transaction().map_err(&sql)?;
        enqueue(&tx, notices).map_err(&sql)?;
        tx.commit().map_err(sql)
    }

    /// Notices due at `now_ms`: per channel and group only the oldest queued
    /// one, and only once its retry time has come; oldest first.
    pub fn due(&self, now_ms: i64, limit: usize) -> Result<Vec<Queued>, StoreError> {
        self.rows(
            "SELECT o.seq, o.id, o.channel, o.grp, o.body, o.created_ms, o.attempts
             FROM outbox o
             JOIN (SELECT MIN(seq) AS seq FROM outbox WHERE state = 'queued'
                   GROUP BY channel, grp) head ON head.seq = o.seq
             WHERE o.next_ms <= ?1
             ORDER BY o.seq LIMIT ?2",
            params![now_ms, i64::try_from(limit).unwrap_or(i64::MAX)],
            |r| {
                Ok(Queued {
                    seq: r.get(0)?,
                    id: r.get(1)?,
                    channel: r.get(2)?,
                    group: r.get(3)?,
                    body: r.get(4)?,
                    created_ms: r.get(5)?,
                    attempts: u32::try_from(r.get::<_, i64>(6)?).unwrap_or(u32::MAX),
                })
            },
        )
    }

    /// The earliest time a group's head becomes due, so a sender can sleep
    /// until then (a notice queued behind a failing one is not due before
    /// it, whatever its own time).
    pub fn next_due_ms(&self) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row(
                "SELECT MIN(o.next_ms) FROM outbox o
                 JOIN (SELECT MIN(seq) AS seq FROM outbox WHERE state = 'queued'
                       GROUP BY channel, grp) head ON head.seq = o.seq",
                [],
                |r| r.get(0),
            )
            .optional()
            .map(Option::flatten)
            .map_err(self.sql())
    }

    /// Queues a daily summary's notices; with `mark` (the day as YYYYMMDD)
    /// only if no summary of that day or a later one was queued before, and
    /// the day is marked in the same transaction. Returns whether it queued.
    pub fn queue_summary(
        &mut self,
        notices: &[Outgoing],
        mark: Option<i64>,
    ) -> Result<bool, StoreError> {
        let sql = self.sql();
        let tx = self.conn.transaction().map_err(&sql)?;
        if let Some(day) = mark {
            let sent: i64 = tx
                .query_row(
                    "SELECT value FROM meta WHERE key = 'summary_sent'",
                    [],
                    |r| r.get(0),
                )
                .optional()
                .map_err(&sql)?
                .unwrap_or(0);
            if sent >= day {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('summary_sent', ?1)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![day],
            )
            .map_err(&sql)?;
        }
        enqueue(&tx, notices).map_err(&sql)?;
        tx.commit().map_err(sql)?;
        Ok(true)
    }

    /// The last day (YYYYMMDD) whose summary was queued on schedule, or 0.
    pub fn summary_sent(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'summary_sent'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map(|v| v.unwrap_or(0))
            .map_err(self.sql())
    }

    /// Notices per channel and state: (channel, state, count).
    pub fn outbox_counts(&self) -> Result<Vec<(String, String, usize)>, StoreError> {
        self.rows(
            "SELECT channel, state, COUNT(*) FROM outbox GROUP BY channel, state ORDER BY channel, state",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, usize::try_from(r.get::<_, i64>(2)?).unwrap_or(0))),
        )
    }

    /// Records the outcome of one attempt at notice `seq`.
    pub fn record_attempt(
        &mut self,
        seq: i64,
        attempt: &Attempt,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let sql = self.sql();
        match attempt {
            Attempt::Delivered => self.conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, state = 'delivered', done_ms = ?2
                 WHERE seq = ?1",
                params![seq, now_ms],
            ),
            Attempt::Retry { error, next_ms } => self.conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_ms = ?2, last_error = ?3
                 WHERE seq = ?1",
                params![seq, next_ms, error],
            ),
            Attempt::Rejected { error } => self.conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, state = 'rejected', done_ms = ?2,
                 last_error = ?3 WHERE seq = ?1",
                params![seq, now_ms, error],
            ),
        }
        .map_err(sql)?;
        Ok(())
    }

    /// Marks notices queued before `cutoff_ms` as expired, with the last
    /// error they met; returns them so they can be reported.
    pub fn expire(&mut self, cutoff_ms: i64, now_ms: i64) -> Result<Vec<Delivery>, StoreError> {
        self.rows(
            &format!(
                "UPDATE outbox SET state = 'expired', done_ms = ?2
                 WHERE state = 'queued' AND created_ms < ?1 RETURNING {DELIVERY_COLUMNS}"
            ),
            params![cutoff_ms, now_ms],
            delivery,
        )
    }

    /// The most recent deliveries, newest first.
    pub fn deliveries(&self, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        self.rows(
            &format!("SELECT {DELIVERY_COLUMNS} FROM outbox ORDER BY seq DESC LIMIT ?1"),
            params![i64::try_from(limit).unwrap_or(i64::MAX)],
            delivery,
        )
    }

    /// Forgets finished notices older than `cutoff_ms`.
    pub fn prune_outbox(&mut self, cutoff_ms: i64) -> Result<usize, StoreError> {
        self.conn
            .execute(
                "DELETE FROM outbox WHERE state != 'queued' AND done_ms < ?1",
                params![cutoff_ms],
            )
            .map_err(self.sql())
    }
}

/// The columns [`delivery`] reads, in its order.
const DELIVERY_COLUMNS: &str = "id, channel, grp, state, attempts, created_ms, done_ms, last_error";

fn delivery(r: &rusqlite::Row<'_>) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        id: r.get(0)?,
        channel: r.get(1)?,
        group: r.get(2)?,
        state: DeliveryState::parse(&r.get::<_, String>(3)?),
        attempts: u32::try_from(r.get::<_, i64>(4)?).unwrap_or(u32::MAX),
        created_ms: r.get(5)?,
        done_ms: r.get(6)?,
        last_error: r.get(7)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(id: &str, channel: &str, group: &str, at: i64) -> Outgoing {
        Outgoing {
            id: id.into(),
            channel: channel.into(),
            group: group.into(),
            body: format!("{{\"id\":\"{id}\"}}").into_bytes(),
            created_ms: at,
        }
    }

    fn ids(q: &[Queued]) -> Vec<&str> {
        q.iter().map(|n| n.id.as_str()).collect()
    }

    #[test]
    fn queued_notices_survive_a_restart_and_go_in_group_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        store
            .commit(
                &[],
                &Default::default(),
                &[],
                &[],
                &crate::alert::Evaluation {
                    notices: vec![
                        notice("a1", "ops", "g1", 10),
                        notice("b1", "ops", "g2", 11),
                        notice("a2", "ops", "g1", 12),
                        notice("a1", "sec", "g1", 10),
                    ],
                    ..Default::default()
                },
            )
            .unwrap();
        // The same notice for the same channel is queued once.
        store.enqueue(&[notice("a1", "ops", "g1", 99)]).unwrap();
        drop(store);

        let mut store = Store::open(dir.path()).unwrap();
        // Only each group's head is due: a2 waits behind a1.
        let due = store.due(1_000, 100).unwrap();
        assert_eq!(ids(&due), ["a1", "b1", "a1"]);
        assert_eq!(due[0].body, br#"{"id":"a1"}"#);

        // a1 on ops fails; its group waits for the retry, others go on.
        store
            .record_attempt(
                due[0].seq,
                &Attempt::Retry {
                    error: "HTTP 500".into(),
                    next_ms: 5_000,
                },
                1_000,
            )
            .unwrap();
        store
            .record_attempt(due[1].seq, &Attempt::Delivered, 1_000)
            .unwrap();
        store
            .record_attempt(due[2].seq, &Attempt::Delivered, 1_000)
            .unwrap();
        assert!(store.due(1_001, 100).unwrap().is_empty());
        assert_eq!(store.next_due_ms().unwrap(), Some(5_000));

        let due = store.due(5_000, 100).unwrap();
        assert_eq!(ids(&due), ["a1"]);
        assert_eq!(due[0].attempts, 1);
        store
            .record_attempt(due[0].seq, &Attempt::Delivered, 5_000)
            .unwrap();
        assert_eq!(ids(&store.due(5_000, 100).unwrap()), ["a2"]);

        let recent = store.deliveries(10).unwrap();
        let a1 = recent
            .iter()
            .find(|d| d.id == "a1" && d.channel == "ops")
            .unwrap();
        assert_eq!(
            (a1.state, a1.attempts, a1.last_error.as_deref()),
            (DeliveryState::Delivered, 2, Some("HTTP 500"))
        );
    }

    #[test]
    fn rejected_and_expired_notices_stop_and_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        store
            .enqueue(&[
                notice("r", "ops", "g1", 10),
                notice("old", "ops", "g2", 20),
                notice("new", "ops", "g3", 5_000),
            ])
            .unwrap();
        let due = store.due(100, 100).unwrap();
        store
            .record_attempt(
                due[0].seq,
                &Attempt::Rejected {
                    error: "HTTP 400".into(),
                },
                100,
            )
            .unwrap();
        let expired = store.expire(1_000, 6_000).unwrap();
        assert_eq!(expired.len(), 1);
        assert_eq!(
            (expired[0].id.as_str(), expired[0].state),
            ("old", DeliveryState::Expired)
        );
        assert_eq!(ids(&store.due(6_000, 100).unwrap()), ["new"]);
        assert_eq!(store.prune_outbox(7_000).unwrap(), 2);
        assert_eq!(store.deliveries(10).unwrap().len(), 1);
    }

    #[test]
    fn a_version_1_store_gains_the_outbox() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(crate::store::DB_FILE);
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
                 INSERT INTO meta VALUES ('schema_version', 1);",
            )
            .unwrap();
            conn.execute_batch(crate::store::MIGRATIONS[0]).unwrap();
        }
        let mut store = Store::open(dir.path()).unwrap();
        store.enqueue(&[notice("x", "ops", "g", 1)]).unwrap();
        assert_eq!(ids(&store.due(1, 10).unwrap()), ["x"]);
    }
}

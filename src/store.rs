//! The embedded store (SQLite, in the state directory): where each followed
//! file was read to, the usage counters those reads produced, and the gaps.
//!
//! Offsets and counters change in one transaction, so after any stop — a
//! clean one or `kill -9` — the store says exactly which lines were counted:
//! a restart resumes at the committed offsets and counts every line once.
//! The schema carries a version and is migrated forward on open.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use rusqlite::{Connection, OptionalExtension, params};
use thiserror::Error;

use crate::keys::{KeyId, MaskedKey};
pub use crate::source::checkpoint::{Checkpoint, Gap};
use crate::state::StateDir;
use crate::usage::{DayUsage, Histogram, KeyLabel, KeyUsage, Usage};

pub mod alerts;
pub mod outbox;
pub mod silences;

/// A key's first and last day in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpan {
    pub key_id: String,
    pub masked: String,
    pub name: Option<String>,
    pub first: NaiveDate,
    pub last: NaiveDate,
}

/// The file inside the state directory.
pub const DB_FILE: &str = "keywatch.db";
/// The `usage` row of the keys folded past the per-day cap.
const OTHER_KEYS: &str = "~other";

/// The schema this build writes.
pub const SCHEMA_VERSION: i64 = 6;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("store {path}: {source}; check the state directory (--state) and its permissions")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "store {path} is damaged or not a keywatch store ({source}); move it aside to start afresh (counts restart from the current files)"
    )]
    Corrupt {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "store {path} has schema version {found}, newer than this keywatch ({SCHEMA_VERSION}); use a newer keywatch"
    )]
    TooNew { path: PathBuf, found: i64 },
    #[error("{0}")]
    State(String),
    #[error("store {path}: {source}; check the state directory (--state) and its permissions")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("store {path}: {source}")]
    Sql {
        path: PathBuf,
        source: rusqlite::Error,
    },
}

/// A key's requests of a day, for metrics.
pub struct TopKey {
    pub key_id: String,
    pub masked: String,
    pub name: Option<String>,
    pub requests: u64,
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// The device and inode of the database when it was opened.
    ident: Option<(u64, u64)>,
    /// What the rules learned, to go with the next commit.
    staged_learned: Option<LearnedRow>,
}

/// What the rules learned, as stored: the key names its labels index, and
/// the bytes of [`crate::detect::ordered::OrderedDetectors::save`].
pub type LearnedRow = (Vec<String>, Vec<u8>);

const MIGRATIONS: &[&str] = &[
    // 1: files, usage, gaps.
    "CREATE TABLE files (
        stream TEXT NOT NULL,
        generation INTEGER NOT NULL,
        dev INTEGER NOT NULL,
        ino INTEGER NOT NULL,
        head_len INTEGER NOT NULL,
        head_hash BLOB NOT NULL,
        offset INTEGER NOT NULL,
        marker_hash BLOB NOT NULL,
        size INTEGER NOT NULL,
        lines INTEGER NOT NULL,
        parsed INTEGER NOT NULL,
        skipped INTEGER NOT NULL,
        last_line_ms INTEGER,
        PRIMARY KEY (stream, generation)
    );
    CREATE TABLE usage (
        day TEXT NOT NULL,
        key_id TEXT NOT NULL,
        masked TEXT NOT NULL,
        name TEXT,
        requests INTEGER NOT NULL,
        c1 INTEGER NOT NULL, c2 INTEGER NOT NULL, c3 INTEGER NOT NULL,
        c4 INTEGER NOT NULL, c5 INTEGER NOT NULL, other INTEGER NOT NULL,
        s401 INTEGER NOT NULL, s403 INTEGER NOT NULL, s429 INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        latency BLOB NOT NULL,
        clients BLOB NOT NULL,
        first_ms INTEGER NOT NULL,
        last_ms INTEGER NOT NULL,
        PRIMARY KEY (day, key_id)
    );
    CREATE TABLE gaps (
        id INTEGER PRIMARY KEY,
        stream TEXT NOT NULL,
        reason TEXT NOT NULL,
        bytes INTEGER NOT NULL,
        at_ms INTEGER NOT NULL
    );",
    // 2: the alert outbox and silences (see `outbox.rs`, `silences.rs`).
    "CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL,
        channel TEXT NOT NULL,
        grp TEXT NOT NULL,
        body BLOB NOT NULL,
        created_ms INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_ms INTEGER NOT NULL,
        last_error TEXT,
        state TEXT NOT NULL DEFAULT 'queued',
        done_ms INTEGER,
        UNIQUE (id, channel)
    );
    CREATE INDEX outbox_queued ON outbox (state, channel, grp, seq);
    CREATE TABLE silences (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        rule TEXT NOT NULL,
        key_id TEXT,
        client TEXT,
        comment TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL
    );",
    // 3: alert states, per-channel group records, disabled channels
    // (see `alerts.rs`).
    "CREATE TABLE alerts (
        id TEXT PRIMARY KEY,
        rule TEXT NOT NULL,
        status TEXT NOT NULL,
        body TEXT NOT NULL,
        updated_ms INTEGER NOT NULL
    );
    CREATE TABLE alert_groups (
        channel TEXT NOT NULL,
        grp TEXT NOT NULL,
        state TEXT NOT NULL,
        PRIMARY KEY (channel, grp)
    );
    CREATE TABLE disabled_channels (
        channel TEXT PRIMARY KEY,
        fingerprint TEXT NOT NULL,
        disabled_ms INTEGER NOT NULL,
        reason TEXT NOT NULL
    );",
    // 4: the shape of each key's day (hours, peak, top endpoints and
    // clients), as JSON (see `Stored` below).
    "ALTER TABLE usage ADD COLUMN detail TEXT;",
    // 5: the running hash of everything before a file's offset, and the
    // log format detected for a stream.
    "ALTER TABLE files ADD COLUMN prefix_hash BLOB;
     ALTER TABLE files ADD COLUMN format TEXT;
     ALTER TABLE files ADD COLUMN absent_since_ms INTEGER;",
    // 6: what the rules learned (baselines, networks, open episodes),
    // committed with the offsets it goes with.
    "CREATE TABLE learned (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        names TEXT NOT NULL,
        state BLOB NOT NULL,
        saved_ms INTEGER NOT NULL
    );",
];

/// Device and inode of a file, if it is there.
fn ident_of(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl Store {
    /// Opens (creating if needed) the store in `state_dir`, which is created
    /// or checked as private first (see [`crate::state`]). The database is
    /// created 0600 before SQLite opens it, so its `-wal` and `-shm` files
    /// get the same mode, and it is never opened through a symlink.
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        let path = state_dir.join(DB_FILE);
        StateDir::open(state_dir).map_err(|e| StoreError::State(e.to_string()))?;
        crate::files::create_private(&path).map_err(|source| StoreError::Create {
            path: path.clone(),
            source,
        })?;
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
            | rusqlite::OpenFlags::SQLITE_OPEN_CREATE
            | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX
            | rusqlite::OpenFlags::SQLITE_OPEN_NOFOLLOW;
        let conn =
            Connection::open_with_flags(&path, flags).map_err(|source| StoreError::Open {
                path: path.clone(),
                source,
            })?;
        // Readers (`status`, `summary`) may hold the file for a moment: wait, do not fail.
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|source| StoreError::Open {
                path: path.clone(),
                source,
            })?;
        let ident = ident_of(&path);
        let mut store = Store {
            conn,
            path,
            ident,
            staged_learned: None,
        };
        store.prepare()?;
        Ok(store)
    }

    /// Opens an existing store read-only (for `status` and `summary`): no
    /// migration, no write, so it never stands in the daemon's way. The
    /// state directory is checked (never changed) first.
    pub fn open_existing(state_dir: &Path) -> Result<Option<Store>, StoreError> {
        let path = state_dir.join(DB_FILE);
        if StateDir::existing(state_dir)
            .map_err(|e| StoreError::State(e.to_string()))?
            .is_none()
            || !path.exists()
        {
            return Ok(None);
        }
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
            | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX
            | rusqlite::OpenFlags::SQLITE_OPEN_NOFOLLOW;
        let conn =
            Connection::open_with_flags(&path, flags).map_err(|source| StoreError::Open {
                path: path.clone(),
                source,
            })?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|source| StoreError::Open {
                path: path.clone(),
                source,
            })?;
        let version: Option<i64> = match conn.query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        ) {
            Ok(v) => Some(v),
            Err(rusqlite::Error::QueryReturnedNoRows) => None,
            // No meta table yet: a daemon is creating the store right now.
            Err(rusqlite::Error::SqliteFailure(_, Some(m))) if m.contains("no such table") => None,
            Err(source) => return Err(StoreError::Corrupt { path, source }),
        };
        match version {
            Some(v) if v > SCHEMA_VERSION => Err(StoreError::TooNew { path, found: v }),
            // Version 2 only added the outbox: usage, files and gaps read
            // the same from a store the daemon has not migrated yet.
            Some(v) if v >= 1 => {
                let ident = ident_of(&path);
                Ok(Some(Store {
                    conn,
                    path,
                    ident,
                    staged_learned: None,
                }))
            }
            // Not set up yet: nothing to read.
            _ => Ok(None),
        }
    }

    /// Runs a query and maps every row.
    fn rows<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        map: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, StoreError> {
        let mut stmt = self.conn.prepare(sql).map_err(self.sql())?;
        let rows = stmt.query_map(params, map).map_err(self.sql())?;
        rows.collect::<Result<_, _>>().map_err(self.sql())
    }

    fn prepare(&mut self) -> Result<(), StoreError> {
        let corrupt = |source: rusqlite::Error| {
            if source.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) {
                StoreError::Sql {
                    path: self.path.clone(),
                    source,
                }
            } else {
                StoreError::Corrupt {
                    path: self.path.clone(),
                    source,
                }
            }
        };
        // The integrity check reads every page: a damaged file is refused here,
        // not half-used later.
        let ok: String = self
            .conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(corrupt)?;
        if ok != "ok" {
            return Err(StoreError::Corrupt {
                path: self.path.clone(),
                source: rusqlite::Error::InvalidQuery,
            });
        }
        self.conn
            .execute_batch(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=5000;",
            )
            .map_err(corrupt)?;
        self.conn
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);",
            )
            .map_err(corrupt)?;
        let version: i64 = self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(corrupt)?
            .unwrap_or(0);
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: self.path.clone(),
                found: version,
            });
        }
        for (n, migration) in MIGRATIONS
            .iter()
            .enumerate()
            .skip(usize::try_from(version).unwrap_or(0))
        {
            let tx = self.conn.transaction().map_err(|source| StoreError::Sql {
                path: self.path.clone(),
                source,
            })?;
            tx.execute_batch(migration)
                .map_err(|source| StoreError::Sql {
                    path: self.path.clone(),
                    source,
                })?;
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![n as i64 + 1],
            )
            .map_err(|source| StoreError::Sql {
                path: self.path.clone(),
                source,
            })?;
            tx.commit().map_err(|source| StoreError::Sql {
                path: self.path.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// Turns an SQLite error into a [`StoreError`] naming this store. The
    /// closure owns the path, so it can be used while a transaction borrows
    /// the connection.
    fn sql(&self) -> impl Fn(rusqlite::Error) -> StoreError + use<> {
        let path = self.path.clone();
        move |source| StoreError::Sql {
            path: path.clone(),
            source,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the database file is still the one opened: a store deleted
    /// or replaced underneath would take commits that no one reads again.
    pub fn check_file(&self) -> Result<(), String> {
        match (self.ident, ident_of(&self.path)) {
            (Some(_), None) => Err(format!(
                "store {} was deleted while keywatch ran; counts are kept in memory and nothing more is committed; restart keywatch to start a new store, or put the file back",
                self.path.display()
            )),
            (Some(a), Some(b)) if a != b => Err(format!(
                "store {} was replaced while keywatch ran; counts are kept in memory and nothing more is committed; restart keywatch to use the new file",
                self.path.display()
            )),
            _ => Ok(()),
        }
    }

    /// Whether `table` has `column` (stores of older schemas may not).
    fn has_column(&self, table: &str, column: &str) -> bool {
        self.conn
            .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
            .and_then(|mut st| {
                st.query_map([], |r| r.get::<_, String>(0))
                    .map(|rows| rows.flatten().any(|c| c == column))
            })
            .unwrap_or(false)
    }

    /// Every saved checkpoint.
    pub fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        // A store a daemon has not migrated yet has no columns of schema 5.
        let extra = if self.has_column("files", "format") {
            "prefix_hash, format, absent_since_ms"
        } else {
            "NULL, NULL, NULL"
        };
        self.rows(
            &format!(
                "SELECT stream, generation, dev, ino, head_len, head_hash, offset, marker_hash, size, lines, parsed, skipped, last_line_ms, {extra}
             FROM files ORDER BY stream, generation"
            ),
            [],
            |r| {
                Ok(Checkpoint {
                    stream: r.get(0)?,
                    generation: r.get(1)?,
                    dev: u(r.get(2)?),
                    ino: u(r.get(3)?),
                    head_len: u(r.get(4)?),
                    head_hash: r.get(5)?,
                    offset: u(r.get(6)?),
                    marker_hash: r.get(7)?,
                    size: u(r.get(8)?),
                    lines: u(r.get(9)?),
                    parsed: u(r.get(10)?),
                    skipped: u(r.get(11)?),
                    last_line_ms: r.get(12)?,
                    prefix_hash: r.get::<_, Option<Vec<u8>>>(13)?.unwrap_or_default(),
                    format: r.get(14)?,
                    absent_since_ms: r.get(15)?,
                })
            },
        )
    }

    /// Commits, in one transaction: the checkpoints (replacing all earlier
    /// ones of their streams), the usage counted since the last commit
    /// (added to what is stored), new gaps, and what the alerter made of
    /// that state: the notices (queued in the outbox, so a crash loses
    /// neither or both), alert states and group records.
    pub fn commit(
        &mut self,
        checkpoints: &[Checkpoint],
        delta: &Usage,
        names: &[String],
        gaps: &[Gap],
        alerting: &crate::alert::Evaluation,
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let sql = |source| StoreError::Sql {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(sql)?;
        let mut streams: Vec<&str> = checkpoints.iter().map(|c| c.stream.as_str()).collect();
        streams.dedup();
        for s in streams {
            tx.execute("DELETE FROM files WHERE stream = ?1", params![s])
                .map_err(sql)?;
        }
        for c in checkpoints {
            tx.execute(
                "INSERT INTO files (stream, generation, dev, ino, head_len, head_hash, offset, marker_hash, size, lines, parsed, skipped, last_line_ms, prefix_hash, format, absent_since_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
                params![
                    c.stream,
                    c.generation,
                    i(c.dev),
                    i(c.ino),
                    i(c.head_len),
                    c.head_hash,
                    i(c.offset),
                    c.marker_hash,
                    i(c.size),
                    i(c.lines),
                    i(c.parsed),
                    i(c.skipped),
                    c.last_line_ms,
                    c.prefix_hash,
                    c.format,
                    c.absent_since_ms
                ],
            )
            .map_err(sql)?;
        }
        for (day, d) in &delta.days {
            let day_s = day.to_string();
            let keyless = (String::new(), "-".to_string(), None, &d.keyless);
            let other = (
                OTHER_KEYS.to_string(),
                "(other keys)".to_string(),
                None,
                &d.other,
            );
            let keyed = d.keys.iter().map(|(id, u)| {
                let label = delta.labels.get(id);
                let name = label
                    .and_then(|l| l.name)
                    .and_then(|n| names.get(n as usize))
                    .cloned();
                (
                    id.to_string(),
                    label.map_or_else(String::new, |l| l.masked.to_string()),
                    name,
                    u,
                )
            });
            for (key_id, masked, name, add) in std::iter::once(keyless)
                .chain(std::iter::once(other))
                .chain(keyed)
            {
                if add.requests == 0 {
                    continue;
                }
                let mut total = read_usage(&tx, &day_s, &key_id)
                    .map_err(sql)?
                    .unwrap_or_default();
                total.merge(add);
                write_usage(&tx, &day_s, &key_id, &masked, name.as_deref(), &total).map_err(sql)?;
            }
        }
        for g in gaps {
            tx.execute(
                "INSERT INTO gaps (stream, reason, bytes, at_ms) VALUES (?1, ?2, ?3, ?4)",
                params![g.stream, g.reason, i(g.bytes), g.at_ms],
            )
            .map_err(sql)?;
        }
        alerts::save(&tx, alerting).map_err(sql)?;
        if let Some((names, state)) = &self.staged_learned {
            tx.execute(
                "INSERT INTO learned (id, names, state, saved_ms) VALUES (1, ?1, ?2, ?3)
                 ON CONFLICT(id) DO UPDATE SET names = excluded.names, state = excluded.state, saved_ms = excluded.saved_ms",
                params![
                    serde_json::to_string(names).unwrap_or_default(),
                    state,
                    crate::source::checkpoint::now_ms()
                ],
            )
            .map_err(sql)?;
        }
        tx.commit().map_err(sql)?;
        self.staged_learned = None;
        Ok(())
    }

    /// What the rules learned goes with the next commit, so it matches the
    /// offsets committed with it. `names` are the key names its labels
    /// index.
    pub fn stage_learned(&mut self, names: &[String], state: Vec<u8>) {
        self.staged_learned = Some((names.to_vec(), state));
    }

    /// What the rules learned, as last committed, with the key names its
    /// labels index.
    pub fn learned(&self) -> Result<Option<LearnedRow>, StoreError> {
        if !self.has_table("learned") {
            return Ok(None);
        }
        self.conn
            .query_row("SELECT names, state FROM learned WHERE id = 1", [], |r| {
                let names: String = r.get(0)?;
                let state: Vec<u8> = r.get(1)?;
                Ok((serde_json::from_str(&names).unwrap_or_default(), state))
            })
            .optional()
            .map_err(self.sql())
    }

    fn has_table(&self, table: &str) -> bool {
        self.conn
            .query_row(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
                params![table],
                |_| Ok(()),
            )
            .optional()
            .ok()
            .flatten()
            .is_some()
    }

    /// The stored usage of one day, as a [`Usage`] with its key names.
    pub fn day_usage(&self, day: NaiveDate) -> Result<(Usage, Vec<String>), StoreError> {
        // A store the daemon has not migrated yet has no detail column.
        let detail = if self
            .conn
            .prepare("SELECT detail FROM usage LIMIT 0")
            .is_ok()
        {
            "detail"
        } else {
            "NULL"
        };
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT key_id, masked, name, requests, c1, c2, c3, c4, c5, other, s401, s403, s429, bytes, latency, clients, first_ms, last_ms, {detail}
                 FROM usage WHERE day = ?1"
            ))
            .map_err(self.sql())?;
        let mut usage = Usage::default();
        let mut names: Vec<String> = Vec::new();
        let mut day_usage = DayUsage::default();
        let rows = stmt
            .query_map(params![day.to_string()], |r| {
                let key_id: String = r.get(0)?;
                let masked: String = r.get(1)?;
                // Names are shown: printable, whatever an older build stored.
                let name: Option<String> = r
                    .get::<_, Option<String>>(2)?
                    .map(|n| crate::format::escape::printable(n.as_bytes()));
                Ok((key_id, masked, name, row_usage(r, 3)?))
            })
            .map_err(self.sql())?;
        for row in rows {
            let (key_id, masked, name, u) = row.map_err(self.sql())?;
            if key_id.is_empty() {
                day_usage.keyless = u;
                continue;
            }
            if key_id == OTHER_KEYS {
                day_usage.other = u;
                continue;
            }
            let Ok(id) = key_id.parse::<KeyId>() else {
                continue;
            };
            let name_idx = name.map(|n| {
                names.push(n);
                (names.len() - 1) as u32
            });
            usage.labels.insert(
                id,
                KeyLabel {
                    masked: MaskedKey::from_stored(&masked),
                    name: name_idx,
                },
            );
            day_usage.keys.insert(id, u);
        }
        if day_usage.keyless.requests > 0
            || day_usage.other.requests > 0
            || !day_usage.keys.is_empty()
        {
            usage.days.insert(day, day_usage);
        }
        Ok((usage, names))
    }

    /// Every key seen up to `day`: its first and last day, mask and name.
    pub fn key_spans(&self, day: NaiveDate) -> Result<Vec<KeySpan>, StoreError> {
        let date = |s: String| NaiveDate::parse_from_str(&s, "%Y-%m-%d").unwrap_or_default();
        self.rows(
            "SELECT key_id, MAX(masked), MAX(name), MIN(day), MAX(day) FROM usage
             WHERE day <= ?1 AND key_id != '' AND key_id != '~other' GROUP BY key_id",
            params![day.to_string()],
            |r| {
                Ok(KeySpan {
                    key_id: r.get(0)?,
                    masked: r.get(1)?,
                    name: r
                        .get::<_, Option<String>>(2)?
                        .map(|n| crate::format::escape::printable(n.as_bytes())),
                    first: date(r.get(3)?),
                    last: date(r.get(4)?),
                })
            },
        )
    }

    /// The `n` keys with most requests on `day`.
    pub fn top_keys(&self, day: NaiveDate, n: usize) -> Result<Vec<TopKey>, StoreError> {
        self.rows(
            "SELECT key_id, masked, name, requests FROM usage WHERE day = ?1 AND key_id != '' AND key_id != '~other' ORDER BY requests DESC LIMIT ?2",
            params![day.to_string(), n as i64],
            |r| {
                Ok(TopKey {
                    key_id: r.get(0)?,
                    masked: r.get(1)?,
                    name: r
                        .get::<_, Option<String>>(2)?
                        .map(|n| crate::format::escape::printable(n.as_bytes())),
                    requests: u(r.get(3)?),
                })
            },
        )
    }

    /// Every gap recorded, newest first.
    pub fn gaps(&self) -> Result<Vec<Gap>, StoreError> {
        self.rows(
            "SELECT stream, reason, bytes, at_ms FROM gaps ORDER BY id DESC",
            [],
            |r| {
                Ok(Gap {
                    stream: r.get(0)?,
                    reason: r.get(1)?,
                    bytes: u(r.get(2)?),
                    at_ms: r.get(3)?,
                })
            },
        )
    }

    /// Bytes the store takes on disk (database and its write-ahead log).
    pub fn size_bytes(&self) -> u64 {
        ["", "-wal", "-shm"]
            .iter()
            .filter_map(|suffix| {
                let mut p = self.path.clone().into_os_string();
                p.push(suffix);
                std::fs::metadata(p).ok().map(|m| m.len())
            })
            .sum()
    }
}

/// [`crate::usage::Detail`] as stored.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredDetail {
    buckets: Vec<(u16, u32)>,
    endpoints: crate::usage::top::StoredTop<Box<str>>,
}

fn detail_json(d: &crate::usage::Detail) -> String {
    let (items, dropped) = d.endpoints.parts();
    let endpoints = crate::usage::top::StoredTop { items, dropped };
    serde_json::to_string(&StoredDetail {
        buckets: d.buckets.clone(),
        endpoints,
    })
    .unwrap_or_default()
}

fn detail_from(text: Option<String>) -> Option<Box<crate::usage::Detail>> {
    text.and_then(|t| serde_json::from_str::<StoredDetail>(&t).ok())
        .map(|s| {
            Box::new(crate::usage::Detail {
                buckets: s.buckets,
                endpoints: crate::usage::Top::from_parts(s.endpoints.items, s.endpoints.dropped),
            })
        })
}

fn row_usage(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<KeyUsage> {
    let latency: Vec<u8> = r.get(at + 11)?;
    let clients: Vec<u8> = r.get(at + 12)?;
    Ok(KeyUsage {
        requests: u(r.get(at)?),
        classes: [
            u(r.get(at + 1)?),
            u(r.get(at + 2)?),
            u(r.get(at + 3)?),
            u(r.get(at + 4)?),
            u(r.get(at + 5)?),
            u(r.get(at + 6)?),
        ],
        s401: u(r.get(at + 7)?),
        s403: u(r.get(at + 8)?),
        s429: u(r.get(at + 9)?),
        bytes: u(r.get(at + 10)?),
        detail: detail_from(r.get(at + 15)?),
        latency: Histogram::from_bytes(&latency).unwrap_or_default(),
        clients: crate::usage::Clients::from_bytes(&clients).unwrap_or_default(),
        first_ms: r.get(at + 13)?,
        last_ms: r.get(at + 14)?,
    })
}

fn read_usage(
    tx: &rusqlite::Transaction<'_>,
    day: &str,
    key_id: &str,
) -> rusqlite::Result<Option<KeyUsage>> {
    tx.prepare_cached(
        "SELECT requests, c1, c2, c3, c4, c5, other, s401, s403, s429, bytes, latency, clients, first_ms, last_ms, detail
         FROM usage WHERE day = ?1 AND key_id = ?2",
    )?
    .query_row(params![day, key_id], |r| row_usage(r, 0))
    .optional()
}

fn write_usage(
    tx: &rusqlite::Transaction<'_>,
    day: &str,
    key_id: &str,
    masked: &str,
    name: Option<&str>,
    u: &KeyUsage,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO usage (day, key_id, masked, name, requests, c1, c2, c3, c4, c5, other, s401, s403, s429, bytes, latency, clients, first_ms, last_ms, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)
         ON CONFLICT(day, key_id) DO UPDATE SET
           masked = excluded.masked, name = COALESCE(excluded.name, usage.name), requests = excluded.requests,
           c1 = excluded.c1, c2 = excluded.c2, c3 = excluded.c3, c4 = excluded.c4, c5 = excluded.c5, other = excluded.other,
           s401 = excluded.s401, s403 = excluded.s403, s429 = excluded.s429, bytes = excluded.bytes,
           latency = excluded.latency, clients = excluded.clients, first_ms = excluded.first_ms, last_ms = excluded.last_ms, detail = excluded.detail",
    )?
    .execute(params![
            day,
            key_id,
            masked,
            name,
            i(u.requests),
            i(u.classes[0]),
            i(u.classes[1]),
            i(u.classes[2]),
            i(u.classes[3]),
            i(u.classes[4]),
            i(u.classes[5]),
            i(u.s401),
            i(u.s403),
            i(u.s429),
            i(u.bytes),
            u.latency.to_bytes(),
            u.clients.to_bytes(),
            u.first_ms,
            u.last_ms,
            detail_json(u.detail())
        ])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_add_up_and_checkpoints_replace() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let day = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        let mut delta = Usage::default();
        delta.record(&crate::usage::Hit {
            bucket: 120,
            endpoint: "/v1/items/{id}",
            day,
            time_ms: 5,
            key: None,
            status: Some(200),
            bytes: 10,
            latency_ms: Some(3),
            client: 7,
        });
        let cp = Checkpoint {
            stream: "/var/log/a.log".into(),
            generation: 0,
            dev: 1,
            ino: 2,
            head_len: 3,
            head_hash: vec![1; 16],
            offset: 40,
            marker_hash: vec![2; 16],
            size: 40,
            lines: 1,
            parsed: 1,
            skipped: 0,
            last_line_ms: Some(5),
            prefix_hash: Vec::new(),
            format: Some("combined".into()),
            absent_since_ms: None,
        };
        store
            .commit(
                std::slice::from_ref(&cp),
                &delta,
                &[],
                &[],
                &Default::default(),
            )
            .unwrap();
        store
            .commit(
                &[Checkpoint {
                    offset: 80,
                    ..cp.clone()
                }],
                &delta,
                &[],
                &[],
                &Default::default(),
            )
            .unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.checkpoints().unwrap(),
            vec![Checkpoint { offset: 80, ..cp }]
        );
        let (usage, _) = store.day_usage(day).unwrap();
        let d = &usage.days[&day];
        assert_eq!(
            (
                d.keyless.requests,
                d.keyless.bytes,
                d.keyless.clients.count()
            ),
            (2, 20, 1)
        );
        // The day's shape adds up too (u128 client tags survive JSON).
        let detail = d.keyless.detail();
        assert_eq!(detail.hours()[10], 2);
        assert_eq!(detail.endpoints.ranked(), [("/v1/items/{id}".into(), 2)]);
        assert_eq!(d.keyless.clients.top(5), Some(vec![(7u128, 2)]));
        assert_eq!(detail.peak_5m(), 2, "the parts of one bucket add up");
    }

    #[test]
    fn a_damaged_store_is_refused_with_advice() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(DB_FILE),
            b"this is not a database, just some bytes that fill a page...",
        )
        .unwrap();
        let err = Store::open(dir.path()).err().expect("refused");
        assert!(err.to_string().contains("move it aside"), "{err}");
    }
}

//! What the follower remembers about each file it reads, and what it could
//! not read: the two records the store keeps for every followed path.

/// Where one generation of a followed file was read to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The path as watched (the stream), not the file's current name.
    pub stream: String,
    /// 0 for the file at the path; 1, 2… for rotated files still being drained.
    pub generation: i64,
    pub dev: u64,
    pub ino: u64,
    /// How many bytes of the file's head `head_hash` covers (up to 1 KiB).
    pub head_len: u64,
    pub head_hash: Vec<u8>,
    /// The start of the first line not yet counted.
    pub offset: u64,
    /// Hash of the (up to) 256 bytes before `offset`.
    pub marker_hash: Vec<u8>,
    /// The running hash of every byte before `offset`
    /// ([`crate::source::fingerprint::PrefixHash`]); empty in rows written by
    /// older versions, which are then checked by head and marker alone.
    pub prefix_hash: Vec<u8>,
    pub size: u64,
    pub lines: u64,
    pub parsed: u64,
    pub skipped: u64,
    pub last_line_ms: Option<i64>,
    /// The log format detected for the stream (a preset name), if it was
    /// detected rather than configured.
    pub format: Option<String>,
    /// Set on the placeholder of a stream that has no file yet
    /// ([`Checkpoint::absent`]): when the path was last seen without one.
    /// A file modified since then, under any of its names, is new.
    pub absent_since_ms: Option<i64>,
}

impl Checkpoint {
    /// The record of a stream whose path named no file at `seen_ms`.
    pub fn absent(stream: &str, seen_ms: i64, format: Option<&str>) -> Checkpoint {
        Checkpoint {
            stream: stream.to_string(),
            generation: 0,
            dev: 0,
            ino: 0,
            head_len: 0,
            head_hash: Vec::new(),
            offset: 0,
            marker_hash: Vec::new(),
            prefix_hash: Vec::new(),
            size: 0,
            lines: 0,
            parsed: 0,
            skipped: 0,
            last_line_ms: None,
            format: format.map(str::to_owned),
            absent_since_ms: Some(seen_ms),
        }
    }
}

/// Bytes that were written but could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gap {
    pub stream: String,
    pub reason: String,
    /// How many bytes were lost, as far as is known (0 when a whole
    /// generation vanished before anything of it could be seen).
    pub bytes: u64,
    pub at_ms: i64,
}

impl Gap {
    pub fn new(stream: &str, reason: impl Into<String>, bytes: u64) -> Gap {
        Gap {
            stream: stream.to_string(),
            reason: reason.into(),
            bytes,
            at_ms: now_ms(),
        }
    }
}

/// Wall-clock milliseconds since the Unix epoch (gaps are dated by when
/// they were noticed, not by the log).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

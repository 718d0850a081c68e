//! What the benchmarks share: the log format they write and read, and the
//! seeded generator that makes their logs the same on every run.

#![allow(dead_code)] // each benchmark uses its part

/// The `keywatch`-style format: combined, `$request_time`, the key header.
pub const FORMAT: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" $request_time "$http_x_api_key""#;

/// xorshift64*, seeded: the same log on every run.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform below `n` (0 for `n` = 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A key of 32 letters and digits after `prefix`.
    pub fn key(&mut self, prefix: &str) -> String {
        const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let body: String = (0..32)
            .map(|_| ALNUM[self.below(62) as usize] as char)
            .collect();
        format!("{prefix}{body}")
    }
}

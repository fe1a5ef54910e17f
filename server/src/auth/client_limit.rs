//! Where a login comes from, and how many login requests one address may
//! make (a token bucket per address, in memory on each instance).
//!
//! This bounds the password checks one address can demand of the hash pool,
//! whatever usernames it tries; the per-(username, address) failure count in
//! `throttle` stops guessing one account. Addresses are the TCP peer: behind
//! a reverse proxy every client shares the proxy's address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// The unit limits apply to: an IPv4 address, or an IPv6 /64 (one host
/// usually owns a whole /64, so single addresses would be free to rotate).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientAddr(String);

impl ClientAddr {
    pub fn of(ip: Option<IpAddr>) -> Self {
        Self(match ip {
            Some(IpAddr::V4(v4)) => v4.to_string(),
            Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => {
                    let s = v6.segments();
                    format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
                }
            },
            None => "unknown".into(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// At most this many addresses are tracked; a full table first forgets
/// addresses whose bucket has refilled, then the oldest entries. Memory is
/// bounded (~100 bytes an entry) however many addresses a spray uses.
const MAX_TRACKED: usize = 50_000;

struct Bucket {
    tokens: f64,
    last: Instant,
}

pub struct LoginRateLimit {
    /// Requests per minute, and the burst size.
    per_minute: u32,
    buckets: Mutex<HashMap<ClientAddr, Bucket>>,
}

impl LoginRateLimit {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute: per_minute.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request's token, or says how many seconds until there is one.
    pub fn take(&self, addr: &ClientAddr) -> Result<(), u32> {
        let now = Instant::now();
        let capacity = f64::from(self.per_minute);
        let per_sec = capacity / 60.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(addr) {
            Self::forget_some(&mut buckets, now, per_sec, capacity);
        }
        let b = buckets.entry(addr.clone()).or_insert(Bucket {
            tokens: capacity,
            last: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * per_sec).min(capacity);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - b.tokens) / per_sec).ceil().max(1.0) as u32)
        }
    }

    fn forget_some(
        buckets: &mut HashMap<ClientAddr, Bucket>,
        now: Instant,
        per_sec: f64,
        capacity: f64,
    ) {
        buckets.retain(|_, b| {
            b.tokens + now.duration_since(b.last).as_secs_f64() * per_sec < capacity
        });
        if buckets.len() >= MAX_TRACKED {
            // Still full of active addresses: drop the least recently seen tenth.
            let mut seen: Vec<Instant> = buckets.values().map(|b| b.last).collect();
            seen.sort();
            let cutoff = seen[seen.len() / 10];
            buckets.retain(|_, b| b.last > cutoff);
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.buckets.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_hosts_share_their_64() {
        let a = ClientAddr::of(Some("2001:db8:1:2:aaaa::1".parse().unwrap()));
        let b = ClientAddr::of(Some("2001:db8:1:2:bbbb::9".parse().unwrap()));
        let c = ClientAddr::of(Some("2001:db8:1:3::1".parse().unwrap()));
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mapped = ClientAddr::of(Some("::ffff:10.0.0.1".parse().unwrap()));
        assert_eq!(mapped.as_str(), "10.0.0.1");
    }

    #[test]
    fn bursts_up_to_the_rate_then_waits() {
        let limit = LoginRateLimit::new(3);
        let a = ClientAddr::of(Some("10.0.0.1".parse().unwrap()));
        let b = ClientAddr::of(Some("10.0.0.2".parse().unwrap()));
        for _ in 0..3 {
            assert!(limit.take(&a).is_ok());
        }
        let wait = limit.take(&a).unwrap_err();
        assert!((1..=20).contains(&wait), "{wait}");
        assert!(limit.take(&b).is_ok(), "per address");
    }

    #[test]
    fn the_table_is_bounded() {
        let limit = LoginRateLimit::new(10);
        for i in 0..(MAX_TRACKED as u32 + 5000) {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            let _ = limit.take(&ClientAddr::of(Some(ip.into())));
        }
        assert!(limit.tracked() <= MAX_TRACKED);
    }
}

//! [`AddressSlots`]: how many of something (open connections, live watchers) the server holds,
//! in total and per client address, each below its limit. A slot is taken before the work it
//! counts starts, and given back when its [`Slot`] is dropped.
//!
//! A client address is an IPv4 address, or the /64 network of an IPv6 address (one host
//! usually has a whole /64), so that a peer cannot dodge the per-client limit by changing
//! the low bits of its address.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};

/// The address a per-client limit counts against.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Which limit refused a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The server holds `max` in total.
    Total { max: usize },
    /// This client address holds `max`.
    PerClient { max: usize },
}

/// Counts in total and per client address, with their limits.
#[derive(Debug)]
pub struct AddressSlots {
    max_total: usize,
    max_per_client: usize,
    // std Mutex: a few map operations under it, never held across an `.await`.
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
}

/// One slot, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<AddressSlots>,
    client: IpAddr,
}

impl AddressSlots {
    pub fn new(max_total: usize, max_per_client: usize) -> Arc<Self> {
        Arc::new(Self {
            max_total,
            max_per_client,
            counts: Mutex::new(Counts::default()),
        })
    }

    /// Takes a slot for `ip`, unless the server or this client is at its limit.
    pub fn take(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Full> {
        let client = client_key(ip);
        let mut counts = self.lock();
        if counts.total >= self.max_total {
            return Err(Full::Total {
                max: self.max_total,
            });
        }
        let held = counts.by_client.get(&client).copied().unwrap_or(0);
        if held >= self.max_per_client {
            return Err(Full::PerClient {
                max: self.max_per_client,
            });
        }
        counts.total += 1;
        counts.by_client.insert(client, held + 1);
        Ok(Slot {
            slots: Arc::clone(self),
            client,
        })
    }

    /// Slots held now, in total.
    pub fn held(&self) -> usize {
        self.lock().total
    }

    fn lock(&self) -> MutexGuard<'_, Counts> {
        // The counts stay consistent whatever panicked while holding the lock.
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.slots.lock();
        counts.total = counts.total.saturating_sub(1);
        if let Some(held) = counts.by_client.get_mut(&self.client) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                counts.by_client.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_limited_per_client_and_in_total_and_given_back() {
        let slots = AddressSlots::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = slots.take(a).unwrap();
        let _a2 = slots.take(a).unwrap();
        assert_eq!(slots.take(a).unwrap_err(), Full::PerClient { max: 2 });
        let _b1 = slots.take(b).unwrap();
        assert_eq!(slots.take(b).unwrap_err(), Full::Total { max: 3 });
        assert_eq!(slots.held(), 3);
        drop(a1);
        assert!(slots.take(b).is_ok());
    }

    #[test]
    fn an_ipv6_client_is_its_64_network() {
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let other: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert_eq!(client_key(one), client_key(other));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(client_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }
}

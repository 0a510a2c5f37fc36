//! State shared by every worker's VM through proxy-wasm shared data: fetch leases, the DPoP replay
//! store (RFC 9449 §11.1), the fetched key sets, the revocation list and the DPoP nonce key.
//!
//! Shared data never deletes a key, so every family of keys here is bounded by construction.

use fapi_core::dpop::{Recorded, ReplayStore};
use proxy_wasm::hostcalls;
use proxy_wasm::types::Status;

const PREFIX: &str = "fapi-guard/";

fn get(key: &str) -> (Option<Vec<u8>>, Option<u32>) {
    hostcalls::get_shared_data(&format!("{PREFIX}{key}")).unwrap_or((None, None))
}

fn set(key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status> {
    hostcalls::set_shared_data(&format!("{PREFIX}{key}"), Some(value), cas)
}

/// Takes a lease named `name` until `now + seconds`, if nobody holds it. Workers use leases so that
/// one of them, not every one, fetches keys or polls the feed.
pub fn take_lease(name: &str, now: i64, seconds: u64) -> bool {
    let key = format!("lease/{name}");
    let (value, cas) = get(&key);
    let held_until = value.as_deref().and_then(read_i64).unwrap_or(i64::MIN);
    if held_until > now {
        return false;
    }
    set(&key, &now.saturating_add(seconds as i64).to_be_bytes(), cas).is_ok()
}

fn read_i64(b: &[u8]) -> Option<i64> {
    b.get(..8).and_then(|s| s.try_into().ok()).map(i64::from_be_bytes)
}

/// A fetched key set: when it was fetched and the JWKS document.
pub struct Published {
    pub at: i64,
    pub body: Vec<u8>,
    pub cas: Option<u32>,
}

/// Reads a published document (`jwks/<issuer>`, `revoked`); `None` when absent.
pub fn read_published(key: &str) -> Option<Published> {
    let (value, cas) = get(key);
    let value = value?;
    let at = read_i64(&value)?;
    Some(Published {
        at,
        body: value[8..].to_vec(),
        cas,
    })
}

/// The version of a published document, to see cheaply whether it changed.
pub fn version(key: &str) -> Option<u32> {
    get(key).1
}

pub fn publish(key: &str, at: i64, body: &[u8], cas: Option<u32>) -> Result<(), Status> {
    let mut value = Vec::with_capacity(8 + body.len());
    value.extend_from_slice(&at.to_be_bytes());
    value.extend_from_slice(body);
    set(key, &value, cas)
}

/// The DPoP nonce key shared by all workers: created once, then read by everyone.
pub fn nonce_secret(fresh: impl FnOnce() -> Option<[u8; 32]>) -> Option<Vec<u8>> {
    let key = "nonce-secret";
    if let (Some(v), _) = get(key) {
        if v.len() == 32 {
            return Some(v);
        }
    }
    // Two workers may race to create it; both then read back the one that won.
    let _ = set(key, &fresh()?, None);
    get(key).0.filter(|v| v.len() == 32)
}

/// Replay store on shared data (RFC 9449 §11.1). Keys are spread over `SLOTS` time slots of
/// `SLOT_SECONDS` by the proof's expiry (a slot is reset when its time comes round again, long after its
/// proofs expired) and 256 buckets by the first byte of the proof hash; each bucket holds 16-byte hash
/// prefixes, at most [`replay_bucket_capacity`] of them (a full bucket refuses: fail closed). Updates
/// use compare-and-swap so two workers cannot both accept the same proof.
pub struct SharedReplayStore {
    /// Entries per bucket before the store reports itself full (fail closed).
    pub bucket_capacity: usize,
}

const SLOT_SECONDS: i64 = 16;
const SLOTS: i64 = 8;
const ENTRY: usize = 16;
const BUCKETS: usize = 256;

/// Entries per bucket for `settings.replay_store_size`: the size bounds the proofs that expire within
/// the same 16-second slot, spread over the 256 buckets (rounded up, so never below the size).
pub fn replay_bucket_capacity(replay_store_size: usize) -> usize {
    replay_store_size.div_ceil(BUCKETS).max(1)
}

impl ReplayStore for SharedReplayStore {
    fn record(&mut self, key: &[u8; 32], remember_until: i64, now: i64) -> Recorded {
        // A replayed proof has the same iat, so the same expiry and the same slot: one bucket to check.
        let slot_of = |t: i64| t.div_euclid(SLOT_SECONDS);
        let target = slot_of(remember_until);
        if target - slot_of(now) >= SLOTS - 1 {
            // A window longer than the store covers: refuse rather than forget early.
            return Recorded::Full;
        }
        let entry = &key[..ENTRY];
        for _attempt in 0..8 {
            let (entries, cas) = read_bucket(target, key[0]);
            let mut entries = entries.unwrap_or_default();
            if entries.chunks(ENTRY).any(|e| e == entry) {
                return Recorded::Replayed;
            }
            if entries.len() / ENTRY >= self.bucket_capacity {
                return Recorded::Full;
            }
            entries.extend_from_slice(entry);
            let mut value = target.to_be_bytes().to_vec();
            value.extend_from_slice(&entries);
            match set(&bucket_key(target, key[0]), &value, cas) {
                Ok(()) => return Recorded::Fresh,
                Err(Status::CasMismatch) => continue,
                Err(_) => return Recorded::Full,
            }
        }
        Recorded::Full
    }
}

fn bucket_key(slot: i64, byte: u8) -> String {
    format!("dpop/{}/{byte:02x}", slot.rem_euclid(SLOTS))
}

/// The entries of a bucket for `slot` (empty if the bucket holds an older slot's entries) and its cas.
fn read_bucket(slot: i64, byte: u8) -> (Option<Vec<u8>>, Option<u32>) {
    let (value, cas) = get(&bucket_key(slot, byte));
    let entries = value.and_then(|v| {
        let stored_slot = read_i64(&v)?;
        (stored_slot == slot).then(|| v[8..].to_vec())
    });
    (entries, cas)
}

#[cfg(test)]
mod tests {
    use super::replay_bucket_capacity;

    #[test]
    fn replay_store_size_sets_the_bucket_capacity() {
        assert_eq!(replay_bucket_capacity(1), 1);
        assert_eq!(replay_bucket_capacity(256), 1);
        assert_eq!(replay_bucket_capacity(257), 2);
        // The default (100 000) allows 391 proofs per bucket and slot: 100 096 per 16 s.
        assert_eq!(replay_bucket_capacity(100_000), 391);
        assert_eq!(replay_bucket_capacity(10_000_000), 39_063);
    }
}

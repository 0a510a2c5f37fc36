//! State every worker shares through the host's shared storage: fetch leases, the published key sets
//! and revocation list, the DPoP nonce key, the DPoP replay store (RFC 9449 §11.1) and the record of
//! used `once` authorization details (RFC 9396).
//!
//! The storage never deletes a key (proxy-wasm shared data cannot), so every family of keys here is
//! bounded by construction.

use crate::host::{Host, SharedError};
use fapi_core::authorization_details::ONCE_HORIZON;
use fapi_core::dpop::{Recorded, ReplayStore};
use fapi_core::sha256;

const PREFIX: &str = "fapi-guard/";

fn get<H: Host + ?Sized>(host: &H, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
    host.shared_get(&format!("{PREFIX}{key}"))
}

fn set<H: Host + ?Sized>(host: &mut H, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedError> {
    host.shared_set(&format!("{PREFIX}{key}"), value, cas)
}

/// Takes a lease named `name` until `now + seconds`, if nobody holds it. Workers use leases so that
/// one of them, not every one, fetches keys or polls the feed.
pub fn take_lease<H: Host + ?Sized>(host: &mut H, name: &str, now: i64, seconds: u64) -> bool {
    let key = format!("lease/{name}");
    let (value, cas) = get(host, &key);
    let held_until = value.as_deref().and_then(read_i64).unwrap_or(i64::MIN);
    if held_until > now {
        return false;
    }
    set(host, &key, &now.saturating_add(seconds as i64).to_be_bytes(), cas).is_ok()
}

fn read_i64(b: &[u8]) -> Option<i64> {
    b.get(..8).and_then(|s| s.try_into().ok()).map(i64::from_be_bytes)
}

/// A published document: when it was published (or the sequence number) and its bytes.
pub struct Published {
    pub at: i64,
    pub body: Vec<u8>,
    pub cas: Option<u32>,
}

/// Reads a published document (`jwks/<issuer>`, `revoked`); `None` when absent.
pub fn read_published<H: Host + ?Sized>(host: &H, key: &str) -> Option<Published> {
    let (value, cas) = get(host, key);
    let value = value?;
    let at = read_i64(&value)?;
    Some(Published {
        at,
        body: value.get(8..).unwrap_or_default().to_vec(),
        cas,
    })
}

/// The version of a published document, to see cheaply whether it changed.
pub fn version<H: Host + ?Sized>(host: &H, key: &str) -> Option<u32> {
    get(host, key).1
}

pub fn publish<H: Host + ?Sized>(
    host: &mut H,
    key: &str,
    at: i64,
    body: &[u8],
    cas: Option<u32>,
) -> Result<(), SharedError> {
    let mut value = Vec::with_capacity(8 + body.len());
    value.extend_from_slice(&at.to_be_bytes());
    value.extend_from_slice(body);
    set(host, key, &value, cas)
}

/// A 32-byte secret shared by all workers (`nonce-secret`, `replay-secret`): created once from the
/// host's randomness, then read by everyone. `None` when the host has no randomness.
pub fn secret<H: Host + ?Sized>(host: &mut H, name: &str) -> Option<Vec<u8>> {
    if let (Some(v), _) = get(host, name) {
        if v.len() == 32 {
            return Some(v);
        }
    }
    let mut fresh = [0u8; 32];
    if !host.random(&mut fresh) {
        return None;
    }
    // Two workers may race to create it; both then read back the one that won.
    let _ = set(host, name, &fresh, None);
    get(host, name).0.filter(|v| v.len() == 32)
}

/// Replay store on shared storage (RFC 9449 §11.1: the server keeps the proofs' `jti` for their
/// window and refuses a second use).
///
/// Keys are spread over `SLOTS` time slots of `SLOT_SECONDS` by the proof's expiry (a slot is reset
/// when its time comes round again, long after its proofs expired) and over 256 buckets by a hash of
/// the proof keyed with a per-process secret, so a client cannot choose the bucket its proofs land in
/// (it could, when the bucket was the proof hash's first byte). Each bucket holds entries of a 16-byte
/// proof-hash prefix and a 4-byte tag of the client's key (`jkt`, keyed too); at most
/// [`replay_bucket_capacity`] entries, of which one client may hold at most half
/// ([`client_share`]): a client over its share is refused (`dpop_replay_store_full`) while others still
/// find room, and a full bucket refuses everyone (fail closed, never forget early). Updates use
/// compare-and-swap so two workers cannot both accept the same proof.
pub struct SharedReplayStore<'h, H: Host + ?Sized> {
    pub host: &'h mut H,
    /// Entries per bucket before the store reports itself full (fail closed).
    pub bucket_capacity: usize,
    /// The per-process key for bucket choice and client tags (`None`: no randomness, refuse).
    pub secret: Option<&'h [u8]>,
}

const SLOT_SECONDS: i64 = 16;
const SLOTS: i64 = 8;
const HASH: usize = 16;
const TAG: usize = 4;
const ENTRY: usize = HASH + TAG;
const BUCKETS: usize = 256;

/// Entries per bucket for `settings.replay_store_size`: the size bounds the proofs that expire within
/// the same 16-second slot, spread over the 256 buckets (rounded up, so never below the size).
pub fn replay_bucket_capacity(replay_store_size: usize) -> usize {
    replay_store_size.div_ceil(BUCKETS).max(1)
}

/// The entries one client (one proof key) may hold in a bucket: half of it, at least one.
pub fn client_share(bucket_capacity: usize) -> usize {
    bucket_capacity.div_ceil(2).max(1)
}

fn keyed(secret: &[u8], label: u8, data: &[u8]) -> [u8; 32] {
    let mut input = Vec::with_capacity(secret.len() + 1 + data.len());
    input.extend_from_slice(secret);
    input.push(label);
    input.extend_from_slice(data);
    sha256::digest(&input)
}

impl<H: Host + ?Sized> ReplayStore for SharedReplayStore<'_, H> {
    fn record(&mut self, key: &[u8; 32], remember_until: i64, now: i64) -> Recorded {
        self.record_for("", key, remember_until, now)
    }

    fn record_for(&mut self, jkt: &str, key: &[u8; 32], remember_until: i64, now: i64) -> Recorded {
        self.record_in(&DPOP, jkt, key, remember_until, now)
    }

    /// RFC 9396 `once`: a used authorization detail is remembered until its token can no longer be
    /// accepted, in its own family of buckets with 10-minute slots (tokens live minutes, not the
    /// seconds of a proof), bounded and shared the same way.
    fn record_use(&mut self, client: &str, key: &[u8; 32], remember_until: i64, now: i64) -> Recorded {
        self.record_in(&ONCE, client, key, remember_until, now)
    }
}

/// A family of buckets: its key prefix and slot width.
struct Family {
    name: &'static str,
    slot_seconds: i64,
}

const DPOP: Family = Family {
    name: "dpop",
    slot_seconds: SLOT_SECONDS,
};
const ONCE: Family = Family {
    name: "once",
    slot_seconds: ONCE_SLOT_SECONDS,
};

/// Slot width of the `once` family: a use up to [`ONCE_HORIZON`] ahead lands at most 6 slots on, so
/// it always fits the 8 slots (the current one and one spare); the policy linter warns about issuers
/// whose tokens may live longer.
const ONCE_SLOT_SECONDS: i64 = ONCE_HORIZON as i64 / (SLOTS - 2);

impl<H: Host + ?Sized> SharedReplayStore<'_, H> {
    fn record_in(
        &mut self,
        family: &Family,
        jkt: &str,
        key: &[u8; 32],
        remember_until: i64,
        now: i64,
    ) -> Recorded {
        let Some(secret) = self.secret else {
            return Recorded::Full;
        };
        // A replayed proof has the same iat, so the same expiry and the same slot: one bucket to check.
        let slot_of = |t: i64| t.div_euclid(family.slot_seconds);
        let target = slot_of(remember_until);
        if target - slot_of(now) >= SLOTS - 1 {
            // A window longer than the store covers: refuse rather than forget early.
            return Recorded::Full;
        }
        let bucket = keyed(secret, b'b', key)[0];
        let tag_full = keyed(secret, b'c', jkt.as_bytes());
        let tag = &tag_full[..TAG];
        let hash = &key[..HASH];
        let share = client_share(self.bucket_capacity);
        for _attempt in 0..8 {
            let (entries, cas) = read_bucket(&*self.host, family.name, target, bucket);
            let mut entries = entries.unwrap_or_default();
            let mut mine = 0;
            for e in entries.chunks(ENTRY) {
                if e.get(..HASH) == Some(hash) {
                    return Recorded::Replayed;
                }
                if e.get(HASH..) == Some(tag) {
                    mine += 1;
                }
            }
            if mine >= share || entries.len() / ENTRY >= self.bucket_capacity {
                return Recorded::Full;
            }
            entries.extend_from_slice(hash);
            entries.extend_from_slice(tag);
            let mut value = target.to_be_bytes().to_vec();
            value.extend_from_slice(&entries);
            match set(self.host, &bucket_key(family.name, target, bucket), &value, cas) {
                Ok(()) => return Recorded::Fresh,
                Err(SharedError::CasMismatch) => continue,
                Err(SharedError::Failed) => return Recorded::Full,
            }
        }
        Recorded::Full
    }
}

fn bucket_key(family: &str, slot: i64, byte: u8) -> String {
    format!("{family}/{}/{byte:02x}", slot.rem_euclid(SLOTS))
}

/// The entries of a bucket for `slot` (empty if the bucket holds an older slot's entries) and its cas.
fn read_bucket<H: Host + ?Sized>(
    host: &H,
    family: &str,
    slot: i64,
    byte: u8,
) -> (Option<Vec<u8>>, Option<u32>) {
    let (value, cas) = get(host, &bucket_key(family, slot, byte));
    let entries = value.and_then(|v| {
        let stored_slot = read_i64(&v)?;
        (stored_slot == slot).then(|| v.get(8..).unwrap_or_default().to_vec())
    });
    (entries, cas)
}

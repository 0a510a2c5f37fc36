//! A fast ES256 verifier for keys that verify many signatures (an issuer's key set), using precomputed
//! fixed-base tables (feature `p256-tables`).
//!
//! What it is: ECDSA signature verification over NIST P-256 with SHA-256 (FIPS 186-4 §6.4, as JWS uses it
//! for `ES256`, RFC 7518 §3.4: the signature is the 64-byte `r || s`, never DER), built on the RustCrypto
//! `p256` field and group arithmetic. The point `u1·G + u2·Q` is computed with a signed radix-2^W comb:
//! for a point P the table holds `T[i][j] = (j+1)·2^(W·i)·P` (affine), so the sum needs about
//! `256/W` mixed additions per point, no doublings, one field inversion and one scalar inversion.
//! The generator's table ([`generator_table`], window [`G_WINDOW`]) is built once per process and shared;
//! each key builds its own table (window [`Q_WINDOW`]) when its key set is parsed, never while verifying.
//!
//! Checks, as FIPS 186-4 §6.4.2 and ring's `ECDSA_P256_SHA256_FIXED` do them: the signature is exactly 64
//! bytes; `r` and `s` are in `[1, n-1]`; `e` = SHA-256(message) reduced mod n; the sum is not the point at
//! infinity; `x(R) mod n == r`. Both `s` and `n - s` verify (neither ECDSA nor JWS asks for low-s, and ring
//! accepts both). The public key is checked once, at parse time: on the curve, not the identity
//! ([`parse_public_point`]); P-256 has cofactor 1, so every such point has order n.
//!
//! What it does NOT do: it is variable-time (table lookups and additions depend on `u1`, `u2`), which is
//! acceptable only because verification handles public data (key, message, signature); never use it with
//! secrets. It does not sign, does not accept DER or compressed keys, other curves or hashes, and it is not
//! a general scalar multiplication. Keys seen once (a DPoP proof's `jwk`) should not get tables: building
//! one costs more than a plain verification, so those go through ring.

use p256::elliptic_curve::group::Curve as _;
use p256::elliptic_curve::ops::Reduce;
use p256::elliptic_curve::point::AffineCoordinates;
use p256::elliptic_curve::sec1::FromSec1Point;
use p256::elliptic_curve::{Field, Group, PrimeField};
use p256::{AffinePoint, FieldBytes, ProjectivePoint, Scalar};
use std::sync::OnceLock;

/// Window of the generator's table (built once per process): 2^(W-1) points per window.
pub const G_WINDOW: usize = 8;
/// Window of each key's table.
pub const Q_WINDOW: usize = 6;

/// Number of signed radix-2^W digits for a 256-bit scalar (one more for the final carry).
pub const fn windows(w: usize) -> usize {
    256usize.div_ceil(w) + 1
}

/// Largest digit count any supported window needs (W >= 4).
const MAX_DIGITS: usize = 65;

/// `T[i][j] = (j+1)·2^(W·i)·P` for `i < windows(W)`, `j < 2^(W-1)`, affine, row-major.
pub struct FixedBaseTable<const W: usize> {
    points: Vec<AffinePoint>,
}

impl<const W: usize> FixedBaseTable<W> {
    const HALF: usize = 1 << (W - 1);

    /// Builds the table for `p` (about `windows(W)·2^(W-1)` additions and one batched inversion).
    pub fn new(p: &AffinePoint) -> Self {
        const { assert!(W >= 4 && W <= 10) };
        let n = windows(W);
        let mut proj = Vec::with_capacity(n * Self::HALF);
        let mut base = ProjectivePoint::from(*p);
        for _ in 0..n {
            let mut acc = base;
            for _ in 0..Self::HALF {
                proj.push(acc);
                acc += base;
            }
            for _ in 0..W {
                base = base.double();
            }
        }
        let mut points = vec![AffinePoint::IDENTITY; proj.len()];
        ProjectivePoint::batch_normalize(&proj, &mut points);
        FixedBaseTable { points }
    }

    /// Heap bytes held by the table.
    pub fn bytes(&self) -> usize {
        self.points.len() * std::mem::size_of::<AffinePoint>()
    }

    /// `acc += d·2^(W·i)·P`; `None` only if the index is out of range (cannot happen for recoded digits).
    #[inline(always)]
    fn add_digit(&self, acc: &mut ProjectivePoint, i: usize, d: i32) -> Option<()> {
        if d == 0 {
            return Some(());
        }
        let j = (d.unsigned_abs() as usize).checked_sub(1)?;
        let point = self.points.get(i * Self::HALF + j)?;
        if d > 0 {
            *acc += point;
        } else {
            *acc += &(-*point);
        }
        Some(())
    }
}

/// Signed radix-2^W recoding: `k = Σ d_i·2^(W·i)` with `d_i` in `[-2^(W-1), 2^(W-1)]`.
/// Returns `false` if a carry is left over (impossible for `k < 2^256`).
fn recode<const W: usize>(k: &Scalar, out: &mut [i32]) -> bool {
    let be = k.to_repr();
    let mut le = [0u8; 34];
    for (dst, src) in le.iter_mut().zip(be.iter().rev()) {
        *dst = *src;
    }
    let mask = (1u32 << W) - 1;
    let half = 1i32 << (W - 1);
    let mut carry = 0i32;
    for (i, digit) in out.iter_mut().enumerate() {
        let bit = i * W;
        let byte = bit / 8;
        let v = match le.get(byte..byte + 3) {
            Some(b) => {
                let word = u32::from(b[0]) | u32::from(b[1]) << 8 | u32::from(b[2]) << 16;
                (word >> (bit % 8)) & mask
            }
            None => 0,
        };
        // v < 2^W <= 2^10, so the cast is exact.
        let mut d = v as i32 + carry;
        carry = 0;
        if d > half {
            d -= 1 << W;
            carry = 1;
        }
        *digit = d;
    }
    carry == 0
}

/// Parses a 32-byte big-endian scalar in `[1, n-1]` (FIPS 186-4 §6.4.2 step 1).
fn nonzero_scalar(bytes: &[u8]) -> Option<Scalar> {
    let repr = FieldBytes::try_from(bytes).ok()?;
    let s: Option<Scalar> = Scalar::from_repr(repr).into();
    s.filter(|s| !bool::from(s.is_zero()))
}

/// Verifies `signature` (`r || s`, 64 bytes) over the SHA-256 digest `digest` with tables for G and Q.
/// Exposed (with free window sizes) for the benchmarks; the plugin uses [`P256Verifier::verify`].
pub fn verify_prehashed<const WG: usize, const WQ: usize>(
    g: &FixedBaseTable<WG>,
    q: &FixedBaseTable<WQ>,
    digest: &[u8; 32],
    signature: &[u8],
) -> bool {
    verify_inner(g, q, digest, signature).unwrap_or(false)
}

fn verify_inner<const WG: usize, const WQ: usize>(
    g: &FixedBaseTable<WG>,
    q: &FixedBaseTable<WQ>,
    digest: &[u8; 32],
    signature: &[u8],
) -> Option<bool> {
    if signature.len() != 64 {
        return Some(false);
    }
    let (r_bytes, s_bytes) = signature.split_at(32);
    let (Some(r), Some(s)) = (nonzero_scalar(r_bytes), nonzero_scalar(s_bytes)) else {
        return Some(false);
    };
    // e = the 256-bit digest reduced mod n (FIPS 186-4 §6.4.2 steps 2-3: n has 256 bits, so no truncation).
    let e = <Scalar as Reduce<FieldBytes>>::reduce(&FieldBytes::from(*digest));
    let s_inv: Option<Scalar> = s.invert_vartime().into();
    let s_inv = s_inv?;
    let u1 = e * s_inv;
    let u2 = r * s_inv;
    let (ng, nq) = (windows(WG), windows(WQ));
    let mut d1 = [0i32; MAX_DIGITS];
    let mut d2 = [0i32; MAX_DIGITS];
    if !recode::<WG>(&u1, d1.get_mut(..ng)?) || !recode::<WQ>(&u2, d2.get_mut(..nq)?) {
        return None;
    }
    let mut acc = ProjectivePoint::IDENTITY;
    for (i, d) in d1.iter().take(ng).enumerate() {
        g.add_digit(&mut acc, i, *d)?;
    }
    for (i, d) in d2.iter().take(nq).enumerate() {
        q.add_digit(&mut acc, i, *d)?;
    }
    // Step 5: R must not be the point at infinity.
    if bool::from(acc.is_identity()) {
        return Some(false);
    }
    // Steps 6-7: v = x(R) mod n, valid iff v == r.
    let x = acc.to_affine().x();
    Some(<Scalar as Reduce<FieldBytes>>::reduce(&x) == r)
}

/// The generator's table, built on first use and shared by every key of the process.
pub fn generator_table() -> &'static FixedBaseTable<G_WINDOW> {
    static TABLE: OnceLock<FixedBaseTable<G_WINDOW>> = OnceLock::new();
    TABLE.get_or_init(|| FixedBaseTable::new(&AffinePoint::GENERATOR))
}

/// Decodes an uncompressed SEC1 point (`0x04 || x || y`) and checks it is on P-256 and not the identity
/// (SP 800-56A Rev. 3 §5.6.2.3.4 partial validation; with cofactor 1 it equals full validation, §5.6.2.3.3).
pub fn parse_public_point(sec1: &[u8]) -> Option<AffinePoint> {
    if sec1.len() != 65 || sec1.first() != Some(&0x04) {
        return None;
    }
    let point = AffinePoint::from_sec1_bytes(sec1).ok()?;
    (!bool::from(point.is_identity())).then_some(point)
}

/// One P-256 public key with its precomputed table.
pub struct P256Verifier {
    q: FixedBaseTable<Q_WINDOW>,
}

impl P256Verifier {
    /// Validates the key ([`parse_public_point`]) and builds its table (and the generator's, once).
    pub fn from_sec1(sec1: &[u8]) -> Option<Self> {
        let point = parse_public_point(sec1)?;
        generator_table();
        Some(P256Verifier {
            q: FixedBaseTable::new(&point),
        })
    }

    /// ES256 verification of `signature` (`r || s`) over `message` (RFC 7518 §3.4, FIPS 186-4 §6.4.2).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let digest = crate::b64::sha256(message);
        verify_prehashed(generator_table(), &self.q, &digest, signature)
    }

    /// Heap bytes of this key's table (the generator's table is shared and not counted).
    pub fn table_bytes(&self) -> usize {
        self.q.bytes()
    }
}

impl std::fmt::Debug for P256Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "P256Verifier({} KB)", self.table_bytes() / 1024)
    }
}

/// A key's prepared verifier, if any: derived from the key, so it takes no part in equality.
#[derive(Clone, Default)]
pub struct Prepared(Option<std::sync::Arc<P256Verifier>>);

impl Prepared {
    /// Builds the verifier for an uncompressed SEC1 point; stays empty if the point is invalid.
    pub fn build(sec1: &[u8]) -> Self {
        Prepared(P256Verifier::from_sec1(sec1).map(std::sync::Arc::new))
    }

    pub fn get(&self) -> Option<&P256Verifier> {
        self.0.as_deref()
    }
}

impl PartialEq for Prepared {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Prepared {}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("-"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recoding_reconstructs_the_scalar() {
        let k = Scalar::from(0x1234_5678_9abc_def0u64) * Scalar::from(0xfedc_ba98_7654_3210u64);
        let k = k * k * k - Scalar::ONE;
        let mut digits = [0i32; MAX_DIGITS];
        assert!(recode::<6>(&k, &mut digits[..windows(6)]));
        let mut back = Scalar::ZERO;
        let radix = Scalar::from(64u64);
        for d in digits[..windows(6)].iter().rev() {
            let term = Scalar::from(u64::from(d.unsigned_abs()));
            back = back * radix + if *d < 0 { -term } else { term };
        }
        assert_eq!(back, k);
        assert!(digits.iter().all(|d| d.abs() <= 32));
    }

    #[test]
    fn the_identity_and_bad_encodings_are_not_keys() {
        assert!(parse_public_point(&[0u8]).is_none());
        assert!(parse_public_point(&[4u8; 65]).is_none());
        let g = p256::elliptic_curve::sec1::ToSec1Point::to_sec1_point(&AffinePoint::GENERATOR, false);
        assert!(parse_public_point(g.as_bytes()).is_some());
    }
}

//! Strict base64url (RFC 4648 §5, no padding) as JOSE uses it (RFC 7515 §2).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Decodes unpadded base64url; padding, whitespace and the standard alphabet are refused.
pub fn decode(input: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(input.as_bytes()).ok()
}

/// Encodes as unpadded base64url.
pub fn encode(input: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(input)
}

/// `true` when every byte belongs to the base64url alphabet (a cheap check before any decoding).
pub fn is_alphabet(input: &str) -> bool {
    input
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// SHA-256 of `input`, base64url-encoded: RFC 9449 `ath`, RFC 8705 `x5t#S256`, RFC 7638 thumbprints.
pub fn sha256_b64(input: impl AsRef<[u8]>) -> String {
    encode(sha256(input))
}

/// SHA-256 of `input` as raw bytes.
pub fn sha256(input: impl AsRef<[u8]>) -> [u8; 32] {
    #[cfg(target_arch = "wasm32")]
    {
        crate::sha256::digest(input.as_ref())
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let digest = ring::digest::digest(&ring::digest::SHA256, input.as_ref());
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_padding_and_standard_alphabet() {
        assert_eq!(decode("YQ"), Some(b"a".to_vec()));
        assert_eq!(decode("YQ=="), None);
        assert_eq!(decode("+/8"), None);
        assert!(!is_alphabet("ab.c"));
        assert!(is_alphabet("ab-_c9"));
    }
}

//! FAPI interaction ids (FAPI 2.0 Security Profile §5.3.2.2 / FAPI 1 Baseline §6.2.1: `x-fapi-interaction-id`)
//! without a host call per request: SplitMix64 (Steele et al., 2014) over a counter started at a random
//! seed. They correlate requests; they are not secrets, so a fast mixer is enough.

pub struct IdGenerator {
    state: u64,
    salt: u64,
}

fn splitmix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl IdGenerator {
    pub fn new(seed: [u8; 32]) -> Self {
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&seed[i..i + 8]);
            u64::from_le_bytes(w)
        };
        IdGenerator {
            state: word(0) ^ splitmix(word(16)),
            salt: word(8) ^ splitmix(word(24)),
        }
    }

    pub fn next_id(&mut self) -> [u8; 16] {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&splitmix(self.state).to_le_bytes());
        out[8..].copy_from_slice(&splitmix(self.state ^ self.salt).to_le_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::IdGenerator;

    #[test]
    fn ids_differ_per_request_and_per_seed() {
        let mut a = IdGenerator::new([7; 32]);
        let mut b = IdGenerator::new([8; 32]);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            assert!(seen.insert(a.next_id()));
            assert!(seen.insert(b.next_id()));
        }
    }
}

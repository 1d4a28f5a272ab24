//! The simulator's one source of randomness: a seed, or a fuzzer's bytes.

/// A deterministic random number generator (SplitMix64), optionally driven
/// first by a script of bytes so that a fuzzer steers every decision.
#[derive(Clone, Debug)]
pub struct SimRng {
    state: u64,
    script: Vec<u8>,
    position: usize,
}

impl SimRng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> SimRng {
        SimRng { state: seed, script: Vec::new(), position: 0 }
    }

    /// A generator that takes its decisions from `bytes`, then from a seed
    /// derived from them once they run out.
    pub fn from_bytes(bytes: &[u8]) -> SimRng {
        let seed =
            bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
        SimRng { state: seed, script: bytes.to_vec(), position: 0 }
    }

    /// Whether a script drives the generator and has bytes left.
    pub fn scripted(&self) -> bool {
        self.position < self.script.len()
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        if self.position < self.script.len() {
            let mut word = [0u8; 8];
            let end = (self.position + 2).min(self.script.len());
            word[..end - self.position].copy_from_slice(&self.script[self.position..end]);
            self.position = end;
            // Two script bytes per decision: enough to choose, cheap to mutate.
            return u64::from_le_bytes(word).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17)
                ^ u64::from_le_bytes(word);
        }
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0);
        self.next_u64() % n
    }

    /// A number in `low..=high`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high - low + 1)
    }

    /// True with probability `numerator / denominator`.
    pub fn chance(&mut self, numerator: u64, denominator: u64) -> bool {
        self.below(denominator) < numerator
    }

    /// One of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let word = self.next_u64().to_le_bytes();
            out.extend_from_slice(&word[..(len - out.len()).min(8)]);
        }
        out
    }
}

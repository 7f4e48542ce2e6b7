//! FNV-1a, 64-bit: how wgrad fingerprints what it must notice changing (the matmul kernels for
//! the autotune cache, a checkpoint's files, a run's data). A change detector, not a guard
//! against tampering.

/// An FNV-1a hash being fed.
pub(crate) struct Fnv1a(u64);

impl Fnv1a {
    pub(crate) fn new() -> Fnv1a {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }

    /// Mixes in `bytes`, one at a time (the standard FNV-1a).
    pub(crate) fn bytes(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.word(u32::from(byte));
        }
    }

    /// Mixes in a 32-bit word in one step: four times as fast as its bytes, for large arrays
    /// of numbers.
    pub(crate) fn word(&mut self, word: u32) {
        self.0 = (self.0 ^ u64::from(word)).wrapping_mul(0x0000_0100_0000_01b3);
    }

    /// The hash as 16 hex digits.
    pub(crate) fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::Fnv1a;

    #[test]
    fn bytes_give_the_standard_fnv1a_64() {
        // The published FNV-1a 64 values of "" and "a".
        assert_eq!(Fnv1a::new().hex(), "cbf29ce484222325");
        let mut hash = Fnv1a::new();
        hash.bytes(b"a");
        assert_eq!(hash.hex(), "af63dc4c8601ec8c");
    }
}

//! The hasher of the index's maps keyed by numbers: id hashes and delivery slots.

use std::hash::{BuildHasher, Hasher};

/// Hashes already-hashed ids: mixes in a per-process key, so bucket placement cannot be
/// predicted from the stored (public, fixed-key) id hashes.
#[derive(Clone, Debug)]
pub(in crate::store::file) struct MixKey(u64);

impl Default for MixKey {
    fn default() -> Self {
        Self(std::collections::hash_map::RandomState::new().hash_one(0x6669_6c65_u64))
    }
}

impl BuildHasher for MixKey {
    type Hasher = Mixer;
    fn build_hasher(&self) -> Mixer {
        Mixer(self.0)
    }
}

#[derive(Debug)]
pub(in crate::store::file) struct Mixer(u64);

impl Hasher for Mixer {
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_u64(&mut self, value: u64) {
        let mixed = (value ^ self.0).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = mixed ^ (mixed >> 29);
    }
    fn write_u32(&mut self, value: u32) {
        self.write_u64(u64::from(value));
    }
    fn write_u16(&mut self, value: u16) {
        self.write_u64(u64::from(value));
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

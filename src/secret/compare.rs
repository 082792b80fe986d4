//! Constant-time matching of secrets (receivers' and admin tokens'): every candidate costs the
//! same, whatever its length or where it differs.

use subtle::{Choice, ConstantTimeEq};

use super::{MAX_SECRET_LEN, WebhookSecret};

const WORDS: usize = MAX_SECRET_LEN / 8;

/// A secret laid out for constant-time comparison: zero-padded to a fixed size, plus its length.
#[derive(Clone)]
pub(crate) struct PaddedSecret {
    words: [u64; WORDS],
    len: u64,
}

impl PaddedSecret {
    pub(crate) fn new(secret: &WebhookSecret) -> Self {
        // `WebhookSecret` guarantees the length fits.
        Self::from_bytes(secret.expose_secret().as_bytes()).unwrap_or(Self {
            words: [0; WORDS],
            len: u64::MAX,
        })
    }

    /// `None` for a candidate longer than any secret can be. That branch reveals only that the
    /// candidate exceeds the public limit, which its sender already knows.
    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() > MAX_SECRET_LEN {
            return None;
        }
        // The same instructions for every candidate of up to 256 bytes, whatever its length
        // or content: each of the 256 positions loads a byte (the last real one past the end)
        // and masks it to zero past the end. No branch depends on the length, and no load
        // reads back a store (copying into a zeroed buffer first made a half-length candidate
        // 12 % slower to check, in `benches/secret_compare`).
        let Some(last) = bytes.len().checked_sub(1) else {
            return Some(Self {
                words: [0; WORDS],
                len: 0,
            });
        };
        let mut words = [0u64; WORDS];
        for (index, word) in words.iter_mut().enumerate() {
            for byte in 0..8 {
                let position = index * 8 + byte;
                let inside = u64::from(position <= last);
                let value = u64::from(bytes[position.min(last)]);
                *word |= (value & inside.wrapping_neg()) << (8 * byte);
            }
        }
        Some(Self {
            words,
            len: bytes.len() as u64,
        })
    }

    /// Constant time: every word is compared whatever the content, and the length is compared
    /// as data, not used to decide how much to compare.
    fn matches(&self, candidate: &PaddedSecret) -> Choice {
        let difference = self
            .words
            .iter()
            .zip(candidate.words.iter())
            .fold(0u64, |acc, (a, b)| acc | (a ^ b));
        difference.ct_eq(&0) & self.len.ct_eq(&candidate.len)
    }
}

/// Whether `candidate` equals any of `accepted`, checking every one (no short-circuit), so the
/// time does not reveal which secret matched or where the first differing byte is.
pub(crate) fn matches_any(accepted: &[PaddedSecret], candidate: &[u8]) -> bool {
    let Some(candidate) = PaddedSecret::from_bytes(candidate) else {
        return false;
    };
    accepted
        .iter()
        .fold(Choice::from(0), |any, secret| {
            any | secret.matches(&candidate)
        })
        .into()
}

#[cfg(test)]
mod tests {
    use super::{MAX_SECRET_LEN, PaddedSecret, matches_any};

    fn padded(bytes: &[u8]) -> PaddedSecret {
        PaddedSecret::from_bytes(bytes).expect("within the limit")
    }

    #[test]
    fn a_secret_matches_itself_and_nothing_that_differs_in_length_or_any_byte() {
        for len in [1, 7, 8, 9, 63, 64, 65, 255, MAX_SECRET_LEN] {
            let secret: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let accepted = [padded(&secret)];
            assert!(matches_any(&accepted, &secret), "length {len}");
            assert!(!matches_any(&accepted, &secret[..len - 1]), "prefix, {len}");
            let mut with_zero = secret.clone();
            with_zero.push(0);
            assert!(!matches_any(&accepted, &with_zero), "a NUL more, {len}");
            for at in [0, len / 2, len - 1] {
                let mut changed = secret.clone();
                changed[at] ^= 1;
                assert!(!matches_any(&accepted, &changed), "byte {at} of {len}");
            }
        }
    }

    #[test]
    fn candidates_past_the_limit_never_match() {
        let secret = vec![b'x'; MAX_SECRET_LEN];
        let accepted = [padded(&secret)];
        assert!(!matches_any(&accepted, &[b'x'; MAX_SECRET_LEN + 1]));
        assert!(!matches_any(&accepted, b""));
    }
}

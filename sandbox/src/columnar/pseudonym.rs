//! Pseudonyms: the keyed HMAC-SHA256 of a raw identifier, one at a time or in batches.

use super::*;

/// A pseudonymization key with its HMAC-SHA256 state precomputed: the inner and outer hash
/// states after their padded key block, so one pseudonym of a short value costs exactly two
/// SHA-256 compressions, run straight on the padded blocks.
#[derive(Clone)]
pub struct PseudonymKey {
    pub(super) inner: [u32; 8],
    pub(super) outer: [u32; 8],
    /// Whether this CPU has the SHA extensions, which [`PseudonymBatch::hash`] runs several
    /// values at once on (never, on other architectures).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(super) sha_ni: bool,
}

impl std::fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PseudonymKey(<redacted>)")
    }
}

/// The SHA-256 initial state (FIPS 180-4, 5.3.3).
pub(super) const SHA256_IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// Runs the SHA-256 compression over `blocks` (a whole number of 64-byte blocks).
pub(super) fn compress(state: &mut [u32; 8], blocks: &[u8]) {
    for block in blocks.chunks_exact(64) {
        sha2::compress256(
            state,
            std::slice::from_ref(sha2::digest::generic_array::GenericArray::from_slice(block)),
        );
    }
}

impl PseudonymKey {
    /// A key from raw key bytes (any length, as HMAC allows).
    pub fn new(key: &[u8]) -> Self {
        const BLOCK: usize = 64;
        let mut k = [0u8; BLOCK];
        if key.len() > BLOCK {
            k[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            k[..key.len()].copy_from_slice(key);
        }
        let mut inner = SHA256_IV;
        compress(&mut inner, &k.map(|b| b ^ 0x36));
        let mut outer = SHA256_IV;
        compress(&mut outer, &k.map(|b| b ^ 0x5c));
        #[cfg(target_arch = "x86_64")]
        let sha_ni = shani::available();
        #[cfg(not(target_arch = "x86_64"))]
        let sha_ni = false;
        Self {
            inner,
            outer,
            sha_ni,
        }
    }

    /// The pseudonym of a raw value as given (the caller trims it): the first 8 bytes
    /// (big-endian) of HMAC-SHA256(key, `raw`).
    pub fn pseudonym(&self, raw: &[u8]) -> u64 {
        // Inner hash: the whole blocks of `raw`, then its tail padded with 0x80, zeros and the
        // bit length of key block plus message.
        let mut inner = self.inner;
        let whole = raw.len() - raw.len() % 64;
        compress(&mut inner, &raw[..whole]);
        let tail = &raw[whole..];
        let mut last = [0u8; 128];
        last[..tail.len()].copy_from_slice(tail);
        last[tail.len()] = 0x80;
        let end = if tail.len() < 56 { 64 } else { 128 };
        let bits = (64 + raw.len() as u64) * 8;
        last[end - 8..end].copy_from_slice(&bits.to_be_bytes());
        compress(&mut inner, &last[..end]);
        self.outer_hash(inner)
    }

    /// The pseudonym from the inner hash state: the outer hash of the 32-byte inner digest in
    /// one padded block.
    pub(super) fn outer_hash(&self, inner: [u32; 8]) -> u64 {
        let mut block = [0u8; 64];
        for (out, word) in block.chunks_exact_mut(4).zip(inner) {
            out.copy_from_slice(&word.to_be_bytes());
        }
        block[32] = 0x80;
        block[56..].copy_from_slice(&((64u64 + 32) * 8).to_be_bytes());
        let mut outer = self.outer;
        compress(&mut outer, &block);
        (u64::from(outer[0]) << 32) | u64::from(outer[1])
    }

    /// The pseudonym of a short value given as its padded inner block.
    pub(super) fn pseudonym_of_block(&self, block: &[u8; 64]) -> u64 {
        let mut inner = self.inner;
        compress(&mut inner, block);
        self.outer_hash(inner)
    }

    /// The pseudonyms of `N` short values given as their padded inner blocks.
    pub(super) fn pseudonyms_of_blocks<const N: usize>(&self, blocks: [&[u8; 64]; N]) -> [u64; N] {
        #[cfg(target_arch = "x86_64")]
        if self.sha_ni {
            // SAFETY: `sha_ni` is set only when the CPU has the instructions this uses.
            return unsafe { shani::pseudonyms(&self.inner, &self.outer, blocks) };
        }
        blocks.map(|b| self.pseudonym_of_block(b))
    }
}

/// Values gathered to be pseudonymized together: on a CPU with the SHA extensions,
/// [`PseudonymBatch::hash`] runs four short values side by side, about twice as fast as one
/// by one.
#[derive(Default)]
pub struct PseudonymBatch {
    /// The padded inner block of each value of up to 55 bytes (a longer value's is unused).
    pub(super) blocks: Vec<[u8; 64]>,
    /// Longer values: their place in the batch and their bytes in `long_bytes`.
    pub(super) long: Vec<(usize, std::ops::Range<usize>)>,
    pub(super) long_bytes: Vec<u8>,
}

impl PseudonymBatch {
    /// Longest value whose inner block is one padded block (64 − 1 − 8 bytes).
    pub(super) const SHORT: usize = 55;

    /// Adds a raw value as given (the caller trims it).
    pub fn push(&mut self, raw: &[u8]) {
        let mut block = [0u8; 64];
        if raw.len() <= Self::SHORT {
            block[..raw.len()].copy_from_slice(raw);
            block[raw.len()] = 0x80;
            block[56..].copy_from_slice(&((64 + raw.len() as u64) * 8).to_be_bytes());
        } else {
            let start = self.long_bytes.len();
            self.long_bytes.extend_from_slice(raw);
            self.long
                .push((self.blocks.len(), start..self.long_bytes.len()));
        }
        self.blocks.push(block);
    }

    /// Values added since the last [`PseudonymBatch::clear`].
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    /// Whether no value waits.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Forgets every value (keeping the memory).
    pub fn clear(&mut self) {
        self.blocks.clear();
        self.long.clear();
        self.long_bytes.clear();
    }

    /// Writes the pseudonym of every value, in the order added, to `out` (replacing what it
    /// held): the same as [`PseudonymKey::pseudonym`] of each.
    pub fn hash(&self, key: &PseudonymKey, out: &mut Vec<u64>) {
        out.clear();
        out.resize(self.blocks.len(), 0);
        let mut long = self.long.iter().peekable();
        // Short values wait in fours, hashed side by side.
        let mut waiting = [0usize; 4];
        let mut n = 0;
        for i in 0..self.blocks.len() {
            if let Some((_, range)) = long.next_if(|(at, _)| *at == i) {
                out[i] = key.pseudonym(&self.long_bytes[range.clone()]);
                continue;
            }
            waiting[n] = i;
            n += 1;
            if n == waiting.len() {
                let hashed = key.pseudonyms_of_blocks(waiting.map(|j| &self.blocks[j]));
                for (j, p) in waiting.into_iter().zip(hashed) {
                    out[j] = p;
                }
                n = 0;
            }
        }
        for &j in &waiting[..n] {
            let [p] = key.pseudonyms_of_blocks([&self.blocks[j]]);
            out[j] = p;
        }
    }
}

/// The pseudonym of a raw identifier value: the first 8 bytes (big-endian) of
/// HMAC-SHA256(`key`, `raw.trim()`). Computing many with one key is cheaper through
/// [`PseudonymKey`].
pub fn pseudonym(key: &[u8], raw: &str) -> u64 {
    PseudonymKey::new(key).pseudonym(raw.trim().as_bytes())
}

//! Intel `CLMUL`-accelerated implementation for modern x86/x86_64 CPUs
//! (i.e. Intel Sandy Bridge-compatible or newer)

#[cfg(target_arch = "x86")]
use core::arch::x86::*;
#[cfg(target_arch = "x86_64")]
use core::arch::x86_64::*;

use universal_hash::{
    consts::{U16, U8},
    crypto_common::{BlockSizeUser, KeySizeUser, ParBlocks, ParBlocksSizeUser},
    KeyInit, Reset, UhfBackend,
};

use crate::{Block, Key, Tag};

/// Blocks hashed per aggregated step (inboxd: see `mul8`).
const PAR: usize = 8;

/// **POLYVAL**: GHASH-like universal hash over GF(2^128).
#[derive(Clone)]
pub struct Polyval {
    h: __m128i,
    y: __m128i,
    /// inboxd: `powers[k]` is H^(k+1) in POLYVAL's "dot" sense (H_1 = H, H_k = dot(H_(k-1), H)),
    /// and `folded[k]` its two 64-bit halves XORed (Karatsuba's middle operand).
    powers: [__m128i; PAR],
    folded: [__m128i; PAR],
}

impl KeySizeUser for Polyval {
    type KeySize = U16;
}

impl Polyval {
    /// Initialize POLYVAL with the given `H` field element and initial block
    pub fn new_with_init_block(h: &Key, init_block: u128) -> Self {
        unsafe {
            // `_mm_loadu_si128` performs an unaligned load
            #[allow(clippy::cast_ptr_alignment)]
            let mut polyval = Self {
                h: _mm_loadu_si128(h.as_ptr() as *const __m128i),
                y: _mm_loadu_si128(&init_block.to_be_bytes()[..] as *const _ as *const __m128i),
                powers: [_mm_setzero_si128(); PAR],
                folded: [_mm_setzero_si128(); PAR],
            };
            // Only reached when the CPU has PCLMULQDQ (see `autodetect`).
            polyval.init_powers();
            polyval
        }
    }
}

impl KeyInit for Polyval {
    /// Initialize POLYVAL with the given `H` field element
    fn new(h: &Key) -> Self {
        Self::new_with_init_block(h, 0)
    }
}

impl BlockSizeUser for Polyval {
    type BlockSize = U16;
}

impl ParBlocksSizeUser for Polyval {
    type ParBlocksSize = U8;
}

impl UhfBackend for Polyval {
    fn proc_block(&mut self, x: &Block) {
        unsafe {
            self.mul(x);
        }
    }

    fn proc_par_blocks(&mut self, blocks: &ParBlocks<Self>) {
        unsafe {
            self.mul8(blocks);
        }
    }
}

impl Polyval {
    /// Get GHASH output
    pub(crate) fn finalize(self) -> Tag {
        unsafe { core::mem::transmute(self.y) }
    }
}

impl Polyval {
    /// inboxd: H^1..H^8, computed with the one-block multiplication (`y` is left as it was).
    #[target_feature(enable = "pclmulqdq")]
    unsafe fn init_powers(&mut self) {
        let y = self.y;
        let zero = Block::default();
        let mut power = self.h;
        for k in 0..PAR {
            self.powers[k] = power;
            self.folded[k] = _mm_xor_si128(power, _mm_shuffle_epi32(power, 0x0E));
            // dot(power, H): the next power.
            self.y = power;
            self.mul(&zero);
            power = self.y;
        }
        self.y = y;
    }

    #[inline]
    #[target_feature(enable = "pclmulqdq")]
    unsafe fn mul(&mut self, x: &Block) {
        let h = self.h;

        // `_mm_loadu_si128` performs an unaligned load
        #[allow(clippy::cast_ptr_alignment)]
        let x = _mm_loadu_si128(x.as_ptr() as *const __m128i);
        let y = _mm_xor_si128(self.y, x);

        let h0 = h;
        let h1 = _mm_shuffle_epi32(h, 0x0E);
        let h2 = _mm_xor_si128(h0, h1);
        let y0 = y;

        // Multiply values partitioned to 64-bit parts
        let y1 = _mm_shuffle_epi32(y, 0x0E);
        let y2 = _mm_xor_si128(y0, y1);
        let t0 = _mm_clmulepi64_si128(y0, h0, 0x00);
        let t1 = _mm_clmulepi64_si128(y, h, 0x11);
        let t2 = _mm_clmulepi64_si128(y2, h2, 0x00);
        let t2 = _mm_xor_si128(t2, _mm_xor_si128(t0, t1));
        self.y = reduce(t0, t1, t2);
    }

    /// inboxd: eight blocks in one step. With S the state and X_1..X_8 the blocks,
    /// POLYVAL's eight sequential steps give
    /// S' = dot(S + X_1, H^8) + dot(X_2, H^7) + ... + dot(X_8, H^1),
    /// and since the reduction is linear, the eight unreduced (Karatsuba) products are summed
    /// first and reduced once. Same result as eight `mul` calls; the products no longer wait on
    /// each other's reduction.
    #[inline]
    #[target_feature(enable = "pclmulqdq")]
    unsafe fn mul8(&mut self, blocks: &ParBlocks<Self>) {
        let mut t0 = _mm_setzero_si128();
        let mut t1 = _mm_setzero_si128();
        let mut t2 = _mm_setzero_si128();
        for (i, block) in blocks.iter().enumerate() {
            #[allow(clippy::cast_ptr_alignment)]
            let mut x = _mm_loadu_si128(block.as_ptr() as *const __m128i);
            if i == 0 {
                x = _mm_xor_si128(x, self.y);
            }
            let h = self.powers[PAR - 1 - i];
            let h2 = self.folded[PAR - 1 - i];
            let x2 = _mm_xor_si128(x, _mm_shuffle_epi32(x, 0x0E));
            let lo = _mm_clmulepi64_si128(x, h, 0x00);
            let hi = _mm_clmulepi64_si128(x, h, 0x11);
            let mid = _mm_clmulepi64_si128(x2, h2, 0x00);
            t0 = _mm_xor_si128(t0, lo);
            t1 = _mm_xor_si128(t1, hi);
            t2 = _mm_xor_si128(t2, _mm_xor_si128(mid, _mm_xor_si128(lo, hi)));
        }
        self.y = reduce(t0, t1, t2);
    }
}

/// The 256-bit product given by its Karatsuba parts (low, high, middle with low and high already
/// XORed in), reduced: the original one-block code, split out by inboxd so `mul8` can share it.
#[inline]
#[target_feature(enable = "pclmulqdq")]
unsafe fn reduce(t0: __m128i, t1: __m128i, t2: __m128i) -> __m128i {
    let v0 = t0;
    let v1 = _mm_xor_si128(_mm_shuffle_epi32(t0, 0x0E), t2);
    let v2 = _mm_xor_si128(t1, _mm_shuffle_epi32(t2, 0x0E));
    let v3 = _mm_shuffle_epi32(t1, 0x0E);

    // Polynomial reduction
    let v2 = xor5(
        v2,
        v0,
        _mm_srli_epi64(v0, 1),
        _mm_srli_epi64(v0, 2),
        _mm_srli_epi64(v0, 7),
    );

    let v1 = xor4(
        v1,
        _mm_slli_epi64(v0, 63),
        _mm_slli_epi64(v0, 62),
        _mm_slli_epi64(v0, 57),
    );

    let v3 = xor5(
        v3,
        v1,
        _mm_srli_epi64(v1, 1),
        _mm_srli_epi64(v1, 2),
        _mm_srli_epi64(v1, 7),
    );

    let v2 = xor4(
        v2,
        _mm_slli_epi64(v1, 63),
        _mm_slli_epi64(v1, 62),
        _mm_slli_epi64(v1, 57),
    );

    _mm_unpacklo_epi64(v2, v3)
}

impl Reset for Polyval {
    fn reset(&mut self) {
        unsafe {
            self.y = _mm_setzero_si128();
        }
    }
}

#[cfg(feature = "zeroize")]
impl Drop for Polyval {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.h.zeroize();
        self.y.zeroize();
        self.powers.zeroize();
        self.folded.zeroize();
    }
}

#[inline(always)]
unsafe fn xor4(e1: __m128i, e2: __m128i, e3: __m128i, e4: __m128i) -> __m128i {
    _mm_xor_si128(_mm_xor_si128(e1, e2), _mm_xor_si128(e3, e4))
}

#[inline(always)]
unsafe fn xor5(e1: __m128i, e2: __m128i, e3: __m128i, e4: __m128i, e5: __m128i) -> __m128i {
    _mm_xor_si128(
        e1,
        _mm_xor_si128(_mm_xor_si128(e2, e3), _mm_xor_si128(e4, e5)),
    )
}

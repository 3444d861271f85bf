use hex_literal::hex;
use polyval::{
    universal_hash::{KeyInit, UniversalHash},
    Polyval, BLOCK_SIZE,
};

//
// Test vectors for POLYVAL from RFC 8452 Appendix A
// <https://tools.ietf.org/html/rfc8452#appendix-A>
//

const H: [u8; BLOCK_SIZE] = hex!("25629347589242761d31f826ba4b757b");
const X_1: [u8; BLOCK_SIZE] = hex!("4f4f95668c83dfb6401762bb2d01a262");
const X_2: [u8; BLOCK_SIZE] = hex!("d1a24ddd2721d006bbe45f20d3c9f362");

/// POLYVAL(H, X_1, X_2)
const POLYVAL_RESULT: [u8; BLOCK_SIZE] = hex!("f7a3b47b846119fae5b7866cf5e5b77e");

#[test]
fn polyval_test_vector() {
    let mut poly = Polyval::new(&H.into());
    poly.update(&[X_1.into(), X_2.into()]);

    let result = poly.finalize();
    assert_eq!(&POLYVAL_RESULT[..], result.as_slice());
}

/// inboxd: the eight-block path (`update` with eight or more blocks) gives the same result as
/// feeding the same blocks one at a time, for every length from 0 to 100 blocks, several keys and
/// a non-zero starting state.
#[test]
fn parallel_blocks_match_one_at_a_time() {
    // A small deterministic generator (xorshift64*), no extra dependency.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut bytes = |n: usize| -> Vec<u8> { (0..n).map(|_| next() as u8).collect() };
    for key_round in 0..8 {
        let mut key = [0u8; BLOCK_SIZE];
        key.copy_from_slice(&bytes(BLOCK_SIZE));
        if key_round == 0 {
            key = H;
        }
        let data = bytes(100 * BLOCK_SIZE);
        for prefix in [0usize, 1, 3] {
            for blocks in 0..=100usize {
                let chunks: Vec<polyval::Block> = data[..blocks * BLOCK_SIZE]
                    .chunks(BLOCK_SIZE)
                    .map(|chunk| *polyval::Block::from_slice(chunk))
                    .collect();
                let head: Vec<polyval::Block> = data[..prefix * BLOCK_SIZE]
                    .chunks(BLOCK_SIZE)
                    .map(|chunk| *polyval::Block::from_slice(chunk))
                    .collect();
                let mut together = Polyval::new(&key.into());
                let mut single = Polyval::new(&key.into());
                for block in &head {
                    together.update(core::slice::from_ref(block));
                    single.update(core::slice::from_ref(block));
                }
                together.update(&chunks);
                for block in &chunks {
                    single.update(core::slice::from_ref(block));
                }
                assert_eq!(
                    together.finalize(),
                    single.finalize(),
                    "key {key_round}, prefix {prefix}, {blocks} blocks"
                );
            }
        }
    }
}

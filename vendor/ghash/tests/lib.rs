use ghash::{
    universal_hash::{KeyInit, UniversalHash},
    GHash,
};
use hex_literal::hex;

//
// Test vectors for GHASH from RFC 8452 Appendix A
// <https://tools.ietf.org/html/rfc8452#appendix-A>
//

const H: [u8; 16] = hex!("25629347589242761d31f826ba4b757b");
const X_1: [u8; 16] = hex!("4f4f95668c83dfb6401762bb2d01a262");
const X_2: [u8; 16] = hex!("d1a24ddd2721d006bbe45f20d3c9f362");

/// GHASH(H, X_1, X_2)
const GHASH_RESULT: [u8; 16] = hex!("bd9b3997046731fb96251b91f9c99d7a");

#[test]
fn ghash_test_vector() {
    let mut ghash = GHash::new(&H.into());
    ghash.update(&[X_1.into(), X_2.into()]);

    let result = ghash.finalize();
    assert_eq!(&GHASH_RESULT[..], result.as_slice());
}

/// inboxd: GHASH over many blocks at once (POLYVAL's eight-block path) equals GHASH fed one block
/// at a time (the original path), for every length from 0 to 64 blocks.
#[test]
fn parallel_blocks_match_one_at_a_time() {
    let data: Vec<u8> = (0..64 * 16u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for key in [H, X_1, X_2] {
        for blocks in 0..=64usize {
            let chunks: Vec<ghash::Block> = data[..blocks * 16]
                .chunks(16)
                .map(|chunk| *ghash::Block::from_slice(chunk))
                .collect();
            let mut together = GHash::new(&key.into());
            together.update(&chunks);
            let mut single = GHash::new(&key.into());
            for block in &chunks {
                single.update(core::slice::from_ref(block));
            }
            assert_eq!(together.finalize(), single.finalize(), "{blocks} blocks");
        }
    }
}

//! `ALL` arrays for the enums whose labels are derived with strum.
//!
//! strum lists an enum's variants as a slice (`VariantArray::VARIANTS`); warden's enums
//! offer them as an array, because per-variant tables are sized by it
//! (`[Counter; State::ALL.len()]`) and built from it (`State::ALL.map(..)`), which a slice
//! cannot do. The variant list stays derived: no enum lists its variants by hand.

/// `variants` as an array, for `pub const ALL: [E; E::COUNT] = variant_array(E::VARIANTS)`.
///
/// Evaluated at compile time in a `const`, where a length that is not the slice's fails the
/// build instead of panicking at run time.
pub const fn variant_array<T: Copy, const N: usize>(variants: &[T]) -> [T; N] {
    assert!(
        variants.len() == N && N > 0,
        "the array length is the enum's variant count"
    );
    let mut out = [variants[0]; N];
    let mut i = 1;
    while i < N {
        out[i] = variants[i];
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_the_slice_in_order() {
        const ALL: [u8; 3] = variant_array(&[3, 1, 2]);
        assert_eq!(ALL, [3, 1, 2]);
    }
}

//! Sizes and fields of the persisted index image (segments-format.md,
//! 11.1), for the tests that read or craft one.

/// The image's header.
pub const HEADER_BYTES: usize = 104;
/// The body's scalars, before the segment table.
pub const SCALARS_BYTES: usize = 48;
/// A segment's table entry before its seek points and batch frames.
pub const SEGMENT_FIXED_BYTES: usize = 116;

/// The little-endian u32 at `at`.
pub fn u32_at(bytes: &[u8], at: usize) -> usize {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize
}

/// The little-endian u64 at `at`.
pub fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

/// A segment entry of an image's tables: where it starts, whether the
/// segment is compacted, and its seek points `(lsn, offset)`.
pub type SegmentTable = (usize, bool, Vec<(u64, u32)>);

/// Every covered segment's [`SegmentTable`], oldest first.
pub fn segment_tables(image: &[u8]) -> Vec<SegmentTable> {
    let mut out = Vec::new();
    let mut at = HEADER_BYTES + SCALARS_BYTES;
    for _ in 0..u32_at(image, HEADER_BYTES + 36) {
        let (count, batches) = (u32_at(image, at + 108), u32_at(image, at + 112));
        let points = (0..count)
            .map(|i| {
                let point = at + SEGMENT_FIXED_BYTES + i * 12;
                (u64_at(image, point), u32_at(image, point + 8) as u32)
            })
            .collect();
        out.push((at, u32_at(image, at + 64) & 1 != 0, points));
        at += SEGMENT_FIXED_BYTES + count * 12 + batches * 8;
    }
    out
}

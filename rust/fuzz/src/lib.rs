//! Helpers shared by the fuzz targets: cutting one fuzzer input into several pieces, so that a
//! target can feed a decoder a sequence of messages.

/// Pieces of `data`, each prefixed by its length as one byte (0..=254), or by 255 and two
/// bytes big-endian for a longer one; a last piece shorter than its prefix says is cut short.
pub fn pieces(mut data: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let (&first, rest) = data.split_first()?;
        let (len, rest) = if first == 255 {
            match rest {
                [hi, lo, rest @ ..] => (u16::from_be_bytes([*hi, *lo]) as usize, rest),
                _ => (rest.len(), &rest[rest.len()..]),
            }
        } else {
            (first as usize, rest)
        };
        let (piece, rest) = rest.split_at(len.min(rest.len()));
        data = rest;
        Some(piece)
    })
}

/// Column type OIDs a fuzzer's byte chooses from: every type a shape filter or a client value
/// can have, a few array types and one OID of no known type.
pub const TYPE_OIDS: [u32; 22] = [
    16, 21, 23, 20, 700, 701, 1700, 25, 1043, 2950, 1082, 1083, 1114, 1184, 114, 3802, 17, 1266,
    1007, 1009, 1115, 99_999,
];

/// A type OID chosen by `byte`.
pub fn type_oid(byte: u8) -> u32 {
    TYPE_OIDS[byte as usize % TYPE_OIDS.len()]
}

//! Lower-case hex, the one text form of the digests and MACs the domain stores and shows
//! (token hashes, the audit chain, the signed head).

pub(crate) fn encode(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The bytes of `text` (surrounding whitespace ignored); `None` unless it is whole hex pairs.
pub(crate) fn decode(text: &str) -> Option<Vec<u8>> {
    let pairs = text.trim().as_bytes().chunks(2);
    pairs
        .map(|pair| {
            let pair = std::str::from_utf8(pair).ok().filter(|pair| pair.len() == 2)?;
            u8::from_str_radix(pair, 16).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_round_trips_and_refuses_odd_or_foreign_text() {
        assert_eq!(super::encode(&[0x00, 0xab, 0xff]), "00abff");
        assert_eq!(super::decode(" 00abff\n"), Some(vec![0x00, 0xab, 0xff]));
        assert_eq!(super::decode("abc"), None);
        assert_eq!(super::decode("zz"), None);
    }
}

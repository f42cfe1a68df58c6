//! Store keys: the message key and the state key, length-delimited, so that
//! message key `a` with state key `bc` never collides with `ab` + `c`.

/// The prefix of a partition's own entries (not any message key's): a
/// message key of 4 GiB cannot exist.
pub(crate) const PARTITION: [u8; 4] = [0xff; 4];

/// The prefix of every store key of one message key: its length as 4 bytes
/// big-endian, then the key itself.
#[cfg(test)]
pub(crate) fn prefix(message_key: &[u8]) -> Vec<u8> {
    let mut prefix = Vec::with_capacity(4 + message_key.len());
    write_prefix(&mut prefix, message_key);
    prefix
}

/// Replaces the contents of `prefix` with the prefix of `message_key`:
/// its length as 4 bytes big-endian, then the key itself.
pub(crate) fn write_prefix(prefix: &mut Vec<u8>, message_key: &[u8]) {
    prefix.clear();
    // A Kafka key cannot reach 4 GiB: message.max.bytes is an i32.
    prefix.extend_from_slice(&(message_key.len() as u32).to_be_bytes());
    prefix.extend_from_slice(message_key);
}

/// The store key of `state_key` under `prefix`.
pub(crate) fn compose(prefix: &[u8], state_key: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + state_key.len());
    key.extend_from_slice(prefix);
    key.extend_from_slice(state_key);
    key
}

/// Calls `f` with the store key of `state_key` under `prefix`, composed on
/// the stack when it is short (no allocation for lookups).
pub(crate) fn with_composed<R>(prefix: &[u8], state_key: &[u8], f: impl FnOnce(&[u8]) -> R) -> R {
    const STACK: usize = 256;
    let length = prefix.len() + state_key.len();
    if length > STACK {
        return f(&compose(prefix, state_key));
    }
    let mut buffer = [0u8; STACK];
    buffer[..prefix.len()].copy_from_slice(prefix);
    buffer[prefix.len()..length].copy_from_slice(state_key);
    f(&buffer[..length])
}

/// Splits a store key into message key and state key; `None` when it is not
/// a valid store key.
pub(crate) fn split(key: &[u8]) -> Option<(&[u8], &[u8])> {
    let length = u32::from_be_bytes(key.get(..4)?.try_into().ok()?) as usize;
    let rest = key.get(4..)?;
    (rest.len() >= length).then(|| rest.split_at(length))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_different_messages_never_collide() {
        let a_bc = compose(&prefix(b"a"), b"bc");
        let ab_c = compose(&prefix(b"ab"), b"c");
        assert_ne!(a_bc, ab_c);
    }

    #[test]
    fn store_keys_roundtrip() {
        for (message, state) in [
            (&b""[..], &b"total"[..]),
            (b"user-1", b""),
            (b"\x00\xff", b"x"),
        ] {
            let key = compose(&prefix(message), state);
            assert_eq!(split(&key), Some((message, state)));
        }
        assert_eq!(split(b"\x00\x00"), None);
        assert_eq!(split(b"\x00\x00\x00\x09abc"), None);
    }
}

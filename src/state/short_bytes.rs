//! Bytes kept inside their owner when they are short: the keys and values
//! of a transaction's map, so that looking one up touches the map's slot
//! and no separate heap block.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

/// How many bytes are kept inline: with the length and the variant tag,
/// as big as a `Vec`.
const INLINE: usize = 22;

/// Bytes stored inline up to [`INLINE`] bytes, else in a heap block.
/// Hashes and compares as the `[u8]` it holds, so that a map keyed by it
/// is searched with a `&[u8]`.
#[derive(Clone)]
pub(crate) enum ShortBytes {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl ShortBytes {
    /// Takes `bytes` over; returns the emptied `Vec` when they were copied
    /// inline, for reuse.
    pub(crate) fn from_vec(bytes: Vec<u8>) -> (Self, Option<Vec<u8>>) {
        if bytes.len() > INLINE {
            return (ShortBytes::Heap(bytes.into_boxed_slice()), None);
        }
        (ShortBytes::from_slice(&bytes), Some(bytes))
    }

    /// A copy of `bytes`.
    pub(crate) fn from_slice(bytes: &[u8]) -> Self {
        if bytes.len() > INLINE {
            return ShortBytes::Heap(bytes.into());
        }
        let mut inline = [0; INLINE];
        inline[..bytes.len()].copy_from_slice(bytes);
        // At most INLINE (22): fits a u8.
        let len = bytes.len() as u8;
        ShortBytes::Inline { len, bytes: inline }
    }

    /// Whether the bytes are in a heap block of their own.
    #[cfg(test)]
    fn is_on_heap(&self) -> bool {
        matches!(self, ShortBytes::Heap(_))
    }
}

impl Deref for ShortBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            ShortBytes::Inline { len, bytes } => &bytes[..usize::from(*len)],
            ShortBytes::Heap(bytes) => bytes,
        }
    }
}

impl Borrow<[u8]> for ShortBytes {
    fn borrow(&self) -> &[u8] {
        self
    }
}

impl PartialEq for ShortBytes {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for ShortBytes {}

impl Hash for ShortBytes {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (**self).hash(state);
    }
}

impl std::fmt::Debug for ShortBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn short_bytes_stay_inline_and_long_ones_go_to_the_heap() {
        let (short, spare) = ShortBytes::from_vec(vec![7; INLINE]);
        assert!(!short.is_on_heap());
        assert_eq!(&*short, &[7; INLINE][..]);
        assert!(spare.is_some(), "the emptied Vec comes back for reuse");
        let (long, spare) = ShortBytes::from_vec(vec![8; INLINE + 1]);
        assert!(long.is_on_heap());
        assert_eq!(&*long, &[8; INLINE + 1][..]);
        assert!(spare.is_none());
        assert_eq!(ShortBytes::from_vec(Vec::new()).0.len(), 0);
    }

    #[test]
    fn a_map_keyed_by_short_bytes_is_searched_with_a_slice() {
        let mut map = HashMap::new();
        for key in [&b"k"[..], &[1; 40][..]] {
            map.insert(ShortBytes::from_vec(key.to_vec()).0, key.len());
        }
        assert_eq!(map.get(&b"k"[..]), Some(&1));
        assert_eq!(map.get(&[1u8; 40][..]), Some(&40));
        assert_eq!(map.get(&b"x"[..]), None);
        assert_eq!(std::mem::size_of::<ShortBytes>(), 24);
    }
}

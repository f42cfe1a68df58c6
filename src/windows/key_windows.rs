//! [`KeyWindows`]: a key's open tumbling or hopping windows, stored as one
//! value that a message reads and writes once.
//!
//! The layout is binary, so that the bounds and the stream time (13-digit
//! numbers) cost no text formatting and parsing:
//!
//! ```text
//! version (1 byte, 1)
//! has time (1 byte, 0 or 1) [stream time (8 bytes)]
//! window count (4 bytes)
//! per window, by end then start:
//!     start (8 bytes) end (8 bytes) items (4 bytes) state length (4 bytes) state (JSON)
//! ```
//!
//! Numbers are little-endian. `items` counts the values the window keeps
//! one by one outside its state ([`Aggregator::item`](super::Aggregator::item)).

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Serialize;

use super::finite;
use crate::error::Cause;

const VERSION: u8 = 1;

/// A key's tumbling or hopping windows: its stream time (closing per key)
/// and each open window, by end then start.
#[derive(Debug, PartialEq)]
pub(crate) struct KeyWindows<S> {
    pub(crate) time: Option<i64>,
    pub(crate) windows: Vec<KeyWindow<S>>,
}

/// One open window of a key.
#[derive(Debug, PartialEq)]
pub(crate) struct KeyWindow<S> {
    pub(crate) start: i64,
    pub(crate) end: i64,
    /// How many values the window keeps outside its state.
    pub(crate) items: u32,
    pub(crate) state: S,
}

impl<S> Default for KeyWindows<S> {
    fn default() -> Self {
        KeyWindows {
            time: None,
            windows: Vec::new(),
        }
    }
}

impl<S> KeyWindows<S> {
    /// Where window `[start, end)` is, or would go.
    pub(crate) fn position(&self, start: i64, end: i64) -> Result<usize, usize> {
        self.windows
            .binary_search_by(|window| (window.end, window.start).cmp(&(end, start)))
    }

    /// Takes window `[start, end)` out.
    pub(crate) fn remove(&mut self, start: i64, end: i64) -> Option<KeyWindow<S>> {
        let at = self.position(start, end).ok()?;
        Some(self.windows.remove(at))
    }

    /// Whether there is nothing to keep.
    pub(crate) fn is_empty(&self) -> bool {
        self.time.is_none() && self.windows.is_empty()
    }
}

impl<S: Serialize> KeyWindows<S> {
    /// Appends the encoded windows to `out`.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        out.push(VERSION);
        match self.time {
            Some(time) => {
                out.push(1);
                out.extend_from_slice(&time.to_le_bytes());
            }
            None => out.push(0),
        }
        let count = u32::try_from(self.windows.len())
            .map_err(|_| serde::ser::Error::custom("a key has over 4 billion windows"))?;
        out.extend_from_slice(&count.to_le_bytes());
        for window in &self.windows {
            out.extend_from_slice(&window.start.to_le_bytes());
            out.extend_from_slice(&window.end.to_le_bytes());
            encode_items_and_state(out, window.items, &window.state)?;
        }
        Ok(())
    }
}

/// Appends a window's item count, then its state's length and JSON.
pub(crate) fn encode_items_and_state<S: Serialize>(
    out: &mut Vec<u8>,
    items: u32,
    state: &S,
) -> serde_json::Result<()> {
    finite::check(state).map_err(serde::ser::Error::custom)?;
    out.extend_from_slice(&items.to_le_bytes());
    let length_at = out.len();
    out.extend_from_slice(&[0; 4]);
    serde_json::to_writer(&mut *out, state)?;
    let length = u32::try_from(out.len() - length_at - 4)
        .map_err(|_| serde::ser::Error::custom("a window's state is larger than 4 GiB"))?;
    out[length_at..length_at + 4].copy_from_slice(&length.to_le_bytes());
    Ok(())
}

impl<S: DeserializeOwned> KeyWindows<S> {
    /// Decodes what [`encode`](Self::encode) wrote.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, Cause> {
        let mut reader = Reader(bytes);
        match reader.take::<1>()? {
            [VERSION] => {}
            [version] => return Err(format!("unknown windows format {version}").into()),
        }
        let time = match reader.take::<1>()? {
            [0] => None,
            [1] => Some(reader.i64()?),
            [flag] => return Err(format!("bad stream-time flag {flag}").into()),
        };
        let count = u32::from_le_bytes(reader.take()?);
        let mut windows = Vec::with_capacity(count.min(1024) as usize);
        for _ in 0..count {
            let start = reader.i64()?;
            let end = reader.i64()?;
            let (items, state) = reader.items_and_state()?;
            windows.push(KeyWindow {
                start,
                end,
                items,
                state,
            });
        }
        reader.finish()?;
        Ok(KeyWindows { time, windows })
    }
}

/// The bounds of the windows in an encoded value, states skipped.
pub(crate) fn bounds(bytes: &[u8]) -> Result<Vec<(i64, i64)>, Cause> {
    let windows = KeyWindows::<IgnoredAny>::decode(bytes)?.windows;
    Ok(windows
        .into_iter()
        .map(|window| (window.start, window.end))
        .collect())
}

/// Reads an encoded value front to back.
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    fn slice(&mut self, length: usize) -> Result<&'a [u8], Cause> {
        if self.0.len() < length {
            return Err("the stored windows are cut short".into());
        }
        let (head, rest) = self.0.split_at(length);
        self.0 = rest;
        Ok(head)
    }

    pub(crate) fn take<const N: usize>(&mut self) -> Result<[u8; N], Cause> {
        let mut array = [0; N];
        array.copy_from_slice(self.slice(N)?);
        Ok(array)
    }

    pub(crate) fn i64(&mut self) -> Result<i64, Cause> {
        Ok(i64::from_le_bytes(self.take()?))
    }

    /// What [`encode_items_and_state`] wrote.
    pub(crate) fn items_and_state<S: DeserializeOwned>(&mut self) -> Result<(u32, S), Cause> {
        let items = u32::from_le_bytes(self.take()?);
        let length = u32::from_le_bytes(self.take()?) as usize;
        Ok((items, serde_json::from_slice(self.slice(length)?)?))
    }

    /// Nothing may follow the value.
    pub(crate) fn finish(self) -> Result<(), Cause> {
        if !self.0.is_empty() {
            return Err("the stored windows are followed by stray bytes".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(start: i64, end: i64, items: u32, state: (u64, f64)) -> KeyWindow<(u64, f64)> {
        KeyWindow {
            start,
            end,
            items,
            state,
        }
    }

    #[test]
    fn windows_decode_as_they_were_encoded() {
        for time in [None, Some(-7), Some(1_700_000_000_000)] {
            let keyed = KeyWindows {
                time,
                windows: vec![window(-3, 7, 0, (1, 2.5)), window(0, 10, 4, (2, -1.0))],
            };
            let mut bytes = Vec::new();
            keyed.encode(&mut bytes).unwrap();
            assert_eq!(KeyWindows::decode(&bytes).unwrap(), keyed);
            assert_eq!(bounds(&bytes).unwrap(), [(-3, 7), (0, 10)]);
        }
    }

    #[test]
    fn a_damaged_value_is_an_error_not_a_panic() {
        let keyed = KeyWindows {
            time: Some(1),
            windows: vec![window(0, 10, 0, (1, 1.0))],
        };
        let mut bytes = Vec::new();
        keyed.encode(&mut bytes).unwrap();
        for cut in 0..bytes.len() {
            assert!(
                KeyWindows::<(u64, f64)>::decode(&bytes[..cut]).is_err(),
                "{cut}"
            );
        }
        bytes[0] = 9;
        let error = KeyWindows::<(u64, f64)>::decode(&bytes).unwrap_err();
        assert_eq!(error.to_string(), "unknown windows format 9");
    }
}

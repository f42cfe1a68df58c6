//! [`KeySessions`]: a key's open session windows, its stream time and the
//! end of its latest closed session, stored as one value that a message
//! reads and writes once.
//!
//! ```text
//! version (1 byte, 1)
//! flags (1 byte: 1 = has stream time, 2 = has closed end)
//! [stream time (8 bytes)] [closed end (8 bytes)]
//! session count (4 bytes)
//! per session, by start:
//!     anchor (8 bytes) start (8 bytes) end (8 bytes)
//!     items (4 bytes) state length (4 bytes) state (JSON)
//! ```
//!
//! Numbers are little-endian, as in [`KeyWindows`](super::key_windows).

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::key_windows::{encode_items_and_state, Reader};
use crate::error::Cause;

const VERSION: u8 = 1;
const HAS_TIME: u8 = 1;
const HAS_CLOSED_END: u8 = 2;

/// A key's sessions: its stream time, the end of its latest closed
/// session (a message within the gap of it is late), and each open
/// session, by start.
#[derive(Debug, PartialEq)]
pub(crate) struct KeySessions<S> {
    pub(crate) time: Option<i64>,
    pub(crate) closed_end: Option<i64>,
    pub(crate) sessions: Vec<Session<S>>,
}

/// One open session of a key: its first and last event time.
#[derive(Debug, PartialEq)]
pub(crate) struct Session<S> {
    /// Where its items are stored: the event time of a message of it (its
    /// first, or the first of the session it was merged into), which no
    /// other open session of the key can hold.
    pub(crate) anchor: i64,
    pub(crate) start: i64,
    pub(crate) end: i64,
    /// How many values it keeps outside its state.
    pub(crate) items: u32,
    pub(crate) state: S,
}

impl<S> Default for KeySessions<S> {
    fn default() -> Self {
        KeySessions {
            time: None,
            closed_end: None,
            sessions: Vec::new(),
        }
    }
}

impl<S> KeySessions<S> {
    /// Whether there is nothing to keep.
    pub(crate) fn is_empty(&self) -> bool {
        self.time.is_none() && self.closed_end.is_none() && self.sessions.is_empty()
    }
}

impl<S: Serialize> KeySessions<S> {
    /// Appends the encoded sessions to `out`.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        out.push(VERSION);
        let flags = u8::from(self.time.is_some()) * HAS_TIME
            + u8::from(self.closed_end.is_some()) * HAS_CLOSED_END;
        out.push(flags);
        for time in self.time.iter().chain(&self.closed_end) {
            out.extend_from_slice(&time.to_le_bytes());
        }
        let count = u32::try_from(self.sessions.len())
            .map_err(|_| serde::ser::Error::custom("a key has over 4 billion sessions"))?;
        out.extend_from_slice(&count.to_le_bytes());
        for session in &self.sessions {
            for time in [session.anchor, session.start, session.end] {
                out.extend_from_slice(&time.to_le_bytes());
            }
            encode_items_and_state(out, session.items, &session.state)?;
        }
        Ok(())
    }
}

impl<S: DeserializeOwned> KeySessions<S> {
    /// Decodes what [`encode`](Self::encode) wrote.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, Cause> {
        let mut reader = Reader(bytes);
        match reader.take::<1>()? {
            [VERSION] => {}
            [version] => return Err(format!("unknown sessions format {version}").into()),
        }
        let [flags] = reader.take::<1>()?;
        if flags & !(HAS_TIME | HAS_CLOSED_END) != 0 {
            return Err(format!("bad session flags {flags}").into());
        }
        let time = (flags & HAS_TIME != 0).then(|| reader.i64()).transpose()?;
        let closed_end = (flags & HAS_CLOSED_END != 0)
            .then(|| reader.i64())
            .transpose()?;
        let count = u32::from_le_bytes(reader.take()?);
        let mut sessions = Vec::with_capacity(count.min(1024) as usize);
        for _ in 0..count {
            let (anchor, start, end) = (reader.i64()?, reader.i64()?, reader.i64()?);
            let (items, state) = reader.items_and_state()?;
            sessions.push(Session {
                anchor,
                start,
                end,
                items,
                state,
            });
        }
        reader.finish()?;
        Ok(KeySessions {
            time,
            closed_end,
            sessions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_decode_as_they_were_encoded_and_damage_is_an_error() {
        let session = |anchor, start, end| Session {
            anchor,
            start,
            end,
            items: 2,
            state: (3_u64, 1.5_f64),
        };
        for (time, closed_end) in [(None, None), (Some(9), None), (Some(40), Some(-5))] {
            let keyed = KeySessions {
                time,
                closed_end,
                sessions: vec![session(1, 0, 4), session(30, 20, 35)],
            };
            let mut bytes = Vec::new();
            keyed.encode(&mut bytes).unwrap();
            assert_eq!(KeySessions::decode(&bytes).unwrap(), keyed);
            for cut in 0..bytes.len() {
                assert!(KeySessions::<(u64, f64)>::decode(&bytes[..cut]).is_err());
            }
        }
    }
}

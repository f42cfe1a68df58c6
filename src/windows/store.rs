//! The layout of a window store. Under each message key, for tumbling and
//! hopping windows: one value of its open windows' states and (closing per
//! key) its stream time, read and written once a message
//! ([`KeyWindows`]), and the items of windows that keep their values one
//! by one (collect); for session windows, one value of its sessions
//! ([`KeySessions`]). For sliding windows: the state of each window, its
//! stream time, the list of its open windows, the aggregate of its
//! messages of each event time and the list of those times. Under a
//! prefix no message key can have: the partition's stream time (closing
//! per partition). All of it is state like any other: written in the
//! checkpoint's RocksDB batch and changelog, stamped with the input
//! offset.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::finite;
use super::key_sessions::KeySessions;
use super::key_windows::{self, KeyWindows};

use crate::error::{Cause, Result};
pub(crate) use crate::state::key::PARTITION;
use crate::state::{key, OpenWindow, PartitionState, State, WindowIndex};

/// A key's tumbling or hopping windows ([`KeyWindows`]).
const KEY_WINDOWS: [u8; 1] = [b'k'];
/// A key's session windows ([`KeySessions`]).
const KEY_SESSIONS: [u8; 1] = [b's'];
/// An item of a window: `c`, then end, start and index.
const ITEM: u8 = b'c';
/// A window's state: `w`, then start and end.
const WINDOW: u8 = b'w';
/// A stream time, as 8 bytes big-endian.
const TIME: [u8; 1] = [b't'];
/// The latest event time of the partition's messages, as 8 bytes
/// big-endian (closing on an idle stream).
const MESSAGE_TIME: [u8; 1] = [b'l'];
/// The definition of the windows the store holds, as text.
const DEFINITION: [u8; 1] = [b'd'];
/// The open windows of a key, 16 bytes each (start, end), closing order.
const OPEN: [u8; 1] = [b'o'];
/// The aggregate of a key's messages of one event time: `r`, then the time.
const RECORDS: u8 = b'r';
/// The event times of a key's kept messages, 8 bytes each, ascending.
const RECORD_TIMES: [u8; 1] = [b'm'];

/// One window store of one partition.
pub(crate) struct WindowStore<'a> {
    partition: &'a mut PartitionState,
    store: usize,
}

impl<'a> WindowStore<'a> {
    pub(crate) fn new(partition: &'a mut PartitionState, store: usize) -> Self {
        WindowStore { partition, store }
    }

    fn at<'b>(&'b mut self, prefix: &'b [u8]) -> State<'b> {
        State::new(self.partition, self.store, prefix)
    }

    /// The value of the key of `prefix` kept as one ([`KeyWindows`],
    /// [`KeySessions`]).
    pub(crate) fn per_key<T: PerKey>(&mut self, prefix: &[u8]) -> Result<T> {
        let name = || T::NAME.to_string();
        let value = self.at(prefix).get_decoded(&T::KEY, name, T::decode)?;
        Ok(value.unwrap_or_default())
    }

    /// Writes the value of the key of `prefix` (deletes it when there is
    /// nothing to keep).
    pub(crate) fn set_per_key<T: PerKey>(&mut self, prefix: &[u8], value: &T) -> Result<()> {
        if value.is_empty() {
            self.at(prefix).delete_bytes(&T::KEY);
            return Ok(());
        }
        let name = || T::NAME.to_string();
        self.at(prefix)
            .set_encoded::<T>(&T::KEY, name, |bytes| value.encode(bytes))
    }

    /// Item `index` of window `[start, end)` of the key of `prefix`: its
    /// event time and value.
    pub(crate) fn item(
        &mut self,
        prefix: &[u8],
        (start, end): (i64, i64),
        index: u32,
    ) -> Result<Option<(i64, Value)>> {
        let name = || format!("item {index} of window [{start}, {end})");
        self.at(prefix)
            .get_decoded(&item_key(start, end, index), name, |bytes| {
                let (time, value) = bytes.split_at_checked(8).ok_or("cut short")?;
                Ok((decode_time(time), serde_json::from_slice(value)?))
            })
    }

    pub(crate) fn set_item(
        &mut self,
        prefix: &[u8],
        (start, end): (i64, i64),
        index: u32,
        (time, value): (i64, &Value),
    ) -> Result<()> {
        let name = || format!("item {index} of window [{start}, {end})");
        self.at(prefix)
            .set_encoded::<Value>(&item_key(start, end, index), name, |bytes| {
                bytes.extend_from_slice(&encode_time(time));
                serde_json::to_writer(bytes, value)
            })
    }

    pub(crate) fn delete_item(&mut self, prefix: &[u8], (start, end): (i64, i64), index: u32) {
        self.at(prefix).delete_bytes(&item_key(start, end, index));
    }

    /// The state of window `[start, end)` of the key of `prefix`.
    pub(crate) fn window<S: DeserializeOwned>(
        &mut self,
        prefix: &[u8],
        start: i64,
        end: i64,
    ) -> Result<Option<S>> {
        self.json(prefix, &window_key(start, end), || {
            format!("window [{start}, {end})")
        })
    }

    pub(crate) fn set_window<S: Serialize>(
        &mut self,
        prefix: &[u8],
        start: i64,
        end: i64,
        window: &S,
    ) -> Result<()> {
        let what = || format!("window [{start}, {end})");
        self.set_json(prefix, &window_key(start, end), window, what)
    }

    /// The JSON value of `key` under `prefix`; `what` names it in errors.
    fn json<S: DeserializeOwned>(
        &mut self,
        prefix: &[u8],
        key: &[u8],
        what: impl FnOnce() -> String,
    ) -> Result<Option<S>> {
        self.at(prefix).get_named(key, what)
    }

    fn set_json<S: Serialize>(
        &mut self,
        prefix: &[u8],
        key: &[u8],
        value: &S,
        what: impl FnOnce() -> String,
    ) -> Result<()> {
        let mut state = self.at(prefix);
        state.set_encoded::<S>(key, what, |bytes| {
            finite::check(value).map_err(serde::ser::Error::custom)?;
            serde_json::to_writer(bytes, value)
        })
    }

    pub(crate) fn delete_window(&mut self, prefix: &[u8], start: i64, end: i64) {
        self.at(prefix).delete_bytes(&window_key(start, end));
    }

    /// The stream time of the key of `prefix` (or of the partition, with
    /// [`PARTITION`]).
    pub(crate) fn time(&mut self, prefix: &[u8]) -> Result<Option<i64>> {
        self.time_at(prefix, &TIME)
    }

    pub(crate) fn set_time(&mut self, prefix: &[u8], time: i64) {
        self.at(prefix)
            .set_bytes(&TIME, time.to_be_bytes().to_vec());
    }

    /// Checks, once the partition is opened, that the store holds windows
    /// of `definition` (type, parameters, grace and closing), and notes it
    /// when the store has none yet: a store written under another
    /// definition would reopen windows that closed and were emitted.
    pub(crate) fn check_definition(&mut self, definition: &str) -> Result<(), String> {
        if self.partition.definitions_checked[self.store] {
            return Ok(());
        }
        let stored = self
            .at(&PARTITION)
            .get_bytes(&DEFINITION)
            .map_err(|error| error.to_string())?;
        match stored {
            Some(stored) if stored != definition.as_bytes() => {
                return Err(String::from_utf8_lossy(&stored).into_owned());
            }
            Some(_) => {}
            None => self
                .at(&PARTITION)
                .set_bytes(&DEFINITION, definition.as_bytes().to_vec()),
        }
        self.partition.definitions_checked[self.store] = true;
        Ok(())
    }

    /// The latest event time of the partition's messages (closing on an
    /// idle stream, whose stream time runs ahead of it).
    pub(crate) fn message_time(&mut self) -> Result<Option<i64>> {
        self.time_at(&PARTITION, &MESSAGE_TIME)
    }

    pub(crate) fn set_message_time(&mut self, time: i64) {
        self.at(&PARTITION)
            .set_bytes(&MESSAGE_TIME, time.to_be_bytes().to_vec());
    }

    fn time_at(&mut self, prefix: &[u8], key: &[u8]) -> Result<Option<i64>> {
        self.at(prefix).read(key, |bytes| {
            bytes.and_then(|bytes| Some(i64::from_be_bytes(bytes.try_into().ok()?)))
        })
    }

    /// The open windows of the key of `prefix` (closing per key), by end.
    pub(crate) fn open_windows(&mut self, prefix: &[u8], open: &mut Vec<(i64, i64)>) -> Result<()> {
        open.clear();
        self.at(prefix).read(&OPEN, |bytes| {
            for window in bytes.unwrap_or_default().chunks_exact(16) {
                let (start, end) = window.split_at(8);
                open.push((decode_time(start), decode_time(end)));
            }
        })
    }

    pub(crate) fn set_open_windows(&mut self, prefix: &[u8], open: &[(i64, i64)]) {
        if open.is_empty() {
            self.at(prefix).delete_bytes(&OPEN);
            return;
        }
        let mut bytes = Vec::with_capacity(16 * open.len());
        for (start, end) in open {
            bytes.extend_from_slice(&encode_time(*start));
            bytes.extend_from_slice(&encode_time(*end));
        }
        self.at(prefix).set_bytes(&OPEN, bytes);
    }

    /// The aggregate of the key's messages at event time `time` (sliding
    /// windows).
    pub(crate) fn records<S: DeserializeOwned>(
        &mut self,
        prefix: &[u8],
        time: i64,
    ) -> Result<Option<S>> {
        self.json(prefix, &records_key(time), || format!("messages at {time}"))
    }

    pub(crate) fn set_records<S: Serialize>(
        &mut self,
        prefix: &[u8],
        time: i64,
        records: &S,
    ) -> Result<()> {
        let what = || format!("messages at {time}");
        self.set_json(prefix, &records_key(time), records, what)
    }

    pub(crate) fn delete_records(&mut self, prefix: &[u8], time: i64) {
        self.at(prefix).delete_bytes(&records_key(time));
    }

    /// The event times of the key's kept messages, ascending.
    pub(crate) fn record_times(&mut self, prefix: &[u8], times: &mut Vec<i64>) -> Result<()> {
        times.clear();
        self.at(prefix).read(&RECORD_TIMES, |bytes| {
            times.extend(bytes.unwrap_or_default().chunks_exact(8).map(decode_time));
        })
    }

    pub(crate) fn set_record_times(&mut self, prefix: &[u8], times: &[i64]) {
        if times.is_empty() {
            self.at(prefix).delete_bytes(&RECORD_TIMES);
            return;
        }
        let bytes: Vec<u8> = times.iter().flat_map(|time| encode_time(*time)).collect();
        self.at(prefix).set_bytes(&RECORD_TIMES, bytes);
    }

    /// The partition's open windows by end (closing per partition), built
    /// from the store the first time.
    pub(crate) fn index(&mut self) -> Result<&mut WindowIndex> {
        let store = self.store;
        if self.partition.window_indexes[store].is_none() {
            let mut open = Vec::new();
            self.partition.store.for_each(store, |key, value| {
                open.extend(parse_key_windows(key, value));
            })?;
            let index = WindowIndex::of(open);
            log::debug!("{} open window(s) in store {store}", index.len());
            self.partition.window_indexes[store] = Some(index);
        }
        Ok(self.partition.window_indexes[store]
            .as_mut()
            .expect("the index was just built"))
    }
}

/// A value kept once under each message key of a window store, read and
/// written once a message.
pub(crate) trait PerKey: Default {
    /// Its state key.
    const KEY: [u8; 1];
    /// What names it in errors.
    const NAME: &'static str;
    fn decode(bytes: &[u8]) -> std::result::Result<Self, Cause>;
    fn encode(&self, out: &mut Vec<u8>) -> serde_json::Result<()>;
    /// Whether there is nothing to keep.
    fn is_empty(&self) -> bool;
}

impl<S: Serialize + DeserializeOwned> PerKey for KeyWindows<S> {
    const KEY: [u8; 1] = KEY_WINDOWS;
    const NAME: &'static str = "windows";
    fn decode(bytes: &[u8]) -> std::result::Result<Self, Cause> {
        KeyWindows::decode(bytes)
    }
    fn encode(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        KeyWindows::encode(self, out)
    }
    fn is_empty(&self) -> bool {
        KeyWindows::is_empty(self)
    }
}

impl<S: Serialize + DeserializeOwned> PerKey for KeySessions<S> {
    const KEY: [u8; 1] = KEY_SESSIONS;
    const NAME: &'static str = "sessions";
    fn decode(bytes: &[u8]) -> std::result::Result<Self, Cause> {
        KeySessions::decode(bytes)
    }
    fn encode(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        KeySessions::encode(self, out)
    }
    fn is_empty(&self) -> bool {
        KeySessions::is_empty(self)
    }
}

/// Times in keys sort as signed numbers: big-endian with the sign bit
/// flipped.
fn encode_time(time: i64) -> [u8; 8] {
    (time ^ i64::MIN).to_be_bytes()
}

fn decode_time(bytes: &[u8]) -> i64 {
    let mut array = [0; 8];
    array.copy_from_slice(bytes);
    i64::from_be_bytes(array) ^ i64::MIN
}

/// The state key of window `[start, end)`.
fn window_key(start: i64, end: i64) -> [u8; 17] {
    let mut key = [WINDOW; 17];
    key[1..9].copy_from_slice(&encode_time(start));
    key[9..].copy_from_slice(&encode_time(end));
    key
}

/// The state key of the messages at `time`.
fn records_key(time: i64) -> [u8; 9] {
    let mut key = [RECORDS; 9];
    key[1..].copy_from_slice(&encode_time(time));
    key
}

/// The state key of item `index` of window `[start, end)`: `c`, then
/// end, start and index.
fn item_key(start: i64, end: i64, index: u32) -> [u8; 21] {
    let mut key = [ITEM; 21];
    key[1..9].copy_from_slice(&encode_time(end));
    key[9..17].copy_from_slice(&encode_time(start));
    key[17..].copy_from_slice(&index.to_be_bytes());
    key
}

/// The windows a store entry holds, if it holds a key's tumbling or
/// hopping windows (whose states are skipped).
fn parse_key_windows(stored: &[u8], value: &[u8]) -> Vec<OpenWindow> {
    let Some((message_key, state_key)) = key::split(stored) else {
        return Vec::new();
    };
    if state_key != KEY_WINDOWS {
        return Vec::new();
    }
    let prefix = &stored[..4 + message_key.len()];
    match key_windows::bounds(value) {
        Ok(bounds) => bounds
            .into_iter()
            .map(|(start, end)| OpenWindow {
                end,
                start,
                prefix: prefix.to_vec(),
            })
            .collect(),
        Err(error) => {
            log::error!("a key's windows do not decode ({error}); they will not close");
            Vec::new()
        }
    }
}

/// The message key of a store key prefix (`None` for the empty key: keyless
/// messages share one state).
pub(crate) fn message_key(prefix: &[u8]) -> Option<&[u8]> {
    prefix.get(4..).filter(|key| !key.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::windows::key_windows::KeyWindow;

    #[test]
    fn window_keys_sort_by_start_then_end() {
        let mut keys: Vec<_> = [(5, 15), (-10, 0), (0, 10), (0, 5)]
            .iter()
            .map(|(start, end)| window_key(*start, *end))
            .collect();
        keys.sort();
        let order: Vec<_> = keys
            .iter()
            .map(|key| (decode_time(&key[1..9]), decode_time(&key[9..])))
            .collect();
        assert_eq!(order, [(-10, 0), (0, 5), (0, 10), (5, 15)]);
    }

    #[test]
    fn a_keys_windows_parse_back_for_the_index() {
        let stored = key::compose(&key::prefix(b"user"), &KEY_WINDOWS);
        let window = |start, end| KeyWindow {
            start,
            end,
            items: 0,
            state: (1_u64, 2.5_f64),
        };
        let keyed = KeyWindows {
            time: Some(7),
            windows: vec![window(-3, 7), window(0, 10)],
        };
        let mut value = Vec::new();
        keyed.encode(&mut value).unwrap();
        let open = parse_key_windows(&stored, &value);
        let bounds: Vec<_> = open
            .iter()
            .map(|window| (window.start, window.end))
            .collect();
        assert_eq!(bounds, [(-3, 7), (0, 10)]);
        assert_eq!(message_key(&open[0].prefix), Some(&b"user"[..]));
        let time = key::compose(&key::prefix(b"user"), &TIME);
        assert!(parse_key_windows(&time, &value).is_empty());
    }
}

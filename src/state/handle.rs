//! [`State`]: what a stateful step sees of its store.

use serde::{de::DeserializeOwned, Serialize};

use super::key;
use super::manager::PartitionState;
use super::transaction::Transaction;
use crate::error::{Cause, Error, Result};

/// The state of one store, scoped to the key of the message being processed.
///
/// Values are JSON-encoded through serde. Reads see the writes (and
/// deletes) made earlier in the same checkpoint. A handle can only reach its
/// own message key's entries: keys of different messages never collide.
///
/// # Examples
///
/// ```
/// use kstreams::{Application, State, TestDriver, TestMessage};
/// use serde_json::{json, Value};
///
/// let app = Application::builder().use_embedded_broker().build()?;
/// let purchases = app.topic::<f64>("purchases");
/// let totals = app.topic::<Value>("totals");
/// app.dataframe(&purchases)
///     .apply_stateful(|amount, state: &mut State| {
///         let total = state.get::<f64>("total")?.unwrap_or(0.0) + amount;
///         state.set("total", &total)?;
///         Ok(json!({"total": total}))
///     })
///     .to_topic(&totals);
///
/// let mut driver = TestDriver::new(&app)?;
/// for (user, amount) in [("ada", 1.0), ("bob", 5.0), ("ada", 2.5)] {
///     driver.push(&purchases, TestMessage::new(amount).key(user.as_bytes().to_vec()))?;
/// }
/// let totals: Vec<f64> = driver.values(&totals)?.iter().map(|t| t["total"].as_f64().unwrap()).collect();
/// assert_eq!(totals, [1.0, 5.0, 3.5]);
/// # Ok::<(), kstreams::Error>(())
/// ```
pub struct State<'a> {
    partition: &'a mut PartitionState,
    store: usize,
    /// The message key, length-delimited: the prefix of every store key.
    prefix: &'a [u8],
}

impl<'a> State<'a> {
    /// The state of store number `store`; `prefix` is the message key's
    /// (see `key::write_prefix`).
    pub(crate) fn new(partition: &'a mut PartitionState, store: usize, prefix: &'a [u8]) -> Self {
        State {
            partition,
            store,
            prefix,
        }
    }

    /// The value of `key`, decoded as `T`; `None` if there is none.
    ///
    /// # Errors
    ///
    /// [`Error::StateValue`] when the stored value does not decode as `T`,
    /// naming store, key and type; [`Error::Store`] when RocksDB fails.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.get_named(key.as_bytes(), || key.to_string())
    }

    /// [`get`](Self::get) of a byte key; `name` names it in errors.
    pub(crate) fn get_named<T: DeserializeOwned>(
        &self,
        key: &[u8],
        name: impl FnOnce() -> String,
    ) -> Result<Option<T>> {
        self.get_decoded(key, name, |bytes| Ok(serde_json::from_slice(bytes)?))
    }

    /// The value of byte key `key`, decoded by `decode`; `name` names it
    /// in errors.
    pub(crate) fn get_decoded<T>(
        &self,
        key: &[u8],
        name: impl FnOnce() -> String,
        decode: impl FnOnce(&[u8]) -> std::result::Result<T, Cause>,
    ) -> Result<Option<T>> {
        self.read(key, |bytes| bytes.map(decode))?
            .transpose()
            .map_err(|source| self.value_error::<T>(&name(), source))
    }

    /// Sets `key` to `value`.
    ///
    /// # Errors
    ///
    /// [`Error::StateValue`] when `value` cannot be encoded as JSON.
    pub fn set<T: Serialize>(&mut self, key: &str, value: &T) -> Result<()> {
        self.set_named(key.as_bytes(), value, || key.to_string())
    }

    /// [`set`](Self::set) of a byte key; `name` names it in errors.
    pub(crate) fn set_named<T: Serialize>(
        &mut self,
        key: &[u8],
        value: &T,
        name: impl FnOnce() -> String,
    ) -> Result<()> {
        self.set_encoded::<T>(key, name, |bytes| serde_json::to_writer(bytes, value))
    }

    /// Sets byte key `key` to what `encode` writes; `name` names it in
    /// errors.
    pub(crate) fn set_encoded<T>(
        &mut self,
        key: &[u8],
        name: impl FnOnce() -> String,
        encode: impl FnOnce(&mut Vec<u8>) -> serde_json::Result<()>,
    ) -> Result<()> {
        let mut bytes = self.transaction().buffer();
        encode(&mut bytes).map_err(|source| self.value_error::<T>(&name(), source.into()))?;
        self.set_bytes(key, bytes);
        Ok(())
    }

    /// Deletes `key`.
    pub fn delete(&mut self, key: &str) {
        self.delete_bytes(key.as_bytes());
    }

    /// Whether `key` has a value.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when RocksDB fails.
    pub fn exists(&self, key: &str) -> Result<bool> {
        self.read(key.as_bytes(), |bytes| bytes.is_some())
    }

    /// The raw bytes of `key`.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when RocksDB fails.
    pub fn get_bytes(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.read(key, |bytes| bytes.map(<[u8]>::to_vec))
    }

    /// Sets `key` to raw bytes.
    pub fn set_bytes(&mut self, key: &[u8], value: impl Into<Vec<u8>>) {
        let full = self.store_key(key);
        self.transaction().put(full, value.into());
    }

    /// Deletes raw `key`.
    pub fn delete_bytes(&mut self, key: &[u8]) {
        let full = self.store_key(key);
        self.transaction().delete(full);
    }

    fn transaction(&mut self) -> &mut Transaction {
        &mut self.partition.transactions[self.store]
    }

    /// The store key of `key`, in a reused buffer.
    fn store_key(&mut self, key: &[u8]) -> Vec<u8> {
        let mut full = self.partition.transactions[self.store].buffer();
        full.extend_from_slice(self.prefix);
        full.extend_from_slice(key);
        full
    }

    /// The key of the message this state belongs to (empty for messages
    /// without key, which all share one state).
    pub fn message_key(&self) -> &[u8] {
        self.prefix.get(4..).unwrap_or_default()
    }

    /// Hands the value of `key` (the checkpoint's latest write, else the
    /// store's) to `read` without copying it.
    pub(crate) fn read<R>(&self, key: &[u8], read: impl FnOnce(Option<&[u8]>) -> R) -> Result<R> {
        key::with_composed(self.prefix, key, |full| {
            match self.partition.transactions[self.store].get(full) {
                Some(value) => Ok(read(value)),
                None => self.partition.store.read(self.store, full, read),
            }
        })
    }

    fn value_error<T>(&self, key: &str, source: Cause) -> Error {
        Error::StateValue {
            store: self.partition.stores()[self.store].name.to_string(),
            key: key.to_string(),
            type_name: std::any::type_name::<T>(),
            source,
        }
    }
}

//! Starting kstreams' own threads.

use std::thread::JoinHandle;

use crate::error::{Error, Result};

/// Starts a thread called `name` (Linux keeps 15 characters) that serves
/// `role`, the config key named when the system refuses a thread.
pub(crate) fn spawn(
    role: &str,
    name: &str,
    body: impl FnOnce() + Send + 'static,
) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(body)
        .map_err(|error| Error::Config {
            key: role.into(),
            reason: format!("cannot start the thread {name}: {error}"),
        })
}

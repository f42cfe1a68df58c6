//! What to do when a message cannot be processed, consumed or produced.

use std::sync::Arc;

use crate::dataframe::is_repartition_topic;
use crate::error::Error;

/// The answer of an error callback.
///
/// # Examples
///
/// ```
/// use kstreams::{Application, Error, ErrorAction};
///
/// let app = Application::builder()
///     .use_embedded_broker()
///     // Skip undecodable messages, stop on anything else.
///     .on_processing_error(|error| match error {
///         Error::Deserialize { .. } => ErrorAction::Skip,
///         _ => ErrorAction::Stop,
///     })
///     .build()
///     .unwrap();
/// # drop(app);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorAction {
    /// Log the error at warn level and go on. For a message, its offset is
    /// committed as if it had been processed: skipping loses it, by choice.
    Skip,
    /// Stop the application: `run` returns the error, and nothing past the
    /// failed message is committed.
    Stop,
}

/// A user callback deciding what to do with an error.
pub(crate) type ErrorCallback = Arc<dyn Fn(&Error) -> ErrorAction + Send + Sync>;

/// The three error callbacks of an application; without one, errors stop it.
#[derive(Clone, Default)]
pub(crate) struct ErrorPolicy {
    pub(crate) processing: Option<ErrorCallback>,
    pub(crate) consumer: Option<ErrorCallback>,
    pub(crate) producer: Option<ErrorCallback>,
}

impl ErrorPolicy {
    /// Decides about an error while deserializing or processing a message.
    pub(crate) fn processing(&self, error: Error) -> Result<(), Error> {
        decide(self.processing.as_ref(), error)
    }

    /// Decides about an error reported by the consumer.
    pub(crate) fn consumer(&self, error: Error) -> Result<(), Error> {
        decide(self.consumer.as_ref(), error)
    }

    /// Decides about an output the broker did not accept.
    pub(crate) fn producer(&self, error: Error) -> Result<(), Error> {
        // Never skipped: a later source offset would be committed past a
        // record the steps after the `group_by` never see.
        if matches!(&error, Error::Produce { output_topic, .. } if is_repartition_topic(output_topic))
        {
            return Err(error);
        }
        decide(self.producer.as_ref(), error)
    }

    /// Exactly once: what to do with a record refused inside a
    /// transaction, which is aborted either way. Skip means: process the
    /// checkpoint's messages again, repartition records included (the
    /// abort leaves no gap behind).
    pub(crate) fn producer_in_transaction(&self, error: Error) -> Result<(), Error> {
        decide(self.producer.as_ref(), error)
    }
}

fn decide(callback: Option<&ErrorCallback>, error: Error) -> Result<(), Error> {
    match callback.map_or(ErrorAction::Stop, |callback| callback(&error)) {
        ErrorAction::Skip => {
            log::warn!("skipped: {error}");
            Ok(())
        }
        ErrorAction::Stop => Err(error),
    }
}

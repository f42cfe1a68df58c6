//! Stopping a running application from another thread or by signal.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Asks a running application to stop cleanly: it finishes the current
/// message, checkpoints, and leaves the consumer group.
///
/// Get one from [`Application::stop_handle`](crate::Application::stop_handle);
/// clones stop the same application.
///
/// # Examples
///
/// ```
/// # use kstreams::{Application, Topic};
/// # let app = Application::builder().use_embedded_broker().build().unwrap();
/// # app.dataframe(&Topic::<serde_json::Value>::new("stop-example"));
/// let stop = app.stop_handle();
/// std::thread::spawn(move || {
///     std::thread::sleep(std::time::Duration::from_millis(200));
///     stop.stop();
/// });
/// app.run().unwrap(); // returns once stopped
/// ```
#[derive(Debug, Clone, Default)]
pub struct StopHandle {
    flag: Arc<AtomicBool>,
}

impl StopHandle {
    /// Asks the application to stop; `run` returns soon after.
    pub fn stop(&self) {
        self.flag.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    pub(crate) fn reset(&self) {
        self.flag.store(false, Ordering::SeqCst);
    }

    pub(crate) fn flag(&self) -> &Arc<AtomicBool> {
        &self.flag
    }
}

/// SIGINT and SIGTERM handlers for the duration of a run: the first signal
/// sets the stop flag, a second SIGINT exits at once.
pub(crate) struct SignalGuard {
    ids: Vec<signal_hook::SigId>,
}

impl SignalGuard {
    pub(crate) fn install(stop: &StopHandle) -> std::io::Result<Self> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        use signal_hook::flag;
        let ids = vec![
            // Registered first, so it sees the flag before the second one sets it.
            flag::register_conditional_shutdown(SIGINT, 130, stop.flag().clone())?,
            flag::register(SIGINT, stop.flag().clone())?,
            flag::register(SIGTERM, stop.flag().clone())?,
        ];
        Ok(SignalGuard { ids })
    }
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

//! Waits for one future on the current thread.
//!
//! rdkafka's admin calls return futures that its own background thread
//! completes; kstreams' loop is synchronous and has no async runtime, so it
//! parks the thread until the future is ready.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};

struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `future` to completion, parking the thread while it is pending.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let waker = Waker::from(Arc::new(ThreadWaker(thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_a_value_sent_from_another_thread() {
        let (sender, receiver) = std::sync::mpsc::channel::<u32>();
        let future = std::future::poll_fn(|cx| {
            let waker = cx.waker().clone();
            match receiver.try_recv() {
                Ok(n) => Poll::Ready(n),
                Err(_) => {
                    thread::spawn(move || waker.wake());
                    Poll::Pending
                }
            }
        });
        thread::spawn(move || sender.send(7).unwrap());
        assert_eq!(block_on(future), 7);
    }
}

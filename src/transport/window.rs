//! Flow control of `-> stream` calls: the window of bytes in flight on
//! each stream of a connection made by the wire (`wire.rs`).

use std::cell::RefCell;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use capnp::capability::Promise;
use capnp::Error;
use futures::future::LocalBoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};

/// A fixed window of bytes in flight per stream, as capnp-rpc's own (which
/// only its `twoparty` network can size): a streaming call may go out while
/// fewer than `size` bytes (plus the largest message, so one large message
/// cannot stall the stream) await their acknowledgement.
pub(crate) struct Window {
    size: usize,
    in_flight: usize,
    largest: usize,
    acks: FuturesUnordered<LocalBoxFuture<'static, Result<usize, Error>>>,
    failed: Option<Error>,
    /// Sends and `wait_all_acked` calls waiting for room.
    waiting: Vec<Waker>,
    driver: Option<Waker>,
}

impl Window {
    pub(crate) fn new(size: usize) -> Self {
        Window {
            size,
            in_flight: 0,
            largest: 0,
            acks: FuturesUnordered::new(),
            failed: None,
            waiting: Vec::new(),
            driver: None,
        }
    }

    /// Collects acknowledgements. Never resolves: it lives as long as the
    /// stream.
    pub(crate) fn poll_acks(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        while let Poll::Ready(Some(ack)) = self.acks.poll_next_unpin(cx) {
            match ack {
                Ok(size) => self.in_flight -= size,
                Err(e) => {
                    self.failed.get_or_insert(e);
                }
            }
            for w in self.waiting.drain(..) {
                w.wake();
            }
        }
        self.driver = Some(cx.waker().clone());
        Poll::Pending
    }

    fn poll_until(
        &mut self,
        cx: &mut Context<'_>,
        ready: fn(&Window) -> bool,
    ) -> Poll<Result<(), Error>> {
        if let Some(e) = &self.failed {
            return Poll::Ready(Err(e.clone()));
        }
        if ready(self) {
            return Poll::Ready(Ok(()));
        }
        self.waiting.push(cx.waker().clone());
        Poll::Pending
    }
}

pub(crate) struct FlowController(pub(crate) Rc<RefCell<Window>>);

impl capnp_rpc::FlowController for FlowController {
    fn send(
        &mut self,
        message: Box<dyn capnp_rpc::OutgoingMessage>,
        ack: Promise<(), Error>,
    ) -> Promise<(), Error> {
        let size = message.size_in_words() * 8;
        // Sent at once, whatever the window: calls must keep their order.
        let _ = message.send();
        {
            let mut w = self.0.borrow_mut();
            w.largest = w.largest.max(size);
            w.in_flight += size;
            w.acks
                .push(Box::pin(async move { ack.await.map(|()| size) }));
            if let Some(d) = w.driver.take() {
                d.wake();
            }
        }
        let window = self.0.clone();
        Promise::from_future(poll_fn(move |cx| {
            window
                .borrow_mut()
                .poll_until(cx, |w| w.in_flight < w.size + w.largest)
        }))
    }

    fn wait_all_acked(&mut self) -> Promise<(), Error> {
        let window = self.0.clone();
        Promise::from_future(poll_fn(move |cx| {
            window.borrow_mut().poll_until(cx, |w| w.in_flight == 0)
        }))
    }
}

//! [`Probe`]: the diagnostic actor of `schema/probe.capnp`.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::actor::{ActorMeta, Interface};
use crate::schema::actor_capnp::actor;
use crate::schema::probe_capnp::{counter, probe};
use crate::Error;

/// The `Probe` interface.
pub const PROBE: Interface = Interface::of::<probe::Client>("Probe");

/// A diagnostic actor for tests and benchmarks: echo, sleep, spin, fail,
/// panic, counter capabilities to pipeline on, and a flow-controlled
/// stream sink.
///
/// # Examples
///
/// ```
/// use capactor::schema::probe_capnp::probe;
///
/// capactor::block_on(async {
///     let p: probe::Client = capactor::spawn_local(capactor::actors::Probe::new("p"));
///     let mut req = p.echo_request();
///     req.get().set_data(b"hi");
///     let reply = req.send().promise.await.unwrap();
///     assert_eq!(reply.get().unwrap().get_data().unwrap(), b"hi");
/// }).unwrap();
/// ```
#[derive(Debug)]
pub struct Probe {
    meta: ActorMeta,
    live_counters: Arc<AtomicU32>,
    cancelled_sleeps: Rc<Cell<u32>>,
    /// Chunks and bytes `sink` has taken.
    streamed: Cell<(u64, u64)>,
}

impl Probe {
    /// A probe called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self::counting(name, Arc::default())
    }

    /// A probe that counts its live counters in `live`, so that a test can
    /// watch them from outside (e.g. across a disconnect).
    pub fn counting(name: impl Into<String>, live: Arc<AtomicU32>) -> Self {
        Probe {
            meta: ActorMeta::new(name, "probe", &[PROBE]),
            live_counters: live,
            cancelled_sleeps: Rc::default(),
            streamed: Cell::default(),
        }
    }
}

impl actor::Server for Probe {
    async fn ping(
        self: Rc<Self>,
        _: actor::PingParams,
        _: actor::PingResults,
    ) -> Result<(), capnp::Error> {
        Ok(())
    }

    async fn info(
        self: Rc<Self>,
        _: actor::InfoParams,
        mut results: actor::InfoResults,
    ) -> Result<(), capnp::Error> {
        let live = u64::from(self.live_counters.load(Ordering::Relaxed));
        self.meta
            .write_info(results.get().init_info(), live, live * 8);
        Ok(())
    }
}

impl probe::Server for Probe {
    async fn echo(
        self: Rc<Self>,
        params: probe::EchoParams,
        mut results: probe::EchoResults,
    ) -> Result<(), capnp::Error> {
        results.get().set_data(params.get()?.get_data()?);
        Ok(())
    }

    async fn sleep(
        self: Rc<Self>,
        params: probe::SleepParams,
        _: probe::SleepResults,
    ) -> Result<(), capnp::Error> {
        let millis = params.get()?.get_millis();
        let mut pending = CountIfDropped(Some(self.cancelled_sleeps.clone()));
        tokio::time::sleep(Duration::from_millis(millis.into())).await;
        pending.0 = None;
        Ok(())
    }

    async fn spin(
        self: Rc<Self>,
        params: probe::SpinParams,
        mut results: probe::SpinResults,
    ) -> Result<(), capnp::Error> {
        let budget = Duration::from_micros(params.get()?.get_micros().into());
        let start = Instant::now();
        let mut rounds = 0u64;
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        while start.elapsed() < budget {
            for _ in 0..64 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
            }
            rounds += 1;
        }
        std::hint::black_box(x);
        results.get().set_rounds(rounds);
        Ok(())
    }

    async fn fail(
        self: Rc<Self>,
        params: probe::FailParams,
        _: probe::FailResults,
    ) -> Result<(), capnp::Error> {
        let msg = params.get()?.get_message()?.to_str()?;
        Err(Error::invalid(msg).into())
    }

    async fn panic(
        self: Rc<Self>,
        _: probe::PanicParams,
        _: probe::PanicResults,
    ) -> Result<(), capnp::Error> {
        panic!("probe asked to panic")
    }

    async fn counter(
        self: Rc<Self>,
        params: probe::CounterParams,
        mut results: probe::CounterResults,
    ) -> Result<(), capnp::Error> {
        let start = params.get()?.get_start();
        if start < 0 {
            return Err(Error::invalid(format!(
                "counter: start must not be negative, got {start}"
            ))
            .into());
        }
        self.live_counters.fetch_add(1, Ordering::Relaxed);
        let counter = Counter {
            value: Cell::new(start),
            live: self.live_counters.clone(),
        };
        results.get().set_counter(crate::new_client(counter));
        Ok(())
    }

    async fn stats(
        self: Rc<Self>,
        _: probe::StatsParams,
        mut results: probe::StatsResults,
    ) -> Result<(), capnp::Error> {
        let mut r = results.get();
        r.set_live_counters(self.live_counters.load(Ordering::Relaxed));
        r.set_cancelled_sleeps(self.cancelled_sleeps.get());
        let (chunks, bytes) = self.streamed.get();
        r.set_streamed_chunks(chunks);
        r.set_streamed_bytes(bytes);
        Ok(())
    }

    async fn sink(self: Rc<Self>, params: probe::SinkParams) -> Result<(), capnp::Error> {
        let params = params.get()?;
        let (chunks, bytes) = self.streamed.get();
        let seq = params.get_seq();
        if seq != chunks {
            return Err(Error::invalid(format!(
                "sink: chunk {seq} arrived when chunk {chunks} was due"
            ))
            .into());
        }
        let len = params.get_data()?.len() as u64;
        if len == 0 {
            return Err(Error::invalid(format!("sink: chunk {seq} is empty")).into());
        }
        self.streamed.set((chunks + 1, bytes + len));
        Ok(())
    }
}

/// Counts a sleep that was dropped before it finished.
struct CountIfDropped(Option<Rc<Cell<u32>>>);

impl Drop for CountIfDropped {
    fn drop(&mut self) {
        if let Some(c) = &self.0 {
            c.set(c.get() + 1);
        }
    }
}

struct Counter {
    value: Cell<i64>,
    live: Arc<AtomicU32>,
}

impl Drop for Counter {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::Relaxed);
    }
}

impl counter::Server for Counter {
    async fn next(
        self: Rc<Self>,
        _: counter::NextParams,
        mut results: counter::NextResults,
    ) -> Result<(), capnp::Error> {
        let v = self.value.get();
        self.value.set(v.wrapping_add(1));
        results.get().set_value(v);
        Ok(())
    }
}

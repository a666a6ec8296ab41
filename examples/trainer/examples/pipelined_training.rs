//! Trains a user-defined `Trainer` actor with pipelined calls, and watches
//! it train through a callback.
//!
//! ```text
//! cargo run -p capactor-trainer --example pipelined_training
//! ```
//!
//! The trainer runs on its own vat thread, reached through the real Cap'n
//! Proto protocol over an in-memory link with 2 ms one-way latency. Each
//! step uploads a batch with the inherited `TensorWorker.fromData`, trains
//! on it with the trainer's own `step`, and reads the loss: three dependent
//! calls, one round trip. Then `train` runs ten steps on the server, which
//! calls the client's own `Progress` capability back after each.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use capactor::actors::tensor::Worker;
use capactor::{Connection, Runtime, VirtualOptions};
use capactor_trainer::{progress, trainer, Model, Trainer};
use ndarray::{Array1, Array2};

const FEATURES: usize = 3;
const BATCH: usize = 256;

fn main() -> capactor::Result<()> {
    let rt = Runtime::new()?;
    capactor::block_on(run(&rt)).unwrap()
}

async fn run(rt: &Runtime) -> capactor::Result<()> {
    let mut opts = VirtualOptions::default();
    opts.link.latency = Duration::from_millis(2);
    let model = Model::new();
    let quota = capactor::Quota::new(64 << 20);
    let conn: Connection<trainer::Client> =
        rt.spawn_virtual_with(move || Trainer::new("trainer", model, quota), &opts);
    let trainer = conn.client().clone();
    println!("{}\n", capactor::describe(&trainer).await?);

    // The trainer is a TensorWorker: capactor's client API works on it.
    let worker = Worker::new(capactor::cast(&trainer));
    for round in 0..5u64 {
        let (x, y) = batch(round);
        let started = Instant::now();
        let (xs, ys) = (worker.tensor(&x), worker.tensor(&y));
        let mut step = trainer.step_request();
        step.get().set_x(xs.client().clone());
        step.get().set_y(ys.client().clone());
        step.get().set_learning_rate(0.5);
        // `loss` is usable before the step has even reached the trainer.
        let loss = worker.adopt(step.send().pipeline.get_loss());
        let value = loss.item().await?;
        println!(
            "step {round}: loss {value:.4} (upload, step and read in {:.1?}, one round trip)",
            started.elapsed()
        );
    }

    // The server drives, the client answers: `train` calls our observer
    // back over this same connection.
    let (x, y) = batch(99);
    let seen = Rc::new(RefCell::new(Vec::new()));
    let observer: progress::Client = capactor::new_client(Printer { seen: seen.clone() });
    let mut train = trainer.train_request();
    let mut p = train.get();
    p.set_x(worker.tensor(&x).client().clone());
    p.set_y(worker.tensor(&y).client().clone());
    p.set_learning_rate(0.5);
    p.set_steps(10);
    p.set_observer(observer);
    let reply = train.send().promise.await?;
    let r = reply.get()?;
    println!(
        "train: {} steps, last loss {:.4}; the observer heard {} reports",
        r.get_steps(),
        r.get_loss(),
        seen.borrow().len()
    );
    Ok(())
}

/// The client's own `Progress` capability.
struct Printer {
    seen: Rc<RefCell<Vec<f32>>>,
}

impl progress::Server for Printer {
    async fn report(
        self: Rc<Self>,
        params: progress::ReportParams,
        _: progress::ReportResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        println!(
            "  progress: step {:>2}, loss {:.4}",
            p.get_step(),
            p.get_loss()
        );
        self.seen.borrow_mut().push(p.get_loss());
        Ok(())
    }
}

/// A deterministic, linearly separable batch.
fn batch(seed: u64) -> (Array2<f32>, Array1<f32>) {
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ seed.wrapping_mul(0xD1B5_4A32_D192_ED03);
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    };
    let x = Array2::from_shape_simple_fn((BATCH, FEATURES), &mut next);
    let truth = Array1::from(vec![2.0f32, -1.5, 0.5]);
    let y = x.dot(&truth).mapv(|v| if v > 0.0 { 1.0 } else { 0.0 });
    (x, y)
}

//! Trains a logistic regression on data split across two virtual workers,
//! entirely with pipelined tensor commands.
//!
//! ```text
//! cargo run --release --example quickstart
//! ```
//!
//! Each worker runs on its own vat thread and is reached through the real
//! Cap'n Proto protocol over an in-memory link with 1 ms one-way latency.
//! Every training step (forward pass, gradients on both shards, moving one
//! gradient to the other worker, the update) is sent without waiting for
//! anything; the client only waits when it prints the loss. At the end it
//! compares the round trips it waited for with the calls it sent, each of
//! which would have cost a round trip without pipelining.

use std::time::{Duration, Instant};

use capactor::actors::tensor::{DType, Quota, RemoteTensor, TensorWorker, Worker};
use capactor::{Runtime, VirtualOptions};
use ndarray::{Array1, Array2, Axis};

const FEATURES: usize = 4;
const SAMPLES: usize = 2000;
const STEPS: usize = 200;
const LEARNING_RATE: f32 = 0.5;

fn main() -> capactor::Result<()> {
    let rt = Runtime::new()?;
    capactor::block_on(train(&rt))?
}

async fn train(rt: &Runtime) -> capactor::Result<()> {
    let mut opts = VirtualOptions::default();
    opts.link.latency = Duration::from_millis(1);
    let spawn = |name: &'static str| {
        let quota = Quota::new(256 << 20);
        Worker::spawn_virtual_with(rt, move || TensorWorker::new(name, quota), &opts)
    };
    let (alice, bob) = (spawn("alice")?, spawn("bob")?);

    // A separable problem: label = [x · w_true + 0.3 > 0].
    let (x, y) = dataset();
    let half = SAMPLES / 2;
    let shards = [
        (
            &alice,
            x.slice(ndarray::s![..half, ..]).to_owned(),
            y.slice(ndarray::s![..half, ..]).to_owned(),
        ),
        (
            &bob,
            x.slice(ndarray::s![half.., ..]).to_owned(),
            y.slice(ndarray::s![half.., ..]).to_owned(),
        ),
    ];
    // The data goes to its worker once and stays there.
    let shards: Vec<(&Worker, RemoteTensor, RemoteTensor)> = shards
        .iter()
        .map(|(w, xs, ys)| (*w, w.tensor(xs), w.tensor(ys)))
        .collect();

    // The model lives on alice.
    let mut weights = alice.zeros(DType::F32, &[FEATURES as u64, 1]);
    let mut bias = alice.zeros(DType::F32, &[1]);

    let started = Instant::now();
    for step in 0..STEPS {
        // Each worker computes the gradient on its own shard.
        let mut grads = Vec::new();
        for (worker, xs, ys) in &shards {
            let (w, b) = if std::ptr::eq(*worker, &alice) {
                (weights.clone(), bias.clone())
            } else {
                (weights.copy_to(worker), bias.copy_to(worker))
            };
            let p = (xs.matmul(&w) + &b).sigmoid();
            let err = p - ys;
            let gw = xs.t().matmul(&err) * (1.0 / half as f32);
            let gb = err.mean_axis(0, false);
            grads.push((gw, gb));
        }
        // Bob's gradient moves to alice; the average updates the model.
        let (gw_a, gb_a) = grads.remove(0);
        let (gw_b, gb_b) = grads.remove(0);
        let gw = (gw_a + gw_b.move_to(&alice)) * 0.5;
        let gb = (gb_a + gb_b.move_to(&alice)) * 0.5;
        weights = weights - gw * LEARNING_RATE;
        bias = bias - gb * LEARNING_RATE;

        if (step + 1) % 50 == 0 {
            let (xs, ys) = (&shards[0].1, &shards[0].2);
            let loss = log_loss(&(xs.matmul(&weights) + &bias).sigmoid(), ys)
                .item()
                .await?;
            println!("step {:>3}: loss on alice's shard {loss:.4}", step + 1);
        }
    }
    let elapsed = started.elapsed();

    // Accuracy on every sample, computed locally from the fetched model.
    let w = weights.to_ndarray::<f32>().await?;
    let b = bias.to_ndarray::<f32>().await?;
    let w = w
        .into_shape_with_order((FEATURES, 1))
        .expect("weights are FEATURES x 1");
    let logits = x.dot(&w) + b.iter().copied().next().unwrap_or(0.0);
    let correct = logits
        .iter()
        .zip(y.iter())
        .filter(|(l, t)| ((**l > 0.0) as u8 as f32) == **t)
        .count();
    println!("trained weights: {}", w.t());
    println!(
        "accuracy: {:.1}% of {SAMPLES} samples",
        100.0 * correct as f64 / SAMPLES as f64
    );

    let calls = alice.calls_sent() + bob.calls_sent();
    let waits = alice.round_trips() + bob.round_trips();
    let rtt = opts.link.latency * 2;
    println!(
        "training took {:.2?} over a link with {:?} round trips",
        elapsed, rtt
    );
    println!(
        "round trips waited for: {waits}; calls sent: {calls} \
         (without pipelining, at least {calls} round trips, {:.1?} in latency alone)",
        rtt * calls as u32
    );
    Ok(())
}

/// Binary cross-entropy, pipelined like everything else.
fn log_loss(p: &RemoteTensor, y: &RemoteTensor) -> RemoteTensor {
    let eps = 1e-6f32;
    let pos = (p + eps).log() * y;
    let neg = (-p + (1.0 + eps)).log() * (-y + 1.0f32);
    -(pos + neg).mean()
}

/// A deterministic, linearly separable data set.
fn dataset() -> (Array2<f32>, Array2<f32>) {
    let truth = Array1::from(vec![1.5f32, -2.0, 0.7, 0.0]);
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    };
    let x = Array2::from_shape_simple_fn((SAMPLES, FEATURES), &mut next);
    let y = (x.dot(&truth) + 0.3)
        .mapv(|v| if v > 0.0 { 1.0f32 } else { 0.0 })
        .insert_axis(Axis(1));
    (x, y)
}

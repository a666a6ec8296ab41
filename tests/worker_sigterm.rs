//! A `capactor worker` sent SIGTERM while clients run pipelined tensor
//! chains exits cleanly, and no client gets a wrong answer: every chain
//! either returns the right value or fails with `actor is shutting down`
//! (refused while the worker drains) or as disconnected by the abort the
//! worker sends once it has written its last answer (which says it is
//! shutting down, where a cut link would say `connection reset`).

use std::cell::{Cell, RefCell};
use std::process::Command;
use std::rc::Rc;
use std::thread;
use std::time::Duration;

use capactor::actors::tensor::Worker;
use capactor::schema::tensor_capnp::tensor_worker;
use ndarray::Array2;
use tokio::sync::Notify;

#[path = "common/process.rs"]
mod process;
use process::{WorkerProcess, BIN};

/// Client connections, each looping chains.
const CLIENTS: usize = 20;
/// Chains that must have completed before the worker is signalled.
const BEFORE_SIGNAL: u64 = 200;
/// Bound on every wait: starting, a chain, the exit after the grace
/// period (5 s) has passed.
const LIMIT: Duration = Duration::from_secs(10);

#[test]
fn a_worker_sent_sigterm_under_load_answers_every_chain_rightly_or_with_a_clear_error() {
    let mut worker = WorkerProcess::spawn(Command::new(BIN).args([
        "worker",
        "--listen",
        "127.0.0.1:0",
        "--insecure-no-auth",
        "--grace",
        "5",
        "--vats",
        "2",
    ]));
    let addr = worker.listening_addr(LIMIT);
    let pid = worker.child.id();

    let t = capactor::block_on(load_and_signal(&addr, pid)).unwrap();
    let status = worker.wait(LIMIT);
    println!(
        "{} chains right ({} of them after SIGTERM), {} refused as shutting down, \
         {} disconnected",
        t.right, t.right_after_signal, t.refused, t.disconnected
    );

    assert!(status.success(), "worker exited with {status}");
    assert!(
        t.wrong.is_empty(),
        "chains returned wrong values: {:?}",
        t.wrong
    );
    assert!(
        t.unclear.is_empty(),
        "chains failed unclearly: {:?}",
        t.unclear
    );
    assert!(
        t.right >= BEFORE_SIGNAL,
        "only {} chains completed",
        t.right
    );
    assert_eq!(
        t.refused + t.disconnected,
        CLIENTS as u64,
        "every client's loop ends with one clear error"
    );
}

/// What the clients saw.
#[derive(Debug, Default)]
struct Tally {
    /// Chains that returned the right value.
    right: u64,
    /// Of those, chains sent after the signal was.
    right_after_signal: u64,
    /// Chains refused with `actor is shutting down`.
    refused: u64,
    /// Chains failed as disconnected by the worker's shutdown.
    disconnected: u64,
    /// Chains that returned a wrong value: (seed, got, expected).
    wrong: Vec<(u64, f64, f64)>,
    /// Chains that failed any other way (a bare disconnect included), or
    /// hung.
    unclear: Vec<String>,
}

/// Runs [`CLIENTS`] connections looping chains until each fails, and
/// sends SIGTERM to `pid` once [`BEFORE_SIGNAL`] chains have completed.
async fn load_and_signal(addr: &str, pid: u32) -> Tally {
    let tally = Rc::new(RefCell::new(Tally::default()));
    let signalled = Rc::new(Cell::new(false));
    let progress = Rc::new(Notify::new());

    let mut conns = Vec::new();
    for _ in 0..CLIENTS {
        let conn = tokio::time::timeout(
            LIMIT,
            capactor::connect_tcp::<tensor_worker::Client>(addr, &Default::default()),
        )
        .await
        .expect("connecting in time")
        .expect("connecting");
        conns.push(conn);
    }

    let signal = {
        let tally = tally.clone();
        let signalled = signalled.clone();
        let progress = progress.clone();
        async move {
            let enough = async {
                while tally.borrow().right < BEFORE_SIGNAL {
                    progress.notified().await;
                }
            };
            tokio::time::timeout(LIMIT, enough)
                .await
                .expect("chains complete before the signal");
            signalled.set(true);
            // From another thread, so that the clients keep going meanwhile.
            thread::spawn(move || {
                Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status()
                    .expect("running kill")
            })
        }
    };
    let clients = conns.iter().enumerate().map(|(i, conn)| {
        let w = Worker::new(conn.client().clone());
        client(
            w,
            i as u64,
            tally.clone(),
            signalled.clone(),
            progress.clone(),
        )
    });
    let run = futures::future::join(signal, futures::future::join_all(clients));
    // After the signal every chain fails fast or gets its answer; the grace
    // period bounds the rest.
    let (kill, _) = tokio::time::timeout(2 * LIMIT, run)
        .await
        .expect("every client loop ends");
    assert!(kill.join().unwrap().success(), "kill -TERM failed");
    drop(conns);
    Rc::try_unwrap(tally).unwrap().into_inner()
}

/// Loops chains on `w` until one fails.
async fn client(
    w: Worker,
    index: u64,
    tally: Rc<RefCell<Tally>>,
    signalled: Rc<Cell<bool>>,
    progress: Rc<Notify>,
) {
    for round in 0u64.. {
        let seed = index * 1_000_003 + round;
        let a = input(seed);
        let after_signal = signalled.get();
        let got = tokio::time::timeout(LIMIT, chain(&w, &a)).await;
        let mut t = tally.borrow_mut();
        match got {
            Ok(Ok(v)) => {
                let want = expected(&a);
                if v == want {
                    t.right += 1;
                    t.right_after_signal += u64::from(after_signal);
                } else {
                    t.wrong.push((seed, v, want));
                }
                drop(t);
                progress.notify_one();
            }
            Ok(Err(e)) => {
                let text = e.to_string();
                if e.kind() == capnp::ErrorKind::Overloaded
                    && text.contains("actor is shutting down")
                {
                    t.refused += 1;
                } else if e.kind() == capnp::ErrorKind::Disconnected
                    && text.contains("shutting down")
                {
                    // The abort the worker writes after its last answer.
                    t.disconnected += 1;
                } else {
                    t.unclear.push(format!("{:?}: {text}", e.kind()));
                }
                return;
            }
            Err(_) => {
                t.unclear.push(format!("chain hung for {LIMIT:?}"));
                return;
            }
        }
    }
}

/// Six calls, one round trip: send, matmul, add, relu, sum, read.
async fn chain(w: &Worker, a: &Array2<f32>) -> capactor::Result<f64> {
    let x = w.tensor(a);
    x.matmul(&x).add(&x).relu().sum().item().await
}

/// A 16x16 matrix of small integers (so every result is exact in f32).
fn input(seed: u64) -> Array2<f32> {
    Array2::from_shape_fn((16, 16), |(i, j)| {
        ((seed as usize + 7 * i + 3 * j) % 9) as f32 - 4.0
    })
}

fn expected(a: &Array2<f32>) -> f64 {
    f64::from((a.dot(a) + a).mapv(|v| v.max(0.0)).sum())
}

//! The Trainer, a user's actor extending capactor's TensorWorker, behaves
//! the same local, virtual and over TCP: its own methods, the inherited
//! ones, pipelining across both, and callbacks to the client's own
//! capabilities over the client's connection.

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use capactor::actors::tensor::{DType, Quota, RemoteTensor, TensorWorker, Worker};
use capactor::schema::tensor_capnp::tensor_worker;
use capactor::{Connection, Runtime, TcpServer};
use capactor_trainer::{progress, trainer, Model, Trainer, TRAINER};
use capnp::traits::HasTypeId;
use ndarray::{array, Array1, Array2};

/// How a test reaches its trainer.
#[derive(Clone, Copy, Debug)]
enum Transport {
    /// Same thread, direct capability.
    Local,
    /// A vat thread, over an in-memory pipe speaking the real protocol.
    Virtual,
    /// A vat thread, over TCP on 127.0.0.1.
    Tcp,
}

const ALL: [Transport; 3] = [Transport::Local, Transport::Virtual, Transport::Tcp];
const LIMIT: Duration = Duration::from_secs(30);

/// A trainer over some transport, and what keeps it reachable.
struct Spawned {
    trainer: trainer::Client,
    quota: Arc<Quota>,
    _conn: Option<Connection<trainer::Client>>,
    _server: Option<TcpServer>,
}

impl Spawned {
    /// The trainer seen through capactor's tensor client API.
    fn worker(&self) -> Worker {
        Worker::new(capactor::cast(&self.trainer))
    }
}

async fn spawn(transport: Transport, rt: &Runtime) -> Spawned {
    let model = Model::new();
    let quota = Quota::new(16 << 20);
    let q = quota.clone();
    let make = move || Trainer::new("t1", model.clone(), q.clone());
    let (trainer, conn, server) = match transport {
        Transport::Local => (capactor::spawn_local(make()), None, None),
        Transport::Virtual => {
            let conn: Connection<trainer::Client> = rt.spawn_virtual(make);
            (conn.client().clone(), Some(conn), None)
        }
        Transport::Tcp => {
            let opts = capactor::ServeOptions::insecure_loopback();
            let server = rt
                .serve_tcp::<trainer::Client, _, _>("127.0.0.1:0", make, opts)
                .await
                .unwrap();
            let addr = server.local_addr().to_string();
            let conn: Connection<trainer::Client> =
                capactor::connect_tcp(&addr, &capactor::ConnectOptions::default())
                    .await
                    .unwrap();
            (conn.client().clone(), Some(conn), Some(server))
        }
    };
    Spawned {
        trainer,
        quota,
        _conn: conn,
        _server: server,
    }
}

/// Runs `body` once per transport, each in a fresh runtime, failing the
/// test if one run takes longer than `LIMIT`.
fn each<F, Fut>(body: F)
where
    F: Fn(Spawned) -> Fut,
    Fut: Future<Output = ()>,
{
    for t in ALL {
        eprintln!("--- over {t:?}");
        let rt = Runtime::builder().vats(2).build().unwrap();
        capactor::block_on(async {
            let spawned = spawn(t, &rt).await;
            tokio::time::timeout(LIMIT, body(spawned))
                .await
                .unwrap_or_else(|_| panic!("timed out over {t:?}"));
        })
        .unwrap();
    }
}

/// A separable batch: label = [x · (2, -1) > 0].
fn batch() -> (Array2<f32>, Array1<f32>) {
    let x = array![
        [1.0f32, 0.5],
        [-1.0, 0.2],
        [0.3, -0.8],
        [-0.6, -0.1],
        [0.9, 1.2],
        [-0.2, 0.9]
    ];
    let y = x.dot(&array![2.0f32, -1.0]).mapv(|v| f32::from(v > 0.0));
    (x, y)
}

fn step(
    t: &trainer::Client,
    x: &RemoteTensor,
    y: &RemoteTensor,
    lr: f32,
) -> capactor::schema::tensor_capnp::tensor::Client {
    let mut req = t.step_request();
    req.get().set_x(x.client().clone());
    req.get().set_y(y.client().clone());
    req.get().set_learning_rate(lr);
    req.send().pipeline.get_loss()
}

#[test]
fn step_pipelines_on_tensors_made_with_the_inherited_methods() {
    each(|s| async move {
        let w = s.worker();
        let (x, y) = batch();
        let mut losses = Vec::new();
        for _ in 0..4 {
            // Upload, step and read: sent together, waited for once.
            let (xs, ys) = (w.tensor(&x), w.tensor(&y));
            let loss = w.adopt(step(&s.trainer, &xs, &ys, 1.0));
            losses.push(loss.item().await.unwrap());
        }
        // Zero weights predict 0.5 everywhere: the first loss is ln 2.
        assert!(
            (losses[0] - std::f64::consts::LN_2).abs() < 1e-4,
            "{losses:?}"
        );
        assert!(losses.windows(2).all(|p| p[1] < p[0]), "{losses:?}");
        assert_eq!(w.round_trips(), 4, "one wait per step");
    });
}

#[test]
fn inherited_methods_are_served_by_capactor() {
    each(|s| async move {
        let w = s.worker();
        let t = w.arange(DType::F32, 0.0, 4.0, 1.0).reshape(&[2, 2]);
        let sum = (t.matmul(&t) + 1.0f32).sum();
        // [[0, 1], [2, 3]]² = [[2, 3], [6, 11]]; plus one everywhere.
        assert_eq!(sum.item().await.unwrap(), 26.0);
        // Actor: info names our interface first, then the inherited ones.
        let about = capactor::describe(&s.trainer).await.unwrap();
        assert_eq!(
            (about.name.as_str(), about.kind.as_str()),
            ("t1", "trainer")
        );
        let ifaces: Vec<(u64, &str)> = about
            .interfaces
            .iter()
            .map(|i| (i.id, i.name.as_str()))
            .collect();
        assert_eq!(
            ifaces,
            [
                (trainer::Client::TYPE_ID, "Trainer"),
                (tensor_worker::Client::TYPE_ID, "TensorWorker"),
                (
                    capactor::schema::actor_capnp::actor::Client::TYPE_ID,
                    "Actor"
                ),
            ]
        );
        assert_eq!(TRAINER.id, trainer::Client::TYPE_ID);
        assert_eq!(
            about.schema_version,
            capactor::schema::actor_capnp::SCHEMA_VERSION
        );
        // A method capactor added after this crate was written is served too.
        let memory = w.memory().await.unwrap();
        assert_eq!(memory.limit, s.quota.limit());
        assert!(memory.used > 0, "t and its products are alive");
    });
}

/// The client's own `Progress`: records what it hears, asks to stop at
/// `stop_at`.
struct Recorder {
    heard: Rc<RefCell<Vec<(u32, f32)>>>,
    stop_at: u32,
}

impl progress::Server for Recorder {
    async fn report(
        self: Rc<Self>,
        params: progress::ReportParams,
        mut results: progress::ReportResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        self.heard.borrow_mut().push((p.get_step(), p.get_loss()));
        results.get().set_stop(p.get_step() >= self.stop_at);
        Ok(())
    }
}

#[test]
fn train_calls_the_clients_observer_back_until_it_says_stop() {
    each(|s| async move {
        let w = s.worker();
        let (x, y) = batch();
        let heard = Rc::new(RefCell::new(Vec::new()));
        // Served by the client, on the client's thread; the trainer reaches
        // it over the connection the client opened (the client listens on
        // nothing).
        let observer: progress::Client = capactor::new_client(Recorder {
            heard: heard.clone(),
            stop_at: 3,
        });
        let mut req = s.trainer.train_request();
        let mut p = req.get();
        p.set_x(w.tensor(&x).client().clone());
        p.set_y(w.tensor(&y).client().clone());
        p.set_learning_rate(1.0);
        p.set_steps(10);
        p.set_observer(observer);
        let reply = req.send().promise.await.unwrap();
        let r = reply.get().unwrap();
        assert_eq!(r.get_steps(), 3, "stopped when the observer said so");
        let heard = heard.borrow();
        let steps: Vec<u32> = heard.iter().map(|(s, _)| *s).collect();
        assert_eq!(steps, [1, 2, 3]);
        assert!((f64::from(heard[0].1) - std::f64::consts::LN_2).abs() < 1e-4);
        assert!(heard.windows(2).all(|p| p[1].1 < p[0].1), "{heard:?}");
        assert_eq!(r.get_loss(), heard[2].1);
    });
}

#[test]
fn a_failing_observer_fails_train_with_its_error() {
    struct Broken;
    impl progress::Server for Broken {
        async fn report(
            self: Rc<Self>,
            _: progress::ReportParams,
            _: progress::ReportResults,
        ) -> Result<(), capnp::Error> {
            Err(capnp::Error::failed("observer gave up".into()))
        }
    }
    each(|s| async move {
        let w = s.worker();
        let (x, y) = batch();
        let mut req = s.trainer.train_request();
        let mut p = req.get();
        p.set_x(w.tensor(&x).client().clone());
        p.set_y(w.tensor(&y).client().clone());
        p.set_steps(5);
        p.set_observer(capactor::new_client(Broken));
        let err = req.send().promise.await.err().expect("train must fail");
        assert!(err.to_string().contains("observer gave up"), "{err}");
    });
}

#[test]
fn export_to_puts_the_weights_on_a_worker_the_client_serves() {
    each(|s| async move {
        let w = s.worker();
        let (x, y) = batch();
        let loss = w.adopt(step(&s.trainer, &w.tensor(&x), &w.tensor(&y), 1.0));
        loss.item().await.unwrap();
        // A worker of the client's own, on the client's thread.
        let mine_quota = Quota::new(1 << 20);
        let mine = Worker::new(capactor::spawn_local(TensorWorker::new(
            "client-side",
            mine_quota.clone(),
        )));
        let mut req = s.trainer.export_to_request();
        req.get().set_worker(mine.client().clone());
        // Pipelined: read from the client's worker before exportTo returns.
        let exported = mine.adopt(req.send().pipeline.get_weights());
        let there = exported.to_ndarray::<f32>().await.unwrap();
        let weights = w.adopt(s.trainer.weights_request().send().pipeline.get_weights());
        let here = weights.to_ndarray::<f32>().await.unwrap();
        assert_eq!(there, here);
        assert_eq!(there.shape(), &[2, 1]);
        assert!(
            there.iter().any(|v| *v != 0.0),
            "one step moved the weights"
        );
        assert_eq!(mine_quota.live_tensors(), 1, "the copy lives on our worker");
    });
}

#[test]
fn step_errors_name_the_problem() {
    each(|s| async move {
        let w = s.worker();
        let (x, y) = batch();
        let flat = w.tensor(&array![1.0f32, 2.0]);
        let err = w
            .adopt(step(&s.trainer, &flat, &w.tensor(&y), 0.1))
            .item()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("step: x must be 2-D"), "{err}");
        let ints = w.tensor(&array![[1i32, 2]]);
        let err = w
            .adopt(step(&s.trainer, &ints, &w.tensor(&y), 0.1))
            .item()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("step: x must be f32"), "{err}");
        // A tensor of another worker must be fetched first.
        let other = Worker::new(capactor::spawn_local(TensorWorker::new(
            "other",
            Quota::new(1 << 20),
        )));
        let err = w
            .adopt(step(&s.trainer, &other.tensor(&x), &w.tensor(&y), 0.1))
            .item()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("lives on another worker"), "{err}");
    });
}

#[test]
fn a_plain_tensor_worker_answers_trainer_methods_unimplemented() {
    let rt = Runtime::new().unwrap();
    capactor::block_on(async {
        let conn: Connection<tensor_worker::Client> =
            rt.spawn_virtual(|| TensorWorker::new("plain", Quota::new(1 << 20)));
        let as_trainer: trainer::Client = capactor::cast(conn.client());
        let err = as_trainer
            .weights_request()
            .send()
            .promise
            .await
            .err()
            .expect("a TensorWorker is no Trainer");
        assert_eq!(err.kind, capnp::ErrorKind::Unimplemented);
        let err = capactor::actor::explain_unimplemented(&as_trainer, "Trainer.weights", err).await;
        assert_eq!(err.kind(), capnp::ErrorKind::Unimplemented);
        let msg = err.to_string();
        assert!(
            msg.contains(&format!(
                "Trainer.weights is not implemented by actor \"plain\" (kind tensor-worker, \
                 schema version {}, implementing TensorWorker, Actor)",
                capactor::schema::actor_capnp::SCHEMA_VERSION
            )),
            "{msg}"
        );
    })
    .unwrap();
}

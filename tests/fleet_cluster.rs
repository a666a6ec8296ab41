//! `Cluster` collectives over the virtual and TCP transports, checked
//! numerically against ndarray; a data-parallel step costs the same client
//! round trips whatever the pool's size; a dead worker is noticed through
//! the registry's watch and named.

mod common;

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use capactor::actors::registry::{Registry, RegistryOptions, RegistryState};
use capactor::actors::tensor::{Array, Quota, TensorWorker, Worker, WorkerState};
use capactor::fleet::{Cluster, Lease, Reach, Reduce, Registration, RegistryClient};
use capactor::schema::registry_capnp::registry;
use capactor::schema::tensor_capnp::tensor_worker;
use capactor::{Address, ConnectOptions, Connection, ServeOptions, Server};
use common::{each, eventually, within, Harness, Transport, REMOTE, SETUP_LIMIT};
use ndarray::{s, Array2, ArrayD, Axis};

const LIMIT: Duration = Duration::from_secs(30);

/// A registry and `n` tensor workers registered with it.
struct Fleet {
    cluster: Cluster,
    registry: RegistryClient,
    leases: HashMap<String, Lease>,
    servers: HashMap<String, Server<Address>>,
    _conns: Vec<Connection<tensor_worker::Client>>,
    _registry_server: Option<Server<Address>>,
}

/// Where `name` listens over the harness's network transport: a free TCP
/// port, or a socket in the run's directory.
fn listen_at(h: &Harness, name: &str) -> Address {
    match h.transport {
        Transport::Unix => Address::Unix(h.dir.path().join(format!("{name}.sock"))),
        _ => "127.0.0.1:0".parse().unwrap(),
    }
}

async fn fleet(h: &Harness, n: usize) -> Fleet {
    let state = RegistryState::new(RegistryOptions::default());
    let s = state.clone();
    let (registry, registry_server, registry_addr) = match h.transport {
        Transport::Tcp | Transport::Unix => {
            let server = within(
                SETUP_LIMIT,
                h.rt.serve::<registry::Client, _, _>(
                    listen_at(h, "registry"),
                    move || Registry::new("registry", s.clone()),
                    ServeOptions::insecure_loopback(),
                ),
            )
            .await
            .unwrap();
            let addr = server.address().to_string();
            let conn = capactor::connect(&addr, &ConnectOptions::default())
                .await
                .unwrap();
            (
                RegistryClient::from_connection(conn),
                Some(server),
                Some(addr),
            )
        }
        _ => (
            RegistryClient::from_connection(
                h.rt.spawn_virtual(move || Registry::new("registry", s.clone())),
            ),
            None,
            None,
        ),
    };
    let mut leases = HashMap::new();
    let mut servers = HashMap::new();
    let mut conns = Vec::new();
    let mut clients: HashMap<String, tensor_worker::Client> = HashMap::new();
    for i in 0..n {
        let name = format!("w{i}");
        let worker_state = WorkerState::new(Quota::new(256 << 20));
        let address = match h.transport {
            Transport::Tcp | Transport::Unix => {
                let (ws, nm) = (worker_state.clone(), name.clone());
                let server = within(
                    SETUP_LIMIT,
                    h.rt.serve::<tensor_worker::Client, _, _>(
                        listen_at(h, &name),
                        move || TensorWorker::with_state(nm.clone(), ws.clone()),
                        ServeOptions::insecure_loopback(),
                    ),
                )
                .await
                .unwrap();
                let addr = server.address().to_string();
                worker_state.set_endpoint(addr.clone(), None);
                servers.insert(name.clone(), server);
                addr
            }
            _ => {
                let (ws, nm) = (worker_state.clone(), name.clone());
                let conn: Connection<tensor_worker::Client> =
                    h.rt.spawn_virtual(move || TensorWorker::with_state(nm.clone(), ws.clone()));
                clients.insert(name.clone(), conn.client().clone());
                conns.push(conn);
                format!("in-process:{name}")
            }
        };
        let lease = registry
            .register(&Registration::new(&name, "tensor-worker", address), None)
            .await
            .unwrap();
        leases.insert(name, lease);
    }
    let cluster = match registry_addr {
        Some(addr) => Cluster::connect(&addr, &ConnectOptions::default())
            .await
            .unwrap(),
        None => {
            let clients = Rc::new(clients);
            Cluster::new(registry.clone(), move |w| {
                let found = clients.get(&w.name).cloned();
                let name = w.name.clone();
                Box::pin(async move {
                    let client = found
                        .ok_or_else(|| capactor::Error::invalid(format!("no worker {name}")))?;
                    Ok(Reach {
                        worker: Worker::new(client),
                        connection: None,
                    })
                })
            })
        }
    };
    Fleet {
        cluster,
        registry,
        leases,
        servers,
        _conns: conns,
        _registry_server: registry_server,
    }
}

fn matrix(rows: usize, cols: usize, seed: f32) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |(i, j)| {
        ((i * cols + j) as f32 * 0.37 + seed).sin()
    })
}

fn f32s(a: &Array) -> ArrayD<f32> {
    match a {
        Array::F32(a) => a.clone(),
        other => panic!("expected f32, got {:?}", other.dtype()),
    }
}

fn close(a: &ArrayD<f32>, b: &ArrayD<f32>) {
    assert_eq!(a.shape(), b.shape());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{x} vs {y}");
    }
}

#[test]
fn broadcast_scatter_gather_and_all_reduce_match_ndarray() {
    each(&REMOTE, |h| async move {
        let f = fleet(&h, 4).await;
        let pool = within(LIMIT, f.cluster.pool("tensor-worker", 4))
            .await
            .unwrap();
        assert_eq!(pool.names(), ["w0", "w1", "w2", "w3"]);
        let x = matrix(10, 3, 0.5);
        let xa = Array::F32(x.clone().into_dyn());

        let everywhere = pool.broadcast(&xa).unwrap();
        for t in everywhere.shards() {
            close(
                &within(LIMIT, t.to_ndarray::<f32>()).await.unwrap(),
                &x.clone().into_dyn(),
            );
        }

        // 10 rows over 4 workers: 3, 3, 2, 2.
        let parts = pool.scatter(&xa, 0).unwrap();
        let mut row = 0;
        for (t, rows) in parts.shards().iter().zip([3, 3, 2, 2]) {
            let got = within(LIMIT, t.to_ndarray::<f32>()).await.unwrap();
            close(
                &got,
                &x.slice(s![row..row + rows, ..]).to_owned().into_dyn(),
            );
            row += rows;
        }
        let back = pool.gather(&parts, 0).unwrap();
        close(
            &within(LIMIT, back.to_ndarray::<f32>()).await.unwrap(),
            &x.clone().into_dyn(),
        );
        let cols = pool
            .scatter(&Array::F32(matrix(4, 8, 1.0).into_dyn()), 1)
            .unwrap();
        let back = pool.gather(&cols, 1).unwrap();
        close(
            &within(LIMIT, back.to_ndarray::<f32>()).await.unwrap(),
            &matrix(4, 8, 1.0).into_dyn(),
        );

        let partial = parts.map(|_, t| t.sum_axis(0, false));
        let sum = pool.all_reduce(&partial, Reduce::Sum).unwrap();
        let expected = x.sum_axis(Axis(0)).into_dyn();
        for t in sum.shards() {
            close(
                &within(LIMIT, t.to_ndarray::<f32>()).await.unwrap(),
                &expected,
            );
        }
        let local = everywhere.map(|i, t| t * (i as f32 + 1.0));
        let mean = pool.all_reduce(&local, Reduce::Mean).unwrap();
        let expected = (&x * 2.5f32).into_dyn(); // (1 + 2 + 3 + 4) / 4
        for t in mean.shards() {
            close(
                &within(LIMIT, t.to_ndarray::<f32>()).await.unwrap(),
                &expected,
            );
        }
        assert!(pool
            .scatter(&xa, 2)
            .unwrap_err()
            .to_string()
            .contains("axis 2"));
        let tiny = Array::F32(matrix(3, 1, 0.0).into_dyn());
        assert!(pool
            .scatter(&tiny, 0)
            .unwrap_err()
            .to_string()
            .contains("over 4 workers"));
        drop(f.leases);
    });
}

/// One step of data-parallel linear regression on `pool`: returns the new
/// weights (on every worker) and the loss, read with one round trip.
async fn step(
    pool: &capactor::fleet::Pool,
    x: &capactor::fleet::Sharded,
    y: &capactor::fleet::Sharded,
    w: &capactor::fleet::Sharded,
    lr: f32,
    rows: usize,
) -> (capactor::fleet::Sharded, f64) {
    let residual = x
        .zip(w, |x, w| x.matmul(w))
        .unwrap()
        .zip(y, |p, y| p - y)
        .unwrap();
    let grad = x.zip(&residual, |x, r| x.t().matmul(r)).unwrap();
    let grad = pool.all_reduce(&grad, Reduce::Sum).unwrap();
    let loss = pool
        .reduce(&residual.map(|_, r| (r * r).sum()), Reduce::Sum)
        .unwrap();
    let w = w
        .zip(&grad, |w, g| w - &(g * (2.0 * lr / rows as f32)))
        .unwrap();
    let loss = pool.read(loss.item()).await.unwrap() / rows as f64;
    (w, loss)
}

#[test]
fn a_data_parallel_step_costs_the_same_round_trips_whatever_the_pool_size() {
    each(&REMOTE, |h| async move {
        let f = fleet(&h, 4).await;
        let (rows, d) = (24, 3);
        let x = matrix(rows, d, 0.1);
        let truth = Array2::from_shape_vec((d, 1), vec![1.5f32, -2.0, 0.5]).unwrap();
        let y = x.dot(&truth);
        let lr = 0.1f32;
        // The same step in ndarray.
        let w0 = Array2::<f32>::zeros((d, 1));
        let r = x.dot(&w0) - &y;
        let expected_loss = r.iter().map(|v| f64::from(v * v)).sum::<f64>() / rows as f64;
        let expected_w = &w0 - &(x.t().dot(&r) * (2.0 * lr / rows as f32));
        let mut per_step = Vec::new();
        for n in [1, 2, 4] {
            let pool = within(LIMIT, f.cluster.pool("tensor-worker", n))
                .await
                .unwrap();
            let xs = pool.scatter(&Array::F32(x.clone().into_dyn()), 0).unwrap();
            let ys = pool.scatter(&Array::F32(y.clone().into_dyn()), 0).unwrap();
            let mut w = pool.broadcast(&Array::F32(w0.clone().into_dyn())).unwrap();
            let before = pool.round_trips();
            let (w1, loss) = within(LIMIT, step(&pool, &xs, &ys, &w, lr, rows)).await;
            let trips = pool.round_trips() - before;
            assert!(
                (loss - expected_loss).abs() < 1e-4 * expected_loss.max(1.0),
                "{loss} vs {expected_loss}"
            );
            w = w1;
            for t in w.shards() {
                close(
                    &within(LIMIT, t.to_ndarray::<f32>()).await.unwrap(),
                    &expected_w.clone().into_dyn(),
                );
            }
            per_step.push(trips);
            // A few more steps: the loss goes down.
            let mut last = loss;
            for _ in 0..3 {
                let (w2, l) = within(LIMIT, step(&pool, &xs, &ys, &w, lr, rows)).await;
                assert!(l < last, "{l} after {last}");
                (w, last) = (w2, l);
            }
        }
        assert_eq!(
            per_step,
            [1, 1, 1],
            "client round trips per step for 1, 2 and 4 workers"
        );
        drop(f.leases);
    });
}

#[test]
fn a_dead_worker_is_noticed_through_the_watch_and_named_and_the_rest_carry_on() {
    each(&REMOTE, |h| async move {
        let mut f = fleet(&h, 3).await;
        let pool = within(LIMIT, f.cluster.pool("tensor-worker", 3))
            .await
            .unwrap();
        let x = Array::F32(matrix(6, 2, 0.0).into_dyn());
        pool.check().unwrap();
        // w1 dies: its server goes (TCP) and its lease with it.
        if let Some(server) = f.servers.remove("w1") {
            drop(server);
        }
        drop(f.leases.remove("w1"));
        eventually(LIMIT, || !pool.gone().is_empty()).await;
        assert_eq!(pool.gone()[0].0, "w1");
        let err = pool.scatter(&x, 0).unwrap_err();
        assert!(err.is_disconnected(), "{err}");
        assert!(
            err.to_string().contains("worker \"w1\" of the pool"),
            "{err}"
        );
        let rest = pool.without_gone();
        assert_eq!(rest.names(), ["w0", "w2"]);
        let parts = rest.scatter(&x, 0).unwrap();
        let total = rest
            .reduce(&parts.map(|_, t| t.sum()), Reduce::Sum)
            .unwrap();
        let sum = within(LIMIT, rest.read(total.item())).await.unwrap();
        let expected: f32 = f32s(&x).sum();
        assert!((sum as f32 - expected).abs() < 1e-4, "{sum} vs {expected}");
        // The registry knows too.
        assert_eq!(f.registry.status().await.unwrap().totals.workers, 2);
    });
}

//! A panic in the factory of a virtual or TCP actor is caught on its vat:
//! the vat and the other actors on it keep serving.

mod common;

use std::time::Duration;

use capactor::actors::Probe;
use capactor::schema::probe_capnp::probe;
use capactor::{Connection, Error, Runtime, ServeOptions};
use common::{ping, within};

const LIMIT: Duration = Duration::from_secs(20);

#[test]
fn a_factory_panic_leaves_the_vat_and_its_other_actors_serving() {
    // One vat: every actor below lives on the same thread.
    let rt = Runtime::builder().vats(1).build().unwrap();
    capactor::block_on(async {
        let before: Connection<probe::Client> = rt.spawn_virtual(|| Probe::new("before"));
        ping(&before, LIMIT).await;

        let broken: Connection<probe::Client> =
            rt.spawn_virtual(|| -> Probe { panic!("factory bug") });
        let err = within(LIMIT, common::sleep_call(&broken, 1))
            .await
            .err()
            .unwrap();
        assert_eq!(err.kind, capnp::ErrorKind::Failed, "{err}");
        assert!(err.extra.contains("internal error (id"), "{err}");
        assert!(
            !err.extra.contains("factory bug"),
            "the panic stays in the log: {err}"
        );

        // The actor spawned before still answers, and new ones start.
        ping(&before, LIMIT).await;
        let after: Connection<probe::Client> = rt.spawn_virtual(|| Probe::new("after"));
        ping(&after, LIMIT).await;

        // A TCP factory that panics fails serve_tcp, on the same vat.
        let opts = ServeOptions::insecure_loopback();
        let served = rt
            .serve_tcp::<probe::Client, _, _>(
                "127.0.0.1:0",
                || -> Probe { panic!("tcp factory bug") },
                opts,
            )
            .await;
        let err = served.err().unwrap();
        assert!(
            matches!(&err, Error::StartFailed(m) if m.contains("tcp factory bug")),
            "{err}"
        );
        ping(&before, LIMIT).await;
        ping(&after, LIMIT).await;
    })
    .unwrap();
}

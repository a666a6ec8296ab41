//! An actor of the user's own that implements only its own interface's
//! methods, with `Actor` served by `serve_actor_via!`, behaves the same
//! local, virtual and over TCP; generic clients (`describe`, `capactor
//! info`) see its interfaces, most derived first.

mod common;

use std::process::Command;
use std::rc::Rc;
use std::time::Duration;

use capactor::actors::PROBE;
use capactor::schema::actor_capnp::actor;
use capactor::schema::probe_capnp::probe;
use capactor::{ActorMeta, ServeOptions};
use capnp::traits::HasTypeId;
use common::{each, within, Transport, ALL};

const LIMIT: Duration = Duration::from_secs(20);

/// A user's actor: implements `Probe.echo` and nothing else of `Probe`;
/// `Actor` comes from its `ActorMeta`.
struct Echo {
    meta: ActorMeta,
}

capactor::serve_actor_via!(Echo, meta, |_: &Echo| (3, 24));

impl Echo {
    fn new() -> Self {
        Echo {
            meta: ActorMeta::new("echo-1", "echo", &[PROBE]),
        }
    }
}

impl probe::Server for Echo {
    async fn echo(
        self: Rc<Self>,
        params: probe::EchoParams,
        mut results: probe::EchoResults,
    ) -> Result<(), capnp::Error> {
        let data = params.get()?.get_data()?;
        results.get().set_data(data);
        Ok(())
    }
}

#[test]
fn a_user_actor_writes_only_its_methods_and_serves_actor_on_every_transport() {
    each(&ALL, |h| async move {
        let p = h.spawn::<probe::Client, _, _>(Echo::new).await;
        let mut req = p.echo_request();
        req.get().set_data(b"hello");
        let reply = within(LIMIT, req.send().promise).await.unwrap();
        assert_eq!(reply.get().unwrap().get_data().unwrap(), b"hello");

        // Inherited: ping, and info from the ActorMeta.
        let base: actor::Client = capactor::cast(&*p);
        within(LIMIT, base.ping_request().send().promise)
            .await
            .unwrap();
        let about = within(LIMIT, capactor::describe(&*p)).await.unwrap();
        assert_eq!(
            (about.name.as_str(), about.kind.as_str()),
            ("echo-1", "echo")
        );
        // The actor's own numbers locally; a remote caller sees its own
        // connection's (it holds nothing) unless the worker shows totals.
        let own = if h.transport == common::Transport::Local {
            (3, 24)
        } else {
            (0, 0)
        };
        assert_eq!((about.live_objects, about.live_bytes), own);
        assert_eq!(about.runtime, capactor::actor::RUNTIME);
        let ifaces: Vec<(u64, &str)> = about
            .interfaces
            .iter()
            .map(|i| (i.id, i.name.as_str()))
            .collect();
        assert_eq!(
            ifaces,
            [
                (probe::Client::TYPE_ID, "Probe"),
                (actor::Client::TYPE_ID, "Actor")
            ]
        );

        // A method of its interface it did not write: unimplemented, and
        // explained.
        let mut req = p.sleep_request();
        req.get().set_millis(1);
        let err = within(LIMIT, req.send().promise).await.err().unwrap();
        assert_eq!(err.kind, capnp::ErrorKind::Unimplemented, "{err}");
        let err = capactor::actor::explain_unimplemented(&*p, "Probe.sleep", err).await;
        assert!(
            err.to_string().contains(&format!(
                "Probe.sleep is not implemented by actor \"echo-1\" (kind echo, \
                 schema version {}, implementing Probe, Actor)",
                capactor::schema::actor_capnp::SCHEMA_VERSION
            )),
            "{err}"
        );
        if h.transport != Transport::Local {
            // Still connected.
            within(LIMIT, base.ping_request().send().promise)
                .await
                .unwrap();
        }
    });
}

#[test]
fn capactor_info_lists_a_user_actors_interfaces_most_derived_first() {
    let rt = capactor::Runtime::builder().vats(1).build().unwrap();
    capactor::block_on(async {
        let mut opts = ServeOptions::default();
        opts.token = Some(b"extend-test-token".to_vec());
        let server = within(
            LIMIT,
            rt.serve_tcp::<probe::Client, _, _>("127.0.0.1:0", Echo::new, opts),
        )
        .await
        .unwrap();
        let addr = server.local_addr().to_string();
        // The CLI blocks on its own runtime: run it off this thread, which
        // keeps serving.
        let out = within(
            LIMIT,
            tokio::task::spawn_blocking(move || {
                Command::new(env!("CARGO_BIN_EXE_capactor"))
                    .args(["info", &addr])
                    .env("CAPACTOR_TOKEN", "extend-test-token")
                    .output()
                    .unwrap()
            }),
        )
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("name:           echo-1"), "{stdout}");
        assert!(
            stdout.contains(&format!("runtime:        {}", capactor::actor::RUNTIME)),
            "{stdout}"
        );
        let listed: Vec<&str> = stdout
            .lines()
            .skip_while(|l| *l != "interfaces:")
            .skip(1)
            .map(str::trim)
            .collect();
        assert_eq!(
            listed,
            [
                format!("{:#018x} Probe", probe::Client::TYPE_ID),
                format!("{:#018x} Actor", actor::Client::TYPE_ID),
            ]
        );
    })
    .unwrap();
}

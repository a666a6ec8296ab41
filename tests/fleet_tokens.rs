//! Fleet credentials at a worker's gate, over the virtual and TCP
//! transports: tokens the registry signs open a worker that trusts its key
//! (fetched with `Registry.publicKey`); forged, expired and wrong-audience
//! tokens get `credential rejected` and nothing more; the static token
//! keeps working beside them; only the admin token gets tokens issued.

mod common;

use std::time::Duration;

use capactor::actors::registry::{Registry, RegistryOptions, RegistryState};
use capactor::fleet::{RegistryClient, TokenSigner, Trust};
use capactor::schema::probe_capnp::probe;
use capactor::schema::registry_capnp::registry;
use capactor::{ConnectOptions, LinkConditions, ServeOptions};
use common::{each, within, Harness, REMOTE};

const LIMIT: Duration = Duration::from_secs(20);
const STATIC: &[u8] = b"the-static-token-of-this-worker";
const ADMIN: &[u8] = b"the-admin-token-of-the-registry";

/// A probe called `name` that trusts `key` and has a static token; the
/// first call made with `token` succeeds or fails.
async fn call_with(
    h: &Harness,
    trust: &Trust,
    name: &'static str,
    token: &[u8],
) -> Result<(), capnp::Error> {
    let mut serve = ServeOptions::default();
    serve.token = Some(STATIC.to_vec());
    serve.trust = Some(trust.clone());
    let mut connect = ConnectOptions::default();
    connect.token = token.to_vec();
    connect.heartbeat = None;
    let p = h
        .spawn_with::<probe::Client, _, _>(
            move || capactor::actors::Probe::new(name),
            LinkConditions::default(),
            serve,
            connect,
        )
        .await;
    let mut req = p.echo_request();
    req.get().set_data(b"hi");
    within(LIMIT, req.send().promise).await.map(drop)
}

fn rejected(r: Result<(), capnp::Error>) {
    let err = r.expect_err("the token should have been rejected");
    assert_eq!(err.kind, capnp::ErrorKind::Failed, "{err}");
    // Nothing more: not why, not which check.
    assert_eq!(
        err.extra.trim_start_matches("remote exception: "),
        "credential rejected",
        "{err}"
    );
}

#[test]
fn a_worker_trusting_the_registrys_key_accepts_its_tokens_and_refuses_forged_expired_and_foreign_ones(
) {
    each(&REMOTE, |h| async move {
        let state = RegistryState::with_signer(
            RegistryOptions::default(),
            Some(TokenSigner::generate().unwrap()),
            Some(ADMIN.to_vec()),
        );
        let s = state.clone();
        let registry = h
            .spawn::<registry::Client, _, _>(move || Registry::new("registry", s.clone()))
            .await;
        let registry = RegistryClient::new(registry.client.clone());
        // The worker fetches the key: no secret is copied onto it.
        let key = within(LIMIT, registry.public_key()).await.unwrap();
        assert_eq!(&key, &state.signer().unwrap().public_key());
        let trust = Trust::new(key, "w1");

        let hour = Duration::from_secs(3600);
        let good = registry.issue_token(ADMIN, "ci", hour, &[]).await.unwrap();
        call_with(&h, &trust, "w1", good.token.as_bytes())
            .await
            .unwrap();
        let for_w1 = registry
            .issue_token(ADMIN, "ci", hour, &["w0".into(), "w1".into()])
            .await
            .unwrap();
        call_with(&h, &trust, "w1", for_w1.token.as_bytes())
            .await
            .unwrap();
        // The static token keeps working.
        call_with(&h, &trust, "w1", STATIC).await.unwrap();

        let for_w2 = registry
            .issue_token(ADMIN, "ci", hour, &["w2".into()])
            .await
            .unwrap();
        rejected(call_with(&h, &trust, "w1", for_w2.token.as_bytes()).await);
        let forger = TokenSigner::generate().unwrap();
        let forged = forger.issue("ci", hour, &[]).unwrap();
        rejected(call_with(&h, &trust, "w1", forged.token.as_bytes()).await);
        let expired = state
            .signer()
            .unwrap()
            .issue("ci", Duration::ZERO, &[])
            .unwrap();
        rejected(call_with(&h, &trust, "w1", expired.token.as_bytes()).await);
        let mut tampered = good.token.clone().into_bytes();
        tampered[20] ^= 1;
        rejected(call_with(&h, &trust, "w1", &tampered).await);
        rejected(call_with(&h, &trust, "w1", b"v4.public.garbage").await);
    });
}

#[test]
fn only_the_admin_token_gets_tokens_issued_within_the_registrys_limit() {
    each(&REMOTE, |h| async move {
        let mut opts = RegistryOptions::default();
        opts.max_token_ttl = Duration::from_secs(7200);
        let state = RegistryState::with_signer(
            opts,
            Some(TokenSigner::generate().unwrap()),
            Some(ADMIN.to_vec()),
        );
        let s = state.clone();
        let conn = h
            .spawn::<registry::Client, _, _>(move || Registry::new("registry", s.clone()))
            .await;
        let registry = RegistryClient::new(conn.client.clone());
        let hour = Duration::from_secs(3600);
        let err = registry
            .issue_token(b"not-the-admin-token", "x", hour, &[])
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string()
                .trim_start_matches("Failed: remote exception: "),
            "credential rejected"
        );
        let err = registry
            .issue_token(ADMIN, "x", Duration::from_secs(7201), &[])
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("token ttl (s) limit exceeded: 7201 > 7200"),
            "{err}"
        );
        let err = registry
            .issue_token(ADMIN, "", hour, &[])
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("subject must be 1 to 255 bytes"),
            "{err}"
        );
        let err = registry
            .issue_token(ADMIN, "x", Duration::ZERO, &[])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("at least 1 second"), "{err}");
        // Still serving.
        let issued = registry.issue_token(ADMIN, "x", hour, &[]).await.unwrap();
        assert!(issued.token.starts_with("v4.public."));
        // A registry without a key says so.
        let plain = RegistryState::new(RegistryOptions::default());
        let conn = h
            .spawn::<registry::Client, _, _>(move || Registry::new("plain", plain.clone()))
            .await;
        let err = RegistryClient::new(conn.client.clone())
            .public_key()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("signs no tokens"), "{err}");
    });
}

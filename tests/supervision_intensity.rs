//! The restart intensity: past it a supervisor stops its children and says
//! why, whether the actor keeps crashing or cannot start at all.

mod common;
#[path = "common/supervised.rs"]
mod supervised;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use capactor::actors::Probe;
use capactor::schema::probe_capnp::probe;
use capactor::supervisor::{ChildExit, Intensity, Supervisor, SupervisorExit};
use capactor::Error;
use common::{assert_disconnected, each, ping, within, ALL};

const LIMIT: Duration = Duration::from_secs(20);

#[test]
fn the_intensity_limit_is_honoured() {
    each(&ALL, |h| async move {
        let sup = Supervisor::builder()
            .intensity(Intensity::new(3, Duration::from_secs(60)))
            .build();
        let spec = supervised::spec::<probe::Client, _, _>(&h, "p", || Probe::new("p"))
            .restart_on_panic(true);
        let p = within(LIMIT, sup.spawn(spec)).await.unwrap();
        for n in 1..=3 {
            assert!(within(LIMIT, p.panic_request().send().promise)
                .await
                .is_err());
            // Served by incarnation n + 1.
            ping(&p, LIMIT).await;
            assert_eq!(p.restarts(), n);
        }
        assert!(sup.exit().is_none());
        // The fourth crash within the period is one too many.
        assert!(within(LIMIT, p.panic_request().send().promise)
            .await
            .is_err());
        let exit = within(LIMIT, sup.stopped()).await;
        let SupervisorExit::IntensityExceeded {
            child,
            last,
            intensity,
        } = &exit
        else {
            panic!("{exit:?}")
        };
        assert_eq!((child.as_str(), intensity.max_restarts), ("p", 3));
        assert!(matches!(last, ChildExit::Panicked(_)), "{last:?}");
        assert_eq!(p.restarts(), 3);
        let err = within(LIMIT, common::sleep_call(&p, 1))
            .await
            .err()
            .unwrap();
        assert_disconnected(&err);
        assert!(!Error::is_restarting(&err), "{err}");
        assert!(err.extra.contains("restart intensity exceeded"), "{err}");
        // A stopped supervisor takes no new children.
        let spec = supervised::spec::<probe::Client, _, _>(&h, "q", || Probe::new("q"));
        assert!(sup.spawn(spec).await.is_err());
    });
}

#[test]
fn restarts_older_than_the_period_do_not_count() {
    each(&[common::Transport::Local], |h| async move {
        let period = Duration::from_millis(200);
        let sup = Supervisor::builder()
            .intensity(Intensity::new(1, period))
            .build();
        let spec = supervised::spec::<probe::Client, _, _>(&h, "p", || Probe::new("p"));
        let p = within(LIMIT, sup.spawn(spec)).await.unwrap();
        let start = std::time::Instant::now();
        assert!(p.kill());
        common::eventually(LIMIT, || p.restarts() == 1 && p.is_running()).await;
        // Wait out the period (the test's subject, not a stand-in for a
        // synchronisation), then crash again: still within the limit.
        tokio::time::sleep(period.saturating_sub(start.elapsed()) + Duration::from_millis(50))
            .await;
        assert!(p.kill());
        common::eventually(LIMIT, || p.restarts() == 2 && p.is_running()).await;
        assert!(sup.exit().is_none());
    });
}

#[test]
fn an_actor_that_panics_on_every_start_is_stopped_after_the_limit_with_the_reason() {
    each(&ALL, |h| async move {
        let broken = Arc::new(AtomicBool::new(false));
        let starts = Arc::new(AtomicU32::new(0));
        let (b, s) = (broken.clone(), starts.clone());
        let sup = Supervisor::new();
        let spec = supervised::spec::<probe::Client, _, _>(&h, "doomed", move || {
            s.fetch_add(1, Ordering::SeqCst);
            assert!(!b.load(Ordering::SeqCst), "cannot start: config is broken");
            Probe::new("doomed")
        });
        let p = within(LIMIT, sup.spawn(spec)).await.unwrap();
        ping(&p, LIMIT).await;
        let first_starts = starts.load(Ordering::SeqCst);
        broken.store(true, Ordering::SeqCst);
        assert!(p.kill());
        let exit = within(LIMIT, sup.stopped()).await;
        let SupervisorExit::IntensityExceeded { last, .. } = &exit else {
            panic!("{exit:?}")
        };
        let ChildExit::FailedStart(why) = last else {
            panic!("{last:?}")
        };
        assert!(why.contains("cannot start: config is broken"), "{why}");
        assert!(exit.to_string().contains("more than 5 restarts"), "{exit}");
        // Five failed starts, then no more.
        assert_eq!(p.restarts(), 5);
        // A TCP child calls its factory once per vat, and a start fails at
        // the first vat's panic (the others may not have got to theirs).
        let per_start = first_starts;
        let failed = starts.load(Ordering::SeqCst) - first_starts;
        assert!(
            (5..=5 * per_start).contains(&failed),
            "{failed} factory calls"
        );
        let err = within(LIMIT, common::sleep_call(&p, 1))
            .await
            .err()
            .unwrap();
        assert_disconnected(&err);
        assert!(err.extra.contains("restart intensity exceeded"), "{err}");
    });
}

#[test]
fn a_factory_that_panics_at_the_first_start_fails_the_spawn() {
    each(&ALL, |h| async move {
        let sup = Supervisor::new();
        let spec = supervised::spec::<probe::Client, _, _>(&h, "never", || -> Probe {
            panic!("no config")
        });
        let err = within(LIMIT, sup.spawn(spec)).await.err().unwrap();
        assert!(
            matches!(&err, Error::StartFailed(m) if m.contains("no config")),
            "{err}"
        );
        // The supervisor and the runtime serve on.
        let spec = supervised::spec::<probe::Client, _, _>(&h, "fine", || Probe::new("fine"));
        let p = within(LIMIT, sup.spawn(spec)).await.unwrap();
        ping(&p, LIMIT).await;
    });
}

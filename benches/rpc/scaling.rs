//! Section 4 of the rpc bench: a CPU-bound server's calls/s on 1 vat and
//! on N vats, over virtual and TCP.

use super::*;

/// How the bench thread reaches the spinning actors of section 4.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reach {
    Tcp,
    Virtual,
}

/// Calls/s of a CPU-bound server on 1 vat and on `n` vats.
pub(crate) struct Scaling {
    pub(crate) reach: &'static str,
    pub(crate) n: usize,
    pub(crate) cores: usize,
    pub(crate) one: Throughput,
    pub(crate) many: Throughput,
}

impl Scaling {
    pub(crate) fn gain(&self) -> f64 {
        self.many.calls_per_s / self.one.calls_per_s
    }

    /// A note for figures measured while the machine was not ours: the
    /// 1-vat run should keep its vat busy, and the `n`-vat run should keep
    /// its vats busy or use every core (vats and client together). Well
    /// short of that, other processes held the cores and the gain says
    /// little about the server.
    pub(crate) fn caveat(&self) -> String {
        let busy = |t: &Throughput, us: Option<f64>| us.map(|us| us * t.calls_per_s / 1e6);
        let Some(one) = busy(&self.one, self.one.vats_us) else {
            return String::new();
        };
        if one < 0.9 {
            return format!(
                " [1-vat run only {:.0}% busy: machine busy, re-run]",
                one * 100.0
            );
        }
        let (Some(vats), Some(client)) = (
            busy(&self.many, self.many.vats_us),
            busy(&self.many, self.many.client_us),
        ) else {
            return String::new();
        };
        let cores = self.cores as f64;
        if vats < 0.9 * self.n as f64 && vats + client < 0.9 * cores {
            return format!(
                " [{}-vat run used only {:.2} of {cores} cores: machine busy, re-run]",
                self.n,
                vats + client
            );
        }
        String::new()
    }

    /// The most the `n`-vat run could have gained over the 1-vat run on
    /// this machine: it spent s µs of vat CPU and c µs of client CPU per
    /// call, all on the same `cores`, so it served at most
    /// cores / (s + c) calls per µs (and at most n times the 1-vat rate).
    pub(crate) fn ceiling(&self) -> Option<f64> {
        let per_call = self.many.vats_us? + self.many.client_us?;
        let most = self.cores as f64 * 1e6 / per_call;
        Some((self.n as f64).min(most / self.one.calls_per_s))
    }
}

/// Setup: [`SCALE_CONNECTIONS`] connections from the bench thread to
/// `Probe` actors on a runtime of 1 vat, then of `n` vats, each call
/// spinning [`SPIN_MICROS`] µs of CPU on its vat. Over TCP the listener
/// deals the connections round-robin over the vats; over virtual,
/// `spawn_virtual` places the actors round-robin: either way every vat gets
/// the same share. [`SCALE_WINDOW`] calls stay in flight on each
/// connection, so a vat never waits for the client.
///
/// The client's work per call is only its side of a round trip (no spin),
/// so the server is the bottleneck. The client still shares the machine's
/// cores, so the CPU each side spends per call is measured and printed, with
/// the gain that left possible ([`Scaling::ceiling`]). Over virtual the
/// client's share is smallest (no kernel TCP on either side), so that ratio
/// is closest to the server's own scaling; over TCP it is what a deployment
/// on one host sees.
pub(crate) async fn vat_scaling(reach: Reach, n: usize, cores: usize) -> Scaling {
    let name = match reach {
        Reach::Tcp => "TCP",
        Reach::Virtual => "virtual",
    };
    let one = spin_rate(reach, 1).await;
    let many = spin_rate(reach, n).await;
    for (vats, t) in [(1, &one), (n, &many)] {
        let us = |v: Option<f64>| v.map_or("?".into(), |v| format!("{v:.1}"));
        let busy = |v: Option<f64>, threads: usize| {
            v.map_or("?".into(), |v| {
                format!("{:.0}%", v * t.calls_per_s / 1e4 / threads as f64)
            })
        };
        println!(
            "  {name:<7} {vats} vat{} {:>7.0} calls/s | CPU per call: vats {:>5} µs, client {:>5} µs | \
             vats {:>4} busy, client {:>4}",
            if vats == 1 { " " } else { "s" },
            t.calls_per_s,
            us(t.vats_us),
            us(t.client_us),
            busy(t.vats_us, vats),
            busy(t.client_us, 1),
        );
    }
    let scaling = Scaling {
        reach: name,
        n,
        cores,
        one,
        many,
    };
    print!("  {name:<7} gain {:.2}x", scaling.gain());
    match scaling.ceiling() {
        Some(c) => println!(" (the cores allowed at most {c:.2}x){}", scaling.caveat()),
        None => println!(),
    }
    scaling
}

pub(crate) async fn spin_rate(reach: Reach, vats: usize) -> Throughput {
    let rt = Runtime::builder().vats(vats).build().unwrap();
    let mut server = None;
    let mut conns = Vec::new();
    for _ in 0..SCALE_CONNECTIONS {
        let conn = match reach {
            Reach::Virtual => rt.spawn_virtual::<probe::Client, _, _>(|| Probe::new("spin")),
            Reach::Tcp => {
                if server.is_none() {
                    let s = rt
                        .serve_tcp::<probe::Client, _, _>(
                            "127.0.0.1:0",
                            || Probe::new("spin"),
                            ServeOptions::insecure_loopback(),
                        )
                        .await
                        .unwrap();
                    server = Some(s);
                }
                let addr = server.as_ref().unwrap().local_addr().to_string();
                capactor::connect_tcp::<probe::Client>(&addr, &ConnectOptions::default())
                    .await
                    .unwrap()
            }
        };
        conns.push(conn);
    }
    let spin = |i: usize| {
        let mut req = conns[i].spin_request();
        req.get().set_micros(SPIN_MICROS);
        let reply = req.send().promise;
        async move { reply.await.map(drop) }
    };
    let rate = pipelined(SCALE_CONNECTIONS, SCALE_WINDOW, SCALE_RUN, spin).await;
    drop(conns);
    drop(server);
    drop(rt);
    rate
}

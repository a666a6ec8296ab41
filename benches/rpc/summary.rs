//! Section 5 of the rpc bench: every figure as a ratio to the baselines,
//! CPU per call, instruction counts, and the targets.

use super::instructions::Instructions;
use super::scaling::Scaling;
use super::*;

pub(crate) fn summary(
    raw: &Figures,
    stock: &[Figures],
    capactor: &[Figures],
    scaling: &[Scaling],
    instructions: &Instructions,
) {
    let stock_buffered = &stock[1];
    let stock = &stock[0];
    println!("\nsummary (ratio = figure / baseline; for RTT lower is better, for calls/s higher)");
    println!(
        "  {:<22} {:>9} {:>7} {:>7} | {:>9} {:>7} {:>7} | {:>9} {:>7} {:>7}",
        "",
        "RTT µs",
        "x raw",
        "x stock",
        "seq/s",
        "x raw",
        "x stock",
        format!("x{WINDOW}/s"),
        "x raw",
        "x stock"
    );
    for f in [raw, stock, stock_buffered].into_iter().chain(capactor) {
        println!(
            "  {:<22} {:>9.1} {:>7.2} {:>7.2} | {:>9.0} {:>7.2} {:>7.2} | {:>9.0} {:>7.2} {:>7.2}",
            f.name,
            f.rtt.median_us,
            f.rtt.median_us / raw.rtt.median_us,
            f.rtt.median_us / stock.rtt.median_us,
            f.rtt.calls_per_s,
            f.rtt.calls_per_s / raw.rtt.calls_per_s,
            f.rtt.calls_per_s / stock.rtt.calls_per_s,
            f.pipelined,
            f.pipelined / raw.pipelined,
            f.pipelined / stock.pipelined,
        );
    }
    println!(
        "\n  CPU per call, µs       {:>22} | {:>22} | instructions",
        "sequential cli+srv=all",
        format!("x{WINDOW} cli+srv=all")
    );
    for f in [raw, stock, stock_buffered].into_iter().chain(capactor) {
        let us = |v: Option<f64>| v.map_or("?".into(), |v| format!("{v:.1}"));
        let cpu = |c: &CpuPerCall| {
            format!(
                "{:>6} {:>6} {:>7}",
                us(c.client_us),
                us(c.server_us),
                us(c.total_us())
            )
        };
        let count = instructions
            .get(f.name)
            .map_or("-".into(), |n| format!("{n:>9.0} per round trip"));
        println!(
            "  {:<22} {:>22} | {:>22} | {count}",
            f.name,
            cpu(&f.rtt.cpu),
            cpu(&f.pipelined_cpu)
        );
    }
    if let Some(why) = &instructions.skipped {
        println!("  (instruction counts: {why})");
    }
    for sc in scaling {
        println!(
            "  spin {SPIN_MICROS} µs, {:<7} 1 vat {:>6.0} calls/s, {} vats {:>6.0} calls/s = {:.2}x{}",
            sc.reach,
            sc.one.calls_per_s,
            sc.n,
            sc.many.calls_per_s,
            sc.gain(),
            sc.ceiling()
                .map_or(String::new(), |c| format!(" (cores allowed {c:.2}x)"))
        );
    }

    let [local, virt, tcp, unix, tcp_metrics, local_metrics] = capactor else {
        unreachable!("local, virtual, TCP, Unix, TCP with metrics, local with metrics")
    };
    println!("\ntargets");
    let tcp_vs_raw = tcp.rtt.median_us / raw.rtt.median_us;
    check(
        "TCP no-op RTT ≤ 1.5× raw TCP ping-pong",
        tcp_vs_raw <= 1.5,
        format!(
            "{:.1} µs vs {:.1} µs = {tcp_vs_raw:.3}x",
            tcp.rtt.median_us, raw.rtt.median_us
        ),
    );
    let metrics_cost = tcp_metrics.rtt.median_us / tcp.rtt.median_us;
    check(
        "TCP RTT with metrics ≤ 1.05× without",
        metrics_cost <= 1.05,
        format!(
            "{:.1} µs vs {:.1} µs = {metrics_cost:.3}x; x{WINDOW} {:.0} vs {:.0} calls/s = {:.3}x",
            tcp_metrics.rtt.median_us,
            tcp.rtt.median_us,
            tcp_metrics.pipelined,
            tcp.pipelined,
            tcp_metrics.pipelined / tcp.pipelined
        ),
    );
    let hook_ns = (local_metrics.rtt.median_us - local.rtt.median_us) * 1e3;
    check(
        "metrics add ≤ 100 ns to a local call",
        hook_ns <= 100.0,
        format!(
            "{:.0} ns vs {:.0} ns = {hook_ns:+.0} ns ({:.3}x)",
            local_metrics.rtt.median_us * 1e3,
            local.rtt.median_us * 1e3,
            local_metrics.rtt.median_us / local.rtt.median_us
        ),
    );
    check(
        "virtual RTT < TCP RTT",
        virt.rtt.median_us < tcp.rtt.median_us,
        format!(
            "{:.1} µs vs {:.1} µs",
            virt.rtt.median_us, tcp.rtt.median_us
        ),
    );
    let cpu = |f: &Figures| f.rtt.cpu.total_us();
    match (cpu(unix), cpu(tcp)) {
        (Some(u), Some(t)) => check(
            "Unix CPU per call ≤ TCP's (sequential, both sides)",
            u <= t,
            format!("{u:.1} µs vs {t:.1} µs = {:.3}x", u / t),
        ),
        _ => println!("  ?     Unix CPU per call ≤ TCP's: no per-thread clock here"),
    }
    if let (Some(u), Some(t)) = (unix.pipelined_cpu.total_us(), tcp.pipelined_cpu.total_us()) {
        check(
            &format!("Unix CPU per call ≤ TCP's (x{WINDOW})"),
            u <= t,
            format!("{u:.1} µs vs {t:.1} µs = {:.3}x", u / t),
        );
    }
    if let (Some(u), Some(t)) = (instructions.get(unix.name), instructions.get(tcp.name)) {
        check(
            "Unix instructions per call ≤ TCP's",
            u <= t,
            format!("{u:.0} vs {t:.0} = {:.3}x", u / t),
        );
    }
    let ratio = unix.pipelined / tcp.pipelined;
    check(
        &format!("Unix x{WINDOW} calls/s ≥ 1.1× TCP's"),
        ratio >= 1.1,
        format!(
            "{:.0} vs {:.0} calls/s = {ratio:.3}x",
            unix.pipelined, tcp.pipelined
        ),
    );
    for sc in scaling {
        let gain = sc.gain();
        check(
            &format!("{} vats ≥ 1.6× 1 vat calls/s ({})", sc.n, sc.reach),
            gain >= 1.6,
            format!(
                "{:.0} vs {:.0} calls/s = {gain:.3}x{}",
                sc.many.calls_per_s,
                sc.one.calls_per_s,
                sc.caveat()
            ),
        );
    }
}

pub(crate) fn check(target: &str, ok: bool, numbers: String) {
    let verdict = if ok { "PASS" } else { "MISS" };
    println!("  {verdict}  {target:<42} {numbers}");
}

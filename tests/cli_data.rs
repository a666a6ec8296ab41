//! The `capactor` data commands against real `capactor worker` processes:
//! `put`, `ls`, `get` and `rm` of `.npy` files, `copy` from one worker to
//! another (token-gated, and over TLS), and the errors for a name that is
//! missing or taken.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use ndarray::ArrayD;
use ndarray_npy::{ReadNpyExt, WriteNpyExt};

#[path = "common/process.rs"]
mod process;
use process::{WorkerProcess, BIN};

const LIMIT: Duration = Duration::from_secs(60);

/// A worker process and how to reach it.
struct Served {
    process: WorkerProcess,
    addr: String,
    /// The flags a client needs: the token file, and TLS pinning if any.
    flags: Vec<String>,
}

/// Starts `capactor worker` on 127.0.0.1:0 with a token of its own (and
/// TLS with a certificate of its own if `tls`), files in `dir`.
fn worker(dir: &Path, label: &str, tls: bool) -> Served {
    let token = dir.join(format!("{label}.token"));
    std::fs::write(&token, format!("a-long-enough-token-of-{label}\n")).unwrap();
    let token = token.to_str().unwrap().to_string();
    let mut args: Vec<String> = [
        "worker",
        "--listen",
        "127.0.0.1:0",
        "--name",
        label,
        "--vats",
        "2",
        "--memory-mib",
        "64",
        "--token-file",
        &token,
    ]
    .map(String::from)
    .to_vec();
    let mut flags = vec!["--token-file".to_string(), token];
    if tls {
        let (cert, key) = self_signed(dir, label);
        args.extend(["--tls-cert".into(), cert.clone(), "--tls-key".into(), key]);
        flags.extend(["--tls-pin".into(), cert]);
    }
    let mut process = WorkerProcess::spawn(Command::new(BIN).args(&args));
    let addr = process.listening_addr(LIMIT);
    Served {
        process,
        addr,
        flags,
    }
}

/// A self-signed certificate for 127.0.0.1 and its key, as PEM files.
fn self_signed(dir: &Path, label: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let cert = params.self_signed(&key).unwrap();
    let cert_path = dir.join(format!("{label}.crt"));
    let key_path = dir.join(format!("{label}.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let s = |p: PathBuf| p.to_str().unwrap().to_string();
    (s(cert_path), s(key_path))
}

/// Runs `capactor ARGS...` to its end.
fn run(args: &[&str]) -> Output {
    WorkerProcess::spawn(Command::new(BIN).args(args)).output(LIMIT)
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command that must fail; returns its stderr.
fn fails(out: &Output) -> String {
    assert!(!out.status.success(), "succeeded unexpectedly");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn with<'a>(args: &[&'a str], flags: &'a [String]) -> Vec<&'a str> {
    let mut v = args.to_vec();
    v.extend(flags.iter().map(String::as_str));
    v
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// 6 MiB of f32: over the 4 MiB a tensor may take in one message, so it
/// is streamed in chunks both ways.
fn big_matrix() -> ArrayD<f32> {
    ArrayD::from_shape_fn(vec![1024, 1536], |d| {
        (d[0] * 1536 + d[1]) as f32 * 0.5 - 7.0
    })
}

fn write<T: ndarray_npy::WritableElement>(path: &Path, a: &ArrayD<T>) {
    a.write_npy(std::fs::File::create(path).unwrap()).unwrap();
}

fn read<T: ndarray_npy::ReadableElement>(path: &Path) -> ArrayD<T> {
    ArrayD::<T>::read_npy(std::fs::File::open(path).unwrap()).unwrap()
}

#[test]
fn put_ls_get_and_rm_round_trip_npy_files_on_a_worker() {
    let dir = tempfile::tempdir().unwrap();
    let w = worker(dir.path(), "w", false);
    let f = &w.flags;
    let big = dir.path().join("big.npy");
    write(&big, &big_matrix());
    let small = dir.path().join("small.npy");
    let ints = ArrayD::from_shape_fn(vec![3, 2], |d| d[0] as i64 * 10 - d[1] as i64);
    write(&small, &ints);
    let flags_file = dir.path().join("flags.npy");
    let bools = ArrayD::from_shape_fn(vec![5], |d| d[0] % 2 == 1);
    write(&flags_file, &bools);

    let put = run(&with(&["put", &w.addr, path(&big), "--name", "big"], f));
    ok(&put);
    let summary = String::from_utf8_lossy(&put.stderr);
    assert!(
        summary.contains("put big: 6.00 MiB in") && summary.contains("/s)"),
        "a summary with throughput: {summary}"
    );
    let quiet = run(&with(
        &["put", &w.addr, path(&small), "--name", "ints", "--quiet"],
        f,
    ));
    ok(&quiet);
    assert_eq!(
        String::from_utf8_lossy(&quiet.stderr),
        "",
        "--quiet says nothing"
    );
    ok(&run(&with(
        &["put", &w.addr, path(&flags_file), "--name", "flags", "-q"],
        f,
    )));

    // Another connection, on the worker's other vat: the same objects.
    let listed = ok(&run(&with(&["ls", &w.addr], f)));
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 4, "{listed}");
    assert!(lines[0].starts_with("NAME"), "{listed}");
    let row = |name: &str| {
        lines
            .iter()
            .find(|l| l.split_whitespace().next() == Some(name))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|| panic!("{name} missing from {listed}"))
    };
    assert_eq!(row("big"), "big f32 [1024, 1536] 6291456 -");
    assert_eq!(row("ints"), "ints i64 [3, 2] 48 -");
    assert_eq!(row("flags"), "flags bool [5] 5 -");

    let back = dir.path().join("back.npy");
    ok(&run(&with(&["get", &w.addr, "big", path(&back), "-q"], f)));
    assert_eq!(read::<f32>(&back), big_matrix());
    ok(&run(&with(&["get", &w.addr, "ints", path(&back), "-q"], f)));
    assert_eq!(read::<i64>(&back), ints, "an existing file is replaced");
    ok(&run(&with(
        &["get", &w.addr, "flags", path(&back), "-q"],
        f,
    )));
    assert_eq!(read::<bool>(&back), bools);

    ok(&run(&with(&["rm", &w.addr, "big"], f)));
    let listed = ok(&run(&with(&["ls", &w.addr], f)));
    assert!(!listed.contains("big"), "{listed}");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".part"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

#[test]
fn a_missing_name_a_taken_name_and_a_bad_file_fail_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let w = worker(dir.path(), "w", false);
    let other = worker(dir.path(), "other", false);
    let f = &w.flags;
    let file = dir.path().join("a.npy");
    write(&file, &big_matrix());
    ok(&run(&with(
        &["put", &w.addr, path(&file), "--name", "a", "-q"],
        f,
    )));
    ok(&run(&with(
        &["put", &other.addr, path(&file), "--name", "a", "-q"],
        &other.flags,
    )));

    let taken = fails(&run(&with(
        &["put", &w.addr, path(&file), "--name", "a"],
        f,
    )));
    assert!(
        taken.contains(r#"an object named "a" exists already"#),
        "{taken}"
    );
    let out = dir.path().join("out.npy");
    let missing = fails(&run(&with(&["get", &w.addr, "nope", path(&out)], f)));
    assert!(missing.contains(r#"no object named "nope""#), "{missing}");
    assert!(!out.exists(), "nothing written for a failed get");
    let missing = fails(&run(&with(&["rm", &w.addr, "nope"], f)));
    assert!(missing.contains(r#"no object named "nope""#), "{missing}");
    let mut copy = with(&["copy", &w.addr, "nope", &other.addr], f);
    copy.extend(["--dest-token-file", &other.flags[1]]);
    let missing = fails(&run(&copy));
    assert!(missing.contains(r#"no object named "nope""#), "{missing}");
    let mut copy = with(&["copy", &w.addr, "a", &other.addr], f);
    copy.extend(["--dest-token-file", &other.flags[1]]);
    let taken = fails(&run(&copy));
    assert!(
        taken.contains(r#"an object named "a" exists already on"#),
        "{taken}"
    );

    // complex64: a dtype no worker holds (every int and float is one).
    let unsupported = dir.path().join("c8.npy");
    let mut c8 = Vec::new();
    ndarray_npy::npy::header::Header {
        type_descriptor: py_literal::Value::String("<c8".into()),
        layout: ndarray_npy::npy::header::Layout::Standard,
        shape: vec![1],
    }
    .write(&mut c8)
    .unwrap();
    c8.extend_from_slice(&[0; 8]);
    std::fs::write(&unsupported, c8).unwrap();
    let refused = fails(&run(&with(
        &["put", &w.addr, path(&unsupported), "--name", "c8"],
        f,
    )));
    assert!(
        refused.contains("dtype '<c8'") && refused.contains("f32, f64, i32, i64, bool, f16"),
        "{refused}"
    );
    let absent = dir.path().join("absent.npy");
    let unreadable = fails(&run(&with(
        &["put", &w.addr, path(&absent), "--name", "x"],
        f,
    )));
    assert!(unreadable.contains("cannot read"), "{unreadable}");
    let wrong_token = fails(&run(&["ls", &w.addr, "--token-file", &other.flags[1]]));
    assert!(wrong_token.contains("credential rejected"), "{wrong_token}");

    // Each refusal left the worker serving, and its objects as they were.
    let listed = ok(&run(&with(&["ls", &w.addr], f)));
    assert_eq!(listed.lines().count(), 2, "{listed}");
}

/// Copies `name` from `src` to `dst` with the CLI, then checks the copy's
/// contents, that the source still has it, and that the destination
/// fetched it directly rather than through the client.
fn copy_and_check(dir: &Path, src: Served, mut dst: Served) {
    let file = dir.join("a.npy");
    write(&file, &big_matrix());
    ok(&run(&with(
        &["put", &src.addr, path(&file), "--name", "a", "-q"],
        &src.flags,
    )));
    let mut copy = with(&["copy", &src.addr, "a", &dst.addr], &src.flags);
    let dest_flags: Vec<String> = dst
        .flags
        .iter()
        .map(|flag| match flag.as_str() {
            "--token-file" => "--dest-token-file".to_string(),
            "--tls-pin" => "--dest-tls-pin".to_string(),
            other => other.to_string(),
        })
        .collect();
    copy.extend(dest_flags.iter().map(String::as_str));
    let copied = run(&copy);
    ok(&copied);
    let summary = String::from_utf8_lossy(&copied.stderr);
    assert!(summary.contains("copy a: 6.00 MiB in"), "{summary}");

    let back = dir.join("back.npy");
    ok(&run(&with(
        &["get", &dst.addr, "a", path(&back), "-q"],
        &dst.flags,
    )));
    assert_eq!(read::<f32>(&back), big_matrix());
    let listed = ok(&run(&with(&["ls", &src.addr], &src.flags)));
    assert!(
        listed.contains("a     f32"),
        "the source keeps it: {listed}"
    );

    // Stopped, so that everything it logged has been read.
    dst.process.signal_term();
    assert!(dst.process.wait(LIMIT).success());
    let log = dst.process.stderr();
    assert!(!log.contains("relaying"), "copied directly: {log}");
}

#[test]
fn copy_moves_an_object_straight_between_two_token_gated_workers() {
    let dir = tempfile::tempdir().unwrap();
    let src = worker(dir.path(), "src", false);
    let dst = worker(dir.path(), "dst", false);
    copy_and_check(dir.path(), src, dst);
}

#[test]
fn copy_moves_an_object_straight_between_two_tls_workers() {
    let dir = tempfile::tempdir().unwrap();
    let src = worker(dir.path(), "src", true);
    let dst = worker(dir.path(), "dst", true);
    copy_and_check(dir.path(), src, dst);
}

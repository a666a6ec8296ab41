//! The `capactor` binary run as a child process, for the tests and benches
//! that drive the CLI. Included with `#[path]`, so each user takes only what
//! it calls.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_capactor");

/// A running `capactor`: killed if the test fails before it exits, and its
/// stderr shown then. Stderr is collected as it arrives; its end tells that
/// the process has exited, so nothing here waits by sleeping.
pub struct WorkerProcess {
    pub child: Child,
    stderr: Arc<Stderr>,
}

#[derive(Default)]
struct Stderr {
    state: Mutex<StderrState>,
    changed: Condvar,
}

#[derive(Default)]
struct StderrState {
    text: String,
    closed: bool,
}

impl WorkerProcess {
    /// Starts `cmd` with stdout and stderr piped and stdin closed.
    pub fn spawn(cmd: &mut Command) -> WorkerProcess {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {BIN}: {e}"));
        let stderr = Arc::new(Stderr::default());
        let mut pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let n = pipe.read(&mut buf).unwrap_or(0);
                let mut state = sink.state.lock().unwrap();
                if n == 0 {
                    state.closed = true;
                } else {
                    state.text.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
                sink.changed.notify_all();
                if n == 0 {
                    return;
                }
            }
        });
        WorkerProcess { child, stderr }
    }

    /// Reads stdout up to the worker's `listening on <addr>` line and
    /// returns the address, which must be a real loopback port.
    pub fn listening_addr(&mut self, limit: Duration) -> String {
        let addr = self.listening_on(limit);
        assert!(addr.starts_with("127.0.0.1:"), "{addr}");
        assert!(!addr.ends_with(":0"), "the real port, not 0: {addr}");
        addr
    }

    /// Reads stdout up to the worker's `listening on <addr>` line and
    /// returns the address, whatever its transport.
    pub fn listening_on(&mut self, limit: Duration) -> String {
        let stdout = self.child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let line = rx
            .recv_timeout(limit)
            .expect("the worker prints where it listens");
        let addr = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_string();
        addr
    }

    /// Waits until `find` returns something from the stderr seen so far,
    /// failing the test after `limit` or if the process exits first.
    pub fn wait_for_stderr<T>(&self, limit: Duration, find: impl Fn(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + limit;
        let mut state = self.stderr.state.lock().unwrap();
        loop {
            if let Some(found) = find(&state.text) {
                return found;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !state.closed && !left.is_zero(),
                "not found on stderr: {}",
                state.text
            );
            state = self.stderr.changed.wait_timeout(state, left).unwrap().0;
        }
    }

    /// Everything the process has written to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.state.lock().unwrap().text.clone()
    }

    /// Sends SIGTERM.
    pub fn signal_term(&self) {
        let killed = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(killed.success(), "kill -TERM failed");
    }

    /// Waits for the process to exit, failing the test after `limit`.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        let mut state = self.stderr.state.lock().unwrap();
        while !state.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "process still running after {limit:?}");
            state = self.stderr.changed.wait_timeout(state, left).unwrap().0;
        }
        drop(state);
        self.child.wait().unwrap()
    }

    /// Waits for the process to exit and collects its stdout and stderr.
    pub fn output(mut self, limit: Duration) -> Output {
        let mut stdout = self.child.stdout.take().unwrap();
        let reader = thread::spawn(move || {
            let mut s = Vec::new();
            let _ = stdout.read_to_end(&mut s);
            s
        });
        let status = self.wait(limit);
        Output {
            status,
            stdout: reader.join().unwrap(),
            stderr: self.stderr().into_bytes(),
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            eprintln!("--- stderr of {BIN}:\n{}", self.stderr());
        }
    }
}

//! A `TensorData` from hostile input, decoded by a tensor worker under a
//! small memory quota (see `capactor::fuzzing::decode_tensor`): no panic,
//! a tensor accepted reads back unchanged, and nothing allocates more than
//! the quota plus a bounded multiple of the message size.
//!
//! The first input byte picks the form: even, the rest is one Cap'n Proto
//! message in stream framing; odd, the rest drives a dtype, shape and data
//! (through `arbitrary`) that are built into a message.
//!
//! `cargo fuzz run tensor_decode` (add `-s none` on a stable toolchain).

#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;

use arbitrary::{Arbitrary, Unstructured};
use capactor::fuzzing::{decode_tensor, decode_tensor_message};
use capactor::schema::tensor_capnp::{tensor_data, DType};
use libfuzzer_sys::fuzz_target;

/// The largest message the worker reads (its `Limits::max_message_bytes`).
const MAX_MESSAGE: usize = 64 << 10;
/// The worker's memory quota.
const MEMORY: u64 = 16 << 10;
/// What decoding may allocate besides the tensor: copies of the message
/// (each at most `MAX_MESSAGE`: read, the call's parameters, the shape and
/// dimension vectors, the read-back reply) and bookkeeping.
const BOUND: usize = 6 * MAX_MESSAGE + 2 * MEMORY as usize + (256 << 10);

/// Counts live heap bytes and their high-water mark.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let now = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call forwards to `System` unchanged; the counters only
// observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f`, returning how far the heap grew above where it started.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let out = f();
    (out, PEAK.load(Ordering::Relaxed).saturating_sub(base))
}

/// A tensor as a client might describe it, right or wrong.
#[derive(Arbitrary, Debug)]
struct Described {
    dtype: u8,
    /// Each dimension small, or anything at all when the flag is set.
    shape: Vec<(bool, u64)>,
    /// Make the data exactly as long as dtype and shape say (if that is
    /// under the message limit), else use `data` as it is.
    fit: bool,
    data: Vec<u8>,
}

const DTYPES: [(DType, usize); 13] = [
    (DType::F32, 4),
    (DType::F64, 8),
    (DType::I32, 4),
    (DType::I64, 8),
    (DType::Bool, 1),
    (DType::F16, 2),
    (DType::Bf16, 2),
    (DType::U8, 1),
    (DType::I8, 1),
    (DType::I16, 2),
    (DType::U16, 2),
    (DType::U32, 4),
    (DType::U64, 8),
];

fn structured(bytes: &[u8]) -> Option<capnp::message::Builder<capnp::message::HeapAllocator>> {
    let d = Described::arbitrary(&mut Unstructured::new(bytes)).ok()?;
    let (dtype, size) = DTYPES[usize::from(d.dtype) % DTYPES.len()];
    let shape: Vec<u64> = d
        .shape
        .iter()
        .take(64)
        .map(|&(any, v)| if any { v } else { v % 8 })
        .collect();
    let mut data = d.data;
    if d.fit {
        let want = shape
            .iter()
            .try_fold(size as u64, |n, &d| n.checked_mul(d))
            .filter(|&n| n <= MAX_MESSAGE as u64 / 2);
        if let Some(want) = want {
            let fill = if data.is_empty() { vec![0] } else { data };
            data = fill.iter().copied().cycle().take(want as usize).collect();
            if dtype == DType::Bool {
                data.iter_mut().for_each(|b| *b &= 1);
            }
        }
    }
    data.truncate(MAX_MESSAGE / 2);
    let mut message = capnp::message::Builder::new_default();
    let mut root = message.init_root::<tensor_data::Builder<'_>>();
    root.set_dtype(dtype);
    let mut s = root.reborrow().init_shape(shape.len() as u32);
    for (i, d) in shape.iter().enumerate() {
        s.set(i as u32, *d);
    }
    root.set_data(&data);
    Some(message)
}

fuzz_target!(|input: &[u8]| {
    static WARM: Once = Once::new();
    // The thread's runtime is built on first use; keep it out of the count.
    WARM.call_once(|| {
        decode_tensor(&[], MAX_MESSAGE, MEMORY);
    });

    let Some((&form, rest)) = input.split_first() else {
        return;
    };
    let (decoded, peak) = if form % 2 == 0 {
        peak_during(|| decode_tensor(rest, MAX_MESSAGE, MEMORY))
    } else {
        let Some(message) = structured(rest) else {
            return;
        };
        peak_during(|| {
            let root = message
                .get_root_as_reader::<tensor_data::Reader<'_>>()
                .expect("a message just built");
            decode_tensor_message(root, MEMORY)
        })
    };
    assert!(
        peak <= BOUND,
        "decoding allocated {peak} bytes, over {BOUND} ({decoded:?})"
    );
});

//! [`Inbox`]: the reading half of the wire. Frames are parsed out of one
//! read buffer; a large body is read straight into the message's own
//! memory, which grows as its bytes arrive.
//!
//! - **The frame check is the parser.** A frame claiming more than
//!   [`MAX_SEGMENTS`] segments or more than its [`FrameCap`] is refused from
//!   its segment table, before anything is allocated for it.
//! - **Memory follows the bytes, not the claim.** A body starts at
//!   [`GROW_FROM_WORDS`] and grows as it fills, so a header claiming
//!   63 MiB that sends nothing more holds 64 KiB, not 63 MiB; the memory
//!   touched is at most what arrived plus 1 MiB ([`STEP_WORDS`]).
//! - **Every buffered byte is counted.** A message's memory is charged to
//!   the connection's [`Buffered`] budget (shared by every connection of a
//!   worker) while it is received and for as long as the message lives;
//!   a frame that would take the budget past its limit is refused.

use std::sync::atomic::Ordering;

use capnp::message::{ReaderOptions, ReaderSegments};
use capnp::traits::FromPointerReader;
use capnp::Word;

use super::options::{Buffered, Limits};
use crate::Error;

/// Most segments a message we accept may have.
pub(crate) const MAX_SEGMENTS: usize = 512;
/// Bytes read from the stream at a time.
pub(crate) const BUFFER: usize = 64 << 10;
/// Words a body is first given; it doubles from there as bytes arrive.
pub(crate) const GROW_FROM_WORDS: usize = BUFFER / 8;
/// The most a body's zeroed part grows by at once (1 MiB).
pub(crate) const STEP_WORDS: usize = (1 << 20) / 8;

/// Bytes one message holds of a [`Buffered`] budget, given back on drop.
struct Charge {
    budget: Buffered,
    max: u64,
    bytes: u64,
}

impl Charge {
    fn new(budget: &Buffered, max: u64) -> Self {
        Charge {
            budget: budget.clone(),
            max,
            bytes: 0,
        }
    }

    /// Takes `n` more bytes of the budget, or refuses.
    fn add(&mut self, n: u64) -> Result<(), capnp::Error> {
        let before = self.budget.0.fetch_add(n, Ordering::Relaxed);
        if before + n > self.max {
            self.budget.0.fetch_sub(n, Ordering::Relaxed);
            return Err(Error::limit("receive buffers", before + n, self.max).into());
        }
        self.bytes += n;
        Ok(())
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.0.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// How large the next frame may be.
#[derive(Clone, Copy, Debug)]
pub(crate) enum FrameCap {
    /// The connection's ordinary message size limit.
    Open { max_message: u64 },
    /// Before the gate opens: the pre-auth message size, and what is left
    /// of the pre-auth byte budget.
    Preauth {
        max_message: u64,
        spent: u64,
        budget: u64,
    },
}

impl FrameCap {
    fn max(self) -> u64 {
        match self {
            FrameCap::Open { max_message } => max_message,
            FrameCap::Preauth {
                max_message,
                spent,
                budget,
            } => max_message.min(budget.saturating_sub(spent)),
        }
    }

    /// The error for a frame of at least `bytes` over this cap.
    fn refuse(self, bytes: u64) -> capnp::Error {
        match self {
            FrameCap::Open { max_message } => capnp::Error::disconnected(format!(
                "peer sent an invalid frame: message of at least {bytes} bytes exceeds the \
                 limit of {max_message} bytes"
            )),
            FrameCap::Preauth { max_message, .. } if bytes > max_message => {
                Error::limit("message size before the gate opens", bytes, max_message).into()
            }
            FrameCap::Preauth { spent, budget, .. } => {
                Error::limit("bytes before the gate opens", spent + bytes, budget).into()
            }
        }
    }
}

/// A frame the parser refused from its segment table.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// It has this many segments, more than [`MAX_SEGMENTS`].
    Segments(u64),
    /// It is at least this many bytes, more than allowed.
    Bytes(u64),
}

/// The reader's state.
pub(crate) struct Inbox {
    buf: Box<[u8]>,
    /// Unparsed bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    /// The frame whose segment table has been read, and its body so far.
    body: Option<Body>,
    options: ReaderOptions,
    budget: Buffered,
    max_buffered: u64,
}

struct Body {
    segments: Segments,
    /// The body's size in words, as its segment table says.
    total: usize,
    /// Bytes of it received.
    filled: usize,
    /// The whole frame's size in bytes, table included.
    frame_bytes: u64,
}

impl Body {
    /// The bytes allocated so far, received or not.
    fn bytes_mut(&mut self) -> &mut [u8] {
        Word::words_to_bytes_mut(&mut self.segments.words)
    }

    /// The zeroed part is all filled: more bytes need more room.
    fn full(&self) -> bool {
        self.filled == self.segments.words.len() * 8
    }

    fn complete(&self) -> bool {
        self.filled == self.total * 8
    }

    /// Makes room for more of the body: the zeroed part grows by as much as
    /// it holds (at least [`GROW_FROM_WORDS`], at most [`STEP_WORDS`]), up
    /// to the frame's size; the allocation under it doubles, charged to the
    /// budget. Capacity not yet zeroed is never touched, so it costs
    /// address space, not memory.
    fn grow(&mut self) -> Result<(), capnp::Error> {
        let words = &mut self.segments.words;
        let len = words.len();
        let want = (len + len.clamp(GROW_FROM_WORDS, STEP_WORDS)).min(self.total);
        if want > words.capacity() {
            let capacity = (words.capacity() * 2).max(want).min(self.total);
            self.segments
                .charge
                .add((capacity - words.capacity()) as u64 * 8)?;
            words.reserve_exact(capacity - len);
        }
        words.resize(want, capnp::word(0, 0, 0, 0, 0, 0, 0, 0));
        Ok(())
    }
}

/// A received message's segments, in one word-aligned allocation.
struct Segments {
    words: Vec<Word>,
    /// Where each segment ends, in words.
    ends: Vec<u32>,
    charge: Charge,
}

impl ReaderSegments for Segments {
    fn get_segment(&self, idx: u32) -> Option<&[u8]> {
        let idx = idx as usize;
        let end = *self.ends.get(idx)? as usize;
        let start = if idx == 0 {
            0
        } else {
            self.ends[idx - 1] as usize
        };
        Some(Word::words_to_bytes(&self.words[start..end]))
    }

    fn len(&self) -> usize {
        self.ends.len()
    }
}

/// A message received whole.
pub(crate) struct Incoming(capnp::message::Reader<Segments>);

impl Incoming {
    /// The message's root as a `T`.
    pub(crate) fn root<'a, T: FromPointerReader<'a>>(&'a self) -> capnp::Result<T> {
        self.0.get_root()
    }
}

impl capnp_rpc::IncomingMessage for Incoming {
    fn get_body(&self) -> capnp::Result<capnp::any_pointer::Reader<'_>> {
        self.0.get_root()
    }
}

impl Inbox {
    pub(crate) fn new(limits: &Limits) -> Self {
        Inbox {
            buf: vec![0; BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
            body: None,
            options: limits.reader_options(),
            budget: limits.budget().clone(),
            max_buffered: limits.max_buffered_bytes,
        }
    }

    /// Takes the next message out of the buffer, and the size of its
    /// frame, or as much of it as is there. `Ok(None)`: more bytes are
    /// needed. A frame whose table is read now may be at most `cap`.
    pub(crate) fn parse(&mut self, cap: FrameCap) -> capnp::Result<Option<(Incoming, u64)>> {
        if self.body.is_none() {
            let table = parse_table(&self.buf[self.start..self.end], cap.max());
            let Some((ends, table)) = table.map_err(|r| match r {
                Refused::Segments(n) => capnp::Error::disconnected(format!(
                    "peer sent an invalid frame: message has {n} segments, more than the \
                     limit of {MAX_SEGMENTS}"
                )),
                Refused::Bytes(n) => cap.refuse(n),
            })?
            else {
                return Ok(None);
            };
            self.start += table;
            let total = ends.last().copied().unwrap_or(0) as usize;
            let mut body = Body {
                segments: Segments {
                    words: Vec::new(),
                    ends,
                    charge: Charge::new(&self.budget, self.max_buffered),
                },
                total,
                filled: 0,
                frame_bytes: (table + total * 8) as u64,
            };
            if total > 0 {
                body.grow()?;
            }
            self.body = Some(body);
        }
        let body = self.body.as_mut().expect("set above");
        loop {
            let (filled, available) = (body.filled, self.end - self.start);
            let bytes = body.bytes_mut();
            let n = (bytes.len() - filled).min(available);
            bytes[filled..filled + n].copy_from_slice(&self.buf[self.start..self.start + n]);
            body.filled += n;
            self.start += n;
            if body.complete() {
                break;
            }
            if self.start == self.end {
                return Ok(None);
            }
            body.grow()?;
        }
        let body = self.body.take().expect("set above");
        let message = Incoming(capnp::message::Reader::new(body.segments, self.options));
        Ok(Some((message, body.frame_bytes)))
    }

    /// Where the next read should go: straight into a large body still
    /// missing more than a buffer's worth (grown first if its allocation is
    /// full), or else the buffer's free end (compacted first).
    pub(crate) fn space(&mut self) -> capnp::Result<&mut [u8]> {
        if self.reads_into_body() {
            let body = self.body.as_mut().expect("reads into it");
            if body.full() {
                body.grow()?;
            }
            let filled = body.filled;
            return Ok(&mut body.bytes_mut()[filled..]);
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.start > 0 && self.buf.len() - self.end < BUFFER / 4 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        Ok(&mut self.buf[self.end..])
    }

    /// `n` bytes were read into [`Inbox::space`].
    pub(crate) fn filled(&mut self, n: usize) {
        if self.reads_into_body() {
            self.body.as_mut().expect("reads into it").filled += n;
        } else {
            self.end += n;
        }
    }

    /// The frame being read still misses a buffer's worth or more: reads
    /// go straight into its body.
    fn reads_into_body(&self) -> bool {
        self.body
            .as_ref()
            .is_some_and(|b| b.total * 8 - b.filled >= BUFFER)
    }

    pub(crate) fn idle(&self) -> bool {
        self.body.is_none() && self.start == self.end
    }
}

/// Reads a segment table from the front of `bytes`: the end of each
/// segment in words, and the table's length in bytes. `Ok(None)` if the
/// table is not all there yet; refused if the frame has too many segments
/// or more than `max_bytes`.
pub(crate) fn parse_table(
    bytes: &[u8],
    max_bytes: u64,
) -> Result<Option<(Vec<u32>, usize)>, Refused> {
    let Some(count) = bytes.get(..4) else {
        return Ok(None);
    };
    let segments = u64::from(u32::from_le_bytes(count.try_into().expect("4 bytes"))) + 1;
    if segments > MAX_SEGMENTS as u64 {
        return Err(Refused::Segments(segments));
    }
    let segments = segments as usize;
    let table = (4 + 4 * segments).next_multiple_of(8);
    let Some(sizes) = bytes.get(4..4 + 4 * segments) else {
        // Refuse an oversized frame as soon as the sizes seen say so.
        let seen = &bytes[4..bytes.len() - (bytes.len() % 4)];
        check_size(seen.chunks_exact(4).map(le_u32).sum(), max_bytes)?;
        return Ok(None);
    };
    let mut ends = Vec::with_capacity(segments);
    let mut words = 0u64;
    for size in sizes.chunks_exact(4) {
        words += le_u32(size);
        check_size(words, max_bytes)?;
        ends.push(words as u32);
    }
    if bytes.len() < table {
        return Ok(None);
    }
    Ok(Some((ends, table)))
}

fn le_u32(b: &[u8]) -> u64 {
    u64::from(u32::from_le_bytes(b.try_into().expect("4 bytes")))
}

/// Only the body counts (the table is at most 2 KiB).
fn check_size(words: u64, max_bytes: u64) -> Result<(), Refused> {
    let bytes = words * 8;
    if bytes > max_bytes {
        return Err(Refused::Bytes(bytes));
    }
    Ok(())
}

#[cfg(test)]
#[path = "inbox_tests.rs"]
mod tests;

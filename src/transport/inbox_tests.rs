//! Tests of `inbox.rs`.

use super::*;

#[test]
fn tables_are_read_whole_and_refused_early() {
    let mut frame = 1u32.to_le_bytes().to_vec(); // two segments
    frame.extend_from_slice(&3u32.to_le_bytes());
    frame.extend_from_slice(&5u32.to_le_bytes());
    assert_eq!(parse_table(&frame[..7], 1 << 20), Ok(None));
    assert_eq!(parse_table(&frame, 1 << 20), Ok(None)); // padding missing
    frame.extend_from_slice(&[0; 4]);
    assert_eq!(parse_table(&frame, 1 << 20), Ok(Some((vec![3, 8], 16))));
    // The first size alone is over the limit: refused before the rest.
    assert_eq!(parse_table(&frame[..8], 16), Err(Refused::Bytes(24)));
    assert_eq!(parse_table(&frame, 63), Err(Refused::Bytes(64)));
    assert!(parse_table(&frame, 64).unwrap().is_some());
    let many = (MAX_SEGMENTS as u32).to_le_bytes();
    assert_eq!(parse_table(&many, 1 << 20), Err(Refused::Segments(513)));
}

/// A frame header claiming `words` words of one segment.
fn header(words: u32) -> Vec<u8> {
    let mut h = 0u32.to_le_bytes().to_vec();
    h.extend_from_slice(&words.to_le_bytes());
    h
}

fn feed(inbox: &mut Inbox, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        let space = inbox.space().unwrap();
        let n = space.len().min(bytes.len());
        space[..n].copy_from_slice(&bytes[..n]);
        inbox.filled(n);
        bytes = &bytes[n..];
        if let Some((m, _)) = inbox.parse(open()).unwrap() {
            drop(m);
        }
    }
}

fn open() -> FrameCap {
    FrameCap::Open {
        max_message: 64 << 20,
    }
}

#[test]
fn a_body_holds_what_has_arrived_not_what_its_header_claims() {
    let limits = Limits::default();
    let mut inbox = Inbox::new(&limits);
    // 63 MiB claimed, nothing sent: one first step of memory.
    feed(&mut inbox, &header(63 << 17));
    assert!(inbox.parse(open()).unwrap().is_none());
    assert_eq!(limits.budget().used(), BUFFER as u64);
    // 1 MiB of it arrives: at most twice that is held.
    feed(&mut inbox, &vec![7u8; 1 << 20]);
    let held = limits.budget().used();
    assert!(
        (1 << 20..=2 << 20).contains(&held),
        "{held} bytes held for 1 MiB received"
    );
    drop(inbox);
    assert_eq!(limits.budget().used(), 0, "given back when the frame goes");
}

#[test]
fn a_message_counts_against_the_budget_while_it_lives() {
    let mut limits = Limits::default();
    limits.max_buffered_bytes = 3 << 20;
    let mut inbox = Inbox::new(&limits);
    let body = vec![1u8; 2 << 20];
    let mut frame = header((body.len() / 8) as u32);
    frame.extend_from_slice(&body);
    let mut kept = None;
    let mut bytes = &frame[..];
    while kept.is_none() {
        let space = inbox.space().unwrap();
        let n = space.len().min(bytes.len());
        space[..n].copy_from_slice(&bytes[..n]);
        inbox.filled(n);
        bytes = &bytes[n..];
        kept = inbox.parse(open()).unwrap();
    }
    let (message, frame_bytes) = kept.unwrap();
    assert_eq!(frame_bytes, frame.len() as u64);
    assert_eq!(limits.budget().used(), 2 << 20);
    // A second one does not fit beside it: refused as it grows.
    let mut second = Inbox::new(&limits);
    let mut refused = None;
    let mut bytes = &frame[..];
    while refused.is_none() && !bytes.is_empty() {
        let space = match second.space() {
            Ok(s) => s,
            Err(e) => {
                refused = Some(e);
                break;
            }
        };
        let n = space.len().min(bytes.len());
        space[..n].copy_from_slice(&bytes[..n]);
        second.filled(n);
        bytes = &bytes[n..];
        refused = second.parse(open()).err();
    }
    let e = refused.expect("refused past the budget");
    assert_eq!(e.kind, capnp::ErrorKind::Overloaded);
    assert!(
        e.extra.contains("receive buffers limit exceeded") && e.extra.contains("3145728"),
        "{e}"
    );
    drop(message);
    drop(second);
    assert_eq!(limits.budget().used(), 0);
}

#[test]
fn the_preauth_cap_refuses_large_frames_and_frames_past_the_budget() {
    let cap = FrameCap::Preauth {
        max_message: 64 << 10,
        spent: 200 << 10,
        budget: 256 << 10,
    };
    let mut inbox = Inbox::new(&Limits::default());
    feed_table(&mut inbox, &header(63 << 17));
    let e = inbox.parse(cap).err().expect("refused");
    assert!(
        e.extra
            .contains("message size before the gate opens limit exceeded"),
        "{e}"
    );
    let mut inbox = Inbox::new(&Limits::default());
    feed_table(&mut inbox, &header(60 << 7)); // 60 KiB: fits the size
    let e = inbox.parse(cap).err().expect("refused");
    assert!(
        e.extra
            .contains("bytes before the gate opens limit exceeded"),
        "{e}"
    );
}

fn feed_table(inbox: &mut Inbox, bytes: &[u8]) {
    let space = inbox.space().unwrap();
    space[..bytes.len()].copy_from_slice(bytes);
    inbox.filled(bytes.len());
}

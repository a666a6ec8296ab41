//! One-time transfer tickets: the part of Cap'n Proto's three-party
//! handoff that capactor builds itself.
//!
//! A worker that lets another worker read one of its objects directly
//! mints a ticket for it ([`mint`]): 128 random bits, valid once and for a
//! limited time. The other worker connects to this one and presents the
//! ticket to the gate (`Gate.redeem`), which exchanges it ([`redeem`]) for
//! the one capability it grants and nothing else. The ticket needs no
//! token: it travelled to the other worker over connections that were
//! themselves authenticated.
//!
//! The book is process-wide, so any gate of this process (TCP, TLS or an
//! in-process link) redeems any ticket minted here; a grant is a `Send`
//! factory run on the vat of the connection that redeems it.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::Error;

/// Makes the capability a ticket grants, on the redeeming connection's vat.
pub(crate) type Grant = Box<dyn FnOnce() -> capnp::capability::Client + Send>;

/// Bytes in a ticket.
pub(crate) const TICKET_BYTES: usize = 16;

/// Tickets minted at most, live at once; minting more fails.
const MAX_TICKETS: usize = 4096;

struct Entry {
    expires: Instant,
    grant: Grant,
}

static BOOK: Mutex<Option<HashMap<[u8; TICKET_BYTES], Entry>>> = Mutex::new(None);

fn with_book<R>(f: impl FnOnce(&mut HashMap<[u8; TICKET_BYTES], Entry>) -> R) -> R {
    let mut book = BOOK.lock().unwrap_or_else(PoisonError::into_inner);
    let book = book.get_or_insert_with(HashMap::new);
    let now = Instant::now();
    book.retain(|_, e| e.expires > now);
    f(book)
}

/// Mints a ticket for `grant`, valid once within `ttl`.
///
/// # Errors
///
/// Fails with a limit error if too many tickets are live already.
pub(crate) fn mint(ttl: Duration, grant: Grant) -> Result<[u8; TICKET_BYTES], Error> {
    let mut ticket = [0u8; TICKET_BYTES];
    rand::fill(&mut ticket);
    with_book(|book| {
        if book.len() >= MAX_TICKETS {
            return Err(Error::limit(
                "live transfer tickets",
                book.len() + 1,
                MAX_TICKETS,
            ));
        }
        book.insert(
            ticket,
            Entry {
                expires: Instant::now() + ttl,
                grant,
            },
        );
        Ok(ticket)
    })
}

/// Spends `ticket` and makes the capability it grants.
///
/// # Errors
///
/// The same error for a ticket that is unknown, spent or expired, so that
/// the answer says nothing about which.
pub(crate) fn redeem(ticket: &[u8]) -> Result<capnp::capability::Client, Error> {
    let entry = <[u8; TICKET_BYTES]>::try_from(ticket)
        .ok()
        .and_then(|t| with_book(|book| book.remove(&t)));
    match entry {
        Some(e) => Ok((e.grant)()),
        None => Err(Error::invalid(
            "transfer ticket is unknown, already used or expired",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> Grant {
        Box::new(|| capnp_rpc::new_broken_cap(capnp::Error::failed("granted".into())))
    }

    #[test]
    fn a_ticket_is_redeemed_once() {
        let t = mint(Duration::from_secs(10), grant()).unwrap();
        assert!(redeem(&t).is_ok());
        let err = redeem(&t).err().unwrap();
        assert!(err.to_string().contains("already used or expired"));
    }

    #[test]
    fn an_expired_ticket_is_refused() {
        let t = mint(Duration::ZERO, grant()).unwrap();
        assert!(redeem(&t).is_err());
    }

    #[test]
    fn a_ticket_of_the_wrong_length_is_refused() {
        assert!(redeem(b"short").is_err());
    }
}

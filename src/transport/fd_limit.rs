//! The process's open-file limit, checked against the connections a
//! worker is to serve.

use crate::{Error, Result};

/// Descriptors a worker needs besides one per connection: listeners, the
/// runtime's event and timer descriptors, standard streams, files.
const SPARE: u64 = 64;

/// Raises the soft open-file limit as far as the hard limit allows, and
/// fails if `connections` (plus spare descriptors) still do not fit.
pub(crate) fn ensure(connections: usize) -> Result<()> {
    let needed = (connections as u64).saturating_add(SPARE);
    let (soft, hard) = rlimit::Resource::NOFILE
        .get()
        .map_err(|e| Error::invalid(format!("cannot read the open-file limit: {e}")))?;
    if soft >= needed {
        return Ok(());
    }
    let raised = rlimit::increase_nofile_limit(hard).unwrap_or(soft);
    if raised < needed {
        return Err(Error::invalid(format!(
            "{connections} connections need {needed} open files, but the limit is {raised} \
             (hard limit {hard}): lower max_connections or raise the hard limit (ulimit -Hn)"
        )));
    }
    tracing::debug!(from = soft, to = raised, "raised the open-file limit");
    Ok(())
}

# The fleet: a registry where workers register, keep their lease alive with
# streamed health reports, and where clients find, watch and route to them.
#
# A worker calls `register` and gets a `Lease`. It keeps the lease alive by
# streaming `Lease.report` (say once a second, `reportMillis`). A worker
# whose last report is older than `ttlMillis` is unhealthy; one silent for
# the TTL plus the registry's grace period is removed. Dropping the lease
# (or the worker's connection going) removes the worker at once.
#
# The registry also hands out fleet credentials: PASETO v4.public tokens
# (Ed25519) that workers started with the registry's public key accept at
# their gate, so no shared secret is copied onto every worker.
#
# Added in schema version 3.

@0xd1fcbaaac261e012;

using import "actor.capnp".Actor;
using import "actor.capnp".InterfaceRef;

interface Registry extends(Actor) {
  register @0 (name :Text, kind :Text, address :Text, labels :List(Label),
               interfaces :List(InterfaceRef), actor :Actor)
      -> (lease :Lease, ttlMillis :UInt64, reportMillis :UInt64);
  # Registers a worker. `name` is unique in the registry: a second
  # registration under a name whose lease is alive fails; one whose lease
  # has expired is replaced. `address` is where clients reach the worker
  # (`host:port`, or `in-process:...` for a worker of the registry's own
  # process); `labels` are key/value pairs `lookup` selects on. `actor`,
  # if set, is handed to clients by `lookup` and `route` (through the
  # registry: level-1 Cap'n Proto proxies it). The registry answers with
  # the lease, its TTL and how often it wants a report.

  status @1 () -> (status :Status);
  # Every worker with its latest health, plus totals.

  watch @2 (observer :Observer) -> (subscription :Subscription);
  # Calls `observer.changed` on every join, leave and change between
  # healthy and unhealthy, in order, one call at a time; the first event is
  # the current membership. An observer that falls more than the
  # registry's backlog behind is dropped (its last call fails). Dropping
  # `subscription` ends the watch.

  lookup @3 (kind :Text, labels :List(Label)) -> (worker :WorkerStatus, actor :Actor);
  # A healthy worker of `kind` (any kind if empty) carrying every label
  # given, the least loaded by its last report; fails if there is none.
  # `actor` is the worker's capability if it registered one.

  route @4 (kind :Text) -> (worker :WorkerStatus, actor :Actor);
  # `lookup` without labels, spreading successive calls over equally
  # loaded workers: each pick counts as load until the worker's next
  # report.

  publicKey @5 () -> (algorithm :Text, key :Data);
  # The Ed25519 public key (32 bytes) the registry signs tokens with;
  # `algorithm` is "paseto-v4-public".

  issueToken @6 (adminToken :Data, subject :Text, ttlSeconds :UInt64,
                 audience :List(Text)) -> (token :Text, expiresAtMillis :UInt64);
  # Signs a token for `subject`, valid for `ttlSeconds` (at most the
  # registry's limit), at the workers named in `audience` (every worker if
  # empty). Only a caller holding the registry's admin token may ask:
  # another fails with `credential rejected`.
}

struct Label {
  key @0 :Text;
  value @1 :Text;
}

struct Health {
  # What a worker reports about itself.

  callsInFlight @0 :UInt32;
  callsPerSecond @1 :Float64;
  liveObjects @2 :UInt64;
  liveBytes @3 :UInt64;
  quotaUsed @4 :UInt64;
  quotaLimit @5 :UInt64;
  load @6 :Float64;
  # What `route` minimises: 0 for idle; the worker decides the scale (the
  # built-in worker reports calls in flight plus its quota's fill).
  uptimeMillis @7 :UInt64;
}

interface Lease {
  # A worker's registration, alive while it is held and reported on.

  report @0 (health :Health) -> stream;
  # Renews the lease with the worker's latest health. Fails once the
  # registry has removed the worker (re-register then).
}

struct WorkerStatus {
  name @0 :Text;
  kind @1 :Text;
  address @2 :Text;
  labels @3 :List(Label);
  interfaces @4 :List(InterfaceRef);
  healthy @5 :Bool;
  health @6 :Health;
  sinceReportMillis @7 :UInt64;
  # Milliseconds since the last report (or since registration).
  registeredMillis @8 :UInt64;
  # Milliseconds since the worker registered.
}

struct Totals {
  workers @0 :UInt32;
  healthy @1 :UInt32;
  callsInFlight @2 :UInt64;
  callsPerSecond @3 :Float64;
  liveObjects @4 :UInt64;
  liveBytes @5 :UInt64;
  quotaUsed @6 :UInt64;
  quotaLimit @7 :UInt64;
}

struct Status {
  workers @0 :List(WorkerStatus);
  # Sorted by name.
  totals @1 :Totals;
}

struct Event {
  sequence @0 :UInt64;
  # Increases by one with every event the registry emits; an observer sees
  # a gap only if it joined later.
  union {
    membership @1 :List(WorkerStatus);
    # The first event of a watch: every worker registered now.
    joined @2 :WorkerStatus;
    left @3 :Departure;
    healthChanged @4 :WorkerStatus;
    # The worker became healthy or unhealthy (`healthy` says which).
  }
}

struct Departure {
  name @0 :Text;
  reason @1 :Text;
  # "lease dropped", "expired" or "replaced".
}

interface Observer {
  changed @0 (event :Event) -> ();
}

interface Subscription {
  # Held by the watcher; dropping it ends the watch.
}

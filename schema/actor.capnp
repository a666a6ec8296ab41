# The base protocol every capactor actor speaks.
#
# A connection to a capactor worker (virtual or TCP) bootstraps a `Gate`.
# `Gate.open` exchanges a credential for the worker's `Actor` capability; the
# call pipelines, so a client can call the actor before the gate has answered
# and authentication costs no extra round trip.
#
# Every actor implements `Actor`. Actors of richer kinds (`TensorWorker`, user
# interfaces) extend it, so any client can ping any actor, ask what it is and
# which interfaces it implements, and then cast to the interface it needs.

@0xa4d7ef3270c0f46e;

const schemaVersion :UInt32 = 4;
# Bumped whenever this directory changes in a way a client could notice.
# Changes are compatible only (new fields, methods and interfaces, never a
# renumbering): clients and servers of any two versions work together.
# Version 2 added `ActorInfo.runtime` and `TensorWorker.memory`; version 3
# streamed transfers, worker-to-worker handoff and named objects
# (`Tensor.readTo`, `Tensor.handoff`, `Sink`, `Upload`, `Gate.redeem`,
# `TensorWorker.upload`, `resumeUpload`, `store`, `load`, `delete`, `list`);
# version 4 tensor ops (new `BinaryOp`, `UnaryOp` and `ReduceOp` values,
# `CumulativeOp`, `reduce`'s `ddof`, `Tensor.softmax`, `cumulative`, `clip`).
# The rules: docs/PROTOCOL.md; the tests that hold us to them, and what they
# mean for actors that extend ours: docs/EXTENDING.md.

interface Gate {
  # The bootstrap capability of every capactor connection.

  open @0 (token :Data) -> (actor :Actor);
  # Returns the worker's actor if `token` is accepted. A worker started
  # without authentication accepts any token, including an empty one.
  # A rejected token fails the call (and every call pipelined on `actor`)
  # with a `failed` error whose message says the credential was rejected.

  redeem @1 (ticket :Data) -> (object :Capability);
  # Exchanges a one-time transfer ticket, minted by this worker for another
  # worker (e.g. `Tensor.handoff`), for the one object it grants; the
  # ticket is then spent. Needs no token: the ticket is the credential for
  # that one transfer and nothing else. An unknown, spent or expired ticket
  # fails with a `failed` error. Added in schema version 3.
}

interface Actor {
  # What every actor implements.

  ping @0 () -> ();
  # The cheapest call there is. Used for health checks and heartbeats.

  info @1 () -> (info :ActorInfo);
  # Describes the actor.
}

struct ActorInfo {
  name @0 :Text;
  # The name the actor was spawned with (`capactor worker --name`).

  kind @1 :Text;
  # What the actor is, e.g. "tensor-worker" or a user-chosen kind.

  schemaVersion @2 :UInt32;
  # The `schemaVersion` of the schema the actor was built from.

  interfaces @3 :List(InterfaceRef);
  # Every interface the actor implements, most derived first, ending in `Actor`.

  uptimeMillis @4 :UInt64;
  # Milliseconds since the actor was spawned.

  liveObjects @5 :UInt64;
  # Capabilities the actor has handed out that are still alive (tensors, ...).

  liveBytes @6 :UInt64;
  # Bytes held by those objects.

  callsServed @7 :UInt64;
  # Calls the actor has completed, successfully or not.

  callsInFlight @8 :UInt32;
  # Calls under way at the moment of the `info` call (including it).

  runtime @9 :Text;
  # The software serving the actor and its version, e.g. "capactor 0.1.0".
  # Added in schema version 2: empty from older actors.
}

struct InterfaceRef {
  # Names one Cap'n Proto interface.

  id @0 :UInt64;
  # The interface's 64-bit type id, as in the schema.

  name @1 :Text;
  # The interface's name as written in its schema, e.g. "TensorWorker".
}

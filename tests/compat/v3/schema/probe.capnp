# A diagnostic actor for tests, benchmarks and health probes.
#
# It exercises what the runtime must get right (pipelining, errors,
# cancellation, capability release, panics, deadlines) without any domain
# logic. Workers do not serve it unless asked to.

@0x8b88d9e30d52c425;

using import "actor.capnp".Actor;

interface Probe extends(Actor) {
  echo @0 (data :Data) -> (data :Data);
  # Returns its argument.

  sleep @1 (millis :UInt32) -> ();
  # Returns after `millis` without blocking the vat.

  spin @2 (micros :UInt32) -> (rounds :UInt64);
  # Burns CPU on the vat for `micros`, as a compute-bound method would.

  fail @3 (message :Text) -> ();
  # Fails with `message`.

  panic @4 () -> ();
  # Panics inside the method.

  counter @5 (start :Int64) -> (counter :Counter);
  # A new counter capability; pipeline calls on it.

  stats @6 () -> (liveCounters :UInt32, cancelledSleeps :UInt32,
                  streamedChunks :UInt64, streamedBytes :UInt64);
  # Counters alive on this actor, sleeps dropped before they finished, and
  # the chunks and bytes `sink` has taken.

  sink @7 (seq :UInt64, data :Data) -> stream;
  # Takes one chunk of a stream, with flow control: the caller may have a
  # window of chunks in flight. `seq` counts the chunks this actor has
  # taken, from 0; a chunk out of order, or an empty one, fails.
}

interface Counter {
  next @0 () -> (value :Int64);
  # Returns the current value, then adds one.
}

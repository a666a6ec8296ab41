# A user's own actor, extending capactor's TensorWorker.
#
# A Trainer is a tensor worker (every TensorWorker and Actor method works on
# it, served by capactor) that also fits a logistic-regression model on
# tensors it holds. The model's weights live in the trainer; the data lives
# in tensors the client made on it with the inherited methods, so a client
# uploads a batch and trains on it in one round trip:
# fromData(x), fromData(y), step(x, y) and read(loss) all pipeline.
#
# capactor's schemas are found on the import path (`/actor.capnp`,
# `/tensor.capnp`): build.rs gets that directory from capactor's build
# script, pycapnp from `imports=["schema"]`.

@0xb2adf7f98222b17f;

# Every capactor file that an interface here extends, directly or through
# another, must be imported: the Rust code generator names base interfaces
# through the files that import them.
using import "/actor.capnp".Actor;
using Tensor = import "/tensor.capnp".Tensor;
using TensorWorker = import "/tensor.capnp".TensorWorker;

const trainerVersion :UInt32 = 1;
# This file's own version, bumped like capactor's `schemaVersion`.

interface Trainer extends(TensorWorker) {
  step @0 (x :Tensor, y :Tensor, learningRate :Float32) -> (loss :Tensor);
  # One gradient-descent step of logistic regression on a batch: `x` is
  # n x d (f32), `y` holds n labels, 0 or 1 (f32, shape n or n x 1), both
  # tensors of this trainer. Returns the batch's log loss before the update,
  # as a scalar tensor of this trainer. The first step fixes d; the weights
  # start at zero.

  train @1 (x :Tensor, y :Tensor, learningRate :Float32, steps :UInt32, observer :Progress)
      -> (loss :Float32, steps :UInt32);
  # Up to `steps` steps on one batch, calling `observer.report` after each
  # and waiting for its answer: the trainer drives, the client answers, over
  # the client's own connection. Stops early when the observer says so.
  # Returns the last loss and the steps taken.

  weights @2 () -> (weights :Tensor);
  # A copy of the model's weights (d x 1, f32) as a tensor of this trainer.

  exportTo @3 (worker :TensorWorker) -> (weights :Tensor);
  # Puts a copy of the weights on `worker`, e.g. a worker the client serves
  # itself, and returns it there.
}

interface Progress {
  # Implemented by the client: told about every step of `Trainer.train`.

  report @0 (step :UInt32, loss :Float32) -> (stop :Bool);
  # `step` counts from 1; `loss` is that step's loss. Answer `stop` to end
  # training after this step.
}

"""Arithmetic of the Evaluator's attacks: multiply-adds per image and per attack.

Three ingredients, kept apart so each can be checked on its own:

* the model's forward multiply-adds per image, from the CNN's layer shapes
  (``cnn_forward_macs``) and, for any model, counted in its traced graph
  (``traced_macs``, bench/step_cost.py's op rules with the batch dimension read as
  one image), and the same for the forward pass plus the input gradient;
* image-passes per attack: ``upper_bound_passes`` from an attack's settings and the
  suite's details (how many images each member attacked), counting every iteration
  an early exit may have skipped; ``PassCounter`` wraps a logits_fn and counts the
  forward and backward image-passes that actually ran;
* ``tflop``: passes times multiply-adds, 2 FLOP per multiply-add.

Elementwise work (the attacks' own projections, the losses, pooling) is not counted.
"""
import dataclasses
from typing import Callable, Dict, Optional

import numpy as np
import tensorflow as tf

import step_cost  # bench/ is on sys.path when bench/evaluate.py runs
from components.config import AttackConfig, ModelConfig
from components.robustness_evaluator import autoattack

# Backward (input gradient) ~ 2x forward: the convention for the upper bound. The
# input gradient alone costs ~1x forward (no weight gradients); traced_macs measures it.
BACKWARD_PER_FORWARD = 2.0


# ------------------------------------------------------------------ per image

def cnn_forward_macs(config: ModelConfig) -> int:
  """Forward multiply-adds of one image through components/trainer/model.build_cnn:
  VALID stride-1 convolutions, max-pooling (floor) between them, dense, logits."""
  side, c_in, macs = config.image_size, 1, 0
  k = config.kernel_size
  for i, filters in enumerate(config.conv_filters):
    if i > 0:
      side //= config.pool_size
    side = side - k + 1
    macs += side * side * filters * k * k * c_in
    c_in = filters
  flat = side * side * c_in
  return macs + flat * config.dense_units + config.dense_units * config.num_classes


def _dims(tensor: tf.Tensor, op) -> list:
  """Static shape with an unknown leading (batch) dimension read as one image."""
  shape = tensor.shape
  if shape.rank is None:
    raise ValueError(f'{op.type} {op.name!r}: unknown rank')
  dims = shape.as_list()
  if dims and dims[0] is None:
    dims[0] = 1
  if None in dims:
    raise ValueError(f'{op.type} {op.name!r}: shape {shape} is not static')
  return dims


def _lookup(graph, name):
  """A function called from ``graph``: its own library, else the outer graphs'."""
  g = graph
  while g is not None:
    fn = g._get_function(name)  # pylint: disable=protected-access
    if fn is not None:
      return fn
    g = getattr(g, 'outer_graph', None)
  return None


def _graph_macs(graph: tf.Graph) -> int:
  """bench/step_cost.graph_macs with a None batch dimension counted as 1 image."""
  total = 0
  for op in step_cost._live_ops(graph):  # pylint: disable=protected-access
    if op.type in step_cost.CONV_OPS:
      total += step_cost._conv_macs(op, _dims)  # pylint: disable=protected-access
    elif op.type in step_cost.MATMUL_OPS:
      total += step_cost._matmul_macs(op, _dims)  # pylint: disable=protected-access
    elif op.type in ('StatefulPartitionedCall', 'PartitionedCall'):
      fn = _lookup(graph, op.get_attr('f').name)
      if fn is None:
        raise ValueError(f'{op.name}: function {op.get_attr("f").name} not found')
      total += _graph_macs(fn.graph)
    elif op.type in step_cost.WHILE_OPS:
      raise ValueError(f'{op.name}: loops are not expected in a model pass')
  return total


@dataclasses.dataclass
class ModelCost:
  forward: int            # multiply-adds per image, forward pass
  forward_and_grad: int   # forward pass + input gradient (traced), per image

  @property
  def backward_per_forward(self) -> float:
    return (self.forward_and_grad - self.forward) / self.forward


def traced_macs(logits_fn: Callable[[tf.Tensor], tf.Tensor],
                feature_dim: int) -> ModelCost:
  """Counts the forward pass and forward + d(sum CE)/d(input), one image.

  Only ops the result depends on are counted (TF prunes the rest), so a weight
  gradient that nothing asks for is not counted.
  """
  spec = tf.TensorSpec([1, feature_dim], tf.float32)
  y = tf.zeros([1], tf.int64)

  def forward(x):
    return logits_fn(x)

  def forward_and_grad(x):
    with tf.GradientTape() as tape:
      tape.watch(x)
      loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(
          labels=y, logits=tf.cast(logits_fn(x), tf.float32)))
    return tape.gradient(loss, x)

  fwd = _graph_macs(tf.function(forward).get_concrete_function(spec).graph)
  both = _graph_macs(tf.function(forward_and_grad).get_concrete_function(spec).graph)
  return ModelCost(fwd, both)


# ------------------------------------------------------------------ per attack

@dataclasses.dataclass
class Passes:
  """Image-passes: forward passes and backward (input-gradient) passes."""
  forward: float = 0.0
  backward: float = 0.0

  def __add__(self, other: 'Passes') -> 'Passes':
    return Passes(self.forward + other.forward, self.backward + other.backward)

  def tflop(self, forward_macs: float,
            backward_per_forward: float = BACKWARD_PER_FORWARD) -> float:
    return 2.0 * forward_macs * (self.forward +
                                 backward_per_forward * self.backward) / 1e12


def _apgd(images: float, steps: int, restarts: int, runs: int = 1,
          targeted: bool = False) -> Passes:
  """steps + 1 evaluations with gradient per run (x0, then one per step), plus a
  clean forward pass per targeted run (the target class)."""
  calls = images * restarts * runs
  return Passes(forward=calls * (steps + 1 + (1 if targeted else 0)),
                backward=calls * (steps + 1))


def _fab(images: float, steps: int, runs: int = 1) -> Passes:
  """Per run: the clean pass (the target class, and which images are already
  wrong), then per step one pass with the input gradient and one forward pass
  checking the new point."""
  calls = images * runs
  return Passes(forward=calls * (1 + 2 * steps), backward=calls * steps)


def _square(images: float, queries: int) -> Passes:
  """The clean check, then ``queries`` perturbed points (stripes + queries - 1)."""
  return Passes(forward=images * (queries + 1))


def _padded(images: float, batch_size: int) -> float:
  """Rows of Attacker.logits on ``images`` images: whole batches of batch_size."""
  return -(-images // batch_size) * batch_size


def upper_bound_passes(attack: AttackConfig, n: int, *, batch_size: int,
                       details: Optional[Dict] = None,
                       attacked: Optional[int] = None) -> Dict[str, Passes]:
  """Image-passes of ``attack`` on n images, per member, with every iteration that
  an early exit may have skipped counted.

  PGD: every row of every (padded) batch, steps gradients + 1 forward per restart,
  no early exit. APGD/Square/AutoAttack members: the images the member attacked
  (the first member: ``attacked``, the clean-correct images; later ones: those the
  details' robust_accuracy_after leaves standing), all steps/queries, every target
  (APGD-T and FAB-T only attack images earlier targets left standing: not exposed,
  so the bound counts all of them for every target). Plus the final re-check pass.
  """
  if attack.method == 'pgd':
    rows = _padded(n, batch_size)
    # steps gradients (the first at the start point), then the logits there.
    return {attack.name: Passes(forward=rows * attack.restarts * (attack.steps + 1),
                                backward=rows * attack.restarts * attack.steps)}
  if details is None or attacked is None:
    raise ValueError('APGD/Square/AutoAttack bounds need the details and the count '
                     'of clean-correct images')
  out: Dict[str, Passes] = {}
  todo = float(attacked)
  # With a boundary member, each member also takes its points' margins
  # (autoattack._member): a forward pass of the points it ends on, per target for
  # APGD-T, in the Attacker's padded batches.
  def margin_rows(images: float) -> float:
    return _padded(images, batch_size) if attack.boundary_restarts else 0.0
  for member in details['members']:
    if member == 'apgd-ce':
      out[member] = _apgd(todo, attack.steps, attack.restarts) + Passes(
          forward=margin_rows(todo))
    elif member == 'apgd-t':
      out[member] = _apgd(todo, attack.steps, attack.restarts, runs=attack.targets,
                          targeted=True) + Passes(
                              forward=margin_rows(todo) * attack.targets)
    elif member == 'fab-t':
      out[member] = _fab(todo, attack.steps, runs=attack.targets)
    elif member == 'square':
      out[member] = _square(todo, attack.queries) + Passes(forward=margin_rows(todo))
    elif member == autoattack.BOUNDARY:
      # Every chosen image's starts, for CE and then for the runner-up target.
      starts = details['boundary']['images'] * attack.boundary_restarts
      out[member] = (_apgd(starts, attack.steps, 1) +
                     _apgd(starts, attack.steps, 1, targeted=True))
    else:
      raise ValueError(f'unknown member {member!r}')
    todo = round(details['robust_accuracy_after'][member] * n)
  # The re-check of the final points, in the Attacker's padded batches too.
  out['recheck'] = Passes(forward=_padded(n, batch_size))
  return out


def total(passes: Dict[str, Passes]) -> Passes:
  result = Passes()
  for p in passes.values():
    result = result + p
  return result


class PassCounter:
  """logits_fn wrapper counting image-passes that ran: forward (every call) and
  backward (every input gradient flowing back through it), including padding rows.

  The counts live in int64 variables updated inside the compiled attacks (two
  scalar ops per call, beside a batch of convolutions).
  """

  def __init__(self, logits_fn: Callable[[tf.Tensor], tf.Tensor]):
    self._fn = logits_fn
    self.forward = tf.Variable(0, dtype=tf.int64, trainable=False)
    self.backward = tf.Variable(0, dtype=tf.int64, trainable=False)

    @tf.custom_gradient
    def tap(x):
      def grad(dy):
        rows = tf.cast(tf.shape(dy)[0], tf.int64)
        with tf.control_dependencies([self.backward.assign_add(rows)]):
          return tf.identity(dy)
      return tf.identity(x), grad
    self._tap = tap

  def __call__(self, x: tf.Tensor) -> tf.Tensor:
    rows = tf.cast(tf.shape(x)[0], tf.int64)
    with tf.control_dependencies([self.forward.assign_add(rows)]):
      return self._fn(self._tap(x))

  def reset(self) -> None:
    self.forward.assign(0)
    self.backward.assign(0)

  def read(self) -> Passes:
    return Passes(float(self.forward.numpy()), float(self.backward.numpy()))

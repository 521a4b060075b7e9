"""APGD (Croce & Hein, ICML 2020), in-graph TensorFlow, on batches of tensors.

Hand-written because no maintained library runs batched APGD inside a TF 2.16 graph:
the authors' AutoAttack package is PyTorch (its TF support calls the model once per
step from a PyTorch loop), and neural-structured-learning is unmaintained and fails to
import on TF 2.16 (see perturbation.py). This follows Algorithm 1 of "Reliable
evaluation of adversarial robustness with an ensemble of diverse parameter-free
attacks":

* start at a random point of the epsilon ball (uniform for L-infinity, a random
  direction scaled to epsilon for L2), clipped to the box;
* step size eta = 2 * epsilon per example; the first step is plain projected ascent,
  later ones add momentum: z = P(x_k + eta d(g)),
  x_{k+1} = P(x_k + alpha (z - x_k) + (1 - alpha)(x_k - x_{k-1}));
* at each checkpoint w_j, an example halves its eta and restarts from its best point
  if (1) fewer than rho of its steps since w_{j-1} increased the loss, or (2) its eta
  was not halved at w_{j-1} and its best loss has not grown since then.

Choices where the paper leaves room or AutoAttack's code differs from it:

* condition (1) is the paper's strict ``<`` (AutoAttack's code uses ``<=``) and, after
  a restart, counts the next step as an increase against f(x_max), the restarted
  iterate's loss; condition (2) may fire at the first checkpoint (AutoAttack's code
  never lets it);
* L2 projects onto the ball, then clips to the box: the result is feasible (clipping
  to a box that contains x never lengthens the perturbation) but is not the exact
  Euclidean projection onto the intersection; AutoAttack does the same;
* a flipped example returns its highest-loss misclassifying iterate (AutoAttack: the
  last one): the most confidently wrong point, the least likely to flip back when
  re-evaluated in another batch or precision.

Every iteration runs inside one ``tf.while_loop``; the loop stops early once every
example of the batch is flipped, since an example counts as broken once any iterate
misclassifies it.
"""
from typing import Callable, List, NamedTuple

import tensorflow as tf

from components.adversarial import noinline
from components.adversarial.perturbation import _TINY, _l2_norm, direction, project

LOSSES = ('ce', 'dlr', 'dlr_targeted')
NORMS = ('infinity', 'l2')
_DLR_TINY = 1e-12


class ApgdResult(NamedTuple):
  """Per-example outcome of an attack.

  x_adv: a misclassifying point if any iterate misclassified (the one with the highest
    loss), else the highest-loss point.
  flipped: bool [batch], some iterate was misclassified (argmax != y).
  best_loss: [batch] float32, the attack's loss at x_adv.
  """
  x_adv: tf.Tensor
  flipped: tf.Tensor
  best_loss: tf.Tensor


def checkpoints(steps: int) -> List[int]:
  """The paper's checkpoints w_j = ceil(p_j * steps), deduplicated, p_j <= 1.

  p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06). The p_j are kept
  in integer hundredths because in floats 0.22 + 0.19 > 0.41 and ceil() would be off
  by one.
  """
  if steps < 1:
    raise ValueError(f'steps={steps!r}: must be >= 1')
  result = [0]
  p_prev, p = 0, 22
  while p <= 100:
    w = -(-p * steps // 100)
    if w != result[-1]:
      result.append(w)
    p_prev, p = p, p + max(p - p_prev - 3, 6)
  return result


def _logit_of(z: tf.Tensor, classes: tf.Tensor) -> tf.Tensor:
  return tf.gather(z, classes, axis=1, batch_dims=1)


def dlr_loss(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
  """Untargeted DLR, -(z_y - max_{i!=y} z_i) / (z_pi1 - z_pi3): shift- and
  scale-invariant in the logits, so it does not saturate like cross-entropy."""
  z = tf.cast(logits, tf.float32)
  is_label = tf.one_hot(labels, tf.shape(z)[1], on_value=True, off_value=False)
  max_other = tf.reduce_max(tf.where(is_label, tf.constant(-float('inf')), z), axis=1)
  top = tf.math.top_k(z, 3).values
  return -(_logit_of(z, labels) - max_other) / (top[:, 0] - top[:, 2] + _DLR_TINY)


def dlr_targeted_loss(logits: tf.Tensor, labels: tf.Tensor,
                      targets: tf.Tensor) -> tf.Tensor:
  """Targeted DLR, -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2); needs >= 4 classes."""
  z = tf.cast(logits, tf.float32)
  top = tf.math.top_k(z, 4).values
  return -(_logit_of(z, labels) - _logit_of(z, targets)) / (
      top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + _DLR_TINY)


def target_classes(logits: tf.Tensor, labels: tf.Tensor, target_rank) -> tf.Tensor:
  """The class with the target_rank-th largest clean logit, int64 [batch].

  Ranks count all classes, as AutoAttack's APGD-T does (ranks 2..10 for 9 targets), so
  for a correctly classified example rank 2 is its most likely wrong class; for a
  misclassified one it can be the label itself, whose targeted loss is constant.
  target_rank may be a tensor, so one graph serves every rank. labels is only used to
  check the batch size.
  """
  z = tf.cast(logits, tf.float32)
  tf.debugging.assert_equal(tf.shape(z)[0], tf.shape(labels)[0])
  order = tf.argsort(z, axis=1, direction='DESCENDING', stable=True)
  return tf.cast(order[:, tf.cast(target_rank, tf.int32) - 1], tf.int64)


def merge_worst_case(a: ApgdResult, b: ApgdResult) -> ApgdResult:
  """Per example, the stronger of two results: flipped beats not flipped, else the
  higher loss (meaningful only between runs of the same loss)."""
  take_b = (b.flipped & ~a.flipped) | (
      (b.flipped == a.flipped) & (b.best_loss > a.best_loss))
  return ApgdResult(
      x_adv=tf.where(_per_example(take_b, a.x_adv), b.x_adv, a.x_adv),
      flipped=a.flipped | b.flipped,
      best_loss=tf.where(take_b, b.best_loss, a.best_loss))


def _per_example(v: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
  """Reshapes a [batch] vector to broadcast against a [batch, ...] tensor."""
  return tf.reshape(v, [-1] + [1] * (like.shape.rank - 1))


def _start(x, norm, epsilon, seed, clip_min, clip_max):
  """The random starting point x^(0), inside the ball and the box."""
  if norm == 'infinity':
    delta = tf.random.stateless_uniform(tf.shape(x), seed, -epsilon, epsilon,
                                        dtype=x.dtype)
  else:
    g = tf.random.stateless_normal(tf.shape(x), seed, dtype=x.dtype)
    delta = epsilon * g / tf.maximum(_l2_norm(g), _TINY)
  return tf.clip_by_value(x + delta, clip_min, clip_max)


class _State(NamedTuple):
  """Loop state; per-example vectors are [batch]."""
  k: tf.Tensor              # iterates computed after x^(0)
  x_cur: tf.Tensor          # x^(k) (after a possible restart)
  x_prev: tf.Tensor         # x^(k-1), for the momentum term
  grad: tf.Tensor           # gradient at x_cur
  loss_cur: tf.Tensor       # loss at x_cur
  eta: tf.Tensor
  x_best: tf.Tensor
  grad_best: tf.Tensor
  loss_best: tf.Tensor
  flipped: tf.Tensor
  x_flip: tf.Tensor         # highest-loss misclassifying iterate
  loss_flip: tf.Tensor      # its loss, -inf while not flipped
  n_up: tf.Tensor           # loss increases since the last checkpoint
  k_check: tf.Tensor        # the last checkpoint, w_{j-1}
  loss_best_check: tf.Tensor  # best loss at w_{j-1}
  halved_check: tf.Tensor   # eta was halved at w_{j-1}


def apgd(logits_fn: Callable[[tf.Tensor], tf.Tensor], x, y, *, epsilon,
         norm: str = 'infinity', steps: int = 100, loss: str = 'ce',
         target_rank=2, seed, clip_min: float = 0.0, clip_max: float = 1.0,
         momentum: float = 0.75, rho: float = 0.75) -> ApgdResult:
  """One restart of APGD on a batch; no gradient flows into x or the model.

  logits_fn maps float32 [batch, ...] to logits [batch, classes] (any float dtype; the
  losses are computed in float32). y holds integer labels. epsilon may be a scalar
  tensor and, for loss='dlr_targeted', so may target_rank, so one traced graph serves
  many values. seed is a stateless seed of shape [2]. steps is the number of gradient
  steps: the attack evaluates logits_fn and its gradient steps + 1 times (plus one clean
  pass for the targeted loss), fewer if every example flips early.
  """
  if loss not in LOSSES:
    raise ValueError(f'loss={loss!r}: must be one of {LOSSES}')
  if norm not in NORMS:
    raise ValueError(f'norm={norm!r}: must be one of {NORMS}')
  ckpts = set(checkpoints(steps))  # Validates steps.
  x = tf.stop_gradient(tf.convert_to_tensor(x, tf.float32))
  y = tf.cast(y, tf.int64)
  eps = tf.cast(epsilon, x.dtype)

  if loss == 'ce':
    loss_fn = lambda z: tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=y, logits=tf.cast(z, tf.float32))
  elif loss == 'dlr':
    loss_fn = lambda z: dlr_loss(z, y)
  else:
    targets = target_classes(tf.stop_gradient(logits_fn(x)), y, target_rank)
    loss_fn = lambda z: dlr_targeted_loss(z, y, targets)

  @noinline.noinline   # the loop's pooling gradients always on oneDNN (noinline.py)
  def evaluate(x_k):
    """Per-example loss, its gradient and whether x_k is misclassified."""
    with tf.GradientTape() as tape:
      tape.watch(x_k)
      logits = logits_fn(x_k)
      losses = loss_fn(logits)
      total = tf.reduce_sum(losses)  # Examples are independent: per-example grads.
    grad = tape.gradient(total, x_k)
    wrong = tf.argmax(logits, axis=1, output_type=tf.int64) != y
    return tf.stop_gradient(losses), tf.stop_gradient(grad), wrong

  def proj(v):
    return tf.clip_by_value(x + project(v - x, norm, eps), clip_min, clip_max)

  def per_ex(v):
    return _per_example(v, x)

  x0 = _start(x, norm, eps, seed, clip_min, clip_max)
  loss0, grad0, wrong0 = evaluate(x0)
  is_checkpoint = tf.constant([k in ckpts for k in range(steps + 1)])
  state = _State(
      k=tf.constant(0), x_cur=x0, x_prev=x0, grad=grad0, loss_cur=loss0,
      eta=2.0 * eps * tf.ones_like(loss0), x_best=x0, grad_best=grad0,
      loss_best=loss0, flipped=wrong0, x_flip=x0,
      loss_flip=tf.where(wrong0, loss0, -float('inf')),
      n_up=tf.zeros_like(loss0, tf.int32), k_check=tf.constant(0),
      loss_best_check=loss0, halved_check=tf.zeros_like(wrong0))

  def body(s: _State):
    k = s.k + 1
    alpha = tf.where(s.k == 0, 1.0, momentum)  # The first step has no momentum.
    z = proj(s.x_cur + per_ex(s.eta) * direction(s.grad, norm))
    x_new = proj(s.x_cur + alpha * (z - s.x_cur) + (1.0 - alpha) * (s.x_cur - s.x_prev))
    loss_new, grad_new, wrong = evaluate(x_new)

    n_up = s.n_up + tf.cast(loss_new > s.loss_cur, tf.int32)
    better = loss_new > s.loss_best
    x_best = tf.where(per_ex(better), x_new, s.x_best)
    grad_best = tf.where(per_ex(better), grad_new, s.grad_best)
    loss_best = tf.where(better, loss_new, s.loss_best)
    new_flip = wrong & (loss_new > s.loss_flip)
    x_flip = tf.where(per_ex(new_flip), x_new, s.x_flip)
    loss_flip = tf.where(new_flip, loss_new, s.loss_flip)

    at_check = tf.gather(is_checkpoint, k)
    span = tf.cast(k - s.k_check, tf.float32)
    oscillating = tf.cast(n_up, tf.float32) < rho * span
    stalled = ~s.halved_check & (loss_best <= s.loss_best_check)
    halve = at_check & (oscillating | stalled)
    return _State(
        k=k,
        x_cur=tf.where(per_ex(halve), x_best, x_new),
        x_prev=s.x_cur,
        grad=tf.where(per_ex(halve), grad_best, grad_new),
        loss_cur=tf.where(halve, loss_best, loss_new),
        eta=tf.where(halve, 0.5 * s.eta, s.eta),
        x_best=x_best, grad_best=grad_best, loss_best=loss_best,
        flipped=s.flipped | wrong, x_flip=x_flip, loss_flip=loss_flip,
        n_up=tf.where(at_check, tf.zeros_like(n_up), n_up),
        k_check=tf.where(at_check, k, s.k_check),
        loss_best_check=tf.where(at_check, loss_best, s.loss_best_check),
        halved_check=tf.where(at_check, halve, s.halved_check))

  final = tf.while_loop(
      lambda s: (s.k < steps) & ~tf.reduce_all(s.flipped), lambda s: (body(s),),
      (state,))[0]
  return ApgdResult(
      x_adv=tf.stop_gradient(
          tf.where(per_ex(final.flipped), final.x_flip, final.x_best)),
      flipped=final.flipped,
      best_loss=tf.where(final.flipped, final.loss_flip, final.loss_best))


def apgd_restarts(logits_fn: Callable[[tf.Tensor], tf.Tensor], x, y, *,
                  restarts: int, seed, **apgd_kwargs) -> ApgdResult:
  """Runs ``restarts`` APGD restarts in one trace and keeps each example's worst case.

  Restart r uses seed fold_in(seed, r). The restarts run in a tf.while_loop, so the
  graph holds one copy of the attack; every restart attacks the whole batch (the
  evaluator compacts still-robust examples between apgd calls instead).
  """
  if restarts < 1:
    raise ValueError(f'restarts={restarts!r}: must be >= 1')
  seed = tf.convert_to_tensor(seed)

  def run(r):
    return apgd(logits_fn, x, y,
                seed=tf.random.experimental.stateless_fold_in(seed, r), **apgd_kwargs)

  best = run(tf.constant(0))
  if restarts == 1:
    return best
  return tf.while_loop(
      lambda r, _: r < restarts,
      lambda r, b: (r + 1, merge_worst_case(b, run(r))),
      (tf.constant(1), best))[1]

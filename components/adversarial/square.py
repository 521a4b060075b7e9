"""The Square attack (Andriushchenko, Croce, Flammarion, Hein, ECCV 2020), L-infinity.

Square is score-based random search: it never reads a gradient, so it is the part of
AutoAttack that still works when a model masks its gradients (quantised inputs,
saturated softmax, non-differentiable preprocessing) and makes PGD look strong.

Hand-written because no maintained library runs it batched and in-graph on TF 2.16:
the authors' reference is PyTorch/NumPy with a Python loop per iteration and per
image (about 350 s per 100 MNIST images here), and ART/foolbox wrap a framework
model from the host. Here the whole attack is one ``tf.while_loop`` over tensors, so
it compiles under ``tf.function`` next to the Evaluator's other attacks.

The algorithm, from the paper (Algorithms 1 and 3):

* start from vertical stripes: every column of every channel moves by a random
  +-epsilon, clipped into the box;
* at iteration i pick a square side h from the piecewise-constant schedule of the
  fraction p of pixels to change (``p_schedule``), a uniform window position per
  example, and a random sign per channel; inside the window the candidate is
  ``x + sign * epsilon`` (clipped), outside it is the current best point;
* keep the candidate only if the margin loss ``z_y - max_{j != y} z_j`` decreases.
  An example stops as soon as its margin is negative.

Two details follow the authors' code rather than the paper's pseudo-code: a
candidate that would not change the window (it already holds those signs) has its
signs flipped so no query is wasted (the reference resamples until the window
changes, the same distribution for one channel), and the clean input is checked
first, so an example the model already misclassifies is returned unchanged at zero
queries.

Randomness is stateless, folded per iteration, so a run is a pure function of the
seed and the first k iterations of two runs with the same seed and the same window
sides are identical.
"""
from typing import Callable, List, NamedTuple, Optional, Sequence, Union

import tensorflow as tf

from components.adversarial import local_forward

LogitsFn = Callable[[tf.Tensor], tf.Tensor]

# The paper's schedule for 10,000 queries: p halves after each of these iterations.
_P_BREAKPOINTS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
_P_REFERENCE_QUERIES = 10000


class SquareResult(NamedTuple):
  """Outcome per example.

  x_adv:   a misclassifying point if one was found, else the lowest-margin point
           visited; within epsilon (L-infinity) of x and inside the box.
  flipped: bool [batch], margin < 0.
  margin:  [batch] margin loss at x_adv (negative means misclassified).
  queries: int32 [batch], model evaluations of perturbed points until the example
           flipped or the budget ran out (0 if the clean input is misclassified).
  """
  x_adv: tf.Tensor
  flipped: tf.Tensor
  margin: tf.Tensor
  queries: tf.Tensor


def p_schedule(iteration, queries: int, p_init: float) -> tf.Tensor:
  """Fraction of pixels to change at ``iteration`` (0-based), float32 scalar.

  The paper halves p_init after iterations 10, 50, 200, 500, 1000, 2000, 4000, 6000
  and 8000 of a 10,000-query run and, for another budget, maps the iteration to
  ``iteration * 10000 // queries`` first. Integer arithmetic keeps the breakpoints
  exact. Past the budget p stays at p_init / 512.
  """
  t = tf.cast(iteration, tf.int64) * _P_REFERENCE_QUERIES // queries
  halvings = tf.reduce_sum(tf.cast(t > tf.constant(_P_BREAKPOINTS, tf.int64),
                                   tf.float32))
  return tf.cast(p_init, tf.float32) * tf.pow(0.5, halvings)


def margin_loss(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
  """Per-example ``z_y - max_{j != y} z_j``; negative exactly when misclassified.

  The attack minimises it: unlike cross-entropy it does not saturate once the true
  class loses, and its sign is the success test.
  """
  logits = tf.cast(logits, tf.float32)
  labels = tf.cast(labels, tf.int64)
  classes = tf.range(tf.shape(logits, out_type=tf.int64)[-1], dtype=tf.int64)
  is_true = classes[tf.newaxis, :] == labels[:, tf.newaxis]
  true_logit = tf.reduce_max(tf.where(is_true, logits, -float('inf')), axis=-1)
  best_other = tf.reduce_max(tf.where(is_true, -float('inf'), logits), axis=-1)
  return true_logit - best_other


def _random_sign(shape, seed) -> tf.Tensor:
  bits = tf.random.stateless_uniform(shape, seed, minval=0, maxval=2, dtype=tf.int32)
  return tf.cast(2 * bits - 1, tf.float32)


def _window_side(p: tf.Tensor, height: int, width: int) -> tf.Tensor:
  """Square side for fraction p: round(sqrt(p * H * W)), at least 1 pixel and at
  most the shorter image side (so a window position always exists)."""
  side = tf.cast(tf.round(tf.sqrt(p * float(height * width))), tf.int32)
  return tf.clip_by_value(side, 1, min(height, width))


def _local_branches(local: local_forward.LocalModel, height: int, width: int):
  """(table, spans): table[side] indexes the branch a window of that side takes;
  branch 0 is the full forward pass through the split model, branch k > 0 the
  incremental one over spans[k] feature rows. A window that touches every feature
  row takes the full pass."""
  if height != width:
    raise ValueError(f'the incremental forward pass needs square images; '
                     f'image_shape has {height}x{width}')
  side = local_forward.feature_side(height, local.stride,
                                    local.receptive_field)
  spans: List[int] = [0]
  table = [0]
  for window in range(1, height + 1):
    span = local_forward.touched_features(window, height, local.stride,
                                          local.receptive_field)
    if span >= side:
      table.append(0)
      continue
    if span not in spans:
      spans.append(span)
    table.append(spans.index(span))
  return tf.constant(table, tf.int32), spans


def square_attack(logits_fn: LogitsFn,
                  x: tf.Tensor,
                  y: tf.Tensor,
                  *,
                  epsilon: Union[float, tf.Tensor],
                  queries: int = 5000,
                  p_init: float = 0.8,
                  image_shape: Sequence[int] = (28, 28, 1),
                  seed: tf.Tensor,
                  clip_min: float = 0.0,
                  clip_max: float = 1.0,
                  local: Optional[local_forward.LocalModel] = None) -> SquareResult:
  """Untargeted L-infinity Square attack on a batch; returns a SquareResult.

  logits_fn maps float32 [batch, H*W*C] (flattened ``image_shape`` images) to
  logits; it is called on the clean batch, on the stripes, and then once per
  iteration on the examples that are not yet flipped (a gathered sub-batch, so the
  cost of an iteration shrinks as examples flip). y holds integer labels; queries is
  the Python-int budget of perturbed-point evaluations per example (the stripes
  count as the first); seed is a stateless seed, int [2].

  Flipped examples are frozen, and the single while_loop ends when every example
  has flipped or the budget is spent. The result carries no gradient.

  With ``local`` (the same classifier split where its features are local, see
  local_forward.py), a query whose window is small recomputes only the features
  under it and the head: the same search, with 2.5x fewer multiply-adds per query
  for the robust preset's CNN once the window is 1-3 pixels (1.4-1.5x faster per
  query measured, bench/README.md). Its margins equal logits_fn's up to float
  rounding (ties may then go the other way), and the returned margin and flipped
  mask are logits_fn's own at x_adv.
  """
  if not isinstance(queries, int) or queries < 1:
    raise ValueError(f'queries={queries!r}: must be a Python int >= 1')
  if not 0.0 < p_init <= 1.0:
    raise ValueError(f'p_init={p_init!r}: must be in (0, 1]')
  height, width, channels = (int(d) for d in image_shape)
  features = height * width * channels
  x = tf.stop_gradient(tf.cast(x, tf.float32))
  if x.shape.rank != 2 or (x.shape[1] is not None and x.shape[1] != features):
    raise ValueError(f'x has shape {x.shape}; expected [batch, {features}] for '
                     f'image_shape={tuple(image_shape)}')
  y = tf.cast(y, tf.int64)
  epsilon = tf.cast(epsilon, tf.float32)
  seed = tf.convert_to_tensor(seed)
  batch = tf.shape(x)[0]
  images = tf.reshape(x, [-1, height, width, channels])

  def into_box(v):
    return tf.clip_by_value(v, clip_min, clip_max)

  def margin_at(points, labels):
    return margin_loss(logits_fn(points), labels)

  init_seed, loop_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))

  # Clean check, then vertical stripes: one +-epsilon per column and channel.
  clean_margin = margin_at(x, y)
  stripes = _random_sign([batch, 1, width, channels], init_seed)
  x_stripes = tf.reshape(into_box(images + stripes * epsilon), [-1, features])
  stripes_margin = margin_at(x_stripes, y)
  clean_flipped = clean_margin < 0
  x_best = tf.where(clean_flipped[:, tf.newaxis], x, x_stripes)
  best_margin = tf.where(clean_flipped, clean_margin, stripes_margin)
  used = tf.where(clean_flipped, 0, 1)
  if local is not None:
    branch_of_side, spans = _local_branches(local, height, width)
    _, best_features = local_forward.full_logits(
        local, tf.reshape(x_best, [-1, height, width, channels]))
  else:
    best_features = tf.zeros([batch, 0])  # unused loop variable

  rows = tf.range(height)[tf.newaxis, :, tf.newaxis, tf.newaxis]
  cols = tf.range(width)[tf.newaxis, tf.newaxis, :, tf.newaxis]

  def active(margin):
    return margin >= 0  # not flipped (and a NaN margin is not worth more queries)

  def local_step(candidate, margin_old, live, best_features, row, col, side):
    """(margin_new, better, best_features) of a query through the split model; the
    branch (full pass or a static window span) follows the window side."""
    proposed = tf.reshape(candidate, [-1, height, width, channels])

    def full():
      logits, new = local_forward.full_logits(local, proposed)
      margin_new = margin_loss(logits, y)
      better = (margin_new < margin_old) & live
      return margin_new, better, tf.where(tf.reshape(better, [-1, 1, 1, 1]), new,
                                          best_features)

    def windowed(span):
      query = local_forward.windowed_query(local, proposed, best_features, row, col,
                                           span)
      margin_new = margin_loss(query.logits, y)
      better = (margin_new < margin_old) & live
      return margin_new, better, local_forward.keep(best_features, query, better)

    branches = [full] + [lambda span=span: windowed(span) for span in spans[1:]]
    return tf.switch_case(tf.gather(branch_of_side, side), branches)

  def cond(i, x_best, best_margin, used, best_features):
    del x_best, used, best_features
    return tf.logical_and(i < queries - 1, tf.reduce_any(active(best_margin)))

  def body(i, x_best, best_margin, used, best_features):
    # Draws cover the whole batch, then are gathered, so an example's proposals do
    # not depend on which other examples have flipped.
    row_seed, col_seed, sign_seed = tf.unstack(tf.random.experimental.stateless_split(
        tf.random.experimental.stateless_fold_in(loop_seed, i), 3))
    side = _window_side(p_schedule(i, queries, p_init), height, width)
    row = tf.random.stateless_uniform([batch], row_seed, minval=0,
                                      maxval=height - side + 1, dtype=tf.int32)
    col = tf.random.stateless_uniform([batch], col_seed, minval=0,
                                      maxval=width - side + 1, dtype=tf.int32)
    sign = _random_sign([batch, 1, 1, channels], sign_seed)

    live = active(best_margin)
    if local is None:
      # Only the images still standing: the cost of a query shrinks as they flip.
      index = tf.where(live)  # [n_active, 1]
      gather = lambda t: tf.gather_nd(t, index)
      scatter = lambda full, part: tf.tensor_scatter_nd_update(full, index, part)
    else:
      # The whole batch: on the robust models Square faces nearly every image stays
      # standing, and gathering the cached features would copy them every query.
      gather = lambda t: t
      scatter = lambda full, part: part
    best = gather(x_best)
    best_img = tf.reshape(best, [-1, height, width, channels])
    clean_img = gather(images)
    row_a, col_a = gather(row), gather(col)
    sign_a = gather(sign)
    # Range comparisons keep the mask [n, H, W, 1] whatever the side; rows and columns
    # are tested apart, so only one AND runs over whole images.
    r4 = row_a[:, tf.newaxis, tf.newaxis, tf.newaxis]
    c4 = col_a[:, tf.newaxis, tf.newaxis, tf.newaxis]
    in_window = (((rows >= r4) & (rows < r4 + side)) &
                 ((cols >= c4) & (cols < c4 + side)))
    window = into_box(clean_img + sign_a * epsilon)
    no_change = tf.reduce_all(~in_window | tf.equal(window, best_img), axis=[1, 2, 3])
    sign_a = tf.where(no_change[:, tf.newaxis, tf.newaxis, tf.newaxis], -sign_a, sign_a)
    window = into_box(clean_img + sign_a * epsilon)
    candidate = tf.reshape(tf.where(in_window, window, best_img), [-1, features])

    margin_old = gather(best_margin)
    if local is None:
      margin_new = margin_at(candidate, gather(y))
      better = margin_new < margin_old
    else:
      margin_new, better, best_features = local_step(
          candidate, margin_old, live, best_features, row_a, col_a, side)
    x_best = scatter(x_best, tf.where(better[:, tf.newaxis], candidate, best))
    best_margin = scatter(best_margin, tf.where(better, margin_new, margin_old))
    used = used + tf.cast(live, tf.int32)
    return i + 1, x_best, best_margin, used, best_features

  _, x_best, best_margin, used, _ = tf.while_loop(
      cond, body, (tf.constant(0), x_best, best_margin, used, best_features))
  if local is not None:
    # The verdict is the model's own (logits_fn), not the split's rounding.
    best_margin = margin_at(x_best, y)
  return SquareResult(x_adv=tf.stop_gradient(x_best), flipped=best_margin < 0,
                      margin=best_margin, queries=used)

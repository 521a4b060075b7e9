"""Tests of the Square attack: schedule and loss against hand values and NumPy, the
shape of every proposal, the invariants of the result, and two end-to-end checks:
robust accuracy equal to an independent NumPy Square on a trained MLP, and flips on
a model whose gradient is zero, where PGD finds nothing."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from components.adversarial import perturbation
from components.adversarial import square
from components.adversarial import testing

SIDE, CLASSES, HIDDEN = 8, 5, 32
SMALL = (SIDE, SIDE, 1)


# --- A small trained model on synthetic 8x8 images, shared by the end-to-end tests.

def _make_data(n, rng, templates, noise=0.3):
  y = rng.integers(0, CLASSES, size=n)
  x = np.clip(templates[y] + rng.normal(0, noise, size=(n, SIDE * SIDE)), 0, 1)
  return x.astype(np.float32), y


def _mlp(params, x):
  w1, b1, w2, b2 = params
  hidden = np.maximum(x @ w1 + b1, 0)
  return hidden @ w2 + b2, hidden


def _train_mlp(x, y, rng, steps=300, lr=0.5):
  """Full-batch gradient descent on softmax cross-entropy, in NumPy."""
  w1 = rng.normal(0, 1 / SIDE, size=(SIDE * SIDE, HIDDEN))
  b1 = np.zeros(HIDDEN)
  w2 = rng.normal(0, 1 / np.sqrt(HIDDEN), size=(HIDDEN, CLASSES))
  b2 = np.zeros(CLASSES)
  onehot = np.eye(CLASSES)[y]
  for _ in range(steps):
    z, hidden = _mlp((w1, b1, w2, b2), x)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    dz = (p - onehot) / len(x)
    dhidden = dz @ w2.T * (hidden > 0)
    w2 -= lr * hidden.T @ dz
    b2 -= lr * dz.sum(0)
    w1 -= lr * x.T @ dhidden
    b1 -= lr * dhidden.sum(0)
  return tuple(a.astype(np.float32) for a in (w1, b1, w2, b2))


@pytest.fixture(scope='module')
def synthetic():
  """5 noisy class templates; 1,000 training and 200 test points."""
  rng = np.random.default_rng(0)
  templates = rng.uniform(0.2, 0.8, size=(CLASSES, SIDE * SIDE))
  x_train, y_train = _make_data(1000, rng, templates)
  x_test, y_test = _make_data(200, rng, templates)
  return x_train, y_train, x_test, y_test, rng


def _tf_mlp(params, preprocess=lambda v: v):
  w1, b1, w2, b2 = (tf.constant(a) for a in params)
  return lambda v: tf.nn.relu(preprocess(v) @ w1 + b1) @ w2 + b2


# --- An independent NumPy Square L-inf, written from the paper (Algorithms 1, 3).

def _np_margin(z, y):
  rows = np.arange(len(y))
  others = z.copy()
  others[rows, y] = -np.inf
  return z[rows, y] - others.max(1)


def _np_p(iteration, n_queries, p_init):
  t = int(iteration / n_queries * 10000)
  for halvings, breakpoint in enumerate((10, 50, 200, 500, 1000, 2000, 4000, 6000,
                                         8000)):
    if t <= breakpoint:
      return p_init / 2**halvings
  return p_init / 512


def _np_square(predict, x, y, eps, n_queries, p_init, rng):
  """Robust margins of a one-channel Square run; resamples a no-op sign like the
  authors' code."""
  n = len(x)
  img = x.reshape(n, SIDE, SIDE)
  m_clean = _np_margin(predict(x), y)
  stripes = np.clip(img + eps * rng.choice([-1.0, 1.0], size=(n, 1, SIDE)), 0, 1)
  m_stripes = _np_margin(predict(stripes.reshape(n, -1)), y)
  done = m_clean < 0
  best = np.where(done[:, None, None], img, stripes)
  m_best = np.where(done, m_clean, m_stripes)
  grid = np.arange(SIDE)
  for it in range(n_queries - 1):
    todo = np.flatnonzero(m_best >= 0)
    if not todo.size:
      break
    p = _np_p(it, n_queries, p_init)
    s = int(min(max(round(np.sqrt(p * SIDE * SIDE)), 1), SIDE))
    r = rng.integers(0, SIDE - s + 1, size=todo.size)[:, None, None]
    c = rng.integers(0, SIDE - s + 1, size=todo.size)[:, None, None]
    window = ((grid[None, :, None] >= r) & (grid[None, :, None] < r + s) &
              (grid[None, None, :] >= c) & (grid[None, None, :] < c + s))
    sign = rng.choice([-1.0, 1.0], size=(todo.size, 1, 1))
    while True:
      cand = np.where(window, np.clip(img[todo] + eps * sign, 0, 1), best[todo])
      same = np.all(cand == best[todo], axis=(1, 2))
      if eps == 0 or not same.any():
        break
      sign[same] = rng.choice([-1.0, 1.0], size=(same.sum(), 1, 1))
    m_new = _np_margin(predict(cand.reshape(todo.size, -1)), y[todo])
    better = m_new < m_best[todo]
    best[todo[better]] = cand[better]
    m_best[todo[better]] = m_new[better]
  return m_best


# --- Schedule and loss.

@pytest.mark.parametrize('iteration,halvings', [
    (0, 0), (10, 0), (11, 1), (50, 1), (51, 2), (200, 2), (201, 3), (500, 3),
    (501, 4), (1000, 4), (1001, 5), (2000, 5), (2001, 6), (4000, 6), (4001, 7),
    (6000, 7), (6001, 8), (8000, 8), (8001, 9), (9999, 9)])
def test_p_schedule_halves_after_the_paper_breakpoints_at_10000_queries(
    iteration, halvings):
  assert float(square.p_schedule(iteration, 10000, 0.8)) == pytest.approx(
      0.8 / 2**halvings, rel=1e-6)


@pytest.mark.parametrize('iteration,halvings', [
    (5, 0), (6, 1), (25, 1), (26, 2), (100, 2), (101, 3), (250, 3), (251, 4),
    (500, 4), (501, 5), (1000, 5), (1001, 6), (2000, 6), (2001, 7), (3000, 7),
    (3001, 8), (4000, 8), (4001, 9), (4999, 9)])
def test_p_schedule_is_rescaled_to_a_5000_query_budget(iteration, halvings):
  # Iteration i of 5000 sits at i * 10000 / 5000 = 2i of the paper's schedule.
  assert float(square.p_schedule(iteration, 5000, 0.05)) == pytest.approx(
      0.05 / 2**halvings, rel=1e-6)


def test_margin_loss_matches_numpy():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(50, 7)).astype(np.float32)
  labels = rng.integers(0, 7, size=50)
  logits[0] = 1.0  # a tie: margin 0, not misclassified
  got = square.margin_loss(tf.constant(logits), tf.constant(labels)).numpy()
  np.testing.assert_allclose(got, _np_margin(logits, labels), rtol=1e-6)
  assert got[0] == 0.0
  np.testing.assert_array_equal(got[1:] < 0, logits[1:].argmax(1) != labels[1:])


# --- Proposals and result invariants.

def test_every_query_is_stripes_then_one_square_of_plus_minus_eps():
  """Eagerly records every model input: the clean batch, the stripes, then per
  iteration the stripes with one h x h window set to clip(x + sign_c * eps), h from
  p_schedule, one sign per channel, never a no-op. A 200-query budget walks the
  side through 5 (the full width), 4, 3, 2, 1 in its first 40 iterations."""
  height, width, channels, eps, budget = 6, 5, 2, 0.25, 200
  rng = np.random.default_rng(2)
  x = rng.uniform(0.3, 0.7, size=(3, height * width * channels)).astype(np.float32)
  x[:, :7] = [0.0, 1.0, 0.1, 0.9, 0.0, 1.0, 0.5]  # row 0: pixels the box clips
  seen = []

  def never_improves(v):
    seen.append(v.numpy())
    return tf.tile([[5.0, 0.0]], [tf.shape(v)[0], 1])  # margin 5 everywhere

  result = square.square_attack(never_improves, x, tf.zeros([3], tf.int64),
                                epsilon=eps, queries=budget, p_init=1.0,
                                image_shape=(height, width, channels),
                                seed=tf.constant([4, 2]))
  assert len(seen) == budget + 1  # clean + stripes + (budget - 1) iterations
  np.testing.assert_array_equal(seen[0], x)
  img = x.reshape(-1, height, width, channels)
  stripes = seen[1].reshape(img.shape)
  column_sign = np.sign(stripes - img)[:, -1:]  # the last row is never clipped
  assert np.all(np.abs(column_sign) == 1)
  np.testing.assert_allclose(stripes, np.clip(img + eps * column_sign, 0, 1))
  np.testing.assert_array_equal(result.x_adv, seen[1])  # nothing was accepted
  np.testing.assert_array_equal(result.queries, [budget] * 3)

  for proposal in seen[2:]:
    assert not np.any(np.all(proposal == seen[1], axis=1))  # no query wasted
  signs = [np.array(s) for s in np.ndindex(*(2,) * channels)]
  sides = set()
  for i, proposal in enumerate(seen[2:42]):
    p = float(square.p_schedule(i, budget, 1.0))
    side = min(max(int(round(np.sqrt(p * height * width))), 1), width)
    sides.add(side)
    for n, cand in enumerate(proposal.reshape(img.shape)):
      matches = False
      for r in range(height - side + 1):
        for c in range(width - side + 1):
          for bits in signs:
            expect = stripes[n].copy()
            expect[r:r + side, c:c + side] = np.clip(
                img[n, r:r + side, c:c + side] + eps * (2 * bits - 1), 0, 1)
            matches |= np.array_equal(cand, expect)
      assert matches, f'iteration {i} example {n}: not one {side}x{side} square'
  assert sides == {5, 4, 3, 2, 1}


@pytest.fixture(scope='module')
def linear_28x28():
  """A random linear model on 784 pixels: about half the points flip at eps 0.05."""
  rng = np.random.default_rng(3)
  w = tf.constant(rng.normal(0, 0.05, size=(784, 10)), tf.float32)
  x = tf.constant(rng.uniform(0, 1, size=(32, 784)), tf.float32)
  y = tf.argmax(x @ w, axis=1)
  y = tf.tensor_scatter_nd_update(y, [[0], [1]], (y[:2] + 1) % 10)  # 2 wrong
  return w, x, y


def test_result_invariants_and_query_accounting_under_tf_function(linear_28x28):
  w, x, y = linear_28x28
  rows_evaluated = tf.Variable(0, dtype=tf.int32)

  def logits_fn(v):
    rows_evaluated.assign_add(tf.shape(v)[0])
    return v @ w

  budget, eps = 300, 0.05
  attack = tf.function(lambda x, y, seed: square.square_attack(
      logits_fn, x, y, epsilon=eps, queries=budget, seed=seed))
  r = attack(x, y, tf.constant([0, 1]))
  x_adv, margin, queries = r.x_adv.numpy(), r.margin.numpy(), r.queries.numpy()
  flipped = r.flipped.numpy()
  print(f'\n28x28 linear: {flipped.sum()}/32 flipped, queries {queries.tolist()}')
  assert np.abs(x_adv - x.numpy()).max() <= eps + 1e-6
  assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
  np.testing.assert_allclose(
      margin, square.margin_loss(x_adv @ w, y).numpy(), atol=1e-5)
  np.testing.assert_array_equal(flipped, margin < 0)
  assert np.all(queries <= budget)
  np.testing.assert_array_equal(queries[:2], [0, 0])  # clean misclassified: free
  np.testing.assert_array_equal(x_adv[:2], x.numpy()[:2])
  assert np.all(queries[2:] >= 1)
  assert np.all(queries[~flipped] == budget)
  assert 2 < flipped.sum() < 32  # neither nothing nor everything: a real test
  # Every model row is the clean batch, the stripes, or a counted query.
  assert int(rows_evaluated.numpy()) == 2 * 32 + queries[2:].sum() - 30


def test_stops_when_every_example_has_flipped(linear_28x28):
  w, x, y = linear_28x28
  rows_evaluated = tf.Variable(0, dtype=tf.int32)

  def logits_fn(v):
    rows_evaluated.assign_add(tf.shape(v)[0])
    return v @ w

  r = tf.function(lambda: square.square_attack(
      logits_fn, x, y, epsilon=0.3, queries=10000, seed=tf.constant([5, 5])))()
  assert r.flipped.numpy().all()
  assert r.queries.numpy().max() < 1000
  assert int(rows_evaluated.numpy()) < 1000 * 32


def test_zero_epsilon_returns_x_and_flags_exactly_the_clean_errors(linear_28x28):
  w, x, y = linear_28x28
  y = tf.constant(np.random.default_rng(4).integers(0, 10, size=32))  # mostly wrong
  r = tf.function(lambda: square.square_attack(
      lambda v: v @ w, x, y, epsilon=0.0, queries=30, seed=tf.constant([0, 0])))()
  np.testing.assert_array_equal(r.x_adv.numpy(), x.numpy())
  clean_wrong = (x @ w).numpy().argmax(1) != y.numpy()
  assert 0 < clean_wrong.sum() < 32
  np.testing.assert_array_equal(r.flipped.numpy(), clean_wrong)


def test_leaves_inputs_and_weights_alone_and_is_reproducible_from_the_seed(
    synthetic):
  _, _, x_test, y_test, _ = synthetic
  model = keras.Sequential([keras.layers.Dense(16, activation='relu'),
                            keras.layers.Dense(CLASSES)])
  x = tf.constant(x_test[:40])
  y = tf.constant(y_test[:40])
  model(x)
  weights = [v.numpy().copy() for v in model.weights]
  x_before = x.numpy().copy()
  # autograph=False: the attack needs none, and converting tf_keras's call stack
  # costs about 20 s once per process.
  attack = tf.function(lambda x, y, seed: square.square_attack(
      lambda v: model(v, training=False), x, y, epsilon=0.1, queries=100,
      image_shape=SMALL, seed=seed), autograph=False)
  first = attack(x, y, tf.constant([7, 8]))
  again = attack(x, y, tf.constant([7, 8]))
  other = attack(x, y, tf.constant([8, 7]))
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  assert not np.array_equal(first.x_adv.numpy(), other.x_adv.numpy())
  np.testing.assert_array_equal(x.numpy(), x_before)
  for v, before in zip(model.weights, weights):
    np.testing.assert_array_equal(v.numpy(), before)


def test_rejects_a_bad_budget_and_a_wrong_image_shape():
  x = tf.zeros([2, 64])
  args = dict(epsilon=0.1, image_shape=SMALL, seed=tf.constant([0, 0]))
  with pytest.raises(ValueError, match='queries'):
    square.square_attack(lambda v: v, x, tf.zeros([2], tf.int64), queries=0, **args)
  with pytest.raises(ValueError, match='image_shape'):
    square.square_attack(lambda v: v, x, tf.zeros([2], tf.int64),
                         **{**args, 'image_shape': (28, 28, 1)})


def test_more_queries_never_flip_fewer(synthetic):
  """With a window side fixed at 1 pixel (tiny p_init) the schedule no longer
  depends on the budget, and the RNG folded per iteration makes a 50-query run the
  exact prefix of a 500-query run. With the default p_init the schedule is rescaled
  to each budget, so only the count is compared."""
  x_train, y_train, x_test, y_test, rng = synthetic
  params = _train_mlp(x_train, y_train, np.random.default_rng(5))
  attack = tf.function(lambda budget, p_init: square.square_attack(
      _tf_mlp(params), x_test, y_test, epsilon=0.15, queries=budget, p_init=p_init,
      image_shape=SMALL, seed=tf.constant([1, 1])))
  short, long = attack(50, 0.001), attack(500, 0.001)
  f50, f500 = short.flipped.numpy(), long.flipped.numpy()
  print(f'\nside-1 windows: {f50.sum()} flipped at 50 queries, {f500.sum()} at 500')
  assert 0 < f50.sum() < f500.sum()
  assert np.all(f500[f50])
  np.testing.assert_array_equal(short.x_adv.numpy()[f50], long.x_adv.numpy()[f50])
  np.testing.assert_array_equal(short.queries.numpy()[f50],
                                long.queries.numpy()[f50])
  default50, default500 = attack(50, 0.8), attack(500, 0.8)
  d50, d500 = default50.flipped.numpy(), default500.flipped.numpy()
  print(f'p_init 0.8: {d50.sum()} flipped at 50 queries, {d500.sum()} at 500, '
        f'{(d50 & ~d500).sum()} flipped only at 50')
  assert d500.sum() >= d50.sum()


# --- End to end.

def test_robust_accuracy_matches_an_independent_numpy_square(synthetic):
  """Same model, eps, budget and p_init; different RNGs, so the robust accuracies
  may differ by sampling noise only: tolerance 5 points on 200 points."""
  x_train, y_train, x_test, y_test, _ = synthetic
  params = _train_mlp(x_train, y_train, np.random.default_rng(6))
  eps, budget = 0.1, 1000
  clean = (_mlp(params, x_test)[0].argmax(1) == y_test).mean()
  r = tf.function(lambda: square.square_attack(
      _tf_mlp(params), x_test, y_test, epsilon=eps, queries=budget, p_init=0.8,
      image_shape=SMALL, seed=tf.constant([0, 6])))()
  tf_robust = 1 - r.flipped.numpy().mean()
  np_margin = _np_square(lambda v: _mlp(params, v)[0], x_test, y_test, eps, budget,
                         0.8, np.random.default_rng(6))
  np_robust = (np_margin >= 0).mean()
  both = (~r.flipped.numpy() == (np_margin >= 0)).mean()
  print(f'\n200 points, eps={eps}, {budget} queries: clean {clean:.1%}, robust '
        f'TF {tf_robust:.1%} vs NumPy {np_robust:.1%}; same outcome on {both:.1%}; '
        f'median queries of TF flips {np.median(r.queries.numpy()[r.flipped.numpy()])}')
  assert clean > 0.95
  assert 0.3 <= tf_robust <= 0.7 and 0.3 <= np_robust <= 0.7
  assert abs(tf_robust - np_robust) <= 0.05


def test_catches_gradient_masking_that_stops_pgd(synthetic):
  """The model reads its input through a 4-level quantiser whose gradient is zero
  (the true derivative of a step function). PGD-40 with a random start gets no
  signal; Square, reading only scores, still flips a large share."""
  x_train, y_train, x_test, y_test, _ = synthetic
  levels, eps = 4, 0.1
  q = lambda v: np.round(v * (levels - 1)) / (levels - 1)
  params = _train_mlp(q(x_train), y_train, np.random.default_rng(7))

  @tf.custom_gradient
  def quantise(v):
    return tf.round(v * (levels - 1)) / (levels - 1), tf.zeros_like

  logits_fn = _tf_mlp(params, quantise)
  x, y = tf.constant(x_test), tf.constant(y_test)

  def ce_grad(v):
    return perturbation.input_gradient(lambda u: tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits_fn(u))),
                                       v)

  assert not np.any(ce_grad(x).numpy())  # the gradient is useless everywhere
  x_pgd = perturbation.adversarial_neighbor(
      x, ce_grad, step_size=eps / 4, iterations=40, epsilon=eps, random_init=True,
      seed=tf.constant([0, 1]))
  correct = logits_fn(x).numpy().argmax(1) == y_test
  pgd_flips = (correct & (logits_fn(x_pgd).numpy().argmax(1) != y_test)).sum()
  r = tf.function(lambda: square.square_attack(
      logits_fn, x, y, epsilon=eps, queries=1000, image_shape=SMALL,
      seed=tf.constant([3, 4])))()
  square_flips = (correct & r.flipped.numpy()).sum()
  print(f'\nquantised model, eps={eps}: {correct.sum()}/200 clean correct; '
        f'PGD-40 flips {pgd_flips}, Square-1000 flips {square_flips}')
  assert correct.mean() > 0.95
  assert pgd_flips <= 0.05 * correct.sum()
  assert square_flips >= 0.3 * correct.sum()


@pytest.mark.parametrize('pooled', [False, True])
def test_the_incremental_forward_pass_runs_the_same_search(pooled):
  """Through a model's split, Square makes the same decisions as through its logits,
  up to ties: a window change that ReLU or max-pooling hides leaves the margin equal,
  and a one-ulp difference between a patch's and the whole map's convolution may
  then keep the point in one run and not the other. So the runs agree on almost
  every image, not on all, and the verdict is the model's own logits either way."""
  model, logits_fn = testing.small_cnn(seed=4, pooled=pooled)
  rng = np.random.default_rng(5)
  x = rng.uniform(size=(48, testing.SIDE ** 2)).astype(np.float32)
  y = np.argmax(logits_fn(x), axis=-1)   # every clean point correct
  image_shape = (testing.SIDE, testing.SIDE, 1)
  full, incremental = (
      square.square_attack(logits_fn, x, y, epsilon=0.01, queries=300,
                           image_shape=image_shape, seed=tf.constant([7, 8]), local=local)
      for local in (None, model))
  flips = [int(np.sum(r.flipped)) for r in (full, incremental)]
  assert 10 <= flips[0] <= len(x) - 10
  assert abs(flips[0] - flips[1]) <= 2
  same = np.all(np.asarray(full.x_adv) == np.asarray(incremental.x_adv), axis=1)
  assert np.sum(same) >= len(x) - 3
  np.testing.assert_array_equal(np.asarray(full.queries)[same],
                                np.asarray(incremental.queries)[same])
  np.testing.assert_array_equal(full.flipped.numpy()[same],
                                incremental.flipped.numpy()[same])
  np.testing.assert_allclose(  # the verdict is logits_fn's, at the returned points
      incremental.margin, square.margin_loss(logits_fn(incremental.x_adv), y), atol=0)
  assert np.max(np.abs(incremental.x_adv - x)) <= 0.01 + 1e-6

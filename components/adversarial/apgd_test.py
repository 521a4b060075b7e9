"""Tests of APGD: closed forms, invariants, and a differential test against an
independent NumPy implementation of the paper's Algorithm 1 on a ReLU MLP."""
import math

import numpy as np
import pytest
import tensorflow as tf

from components.adversarial import apgd
from components.adversarial import perturbation

# --- A small non-convex problem: a 2-layer ReLU MLP trained in NumPy. ---------------
# The first layer starts large (8 / sqrt(D)) with biases cutting through the data, so
# ReLU patterns change inside the epsilon ball and the loss is not linear there.
D, K, H = 64, 5, 256
N_EVAL = 200
EPS = 0.07         # L-infinity radius, chosen so robust accuracy is mid-range.
EPS_L2 = 0.5
STEPS = 100


def _make_problem():
  rng = np.random.default_rng(0)
  mu = rng.uniform(0.25, 0.75, size=(K, D))

  def sample(n):
    y = np.arange(n) % K
    return np.clip(mu[y] + rng.normal(0, 0.25, size=(n, D)), 0, 1), y

  x_train, y_train = sample(500)
  x_eval, y_eval = sample(N_EVAL)
  w1 = rng.normal(0, 8 / np.sqrt(D), (D, H))
  b1 = -mu.mean(0) @ w1 + rng.normal(0, 4, H)
  w2 = rng.normal(0, 1 / np.sqrt(H), (H, K))
  b2 = np.zeros(K)
  for _ in range(300):  # Full-batch gradient descent on the mean cross-entropy.
    pre = x_train @ w1 + b1
    h = np.maximum(pre, 0)
    z = h @ w2 + b2
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    dz = (p - np.eye(K)[y_train]) / len(y_train)
    dh = dz @ w2.T * (pre > 0)
    w2 -= 0.05 * h.T @ dz
    b2 -= 0.05 * dz.sum(0)
    w1 -= 0.05 * x_train.T @ dh
    b1 -= 0.05 * dh.sum(0)
  return (w1, b1, w2, b2), x_eval, y_eval


PARAMS, X_EVAL, Y_EVAL = _make_problem()
TF_PARAMS = [tf.constant(p, tf.float32) for p in PARAMS]


def tf_logits(x):
  w1, b1, w2, b2 = TF_PARAMS
  return tf.nn.relu(x @ w1 + b1) @ w2 + b2


# --- Independent NumPy reference (float64, closed-form input gradients). ------------
def np_logits(x):
  w1, b1, w2, b2 = PARAMS
  return np.maximum(x @ w1 + b1, 0) @ w2 + b2


def np_loss_and_input_grad(x, y, target=None):
  """CE (target None) or targeted DLR per example, its gradient w.r.t. x, and the
  prediction."""
  w1, b1, w2, b2 = PARAMS
  pre = x @ w1 + b1
  z = np.maximum(pre, 0) @ w2 + b2
  rows = np.arange(len(y))
  onehot = np.eye(K)[y]
  if target is None:
    zmax = z.max(1, keepdims=True)
    p = np.exp(z - zmax)
    p /= p.sum(1, keepdims=True)
    loss = np.log(np.exp(z - zmax).sum(1)) + zmax[:, 0] - z[rows, y]
    dz = p - onehot
  else:
    order = np.argsort(-z, axis=1)
    zs = z[rows[:, None], order]
    num = z[rows, y] - z[rows, target]
    den = zs[:, 0] - 0.5 * (zs[:, 2] + zs[:, 3]) + 1e-12
    loss = -num / den
    d_num = onehot - np.eye(K)[target]
    d_den = (np.eye(K)[order[:, 0]] - 0.5 * np.eye(K)[order[:, 2]]
             - 0.5 * np.eye(K)[order[:, 3]])
    dz = -d_num / den[:, None] + (num / den ** 2)[:, None] * d_den
  dx = ((dz @ w2.T) * (pre > 0)) @ w1.T
  return loss, dx, z.argmax(1)


def np_apgd_linf(x, y, eps, steps, start, target=None, rho=0.75, alpha=0.75):
  """Algorithm 1 of Croce & Hein (2020), L-infinity, written from the paper, from the
  starting point ``start``; returns per example whether any iterate was misclassified,
  the best loss and the best point."""
  p = [0.0, 0.22]
  while p[-1] + max(p[-1] - p[-2] - 0.03, 0.06) <= 1 + 1e-9:
    p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
  w = sorted({int(math.ceil(round(pj * steps, 6))) for pj in p})
  lo, hi = np.maximum(x - eps, 0.0), np.minimum(x + eps, 1.0)

  def proj(v):
    return np.clip(v, lo, hi)

  def f(v):
    return np_loss_and_input_grad(v, y, target)

  x_k = proj(start)
  f_k, g_k, pred = f(x_k)
  broken = pred != y
  history = [f_k]                       # f(x^(i)), i = 0..k
  x_max, f_max, g_max = x_k, f_k, g_k
  eta = np.full(len(y), 2.0 * eps)
  x_prev = x_k
  w_prev, halved_prev, f_max_prev = 0, np.zeros(len(y), bool), f_max
  for k in range(1, steps + 1):
    z = proj(x_k + eta[:, None] * np.sign(g_k))
    if k == 1:
      x_next = z
    else:
      x_next = proj(x_k + alpha * (z - x_k) + (1 - alpha) * (x_k - x_prev))
    x_prev, x_k = x_k, x_next
    f_k, g_k, pred = f(x_k)
    broken |= pred != y
    history.append(f_k)
    up = f_k > f_max
    x_max = np.where(up[:, None], x_k, x_max)
    g_max = np.where(up[:, None], g_k, g_max)
    f_max = np.where(up, f_k, f_max)
    if k in w:
      increases = sum((history[i + 1] > history[i]).astype(int) for i in range(w_prev, k))
      cond1 = increases < rho * (k - w_prev)
      cond2 = ~halved_prev & (f_max == f_max_prev)
      halve = cond1 | cond2
      eta = np.where(halve, eta / 2, eta)
      x_k = np.where(halve[:, None], x_max, x_k)
      g_k = np.where(halve[:, None], g_max, g_k)
      history[k] = np.where(halve, f_max, f_k)
      w_prev, halved_prev, f_max_prev = k, halve, f_max
  return broken, f_max, x_max


# --- Helpers. ------------------------------------------------------------------------
def _seed(i):
  return tf.constant([i, 17], tf.int64)


@tf.function
def _tf_apgd_ce(x, y, eps, seed, steps=STEPS, norm='infinity'):
  return apgd.apgd(tf_logits, x, y, epsilon=eps, norm=norm, steps=steps, seed=seed)


@tf.function
def _tf_apgd_t(x, y, eps, seed, rank, steps=STEPS):
  return apgd.apgd(tf_logits, x, y, epsilon=eps, steps=steps, loss='dlr_targeted',
                   target_rank=rank, seed=seed)


def _ce(x, y):
  return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=tf_logits(x))


X_TF = tf.constant(X_EVAL, tf.float32)
Y_TF = tf.constant(Y_EVAL, tf.int64)
CLEAN_OK = np_logits(X_EVAL).argmax(1) == Y_EVAL


# --- Closed forms. -------------------------------------------------------------------
def test_checkpoints_follow_the_papers_formula():
  # p = 0, .22, .41, .57, .70, .80, .87, .93, .99 (next 1.05 > 1).
  assert apgd.checkpoints(100) == [0, 22, 41, 57, 70, 80, 87, 93, 99]
  assert apgd.checkpoints(10) == [0, 3, 5, 6, 7, 8, 9, 10]
  assert apgd.checkpoints(1000)[:3] == [0, 220, 410]
  with pytest.raises(ValueError):
    apgd.checkpoints(0)


def test_dlr_losses_match_numpy_formulas():
  rng = np.random.default_rng(1)
  z = rng.normal(size=(50, 7)).astype(np.float32)
  y = rng.integers(0, 7, size=50)
  t = (y + rng.integers(1, 7, size=50)) % 7
  zs = -np.sort(-z, axis=1)
  rows = np.arange(50)
  others = np.where(np.eye(7, dtype=bool)[y], -np.inf, z).max(1)
  expected = -(z[rows, y] - others) / (zs[:, 0] - zs[:, 2] + 1e-12)
  np.testing.assert_allclose(apgd.dlr_loss(z, y), expected, rtol=1e-5, atol=1e-6)
  expected_t = -(z[rows, y] - z[rows, t]) / (zs[:, 0] - (zs[:, 2] + zs[:, 3]) / 2 + 1e-12)
  np.testing.assert_allclose(apgd.dlr_targeted_loss(z, y, t), expected_t, rtol=1e-5,
                             atol=1e-6)


def test_target_classes_ranks_clean_logits():
  z = tf.constant([[0.1, 3.0, 2.0, -1.0, 0.5], [5.0, 4.0, 3.0, 2.0, 1.0]])
  y = tf.constant([1, 0], tf.int64)
  assert apgd.target_classes(z, y, 2).numpy().tolist() == [2, 1]
  assert apgd.target_classes(z, y, 3).numpy().tolist() == [4, 2]
  assert apgd.target_classes(z, y, tf.constant(5)).numpy().tolist() == [3, 4]


# --- Invariants. ---------------------------------------------------------------------
# The tf.function traces are shared between tests (epsilon and seed are tensors), which
# keeps the file fast: each distinct steps/norm/loss costs one trace.
@pytest.mark.parametrize('norm,eps,steps', [('infinity', EPS, STEPS), ('l2', EPS_L2, 10)])
def test_x_adv_is_inside_the_ball_and_the_box(norm, eps, steps):
  res = _tf_apgd_ce(X_TF, Y_TF, tf.constant(eps), _seed(0), steps=steps, norm=norm)
  delta = res.x_adv.numpy() - X_EVAL.astype(np.float32)
  if norm == 'infinity':
    assert np.abs(delta).max() <= eps + 1e-6
  else:
    assert np.linalg.norm(delta, axis=1).max() <= eps * (1 + 1e-5)
    assert np.linalg.norm(delta, axis=1).max() > eps / 2   # It did move.
  assert res.x_adv.numpy().min() >= 0.0 and res.x_adv.numpy().max() <= 1.0


def test_best_loss_is_the_loss_at_x_adv_and_beats_the_start():
  eps = tf.constant(EPS)
  res = _tf_apgd_ce(X_TF, Y_TF, eps, _seed(3))
  flipped = res.flipped.numpy()
  assert 0 < flipped.sum() < N_EVAL
  loss_at_x_adv = _ce(res.x_adv, Y_TF).numpy()
  np.testing.assert_allclose(res.best_loss, loss_at_x_adv, rtol=1e-5, atol=1e-7)
  assert (tf_logits(res.x_adv).numpy().argmax(1) != Y_EVAL)[flipped].all()
  start = apgd._start(X_TF, 'infinity', eps, _seed(3), 0.0, 1.0)
  loss_at_start = _ce(start, Y_TF).numpy()[~flipped]
  assert (res.best_loss.numpy()[~flipped] >= loss_at_start).all()
  assert (res.best_loss.numpy()[~flipped] > 1.5 * loss_at_start).mean() > 0.9


@pytest.mark.parametrize('loss', apgd.LOSSES)
def test_zero_epsilon_returns_x_and_flags_clean_errors(loss):
  x = tf.constant(X_EVAL[:40], tf.float32)
  y = tf.constant(Y_EVAL[:40], tf.int64)
  # Make some examples clean errors: label them with their least likely class.
  y = tf.where(tf.range(40) % 4 == 0, tf.argmin(tf_logits(x), 1), y)
  res = apgd.apgd(tf_logits, x, y, epsilon=0.0, steps=3, loss=loss, seed=_seed(0))
  np.testing.assert_array_equal(res.x_adv, x)
  np.testing.assert_array_equal(res.flipped, tf.argmax(tf_logits(x), 1) != y)
  assert res.flipped.numpy().sum() == 10


def test_inputs_and_keras_weights_are_unchanged():
  tf.keras.utils.set_random_seed(0)
  model = tf.keras.Sequential([tf.keras.Input((D,)), tf.keras.layers.Dense(16, 'relu'),
                               tf.keras.layers.Dense(K)])
  before = [w.copy() for w in model.get_weights()]
  x = X_EVAL[:32].astype(np.float32)
  x_copy = x.copy()
  y = Y_EVAL[:32]
  res = apgd.apgd(model, x, y, epsilon=EPS, steps=3, seed=_seed(0))
  tf.function(lambda: apgd.apgd(model, x, y, epsilon=EPS, steps=10, loss='dlr_targeted',
                                seed=_seed(1)))()
  assert res.x_adv.shape == x.shape
  np.testing.assert_array_equal(x, x_copy)
  for b, a in zip(before, model.get_weights()):
    np.testing.assert_array_equal(a, b)


def test_tf_function_is_reproducible_from_the_seed():
  eps = tf.constant(EPS)
  a, b, c = (_tf_apgd_ce(X_TF, Y_TF, eps, _seed(s), steps=10) for s in (5, 5, 6))
  np.testing.assert_array_equal(a.x_adv, b.x_adv)
  np.testing.assert_array_equal(a.best_loss, b.best_loss)
  assert np.abs(a.x_adv.numpy() - c.x_adv.numpy()).max() > 1e-3
  start5, start6 = (apgd._start(X_TF, 'infinity', eps, _seed(s), 0.0, 1.0).numpy()
                    for s in (5, 6))
  assert np.mean(start5 != start6) > 0.9


def test_more_steps_flip_at_least_as_many():
  eps = tf.constant(EPS)
  few = sum(_tf_apgd_ce(X_TF, Y_TF, eps, _seed(s), steps=10).flipped.numpy().sum()
            for s in range(3))
  many = sum(_tf_apgd_ce(X_TF, Y_TF, eps, _seed(s)).flipped.numpy().sum()
             for s in range(3))
  print(f'\nflipped over 3 seeds x {N_EVAL}: 10 steps {few}, 100 steps {many}')
  assert many >= few


def test_restarts_merge_per_example():
  eps = tf.constant(EPS)
  runs = [_tf_apgd_ce(X_TF, Y_TF, eps, tf.cast(
      tf.random.experimental.stateless_fold_in(_seed(0), r), tf.int64), steps=10)
          for r in range(3)]
  merged = tf.function(lambda: apgd.apgd_restarts(
      tf_logits, X_TF, Y_TF, restarts=3, epsilon=EPS, steps=10, seed=_seed(0)))()
  any_flip = runs[0].flipped | runs[1].flipped | runs[2].flipped
  np.testing.assert_array_equal(merged.flipped, any_flip)
  not_flipped = ~any_flip.numpy()
  best = np.max([r.best_loss.numpy() for r in runs], axis=0)
  np.testing.assert_allclose(merged.best_loss.numpy()[not_flipped], best[not_flipped],
                             rtol=1e-6)
  # merge_worst_case: flipped beats not flipped, else the higher loss.
  a = apgd.ApgdResult(X_TF[:3], tf.constant([True, False, False]),
                      tf.constant([0., 0, 2]))
  b = apgd.ApgdResult(X_TF[:3] + 1, tf.constant([False, False, True]),
                      tf.constant([1., 1, 1]))
  m = apgd.merge_worst_case(a, b)
  np.testing.assert_array_equal(m.x_adv, (X_TF[:3] + [[0.], [1], [1]]).numpy())
  np.testing.assert_array_equal(m.flipped, [True, False, True])
  np.testing.assert_array_equal(m.best_loss, [0.0, 1.0, 1.0])


# --- Differential tests against the NumPy reference. --------------------------------
def _robust_acc(flipped):
  return 100.0 * np.mean(CLEAN_OK & ~flipped)


def test_robust_accuracy_matches_numpy_reference_and_beats_pgd():
  """Independent random starts: the robust accuracies must agree statistically."""
  rng = np.random.default_rng(123)
  eps = tf.constant(EPS)
  start = lambda: X_EVAL + rng.uniform(-EPS, EPS, size=X_EVAL.shape)
  tf_ce = _tf_apgd_ce(X_TF, Y_TF, eps, _seed(0)).flipped.numpy()
  np_ce = np_apgd_linf(X_EVAL, Y_EVAL, EPS, STEPS, start())[0]
  order = np.argsort(-np_logits(X_EVAL), axis=1)
  tf_t = np.zeros(N_EVAL, bool)
  np_t = np.zeros(N_EVAL, bool)
  for r in range(2, K + 1):   # Targeted over the K - 1 other classes.
    tf_t |= _tf_apgd_t(X_TF, Y_TF, eps, _seed(r), tf.constant(r)).flipped.numpy()
    np_t |= np_apgd_linf(X_EVAL, Y_EVAL, EPS, STEPS, start(), target=order[:, r - 1])[0]

  total_ce = lambda u: tf.reduce_sum(_ce(u, Y_TF))
  grad_fn = lambda v: perturbation.input_gradient(total_ce, v)
  x_pgd = tf.function(lambda: perturbation.adversarial_neighbor(
      X_TF, grad_fn, step_size=EPS / 4, iterations=STEPS, epsilon=EPS,
      random_init=True, seed=_seed(0)))()
  pgd_acc = 100.0 * np.mean(CLEAN_OK & (tf_logits(x_pgd).numpy().argmax(1) == Y_EVAL))
  acc = {name: _robust_acc(f) for name, f in
         [('tf_ce', tf_ce), ('np_ce', np_ce), ('tf_t', tf_t), ('np_t', np_t)]}
  print(f'\nN={N_EVAL} eps={EPS} steps={STEPS} clean {100 * CLEAN_OK.mean():.1f}%'
        f'\n  APGD-CE robust acc: TF {acc["tf_ce"]:.1f}%  NumPy {acc["np_ce"]:.1f}%'
        f'\n  APGD-T  robust acc: TF {acc["tf_t"]:.1f}%  NumPy {acc["np_t"]:.1f}%'
        f'\n  PGD-{STEPS} (step eps/4) robust acc: {pgd_acc:.1f}%')
  assert 30 <= acc['tf_ce'] <= 70
  assert abs(acc['tf_ce'] - acc['np_ce']) <= 4.0   # 4 points = 8 of 200 examples.
  assert abs(acc['tf_t'] - acc['np_t']) <= 4.0
  assert acc['tf_ce'] <= pgd_acc + 1.0


@pytest.mark.parametrize('rank', [None, 2, K])
def test_trajectories_match_numpy_reference_from_the_same_start(rank):
  """Same start (the TF seed's draw): per example, the same outcome, best loss and
  best point.

  float32 and float64 part ways where two losses nearly tie (CE in the small-step tail),
  so some best points differ slightly (90/98 agree within eps/20 for CE, all for the
  targeted runs). Removing momentum, halving, the restart from the best point, or
  shifting the checkpoints by one step drops agreement to 20-70%, failing this test.
  """
  eps = tf.constant(EPS)
  start = apgd._start(X_TF, 'infinity', eps, _seed(7), 0.0, 1.0).numpy()
  start = start.astype(np.float64)
  if rank is None:
    res = _tf_apgd_ce(X_TF, Y_TF, eps, _seed(7))
    target = None
  else:
    res = _tf_apgd_t(X_TF, Y_TF, eps, _seed(7), tf.constant(rank))
    target = np.argsort(-np_logits(X_EVAL), axis=1)[:, rank - 1]
  np_flipped, np_best, np_x_best = np_apgd_linf(X_EVAL, Y_EVAL, EPS, STEPS, start,
                                                target=target)
  tf_flipped = res.flipped.numpy()
  robust = ~tf_flipped & ~np_flipped
  loss_close = np.isclose(res.best_loss.numpy(), np_best, rtol=1e-3, atol=1e-4)[robust]
  point_close = (np.abs(res.x_adv.numpy() - np_x_best).max(1) < EPS / 20)[robust]
  print(f'\nsame start, target rank {rank}: flips TF {tf_flipped.sum()} NumPy '
        f'{np_flipped.sum()} (differ on {np.sum(tf_flipped != np_flipped)}); on '
        f'{robust.sum()} robust examples best loss equal on {loss_close.sum()}, best '
        f'point equal on {point_close.sum()}')
  assert np.sum(tf_flipped != np_flipped) <= 2
  assert loss_close.mean() >= 0.95
  assert point_close.mean() >= 0.85

"""Tests of FAB-T: the projection against a linear program, the attack against the
closed-form minimum on a linear model, and a differential test against an
independent NumPy implementation written from the paper, on apgd_test's ReLU MLP."""
import numpy as np
import pytest
import tensorflow as tf
from scipy import optimize

from components.adversarial import fab
from components.adversarial.apgd_test import (EPS, K, PARAMS, X_EVAL, Y_EVAL, np_logits,
                                              tf_logits)

STEPS = 100


# --- The projection ------------------------------------------------------------------
def _lp_projection(p, w, b, lo, hi):
  """min t s.t. |delta_i| <= t, w . (p + delta) + b = 0, lo <= p + delta <= hi, by
  scipy's LP solver; variables (delta, t)."""
  d = len(p)
  cost = np.r_[np.zeros(d), 1.0]
  eye = np.eye(d)
  a_ub = np.block([[eye, -np.ones((d, 1))], [-eye, -np.ones((d, 1))]])
  bounds = [(lo - pi, hi - pi) for pi in p] + [(0, None)]
  res = optimize.linprog(cost, A_ub=a_ub, b_ub=np.zeros(2 * d),
                         A_eq=np.r_[w, 0.0][None], b_eq=[-(w @ p + b)], bounds=bounds)
  return res


def test_linf_projection_is_the_linear_programs_optimum():
  rng = np.random.default_rng(0)
  n, d = 40, 12
  p = rng.uniform(0, 1, (n, d))
  w = rng.normal(0, 1, (n, d)) * (rng.uniform(size=(n, d)) > 0.2)   # some zeros
  b = rng.normal(0, 1.5, n)
  delta = fab.linf_projection(tf.constant(p, tf.float32), tf.constant(w, tf.float32),
                              tf.constant(b, tf.float32), 0.0, 1.0).numpy()
  feasible_rows = 0
  for i in range(n):
    assert np.all(p[i] + delta[i] >= -1e-6) and np.all(p[i] + delta[i] <= 1 + 1e-6)
    res = _lp_projection(p[i], w[i], b[i], 0.0, 1.0)
    if res.status == 0:   # the box reaches the hyperplane
      feasible_rows += 1
      assert abs(w[i] @ (p[i] + delta[i]) + b[i]) < 1e-4
      np.testing.assert_allclose(np.abs(delta[i]).max(), res.x[-1], atol=1e-5)
    else:                 # it does not: the whole room, towards the hyperplane
      before = abs(w[i] @ p[i] + b[i])
      after = abs(w[i] @ (p[i] + delta[i]) + b[i])
      assert res.status == 2 and after < before
  assert 10 <= feasible_rows < n   # both branches were exercised


def test_linf_projection_of_a_point_on_the_hyperplane_is_zero():
  p = tf.constant([[0.2, 0.7, 0.5]])
  w = tf.constant([[1.0, -2.0, 0.5]])
  b = -tf.reduce_sum(w * p, axis=1)
  np.testing.assert_allclose(fab.linf_projection(p, w, b, 0.0, 1.0).numpy(), 0.0,
                             atol=1e-7)


# --- The attack on a linear two-class model: the minimum is known in closed form. -----
def test_fab_converges_to_the_closed_form_minimum_of_a_linear_model():
  rng = np.random.default_rng(1)
  n, d = 64, 20
  w = rng.normal(0, 1, (d, 2)).astype(np.float32)
  x = rng.uniform(0.3, 0.7, (n, d)).astype(np.float32)
  z = x @ w
  y = z.argmax(1)
  # Without the box in the way, the smallest L-infinity change that flips the
  # prediction is the margin over the l1 norm of the difference of the two rows.
  margin = np.abs(z[:, 1] - z[:, 0])
  minimum = margin / np.abs(w[:, 1] - w[:, 0]).sum()
  keep = minimum < 0.25       # room to the box: 0.3 on every side
  # epsilon 0: no point counts as within it, so the loop does not stop early (it
  # stops once every example has one) and runs all its steps towards the minimum.
  r = fab.fab_targeted(lambda v: v @ tf.constant(w), tf.constant(x[keep]),
                       tf.constant(y[keep]), epsilon=0.0, steps=STEPS)
  norm = r.norm.numpy()
  assert keep.sum() >= 20 and not r.flipped.numpy().any()
  assert np.all(norm >= minimum[keep] * (1 - 1e-4))          # never below the minimum
  # The first step overshoots the exact projection by eta = 1.05; the later ones,
  # stepping back by beta and mixing in the original's projection, get nearer.
  assert np.all(norm < 1.01 * minimum[keep])
  wrong = (r.x_adv.numpy() @ w).argmax(1) != y[keep]
  assert wrong.all()


# --- Independent NumPy reference on the MLP (float64, closed-form gradients). -------
def _np_projection(p, w, b):
  """The same projection found by bisection on rho (not by sorting)."""
  c = -((w * p).sum(1) + b)
  d = np.sign(c)[:, None] * np.sign(w)
  room = np.where(d > 0, 1 - p, np.where(d < 0, p, 0.0))
  a = np.abs(w) * (d != 0)
  reach = lambda rho: (a * np.minimum(rho[:, None], room)).sum(1)
  lo, hi = np.zeros(len(p)), room.max(1)
  for _ in range(80):
    mid = (lo + hi) / 2
    short = reach(mid) < np.abs(c)
    lo, hi = np.where(short, mid, lo), np.where(short, hi, mid)
  rho = np.where(reach(room.max(1)) < np.abs(c), room.max(1), hi)
  return d * np.minimum(rho[:, None], room)


def np_fab_t(x, y, rank, steps, alpha_max=0.1, eta=1.05, beta=0.9):
  """FAB-T, L-infinity, from the paper's description; returns each example's nearest
  misclassifying point's distance (inf if none)."""
  w1, b1, w2, b2 = PARAMS
  rows = np.arange(len(y))
  target = np.argsort(-np_logits(x), axis=1, kind='stable')[:, rank - 1]
  e = np.eye(K)[target] - np.eye(K)[y]
  best = np.where(np_logits(x).argmax(1) != y, 0.0, np.inf)
  cur = x.copy()
  for _ in range(steps):
    pre = cur @ w1 + b1
    z = np.maximum(pre, 0) @ w2 + b2
    v = z[rows, target] - z[rows, y]
    g = ((e @ w2.T) * (pre > 0)) @ w1.T
    b = v - (g * cur).sum(1)
    d_cur, d_orig = _np_projection(cur, g, b), _np_projection(x, g, b)
    n_cur, n_orig = np.abs(d_cur).max(1), np.abs(d_orig).max(1)
    alpha = np.minimum(n_cur / np.maximum(n_cur + n_orig, 1e-12), alpha_max)[:, None]
    new = np.clip((1 - alpha) * (cur + eta * d_cur) + alpha * (x + eta * d_orig), 0, 1)
    adv = np_logits(new).argmax(1) != y
    dist = np.abs(new - x).max(1)
    best = np.where(adv & (dist < best), dist, best)
    cur = np.where(adv[:, None], (1 - beta) * x + beta * new, new)
  return best


@pytest.mark.parametrize('rank', [2, 3])
def test_robust_accuracy_and_distances_match_numpy_reference(rank):
  ref = np_fab_t(X_EVAL, Y_EVAL, rank, STEPS)
  r = fab.fab_targeted(tf_logits, tf.constant(X_EVAL, tf.float32),
                       tf.constant(Y_EVAL, tf.int64), epsilon=EPS, steps=STEPS,
                       target_rank=rank)
  ours = r.norm.numpy()
  # The same deterministic algorithm in float32 and float64: robust accuracy at EPS
  # within 2 points, and the distances found agree where both found one.
  assert abs(np.mean(ours > EPS) - np.mean(ref > EPS)) <= 0.02
  both = np.isfinite(ours) & np.isfinite(ref)
  assert both.mean() > 0.9
  assert np.median(np.abs(ours[both] - ref[both]) / ref[both].clip(1e-6)) < 1e-3
  assert 0.1 < np.mean(ours > EPS) < 0.9          # a mid-range figure: not trivial


def test_results_are_misclassified_within_epsilon_and_inputs_unchanged():
  x = tf.constant(X_EVAL, tf.float32)
  before = x.numpy().copy()
  r = fab.fab_targeted(tf_logits, x, tf.constant(Y_EVAL, tf.int64), epsilon=EPS,
                       steps=30)
  np.testing.assert_array_equal(x.numpy(), before)
  flipped, x_adv = r.flipped.numpy(), r.x_adv.numpy()
  assert flipped.any()
  dist = np.abs(x_adv - X_EVAL).max(1)
  assert np.all(dist[flipped] <= EPS + 1e-6)
  assert np.all(np_logits(x_adv[flipped]).argmax(1) != Y_EVAL[flipped])
  assert np.all((x_adv >= 0) & (x_adv <= 1))
  np.testing.assert_allclose(r.norm.numpy()[flipped], dist[flipped], atol=1e-6)


def test_zero_epsilon_flags_exactly_the_clean_errors():
  r = fab.fab_targeted(tf_logits, tf.constant(X_EVAL, tf.float32),
                       tf.constant(Y_EVAL, tf.int64), epsilon=0.0, steps=5)
  clean_errors = np_logits(X_EVAL).argmax(1) != Y_EVAL
  np.testing.assert_array_equal(r.flipped.numpy(), clean_errors)


def test_more_steps_never_find_fewer():
  x, y = tf.constant(X_EVAL, tf.float32), tf.constant(Y_EVAL, tf.int64)
  short = fab.fab_targeted(tf_logits, x, y, epsilon=EPS, steps=10)
  long = fab.fab_targeted(tf_logits, x, y, epsilon=EPS, steps=STEPS)
  # The nearest point only ever gets nearer (same start, same first 10 steps).
  assert np.all(long.norm.numpy() <= short.norm.numpy())
  assert long.flipped.numpy().sum() >= short.flipped.numpy().sum()


def test_bad_steps_rejected():
  with pytest.raises(ValueError, match='steps=0'):
    fab.fab_targeted(tf_logits, tf.constant(X_EVAL[:2], tf.float32),
                     tf.constant(Y_EVAL[:2]), epsilon=EPS, steps=0)

"""Tests of FGSM/PGD neighbor generation against closed forms and invariants."""
import numpy as np
import pytest
import tensorflow as tf

from components.adversarial import perturbation

RNG = np.random.default_rng(0)
W = tf.constant(RNG.normal(size=(6, 4)), tf.float32)   # 6 features -> 4 classes
B = tf.constant(RNG.normal(size=(4,)), tf.float32)
X = tf.constant(RNG.uniform(0.2, 0.8, size=(5, 6)), tf.float32)
Y = tf.constant([0, 1, 2, 3, 1])


def _mean_ce(x, w=W):
  return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=Y, logits=x @ w + B))


def _ce_grad_fn(x):
  """Gradient of the mean CE of softmax(xW + b) w.r.t. x."""
  return perturbation.input_gradient(_mean_ce, x)


def _closed_form_grad(x):
  """d CE / dx = W (p - onehot) per example (the 1/N of the mean does not change
  the direction)."""
  p = tf.nn.softmax(x @ W + B).numpy()
  return (p - np.eye(4)[Y.numpy()]) @ W.numpy().T


def test_fgsm_direction_matches_the_closed_form_on_a_linear_softmax_model():
  x_adv = perturbation.adversarial_neighbor(X, _ce_grad_fn, step_size=0.05,
                                            clip_min=None, clip_max=None)
  expected = X.numpy() + 0.05 * np.sign(_closed_form_grad(X))
  np.testing.assert_allclose(x_adv, expected, atol=1e-6)


def test_l2_direction_is_the_unit_closed_form_gradient():
  x_adv = perturbation.adversarial_neighbor(X, _ce_grad_fn, step_size=0.3, norm='l2',
                                            clip_min=None, clip_max=None)
  g = _closed_form_grad(X)
  expected = X.numpy() + 0.3 * g / np.linalg.norm(g, axis=1, keepdims=True)
  np.testing.assert_allclose(x_adv, expected, atol=1e-5)


def test_first_grad_is_used_instead_of_a_new_gradient():
  calls = []

  def counting_grad_fn(x):
    calls.append(1)
    return _ce_grad_fn(x)

  first = _ce_grad_fn(X)
  reused = perturbation.adversarial_neighbor(X, counting_grad_fn, step_size=0.1,
                                             first_grad=first)
  assert not calls
  np.testing.assert_allclose(
      reused, perturbation.adversarial_neighbor(X, _ce_grad_fn, step_size=0.1))


@pytest.mark.parametrize('random_init', [False, True])
def test_pgd_stays_in_the_infinity_ball(random_init):
  x_adv = perturbation.adversarial_neighbor(
      X, _ce_grad_fn, step_size=0.05, iterations=7, epsilon=0.1,
      random_init=random_init, seed=tf.constant([1, 2]))
  delta = (x_adv - X).numpy()
  assert np.abs(delta).max() <= 0.1 + 1e-6
  # Seven steps of 0.05 would reach 0.35 unprojected: the projection is active.
  assert np.abs(delta).max() == pytest.approx(0.1, abs=1e-6)


@pytest.mark.parametrize('random_init', [False, True])
def test_pgd_stays_in_the_per_example_l2_ball(random_init):
  x_adv = perturbation.adversarial_neighbor(
      X, _ce_grad_fn, step_size=0.2, norm='l2', iterations=5, epsilon=0.3,
      random_init=random_init, clip_min=None, clip_max=None, seed=tf.constant([3, 4]))
  norms = np.linalg.norm((x_adv - X).numpy(), axis=1)
  assert norms.max() <= 0.3 + 1e-5
  np.testing.assert_allclose(norms, 0.3, atol=1e-4)  # steps 5 x 0.2 push to the edge


def test_project_maps_onto_the_ball_and_keeps_interior_points():
  delta = tf.constant([[3.0, 4.0], [0.1, 0.0]])
  np.testing.assert_allclose(perturbation.project(delta, 'l2', 1.0),
                             [[0.6, 0.8], [0.1, 0.0]], atol=1e-6)
  np.testing.assert_allclose(perturbation.project(delta, 'infinity', 0.5),
                             [[0.5, 0.5], [0.1, 0.0]], atol=1e-6)


def test_neighbors_are_clipped_to_the_valid_range():
  x = tf.constant([[0.0, 0.95, 0.5, 0.02, 1.0, 0.3]] * 5)
  x_adv = perturbation.adversarial_neighbor(x, _ce_grad_fn, step_size=0.2,
                                            clip_min=0.0, clip_max=1.0).numpy()
  assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
  unclipped = perturbation.adversarial_neighbor(x, _ce_grad_fn, step_size=0.2,
                                                clip_min=None, clip_max=None).numpy()
  assert unclipped.min() < 0.0 or unclipped.max() > 1.0   # clipping did something
  np.testing.assert_allclose(x_adv, np.clip(unclipped, 0.0, 1.0), atol=1e-6)


def test_no_gradient_flows_through_neighbor_generation():
  w = tf.Variable(W)
  x = tf.Variable(X)

  def grad_fn(x_in):
    return perturbation.input_gradient(lambda t: _mean_ce(t, w), x_in)

  with tf.GradientTape(persistent=True) as tape:
    x_adv = perturbation.adversarial_neighbor(x * 1.0, grad_fn, step_size=0.1,
                                              iterations=3, epsilon=0.2)
    total = tf.reduce_sum(x_adv)
  assert tape.gradient(total, x) is None
  assert tape.gradient(total, w) is None

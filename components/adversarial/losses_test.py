"""Tests of the adversarial loss math."""
import numpy as np
import pytest
import tensorflow as tf

from components.adversarial import losses

LABELS = tf.constant([0, 2, 1], tf.int64)
CLEAN = tf.constant([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-3.0, 4.0, 0.0]])
ADV = tf.constant([[0.0, 1.5, -1.0], [1.0, 0.2, -0.3], [-3.0, 1.0, 2.0]])


def _softmax(z):
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def test_cross_entropy_matches_closed_form():
  p = _softmax(CLEAN.numpy())
  expected = -np.log(p[np.arange(3), LABELS.numpy()])
  np.testing.assert_allclose(losses.cross_entropy(LABELS, CLEAN), expected, rtol=1e-5)


def test_trades_kl_is_zero_for_identical_outputs_and_positive_otherwise():
  np.testing.assert_allclose(losses.trades_kl(CLEAN, CLEAN), np.zeros(3), atol=1e-7)
  kl = losses.trades_kl(CLEAN, ADV).numpy()
  assert np.all(kl > 0)
  p, q = _softmax(CLEAN.numpy()), _softmax(ADV.numpy())
  np.testing.assert_allclose(kl, (p * np.log(p / q)).sum(-1), rtol=1e-5)
  assert float(losses.mean_trades_kl(CLEAN, ADV)) == pytest.approx(kl.mean(), rel=1e-6)


def test_trades_kl_stays_finite_when_a_probability_underflows():
  clean = tf.constant([[200.0, -200.0]])
  adv = tf.constant([[-200.0, 200.0]])
  kl = losses.trades_kl(clean, adv).numpy()
  assert np.isfinite(kl).all() and kl[0] == pytest.approx(400.0, rel=1e-4)


def test_combine_clean_plus_adv_is_labeled_plus_scaled_adversarial():
  terms = losses.combine('clean_plus_adv', LABELS, CLEAN, ADV, multiplier=0.2, trades_beta=6.)
  ce_clean = losses.cross_entropy(LABELS, CLEAN).numpy()
  ce_adv = losses.cross_entropy(LABELS, ADV).numpy()
  np.testing.assert_allclose(terms.labeled, ce_clean, rtol=1e-6)
  np.testing.assert_allclose(terms.scaled_adv, 0.2 * ce_adv, rtol=1e-6)
  np.testing.assert_allclose(terms.total, ce_clean + 0.2 * ce_adv, rtol=1e-6)


def test_combine_adv_only_minimises_the_adversarial_loss_alone():
  terms = losses.combine('adv_only', LABELS, CLEAN, ADV, multiplier=0.2, trades_beta=6.)
  ce_adv = losses.cross_entropy(LABELS, ADV).numpy()
  np.testing.assert_allclose(terms.total, ce_adv, rtol=1e-6)
  np.testing.assert_allclose(terms.labeled, losses.cross_entropy(LABELS, CLEAN), rtol=1e-6)


def test_combine_trades_adds_beta_times_kl_to_clean_loss():
  terms = losses.combine('trades', LABELS, CLEAN, ADV, multiplier=0.2, trades_beta=6.)
  expected = (losses.cross_entropy(LABELS, CLEAN) + 6.0 * losses.trades_kl(CLEAN, ADV))
  np.testing.assert_allclose(terms.total, expected, rtol=1e-6)
  np.testing.assert_allclose(terms.scaled_adv, 6.0 * losses.trades_kl(CLEAN, ADV), rtol=1e-6)


def test_adversary_objective_is_kl_for_trades_and_cross_entropy_otherwise():
  for mode in ('clean_plus_adv', 'adv_only'):
    assert float(losses.adversary_objective(mode, LABELS, CLEAN, ADV)) == pytest.approx(
        float(tf.reduce_mean(losses.cross_entropy(LABELS, ADV))))
  assert float(losses.adversary_objective('trades', LABELS, CLEAN, ADV)) == pytest.approx(
      float(losses.mean_trades_kl(CLEAN, ADV)))


def test_trades_objective_does_not_differentiate_the_clean_side():
  clean = tf.Variable(CLEAN)
  with tf.GradientTape() as tape:
    objective = losses.adversary_objective('trades', LABELS, clean * 1.0, ADV)
  assert tape.gradient(objective, clean) is None


def test_unknown_mode_is_rejected_by_name():
  with pytest.raises(ValueError, match="'nsl'"):
    losses.combine('nsl', LABELS, CLEAN, ADV, multiplier=0.2, trades_beta=6.)

"""The AutoAttack suite through the Attacker, on a small non-linear model whose
robustness sits in the middle, so every member has work to do."""
import numpy as np
import pytest
import tensorflow as tf

from components.config import AttackConfig
from components.robustness_evaluator import attacks
from components.robustness_evaluator import autoattack

D, K, N = 784, 10, 120


@pytest.fixture(scope='module')
def model():
  """A fixed random two-layer ReLU net on 28x28 inputs and inputs it classifies
  with varying margins."""
  rng = np.random.default_rng(0)
  w1 = tf.constant(rng.normal(0, 0.05, (D, 32)).astype(np.float32))
  w2 = tf.constant(rng.normal(0, 0.3, (32, K)).astype(np.float32))
  logits_fn = lambda x: tf.matmul(tf.nn.relu(tf.matmul(x, w1)), w2)
  x = rng.random((N, D)).astype(np.float32)
  y = np.argmax(logits_fn(tf.constant(x)).numpy(), 1).astype(np.int64)
  y[:10] = (y[:10] + 1) % K       # ten images the model gets wrong already
  return logits_fn, x, y


def _suite(eps, **kw):
  return AttackConfig(name='aa', method='autoattack', epsilon=eps, steps=20,
                      targets=3, queries=200, **kw)


def test_suite_is_the_worst_case_of_its_members(model):
  logits_fn, x, y = model
  attacker = attacks.Attacker(logits_fn, batch_size=50, seed=0)
  suite = autoattack.run_attack(attacker, x, y, _suite(0.02))
  codes = suite.flipped_by
  assert np.all(codes[:10] == autoattack.CLEAN)          # wrong before any attack
  robust = autoattack.robust_mask(suite)
  ce = autoattack.run_attack(attacker, x, y, AttackConfig(
      name='aa', method='apgd-ce', epsilon=0.02, steps=20))
  assert robust.sum() <= autoattack.robust_mask(ce).sum()
  assert 0 < robust.sum() < N - 10, 'choose epsilon so the suite has work to do'
  # Every image the suite calls broken is misclassified at its recorded point and
  # that point lies in the epsilon ball and the box.
  broken = codes > autoattack.CLEAN
  preds = attacks.predictions(suite.logits)
  assert np.all(preds[broken] != y[broken])
  assert np.abs(suite.x_adv - x).max() <= 0.02 + 1e-6
  assert suite.x_adv.min() >= 0 and suite.x_adv.max() <= 1
  flips = suite.details['flipped_by_member']
  assert sum(flips.values()) == int(broken.sum())
  assert suite.details['robust_accuracy_after']['square'] == pytest.approx(robust.mean())


def test_epsilon_zero_gives_clean_accuracy_exactly(model):
  logits_fn, x, y = model
  attacker = attacks.Attacker(logits_fn, batch_size=64, seed=0)
  suite = autoattack.run_attack(attacker, x, y, _suite(0.0))
  clean = attacks.predictions(attacker.logits(x)) == y
  assert np.array_equal(autoattack.robust_mask(suite), clean)
  assert np.array_equal(suite.x_adv, x)


def test_suite_is_reproducible_and_leaves_inputs_alone(model):
  logits_fn, x, y = model
  before = x.copy()
  runs = [autoattack.run_attack(attacks.Attacker(logits_fn, batch_size=50, seed=3),
                                x, y, _suite(0.02)) for _ in range(2)]
  assert np.array_equal(runs[0].flipped_by, runs[1].flipped_by)
  assert np.array_equal(runs[0].x_adv, runs[1].x_adv)
  assert np.array_equal(x, before)


def test_square_beating_the_gradient_attacks_is_reported_loudly():
  outcome = autoattack.Outcome(
      None, None, np.array([3] * 5 + [-1] * 95, np.int8), ('apgd-ce', 'apgd-t', 'square'),
      {'flipped_by_member': {'apgd-ce': 0, 'apgd-t': 0, 'square': 5}})
  (warning,) = autoattack.masking_warnings('aa', outcome, 'candidate')
  assert 'GRADIENT MASKING SUSPECTED' in warning and '5 of 100' in warning


def test_a_single_remaining_image_is_attacked_too(model):
  """The suite may leave one robust image for the next member: a batch of one."""
  logits_fn, x, y = model
  attacker = attacks.Attacker(logits_fn, batch_size=50, seed=0)
  keep = np.flatnonzero(attacks.predictions(attacker.logits(x)) == y)[:1]
  suite = autoattack.run_attack(attacker, x[keep], y[keep], _suite(0.02))
  assert suite.flipped_by.shape == (1,)
  ce = AttackConfig(name='ce', method='apgd-ce', epsilon=0.02, steps=5)
  for n in (1, 3, 50):   # one trace serves every batch size
    autoattack.run_attack(attacker, x[:n], y[:n], ce)

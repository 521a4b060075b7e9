"""The AutoAttack suite through the Attacker, on a small non-linear model whose
robustness sits in the middle, so every member has work to do."""
import numpy as np
import pytest
import tensorflow as tf

from components.config import AttackConfig, ConfigError
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


def test_logit_margins_and_the_images_nearest_the_boundary():
  logits = np.array([[3., 1., 0.], [0., 2., 1.], [1., 1.5, 0.], [2., 0., 1.9]])
  y = np.array([0, 1, 0, 0])
  np.testing.assert_allclose(autoattack.logit_margins(logits, y), [2., 1., -.5, .1])
  margins = np.array([0.3, 0.1, -0.5, 0.1, 2.0])
  robust = np.array([True, True, False, True, True])
  # The broken image is never chosen; the tie between images 1 and 3 goes in order.
  assert autoattack.nearest_to_boundary(margins, robust).tolist() == [1, 3, 0, 4]
  assert autoattack.nearest_to_boundary(margins, ~np.ones(5, bool)).tolist() == []


def test_the_boundary_member_only_adds_flips_after_the_standard_suite(model):
  logits_fn, x, y = model
  run = lambda **kw: autoattack.run_attack(
      attacks.Attacker(logits_fn, batch_size=50, seed=0), x, y, _suite(0.02, **kw))
  plain, extra = run(), run(boundary_restarts=4, boundary_share=0.1)
  assert extra.members == plain.members + (autoattack.BOUNDARY,)
  # The standard members ran as before (same seeds, same images).
  standard = extra.flipped_by <= len(plain.members)
  assert np.array_equal(np.where(standard, extra.flipped_by, autoattack.ROBUST),
                        plain.flipped_by)
  assert extra.details['robust_accuracy_after']['square'] == pytest.approx(
      autoattack.robust_mask(plain).mean())
  assert np.all(autoattack.robust_mask(plain) >= autoattack.robust_mask(extra))
  info = extra.details['boundary']
  # Rounds of 12 images, nearest first, until a round breaks none (or none is left).
  assert info['images_per_round'] == 12 and len(info['broken_per_round']) == info['rounds']
  assert info['images'] <= 12 * info['rounds']
  assert sum(info['broken_per_round']) == extra.details['flipped_by_member'][
      autoattack.BOUNDARY]
  assert (info['broken_per_round'][-1] == 0 or
          info['images'] == autoattack.robust_mask(plain).sum())
  assert info['starts_per_loss'] == 4 and 'apgd-boundary=4' in extra.details[
      'flipped_by_codes']


def test_more_starts_near_the_boundary_break_what_one_start_missed():
  """A landscape where one start finds the flip only sometimes: the wrong class wins
  in a narrow region near +0.7 eps along pixel 0, and a wide bump at -0.5 eps pulls
  most starts away from it. Every image is this one, so each start is a fresh draw."""
  eps, n = 0.1, 40

  def logits_fn(v):
    t = (v[:, 0] - 0.5) / eps
    wrong = (-1.0 + 1.5 * tf.exp(-((t - 0.7) / 0.1) ** 2) +
             tf.exp(-((t + 0.5) / 0.4) ** 2))
    return tf.stack([tf.zeros_like(t), wrong] + [tf.fill(tf.shape(t), -5.0)] * (K - 2),
                    axis=1)

  x = np.random.default_rng(0).random((n, D)).astype(np.float32)
  x[:, 0] = 0.5
  y = np.zeros(n, np.int64)
  flips, rounds = {}, {}
  for starts in (1, 8):
    suite = autoattack.run_attack(
        attacks.Attacker(logits_fn, batch_size=50, seed=0), x, y,
        AttackConfig(name='aa', method='autoattack', epsilon=eps, steps=20, targets=3,
                     suite=('apgd-ce', 'apgd-t'), boundary_restarts=starts,
                     boundary_share=0.1))
    left = round(suite.details['robust_accuracy_after']['apgd-t'] * n)
    assert 0 < left < n - 5, 'one start should break some images, not all'
    flips[starts] = suite.details['flipped_by_member'][autoattack.BOUNDARY]
    broken = suite.flipped_by == 3
    assert np.all(attacks.predictions(suite.logits)[broken] != 0)
    assert np.abs(suite.x_adv - x).max() <= eps + 1e-6
    rounds[starts] = suite.details['boundary']['rounds']
  # Eight starts per loss break most of what the suite's single starts left, in
  # rounds of 4 images that go on while they break some.
  assert flips[8] > flips[1] and flips[8] >= left // 2 and rounds[8] > 1


@pytest.mark.parametrize('fields,message', [
    (dict(method='pgd', boundary_restarts=4), "boundary_restarts=4 needs method='autoattack'"),
    (dict(method='autoattack', boundary_restarts=-1), 'boundary_restarts=-1'),
    (dict(method='autoattack', boundary_restarts=4, boundary_share=0.0),
     r'boundary_share=0.0: must be in \(0, 1\]'),
])
def test_bad_boundary_settings_name_the_field(fields, message):
  with pytest.raises(ConfigError, match=message):
    AttackConfig(name='aa', **fields).validate()


def test_fab_t_in_the_suite_attacks_only_what_apgd_left_within_epsilon(model):
  """AutoAttack's full standard order: APGD-CE, APGD-T, FAB-T, Square. FAB-T's
  breaks are misclassified points inside the ball; the members before it are
  unchanged by its presence."""
  logits_fn, x, y = model
  run = lambda suite: autoattack.run_attack(
      attacks.Attacker(logits_fn, batch_size=50, seed=0), x, y,
      _suite(0.02, suite=suite))
  without = run(('apgd-ce', 'apgd-t'))
  full = run(('apgd-ce', 'apgd-t', 'fab-t', 'square'))
  assert full.members == ('apgd-ce', 'apgd-t', 'fab-t', 'square')
  apgd_only = np.where(full.flipped_by <= 2, full.flipped_by, autoattack.ROBUST)
  assert np.array_equal(apgd_only, without.flipped_by)
  assert full.details['robust_accuracy_after']['apgd-t'] == pytest.approx(
      autoattack.robust_mask(without).mean())
  broken = full.flipped_by > autoattack.CLEAN
  assert np.all(attacks.predictions(full.logits)[broken] != y[broken])
  assert np.abs(full.x_adv - x).max() <= 0.02 + 1e-6
  # Alone, FAB-T breaks images at this epsilon (it has work to do in the suite).
  alone = autoattack.run_attack(attacks.Attacker(logits_fn, batch_size=50, seed=0),
                                x, y, AttackConfig(name='fab', method='fab-t',
                                                   epsilon=0.02, steps=20, targets=3))
  assert alone.details['flipped_by_member']['fab-t'] > 0
  assert np.abs(alone.x_adv - x).max() <= 0.02 + 1e-6


def test_with_fab_puts_fab_t_in_the_standard_order_and_rejects_l2():
  from components.config import standard_autoattack, with_fab
  assert standard_autoattack(0.2, fab=True).suite == ('apgd-ce', 'apgd-t', 'fab-t',
                                                      'square')
  assert with_fab(_suite(0.1, suite=('apgd-ce', 'apgd-t'))).suite == (
      'apgd-ce', 'apgd-t', 'fab-t')
  pgd = AttackConfig(name='pgd', steps=10)
  assert with_fab(pgd) is pgd
  with pytest.raises(ConfigError, match='FAB-T is implemented for the infinity norm'):
    AttackConfig(name='aa', method='autoattack', norm='l2',
                 suite=('apgd-ce', 'fab-t')).validate()

"""Attacks against a linear softmax model, checked against closed-form numpy."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from components.adversarial import perturbation
from components.robustness_evaluator import attacks
from components.config import AttackConfig, EvalConfig

D, K, N = 64, 5, 96


@pytest.fixture(scope='module')
def problem():
  """Linear softmax classifier of class prototypes, and examples near its margins."""
  rng = np.random.default_rng(1)
  protos = rng.random((K, D)).astype(np.float32)
  w = (protos - protos.mean(0)).T.astype(np.float32) * 2.0
  b = rng.normal(0, 0.1, K).astype(np.float32)
  y = rng.integers(0, K, N).astype(np.int64)
  x = np.clip(protos[y] + rng.normal(0, 0.35, (N, D)), 0, 1).astype(np.float32)
  return x, y, w, b


def logits_fn_of(w, b):
  wt, bt = tf.constant(w), tf.constant(b)
  return lambda x: tf.matmul(x, wt) + bt


def np_grad(x, y, w, b):
  """d CE(y, softmax(xW + b)) / dx = (softmax - onehot(y)) W^T, per example."""
  z = x.astype(np.float64) @ w + b
  p = np.exp(z - z.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  p[np.arange(len(y)), y] -= 1.0
  return p @ w.T


def np_predict(x, w, b):
  return np.argmax(x.astype(np.float64) @ w + b, axis=1)


def np_pgd(x, y, w, b, eps, step, steps, start):
  x_adv = np.clip(x + np.clip(start, -eps, eps), 0, 1)
  for _ in range(steps):
    x_adv = x_adv + step * np.sign(np_grad(x_adv, y, w, b))
    x_adv = np.clip(x + np.clip(x_adv - x, -eps, eps), 0, 1)
  return x_adv


def test_fgsm_matches_closed_form(problem):
  x, y, w, b = problem
  eps = 0.1
  expected = np.clip(x + eps * np.sign(np_grad(x, y, w, b)), 0, 1)
  attacker = attacks.Attacker(logits_fn_of(w, b), batch_size=32, seed=0)
  x_adv, logits = attacker.attack(x, y, AttackConfig('fgsm', epsilon=eps))
  assert np.mean(np.abs(x_adv - expected) > 1e-6) < 1e-3  # sign ties may differ
  acc = np.mean(attacks.predictions(logits) == y)
  assert acc == np.mean(np_predict(expected, w, b) == y)
  clean_acc = np.mean(np_predict(x, w, b) == y)
  assert acc < clean_acc - 0.2   # the attack really bites on this problem


def np_loss(x, y, w, b):
  z = x.astype(np.float64) @ w + b
  z = z - z.max(1, keepdims=True)
  return np.log(np.exp(z).sum(1)) - z[np.arange(len(y)), y]


def test_pgd_with_random_start_reproduces_the_reference_exactly(problem):
  x, y, w, b = problem
  eps, step, steps = 0.2, 0.02, 2   # short, so the random start matters
  attack = AttackConfig('pgd', epsilon=eps, steps=steps, step_size=step,
                        random_start=True, restarts=3)
  seed = 7
  attacker = attacks.Attacker(logits_fn_of(w, b), batch_size=N, seed=seed)
  x_adv, logits = attacker.attack(x, y, attack)
  # Same stateless starts as the attacker: batch 0, restart r.
  batch = attacks.batch_seed(seed, attacks.attack_salt(attack), 0)
  best = best_wrong = best_loss = None
  for r in range(attack.restarts):
    start = perturbation.random_start(
        tf.constant(x), 'infinity', eps,
        tf.random.experimental.stateless_fold_in(batch, r)).numpy()
    ref = np_pgd(x, y, w, b, eps, step, steps, start)
    wrong, loss = np_predict(ref, w, b) != y, np_loss(ref, y, w, b)
    if r == 0:
      best, best_wrong, best_loss, first_wrong = ref, wrong, loss, wrong
      continue
    better = (wrong & ~best_wrong) | ((wrong == best_wrong) & (loss > best_loss))
    best = np.where(better[:, None], ref, best)
    best_loss = np.where(better, loss, best_loss)
    best_wrong = best_wrong | wrong
  # Restarts keep the per-example worst case: wrong if any restart fooled it.
  assert (best_wrong & ~first_wrong).any()   # later restarts found more here
  assert np.array_equal(attacks.predictions(logits) != y, best_wrong)
  np.testing.assert_allclose(x_adv, best, atol=1e-5)


def test_restarts_never_help_the_model(problem):
  x, y, w, b = problem
  one = AttackConfig('pgd', epsilon=0.2, steps=2, step_size=0.02,
                     random_start=True, restarts=1)
  many = dataclasses.replace(one, restarts=3)
  attacker = attacks.Attacker(logits_fn_of(w, b), batch_size=40, seed=0)
  wrong_one = attacks.predictions(attacker.attack(x, y, one)[1]) != y
  wrong_many = attacks.predictions(attacker.attack(x, y, many)[1]) != y
  assert np.all(wrong_many >= wrong_one)   # restart 0 is the same start in both
  assert np.any(wrong_many > wrong_one)


@pytest.mark.parametrize('attack', [
    AttackConfig('fgsm', epsilon=0.3),
    AttackConfig('pgd', epsilon=0.1, steps=4, step_size=0.07, random_start=True),
    AttackConfig('pgd_l2', norm='l2', epsilon=0.5, steps=3, step_size=0.4,
                 random_start=True),
])
def test_neighbors_stay_in_range_and_in_the_ball(problem, attack):
  x, y, w, b = problem
  x_adv, _ = attacks.Attacker(logits_fn_of(w, b), batch_size=40, seed=3).attack(
      x, y, attack)
  assert x_adv.shape == x.shape
  assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
  delta = x_adv - x
  if attack.norm == 'infinity':
    size = np.abs(delta).max(axis=1)
  else:
    size = np.linalg.norm(delta, axis=1)
  assert np.all(size <= attack.epsilon + 1e-5)
  assert size.max() > 0.5 * attack.epsilon   # it did move


def test_batching_and_padding_do_not_change_results(problem):
  x, y, w, b = problem
  attack = AttackConfig('fgsm', epsilon=0.2)
  big = attacks.Attacker(logits_fn_of(w, b), batch_size=N, seed=0).attack(x, y, attack)
  small = attacks.Attacker(logits_fn_of(w, b), batch_size=7, seed=0).attack(x, y, attack)
  np.testing.assert_allclose(big[0], small[0], atol=1e-6)
  np.testing.assert_allclose(big[1], small[1], rtol=1e-5, atol=1e-5)


def test_random_start_is_deterministic_given_the_seed(problem):
  x, y, w, b = problem
  attack = AttackConfig('pgd', epsilon=0.1, steps=1, step_size=0.01, random_start=True)
  run = lambda seed: attacks.Attacker(logits_fn_of(w, b), batch_size=32,
                                      seed=seed).attack(x, y, attack)[0]
  np.testing.assert_array_equal(run(5), run(5))
  assert not np.allclose(run(5), run(6))


def test_clean_logits_and_nan_detection(problem):
  x, y, w, b = problem
  attacker = attacks.Attacker(logits_fn_of(w, b), batch_size=50, seed=0)
  np.testing.assert_allclose(attacker.logits(x), x @ w + b, rtol=1e-4, atol=1e-4)
  nan_w = w.copy()
  nan_w[0, 0] = np.nan
  broken = attacks.Attacker(logits_fn_of(nan_w, b), batch_size=50, seed=0,
                            name='broken')
  with pytest.raises(attacks.NonFiniteLogitsError, match='broken.*NaN'):
    broken.logits(x)
  with pytest.raises(attacks.NonFiniteLogitsError):
    broken.attack(x, y, AttackConfig('fgsm'))


def test_sweep_uses_the_pgd_attack_settings_at_each_epsilon():
  config = EvalConfig()
  sweep = attacks.sweep_attacks(config)
  # The default AutoAttack adds the APGD-CE curve, on its own smaller sample.
  assert sorted(sweep) == [attacks.APGD, attacks.FGSM, attacks.PGD]
  assert sorted(sweep[attacks.PGD]) == sorted(config.epsilon_sweep)
  apgd = sweep[attacks.APGD][0.3]
  assert (apgd.method, apgd.epsilon, apgd.steps, apgd.sample_size) == (
      'apgd-ce', 0.3, 100, config.sweep_apgd_sample_size)
  pgd = sweep[attacks.PGD][0.3]
  assert (pgd.epsilon, pgd.steps, pgd.step_size, pgd.random_start) == (
      0.3, 40, 0.01, True)
  fgsm = sweep[attacks.FGSM][0.05]
  assert (fgsm.epsilon, fgsm.steps, fgsm.effective_step_size) == (0.05, 1, 0.05)
  only_fgsm = EvalConfig(attacks=(AttackConfig('fgsm'),),
                         thresholds=dataclasses.replace(
                             config.thresholds, min_attack_accuracy={}))
  assert list(attacks.sweep_attacks(only_fgsm)) == [attacks.FGSM]


def test_concurrent_batches_give_the_results_of_sequential_ones(problem, monkeypatch):
  """APGD and Square run CONCURRENT_BATCHES batches at a time; each keeps its index,
  seed and shape, so the results are those of one batch after the other."""
  x, y, w, b = problem
  apgd = AttackConfig('apgd', method='apgd-ce', epsilon=0.1, steps=10, restarts=2)
  square = AttackConfig('sq', method='square', epsilon=0.1, queries=50)
  runs = []
  for workers in (2, 1):
    monkeypatch.setattr(attacks, 'CONCURRENT_BATCHES', workers)
    attacker = attacks.Attacker(logits_fn_of(w, b), batch_size=30, seed=3)  # 4 batches
    runs.append((attacker.apgd(x, y, apgd, loss='ce'),
                 attacker.square(x, y, square, image_shape=(8, 8, 1))))
  for concurrent, sequential in zip(*runs):
    for a, b_ in zip(concurrent, sequential):
      np.testing.assert_array_equal(a, b_)

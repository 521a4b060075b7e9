"""Accuracy figures, the attack-ordering sanity check and the blessing checks."""
import numpy as np
import pytest

from components.robustness_evaluator import metrics
from components.config import Thresholds

THRESHOLDS = Thresholds(min_clean_accuracy=0.9,
                        min_attack_accuracy={'fgsm': 0.5, 'pgd40': 0.3}, max_drop=0.02)
GOOD = {'clean': 0.95, 'fgsm': 0.6, 'pgd40': 0.35}


def _by_name(checks):
  return {c['name']: c for c in checks}


def test_accuracy_and_per_class():
  labels = np.array([0, 0, 1, 1, 1, 2])
  preds = np.array([0, 1, 1, 1, 0, 2])
  assert metrics.accuracy(labels, preds) == pytest.approx(4 / 6)
  assert metrics.per_class_accuracy(labels, preds, 4) == {
      '0': 0.5, '1': pytest.approx(2 / 3), '2': 1.0, '3': None}
  with pytest.raises(ValueError, match='zero examples'):
    metrics.accuracy(np.array([]), np.array([]))
  with pytest.raises(ValueError, match='shape'):
    metrics.accuracy(labels, preds[:3])


def test_ordering_warns_when_a_stronger_attack_scores_higher():
  ok = [('clean', 0.99), ('fgsm', 0.8), ('pgd40', 0.5)]
  assert metrics.ordering_warnings(ok, 'candidate') == []
  assert metrics.ordering_warnings([('clean', 0.9), ('fgsm', 0.9)], 'c') == []
  masked = [('clean', 0.99), ('fgsm', 0.6), ('pgd40', 0.7)]
  (warning,) = metrics.ordering_warnings(masked, 'candidate')
  assert 'pgd40' in warning and 'fgsm' in warning and 'candidate' in warning
  assert metrics.WEAK_ATTACK in warning
  assert len(metrics.ordering_warnings([('clean', 0.5), ('fgsm', 0.6),
                                        ('pgd40', 0.7)], 'c')) == 2


def test_checks_pass_when_every_threshold_is_met():
  checks = metrics.blessing_checks(GOOD, THRESHOLDS)
  by_name = _by_name(checks)
  assert set(by_name) == {'min_clean_accuracy', 'min_attack_accuracy/fgsm',
                          'min_attack_accuracy/pgd40'}
  fgsm = by_name['min_attack_accuracy/fgsm']
  assert {k: fgsm[k] for k in ('name', 'value', 'threshold', 'comparison', 'passed',
                               'measure')} == dict(
      name='min_attack_accuracy/fgsm', value=0.6, threshold=0.5, comparison='>=',
      passed=True, measure='accuracy')
  assert metrics.is_blessed(checks)
  assert metrics.failed(checks) == []


@pytest.mark.parametrize('metric,value,failing', [
    ('clean', 0.89, 'min_clean_accuracy'),
    ('fgsm', 0.49, 'min_attack_accuracy/fgsm'),
    ('pgd40', 0.1, 'min_attack_accuracy/pgd40'),
])
def test_each_threshold_can_fail_alone(metric, value, failing):
  checks = metrics.blessing_checks(dict(GOOD, **{metric: value}), THRESHOLDS)
  assert [c['name'] for c in checks if not c['passed']] == [failing]
  assert not metrics.is_blessed(checks)
  (message,) = metrics.failed(checks)
  assert message.startswith(failing)


def test_threshold_met_exactly_passes():
  at_bounds = {'clean': 0.9, 'fgsm': 0.5, 'pgd40': 0.3}
  assert metrics.is_blessed(metrics.blessing_checks(at_bounds, THRESHOLDS))


def test_baseline_drop_is_checked_on_every_metric():
  baseline = {'clean': 0.97, 'fgsm': 0.62, 'pgd40': 0.35}
  checks = _by_name(metrics.blessing_checks(GOOD, THRESHOLDS, baseline))
  drop = checks['max_drop/clean']
  assert drop['value'] == pytest.approx(0.02) and drop['threshold'] == 0.02
  assert drop['comparison'] == '<=' and drop['passed']    # exactly max_drop passes
  assert drop['baseline_value'] == 0.97 and drop['candidate_value'] == 0.95
  assert checks['max_drop/fgsm']['passed'] and checks['max_drop/pgd40']['passed']

  worse = dict(baseline, pgd40=0.38)
  checks = metrics.blessing_checks(GOOD, THRESHOLDS, worse)
  assert [c['name'] for c in checks if not c['passed']] == ['max_drop/pgd40']
  assert not metrics.is_blessed(checks)


def test_no_drop_checks_without_baseline_or_max_drop():
  no_drop = Thresholds(min_clean_accuracy=0.9, min_attack_accuracy={}, max_drop=None)
  checks = metrics.blessing_checks(GOOD, no_drop, {'clean': 1.0})
  assert [c['name'] for c in checks] == ['min_clean_accuracy']


def test_threshold_for_an_unknown_attack_is_an_error():
  with pytest.raises(ValueError, match='pgd40'):
    metrics.blessing_checks({'clean': 0.99, 'fgsm': 0.9}, THRESHOLDS)


def test_no_checks_means_not_blessed():
  assert not metrics.is_blessed([])


def test_wilson_interval_matches_the_formula_and_stays_in_range():
  lo, hi = metrics.wilson_interval(90, 100)
  assert lo == pytest.approx(0.8256, abs=1e-4) and hi == pytest.approx(0.9448, abs=1e-4)
  assert metrics.wilson_interval(0, 10)[0] == pytest.approx(0.0, abs=1e-12)
  assert metrics.wilson_interval(10, 10)[1] == pytest.approx(1.0, abs=1e-12)
  assert metrics.wilson_interval(1, 1)[0] < 0.25   # one example proves little


def test_masks_round_trip():
  mask = np.random.default_rng(0).random(1001) < 0.3
  assert np.array_equal(metrics.unpack_mask(metrics.pack_mask(mask), 1001), mask)


def test_one_example_is_refused_by_the_minimum_eval_size():
  checks = metrics.blessing_checks(
      {'clean': metrics.Figure(1.0, 1)}, Thresholds(min_attack_accuracy={}))
  (c,) = checks
  assert not c['passed'] and c['measure'] == 'num_examples' and c['value'] == 1


def test_lower_bound_gate_fails_a_threshold_just_above_the_truth():
  # 905/1000 correct: the point estimate clears 0.90, its interval does not.
  fig = metrics.Figure(0.905, 1000)
  loose = Thresholds(min_clean_accuracy=0.90, min_attack_accuracy={})
  strict = Thresholds(min_clean_accuracy=0.90, min_attack_accuracy={},
                      gate_confidence=True)
  assert metrics.is_blessed(metrics.blessing_checks({'clean': fig}, loose))
  (c,) = metrics.blessing_checks({'clean': fig}, strict)
  assert not c['passed'] and c['measure'] == 'ci95_lower_bound'
  assert c['value'] == pytest.approx(c['ci95'][0]) and c['value'] < 0.90


def test_max_drop_is_paired_on_the_same_images():
  rng = np.random.default_rng(0)
  base = rng.random(1000) < 0.9
  cand = base.copy()
  flip = np.flatnonzero(base)[:30]          # the candidate loses 30 images ...
  cand[flip] = False
  gain = np.flatnonzero(~base)[:5]          # ... and gains 5
  cand[gain] = True
  t = Thresholds(min_clean_accuracy=0.0, min_attack_accuracy={}, max_drop=0.02)
  checks = _by_name(metrics.blessing_checks(
      {'clean': metrics.Figure(cand.mean(), 1000, cand)}, t,
      {'clean': metrics.Figure(base.mean(), 1000, base)}))
  drop = checks['max_drop/clean']
  assert drop['paired'] and (drop['lost'], drop['gained']) == (30, 5)
  assert drop['value'] == pytest.approx(0.025) and not drop['passed']
  assert drop['ci95'][0] < 0.025 < drop['ci95'][1]

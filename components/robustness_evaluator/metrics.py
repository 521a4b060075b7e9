"""Accuracy figures, sanity warnings and the blessing checks (pure numpy/Python).

Every blessing check is recorded as {name, value, threshold, comparison, passed},
so the blessing says exactly which number failed against which bound.
"""
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from components.config import Thresholds

CLEAN = 'clean'
WEAK_ATTACK = 'attack is weak or gradients are masked'
_COMPARE = {'>=': lambda v, t: v >= t, '<=': lambda v, t: v <= t}


def accuracy(labels: np.ndarray, preds: np.ndarray) -> float:
  labels, preds = np.asarray(labels), np.asarray(preds)
  if labels.shape != preds.shape:
    raise ValueError(f'labels shape {labels.shape} != predictions shape {preds.shape}')
  if labels.size == 0:
    raise ValueError('accuracy of zero examples is undefined')
  return float(np.mean(labels == preds))


def per_class_accuracy(labels: np.ndarray, preds: np.ndarray,
                       num_classes: int) -> Dict[str, Optional[float]]:
  """Accuracy per true class; None for a class absent from the sample."""
  labels, preds = np.asarray(labels), np.asarray(preds)
  out: Dict[str, Optional[float]] = {}
  for c in range(num_classes):
    mask = labels == c
    out[str(c)] = float(np.mean(preds[mask] == c)) if mask.any() else None
  return out


def summary(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> Dict:
  return {'accuracy': accuracy(labels, preds),
          'per_class': per_class_accuracy(labels, preds, num_classes),
          'num_examples': int(len(labels))}


def ordering_warnings(ladder: Sequence[Tuple[str, float]], context: str) -> List[str]:
  """Warnings where a stronger attack scores *higher* than a weaker one.

  ``ladder`` lists (label, accuracy) from weakest to strongest (e.g. clean, FGSM,
  PGD on the same examples, or one attack at growing epsilon). A stronger attack
  that leaves more examples correct means it failed to find what a weaker one did:
  too few steps, or gradients that do not point to the loss (masking).
  """
  warnings = []
  for (weak, weak_acc), (strong, strong_acc) in zip(ladder, ladder[1:]):
    if strong_acc > weak_acc:
      warnings.append(
          f'{context}: accuracy under {strong} ({strong_acc:.4f}) is above {weak} '
          f'({weak_acc:.4f}): {WEAK_ATTACK}')
  return warnings


def check(name: str, value: float, threshold: float, comparison: str = '>=',
          **extra) -> Dict:
  if comparison not in _COMPARE:
    raise ValueError(f'comparison={comparison!r}: must be one of {sorted(_COMPARE)}')
  return dict(name=name, value=float(value), threshold=float(threshold),
              comparison=comparison,
              passed=bool(_COMPARE[comparison](value, threshold)), **extra)


def blessing_checks(candidate: Mapping[str, float], thresholds: Thresholds,
                    baseline: Optional[Mapping[str, float]] = None) -> List[Dict]:
  """All checks the candidate must pass to be blessed.

  ``candidate`` and ``baseline`` map headline metric names ('clean' and each attack
  name) to accuracy. Absolute bounds come from Thresholds; with a baseline and
  max_drop set, every headline metric may fall at most max_drop below the
  baseline's value on the same examples and attacks (value = baseline - candidate).
  """
  thresholds.validate()
  if CLEAN not in candidate:
    raise ValueError(f'candidate metrics lack {CLEAN!r}: {sorted(candidate)}')
  checks = [check('min_clean_accuracy', candidate[CLEAN], thresholds.min_clean_accuracy)]
  for name, bound in sorted(thresholds.min_attack_accuracy.items()):
    if name not in candidate:
      raise ValueError(f'threshold for attack {name!r} but no such metric: '
                       f'{sorted(candidate)}')
    checks.append(check(f'min_attack_accuracy/{name}', candidate[name], bound))
  if baseline is not None and thresholds.max_drop is not None:
    for name in sorted(candidate):
      if name in baseline:
        # Rounded so a drop of exactly max_drop (accuracies are multiples of
        # 1/n) is not failed by float error.
        drop = round(baseline[name] - candidate[name], 10)
        checks.append(check(f'max_drop/{name}', drop, thresholds.max_drop, '<=',
                            candidate_value=float(candidate[name]),
                            baseline_value=float(baseline[name])))
  return checks


def is_blessed(checks: Sequence[Dict]) -> bool:
  """Blessed only when every check passed (and there was at least one)."""
  return bool(checks) and all(c['passed'] for c in checks)


def failed(checks: Sequence[Dict]) -> List[str]:
  return [f"{c['name']}: {c['value']:.4f} not {c['comparison']} {c['threshold']:.4f}"
          for c in checks if not c['passed']]

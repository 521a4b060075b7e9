"""Accuracy figures, sanity warnings and the blessing checks (pure numpy/Python).

Every figure carries its sample size and a 95% Wilson interval; every blessing check
is recorded as {name, value, threshold, comparison, passed, ...}, so the blessing
says exactly which number failed against which bound, on how many images.
"""
import base64
import math
from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

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


Z95 = 1.959963984540054


def wilson_interval(correct: int, n: int, z: float = Z95) -> Tuple[float, float]:
  """95% Wilson score interval of a binomial proportion: unlike the normal
  approximation it stays inside [0, 1] and is honest at 0/n and n/n."""
  if n <= 0:
    raise ValueError('an interval of zero examples is undefined')
  p = correct / n
  denom = 1.0 + z * z / n
  centre = (p + z * z / (2 * n)) / denom
  half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
  return max(0.0, centre - half), min(1.0, centre + half)


def pack_mask(mask: np.ndarray) -> str:
  """A boolean per-example array as base64 of its packed bits (1,000 images: 168
  characters), so metrics.json keeps which images each attack broke."""
  return base64.b64encode(np.packbits(np.asarray(mask, bool)).tobytes()).decode('ascii')


def pack_codes(codes: np.ndarray) -> str:
  """Small per-example integer codes (int8) as base64, e.g. which attack broke each
  image."""
  return base64.b64encode(np.asarray(codes, np.int8).tobytes()).decode('ascii')


def unpack_codes(text: str) -> np.ndarray:
  return np.frombuffer(base64.b64decode(text), np.int8).copy()


def unpack_mask(text: str, n: int) -> np.ndarray:
  bits = np.unpackbits(np.frombuffer(base64.b64decode(text), np.uint8))
  if len(bits) < n:
    raise ValueError(f'packed mask holds {len(bits)} bits, expected {n}')
  return bits[:n].astype(bool)


def summary(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> Dict:
  """Accuracy with its sample size, 95% interval, per-class figures and the packed
  per-example correctness (for paired comparisons with another model)."""
  correct = np.asarray(labels) == np.asarray(preds)
  acc = accuracy(labels, preds)
  return {'accuracy': acc,
          'per_class': per_class_accuracy(labels, preds, num_classes),
          'num_examples': int(len(labels)),
          'ci95': list(wilson_interval(int(correct.sum()), len(labels))),
          'correct': pack_mask(correct)}


class Figure(NamedTuple):
  """One headline figure: accuracy, sample size, and per-example correctness when
  known (it makes drops against the baseline paired comparisons)."""
  accuracy: float
  num_examples: int = 0
  correct: Optional[np.ndarray] = None


def figure_of(entry: Mapping) -> Figure:
  """The Figure of a summary() dict (as written in metrics.json)."""
  n = int(entry['num_examples'])
  mask = unpack_mask(entry['correct'], n) if entry.get('correct') else None
  return Figure(float(entry['accuracy']), n, mask)


FigureLike = Union[Figure, float]


def _as_figure(v: FigureLike) -> Figure:
  return v if isinstance(v, Figure) else Figure(float(v))


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


def blessing_checks(candidate: Mapping[str, FigureLike], thresholds: Thresholds,
                    baseline: Optional[Mapping[str, FigureLike]] = None) -> List[Dict]:
  """All checks the candidate must pass to be blessed.

  ``candidate`` and ``baseline`` map headline metric names ('clean' and each attack
  name) to a Figure (or a bare accuracy). Absolute bounds come from Thresholds:
  with gate_confidence the value compared is the lower end of the 95% interval.
  With a baseline and max_drop set, every headline metric may fall at most
  max_drop below the baseline's (value = baseline - candidate), computed on the
  same images when both carry per-example results (paired), with the paired
  difference's 95% interval recorded.
  """
  thresholds.validate()
  if CLEAN not in candidate:
    raise ValueError(f'candidate metrics lack {CLEAN!r}: {sorted(candidate)}')
  cand = {k: _as_figure(v) for k, v in candidate.items()}
  bounds = [('min_clean_accuracy', CLEAN, thresholds.min_clean_accuracy)]
  for name, bound in sorted(thresholds.min_attack_accuracy.items()):
    if name not in cand:
      raise ValueError(f'threshold for attack {name!r} but no such metric: '
                       f'{sorted(cand)}')
    bounds.append((f'min_attack_accuracy/{name}', name, bound))
  checks = [_bound_check(label, cand[name], bound, thresholds)
            for label, name, bound in bounds]
  if baseline is not None and thresholds.max_drop is not None:
    base = {k: _as_figure(v) for k, v in baseline.items()}
    for name in sorted(cand):
      if name in base:
        checks.append(_drop_check(name, cand[name], base[name], thresholds.max_drop))
  return checks


def _bound_check(label: str, fig: Figure, bound: float,
                 thresholds: Thresholds) -> Dict:
  extra = {'accuracy': fig.accuracy, 'num_examples': fig.num_examples}
  if fig.num_examples:
    lo, hi = wilson_interval(round(fig.accuracy * fig.num_examples), fig.num_examples)
    extra['ci95'] = [lo, hi]
    if fig.num_examples < thresholds.min_eval_examples:
      return check(label, fig.num_examples, thresholds.min_eval_examples,
                   measure='num_examples', **extra)
    if thresholds.gate_confidence:
      return check(label, lo, bound, measure='ci95_lower_bound', **extra)
  elif thresholds.gate_confidence:
    raise ValueError(f'{label}: gate_confidence needs the sample size of the figure')
  return check(label, fig.accuracy, bound, measure='accuracy', **extra)


def _drop_check(name: str, cand: Figure, base: Figure, max_drop: float) -> Dict:
  paired = (cand.correct is not None and base.correct is not None and
            len(cand.correct) == len(base.correct) and len(cand.correct) > 0)
  if paired:
    n = len(cand.correct)
    lost = int(np.sum(base.correct & ~cand.correct))    # baseline right, candidate wrong
    gained = int(np.sum(~base.correct & cand.correct))
    diff = (lost - gained) / n
    # Paired (McNemar-style) standard error of the difference of two proportions.
    se = math.sqrt(max(lost + gained - n * diff * diff, 0.0)) / n
    extra = dict(paired=True, num_examples=n, lost=lost, gained=gained,
                 ci95=[diff - Z95 * se, diff + Z95 * se],
                 candidate_value=float(np.mean(cand.correct)),
                 baseline_value=float(np.mean(base.correct)))
  else:
    diff = base.accuracy - cand.accuracy
    extra = dict(paired=False, candidate_value=cand.accuracy,
                 baseline_value=base.accuracy)
  # Rounded so a drop of exactly max_drop (accuracies are multiples of 1/n) is not
  # failed by float error.
  return check(f'max_drop/{name}', round(diff, 10), max_drop, '<=', **extra)


def is_blessed(checks: Sequence[Dict]) -> bool:
  """Blessed only when every check passed (and there was at least one)."""
  return bool(checks) and all(c['passed'] for c in checks)


def failed(checks: Sequence[Dict]) -> List[str]:
  return [f"{c['name']}: {c['value']:.4f} not {c['comparison']} {c['threshold']:.4f}"
          for c in checks if not c['passed']]

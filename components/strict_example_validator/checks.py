"""The validator's semantic data checks: pure NumPy on per-split summaries.

The schema says what a valid example looks like; these checks catch datasets whose
examples are each valid but which as a whole would train or evaluate wrongly:

* leakage: eval images that are pixel-exact copies of train images;
* class_balance: a class missing from a split, or rarer than a minimum share
  (a single-class training set fails here);
* blank_images: single-valued images (all black, all white, one gray);
* inverted_images: images whose border is bright; MNIST digits are light strokes
  on a black background, so a bright border means inverted or non-MNIST images;
* label_agreement: for each class, train's mean image should be nearest to eval's
  mean image of the same class. Shuffled or permuted labels of either split break
  that, and it needs no reference but the other split;
* drift: TFDV's Jensen-Shannon drift of the image and label distributions against
  the previous span (computed by the executor; judged here).

A split is read once into a SplitSummary (counts, per-class pixel sums, digests),
which is all the checks need, so memory stays small whatever the split size.
"""
import dataclasses
import hashlib
from typing import Any, Dict, List, Mapping, Optional

import numpy as np

from components.strict_example_validator.checks_config import DataChecksConfig
from components.strict_example_validator.checks_config import FLAGS

TRAIN = 'train'
EVAL = 'eval'
NUM_CLASSES = 10
SIDE = 28
NUM_PIXELS = SIDE * SIDE
# The outer frame MNIST's centring leaves dark (digits sit in the central 20x20).
BORDER = 2
BRIGHT = 127.5
MNIST_MEAN_INTENSITY = 0.13

_border = np.ones((SIDE, SIDE), bool)
_border[BORDER:-BORDER, BORDER:-BORDER] = False
BORDER_MASK = _border.reshape(-1)


@dataclasses.dataclass
class SplitSummary:
  """What the checks need from one split; add() batches of (images, labels)."""
  count: int = 0
  class_counts: np.ndarray = dataclasses.field(
      default_factory=lambda: np.zeros(NUM_CLASSES, np.int64))
  class_sums: np.ndarray = dataclasses.field(
      default_factory=lambda: np.zeros((NUM_CLASSES, NUM_PIXELS), np.float64))
  other_labels: int = 0      # outside 0-9 (the schema check reports those)
  blank: int = 0             # single-valued images
  bright_border: int = 0     # non-blank images with a mean border value > BRIGHT
  pixel_sum: float = 0.0
  digests: List[bytes] = dataclasses.field(default_factory=list)  # non-blank images

  def add(self, images: np.ndarray, labels: np.ndarray) -> 'SplitSummary':
    """Accumulates a batch: images [N, 784] or [N, 28, 28] of 0-255, labels [N]."""
    images = np.asarray(images).reshape(len(images), NUM_PIXELS)
    labels = np.asarray(labels).reshape(-1)
    if len(images) != len(labels):
      raise ValueError(f'{len(images)} images but {len(labels)} labels')
    pixels = images.astype(np.uint8)
    self.count += len(pixels)
    self.pixel_sum += float(pixels.sum(dtype=np.float64))
    known = (labels >= 0) & (labels < NUM_CLASSES)
    self.other_labels += int((~known).sum())
    for c in range(NUM_CLASSES):
      rows = labels == c
      self.class_counts[c] += int(rows.sum())
      self.class_sums[c] += pixels[rows].sum(axis=0, dtype=np.float64)
    blank = pixels.min(axis=1) == pixels.max(axis=1)
    self.blank += int(blank.sum())
    border_mean = pixels[:, BORDER_MASK].mean(axis=1)
    self.bright_border += int(((border_mean > BRIGHT) & ~blank).sum())
    self.digests.extend(hashlib.blake2b(row.tobytes(), digest_size=16).digest()
                        for row in pixels[~blank])
    return self

  @property
  def mean_intensity(self) -> float:
    return self.pixel_sum / max(self.count * NUM_PIXELS * 255.0, 1.0)


def summarize(images: np.ndarray, labels: np.ndarray) -> SplitSummary:
  return SplitSummary().add(images, labels)


@dataclasses.dataclass(frozen=True)
class Finding:
  """One check's verdict on one split (or split pair), with its figures."""
  check: str
  passed: bool
  message: str
  figures: Dict[str, Any] = dataclasses.field(default_factory=dict)

  def to_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)


def _relax(field: str, value: Any) -> str:
  verb = 'raise' if field.startswith('max_') else 'lower'
  return f'{FLAGS[field]} {value}; {verb} it, or 0 disables the check'


def _pct(share: float) -> str:
  return f'{100 * share:.1f}%'


def check_leakage(train: SplitSummary, eval_: SplitSummary,
                  max_share: float) -> Finding:
  """Share of eval examples whose pixels exactly equal a train example's.

  Blank images are left to blank_images: two black squares leak nothing.
  """
  seen = set(train.digests)
  copies = sum(d in seen for d in eval_.digests)
  share = copies / max(eval_.count, 1)
  figures = {'copies': copies, 'eval_count': eval_.count, 'share': share,
             'max_share': max_share}
  if share > max_share:
    return Finding('leakage', False, (
        f'leakage: {copies} of {eval_.count} eval examples ({_pct(share)}) are '
        f'pixel-exact copies of train examples, above {_pct(max_share)} '
        f'({_relax("max_duplicate_share", max_share)})'), figures)
  return Finding('leakage', True, f'leakage: {copies} eval copies of train examples '
                 f'({_pct(share)})', figures)


def check_class_balance(summary: SplitSummary, split: str,
                        min_share: float) -> Finding:
  counts = summary.class_counts
  shares = counts / max(summary.count, 1)
  missing = [c for c in range(NUM_CLASSES) if counts[c] == 0]
  rare = [c for c in range(NUM_CLASSES) if 0 < shares[c] < min_share]
  figures = {'split': split, 'class_counts': counts.tolist(), 'min_share': min_share}
  if missing or rare:
    parts = []
    if missing:
      parts.append(f'class(es) {", ".join(map(str, missing))} absent')
    if rare:
      parts.append('class(es) ' + ', '.join(f'{c} ({_pct(shares[c])})' for c in rare) +
                   f' below {_pct(min_share)}')
    return Finding('class_balance', False, (
        f'class_balance: split {split}: {"; ".join(parts)} of {summary.count} '
        f'examples (counts per class {counts.tolist()}; '
        f'{_relax("min_class_share", min_share)})'), figures)
  return Finding('class_balance', True, f'class_balance: split {split}: smallest class '
                 f'{_pct(shares.min())}', figures)


def check_blank(summary: SplitSummary, split: str, max_share: float) -> Finding:
  share = summary.blank / max(summary.count, 1)
  figures = {'split': split, 'blank': summary.blank, 'count': summary.count,
             'share': share, 'max_share': max_share}
  if share > max_share:
    return Finding('blank_images', False, (
        f'blank_images: split {split}: {summary.blank} of {summary.count} images '
        f'({_pct(share)}) are blank (one pixel value throughout), above '
        f'{_pct(max_share)} ({_relax("max_blank_share", max_share)})'), figures)
  return Finding('blank_images', True, f'blank_images: split {split}: '
                 f'{summary.blank} blank', figures)


def check_inverted(summary: SplitSummary, split: str, max_share: float) -> Finding:
  share = summary.bright_border / max(summary.count, 1)
  figures = {'split': split, 'bright_border': summary.bright_border,
             'count': summary.count, 'share': share, 'max_share': max_share,
             'mean_intensity': summary.mean_intensity}
  if share > max_share:
    return Finding('inverted_images', False, (
        f'inverted_images: split {split}: inverted or non-MNIST images: '
        f'{summary.bright_border} of {summary.count} ({_pct(share)}) have a bright '
        f'border (mean > {BRIGHT:g} of 255 in the outer {BORDER} pixels, where MNIST '
        f'is black); mean intensity {summary.mean_intensity:.2f} (MNIST: about '
        f'{MNIST_MEAN_INTENSITY}); above {_pct(max_share)} '
        f'({_relax("max_inverted_share", max_share)})'), figures)
  return Finding('inverted_images', True, f'inverted_images: split {split}: '
                 f'{summary.bright_border} with a bright border', figures)


def nearest_classes(train: SplitSummary, eval_: SplitSummary) -> Dict[int, int]:
  """For each class in both splits: the eval class whose mean image is nearest
  (cosine, after removing each split's average class mean) to train's mean image."""
  classes = [c for c in range(NUM_CLASSES)
             if train.class_counts[c] and eval_.class_counts[c]]
  if not classes:
    return {}

  def centred_unit(s: SplitSummary) -> np.ndarray:
    means = s.class_sums[classes] / s.class_counts[classes, None]
    means = means - means.mean(axis=0)
    norms = np.linalg.norm(means, axis=1, keepdims=True)
    return np.divide(means, norms, out=np.zeros_like(means), where=norms > 0)

  similarity = centred_unit(train) @ centred_unit(eval_).T
  return {c: classes[int(i)] for c, i in zip(classes, similarity.argmax(axis=1))}


def check_label_agreement(train: SplitSummary, eval_: SplitSummary,
                          min_share: float) -> Finding:
  nearest = nearest_classes(train, eval_)
  agreed = [c for c, e in nearest.items() if c == e]
  figures = {'classes': len(nearest), 'agreed': len(agreed), 'min_share': min_share,
             'nearest': {str(c): e for c, e in nearest.items()}}
  if len(nearest) < 2:
    return Finding('label_agreement', True, 'label_agreement: fewer than 2 classes '
                   'in both splits, not measurable', figures)
  share = len(agreed) / len(nearest)
  figures['share'] = share
  if share < min_share:
    wrong = ', '.join(f'{c}->{e}' for c, e in nearest.items() if c != e)
    return Finding('label_agreement', False, (
        f'label_agreement: train and eval labels disagree: train\'s mean image of a '
        f'class is nearest to eval\'s mean image of the same class for only '
        f'{len(agreed)} of {len(nearest)} classes ({_pct(share)}), below '
        f'{_pct(min_share)}; nearest eval class per train class: {wrong}. The labels '
        f'of one split are probably shuffled or permuted '
        f'({_relax("min_label_agreement", min_share)})'), figures)
  return Finding('label_agreement', True, f'label_agreement: {len(agreed)} of '
                 f'{len(nearest)} classes agree', figures)


def check_drift(split: str, divergences: Mapping[str, float], max_drift: float,
                allow: bool, previous: str = 'the previous span') -> Finding:
  """Judges TFDV's Jensen-Shannon divergences (feature -> value) against max_drift."""
  high = {f: v for f, v in sorted(divergences.items()) if v > max_drift}
  figures = {'split': split, 'divergence': dict(divergences), 'max_drift': max_drift,
             'allowed': allow, 'reference': previous}
  if not high:
    return Finding('drift', True, f'drift: split {split}: ' + ', '.join(
        f'{f} {v:.3f}' for f, v in sorted(divergences.items())), figures)
  message = (f'drift: split {split}: distribution of ' + ', '.join(
      f"'{f}' moved by Jensen-Shannon divergence {v:.3f}" for f, v in high.items()) +
             f' against {previous}, above {max_drift} '
             f'({FLAGS["max_drift"]} {max_drift}; {FLAGS["allow_drift"]} reports drift '
             'without failing, --max-drift 0 disables the check)')
  if allow:
    return Finding('drift', True, message + ' [allowed by --allow-drift]', figures)
  return Finding('drift', False, message, figures)


def run_checks(summaries: Mapping[str, SplitSummary],
               config: DataChecksConfig) -> List[Finding]:
  """All enabled example-based checks (drift is judged separately, by check_drift)."""
  findings = []
  for split, summary in sorted(summaries.items()):
    if config.enabled('min_class_share'):
      findings.append(check_class_balance(summary, split, config.min_class_share))
    if config.enabled('max_blank_share'):
      findings.append(check_blank(summary, split, config.max_blank_share))
    if config.enabled('max_inverted_share'):
      findings.append(check_inverted(summary, split, config.max_inverted_share))
  train: Optional[SplitSummary] = summaries.get(TRAIN)
  eval_: Optional[SplitSummary] = summaries.get(EVAL)
  if train is not None and eval_ is not None:
    if config.enabled('max_duplicate_share'):
      findings.append(check_leakage(train, eval_, config.max_duplicate_share))
    if config.enabled('min_label_agreement'):
      findings.append(check_label_agreement(train, eval_, config.min_label_agreement))
  return findings

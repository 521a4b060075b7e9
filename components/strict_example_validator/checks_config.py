"""Thresholds of the validator's data checks: one frozen dataclass, one JSON property.

A leaf module (standard library only): the runner's flag parsing and the pipeline
import it without pulling in TFX. Every check is relaxed by its own value; 0 or
None disables it. The command-line flag of each field is in FLAGS, and the
checks' error messages name it, so a failed run says which flag to change.
"""
import dataclasses
import json
import math
from typing import Any, Dict, Optional


@dataclasses.dataclass(frozen=True)
class DataChecksConfig:
  """Semantic checks beyond the schema; defaults suit MNIST-sized splits."""
  # Leakage: largest share of eval examples that are pixel-exact copies of train ones.
  max_duplicate_share: Optional[float] = 0.01
  # Class balance: every class 0-9 present in each split, each with at least this share.
  min_class_share: Optional[float] = 0.02
  # Largest share of blank (single-valued) images per split.
  max_blank_share: Optional[float] = 0.01
  # Largest share of images with a bright border (inverted or non-MNIST) per split.
  max_inverted_share: Optional[float] = 0.01
  # Least share of classes whose train mean image is nearest to eval's same class.
  # 0.9 of 10 classes tolerates one noisy class but catches any swap (2+ classes).
  min_label_agreement: Optional[float] = 0.9
  # Largest Jensen-Shannon divergence (TFDV drift comparator) of image and label
  # distributions against the previous span's statistics.
  max_drift: Optional[float] = 0.1
  # Report drift above max_drift as a warning instead of failing.
  allow_drift: bool = False

  def __post_init__(self):
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      if field.name == 'allow_drift':
        if not isinstance(value, bool):
          raise ValueError(f'{FLAGS[field.name]}: must be true or false, got {value!r}')
        continue
      if value is None:
        continue
      if (isinstance(value, bool) or not isinstance(value, (int, float)) or
          math.isnan(value) or not 0 <= value <= 1):
        raise ValueError(f'{FLAGS[field.name]} {value!r}: must be a share between 0 '
                         'and 1 (0 disables the check)')

  def enabled(self, name: str) -> bool:
    return bool(getattr(self, name))

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), sort_keys=True)

  @classmethod
  def from_json(cls, text: Optional[str]) -> 'DataChecksConfig':
    """The config of a JSON object; missing fields keep their defaults."""
    if not text:
      return cls()
    values: Dict[str, Any] = json.loads(text)
    if not isinstance(values, dict):
      raise ValueError(f'data_checks must be a JSON object, got {text!r}')
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
      raise ValueError(f'data_checks: unknown field(s) {unknown}; known: '
                       f'{sorted(FLAGS)}')
    return cls(**values)


# Command-line flag of each field (the integrator's runner defines them).
FLAGS: Dict[str, str] = {
    'max_duplicate_share': '--max-duplicate-share',
    'min_class_share': '--min-class-share',
    'max_blank_share': '--max-blank-share',
    'max_inverted_share': '--max-inverted-share',
    'min_label_agreement': '--min-label-agreement',
    'max_drift': '--max-drift',
    'allow_drift': '--allow-drift',
}

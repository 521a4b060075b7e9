"""Turns a TFDV Anomalies proto into readable lines and an error."""
from typing import Dict, List


class DataAnomalyError(RuntimeError):
  """The data does not match the schema; training on it would be wrong."""

  def __init__(self, found: Dict[str, List[str]]):
    self.found = found
    lines = [f'  split {split}: {line}' for split, ls in found.items() for line in ls]
    super().__init__('ExampleValidator found data anomalies; the pipeline stops '
                     'before training:\n' + '\n'.join(lines))


def describe(anomalies) -> List[str]:
  """One line per anomalous feature (and for dataset-level anomalies)."""
  lines = []
  for feature, info in sorted(anomalies.anomaly_info.items()):
    reasons = '; '.join(r.description or r.short_description for r in info.reason)
    lines.append(f"feature '{feature}': {info.short_description}: {reasons}")
  if anomalies.HasField('dataset_anomaly_info'):
    info = anomalies.dataset_anomaly_info
    reasons = '; '.join(r.description or r.short_description for r in info.reason)
    lines.append(f'dataset: {info.short_description}: {reasons}')
  return lines


class DataCheckError(RuntimeError):
  """Data checks beyond the schema failed (see checks.py); each line names its check,
  the figures and the flag that relaxes it."""

  def __init__(self, findings):
    self.findings = list(findings)
    super().__init__('ExampleValidator data checks failed; the pipeline stops before '
                     'training:\n' + '\n'.join(f'  {f.message}' for f in self.findings))

"""The pipeline's run parameters: what a (scheduled) run may change without recompiling.

data_dir     where MnistExampleGen reads the IDX files (or the span folders).
range_config which span to ingest, as a TFX RangeConfig in JSON; empty means the
             latest span under data_dir (what scheduled retraining wants).
"""
import json
from typing import Dict, Optional

from kubeflow import uris

DATA_DIR = 'data_dir'
RANGE_CONFIG = 'range_config'
LATEST_SPAN = ''

DESCRIPTIONS = {
    DATA_DIR: 'Directory with the MNIST IDX files or span-N folders (gs://... or a '
              'mounted absolute path).',
    RANGE_CONFIG: 'TFX RangeConfig JSON selecting the span to ingest; empty ingests '
                  'the latest span.',
}


class ParameterError(ValueError):
  """A run parameter value is invalid; the message names it."""


def span_range_config(span: int) -> str:
  """RangeConfig JSON that ingests exactly one span."""
  if not isinstance(span, int) or isinstance(span, bool) or span < 0:
    raise ParameterError(f'--span={span!r}: must be an integer >= 0')
  return json.dumps({'staticRange': {'startSpanNumber': span, 'endSpanNumber': span}},
                    sort_keys=True)


def run_arguments(data_dir: Optional[str] = None, span: Optional[int] = None,
                  ) -> Dict[str, str]:
  """Run parameters for a KFP run; only the given ones (the rest keep their defaults)."""
  args: Dict[str, str] = {}
  if data_dir is not None:
    args[DATA_DIR] = uris.check_tf_location(data_dir, '--data-dir')
  if span is not None:
    args[RANGE_CONFIG] = span_range_config(span)
  return args

"""ExampleValidator executor that fails the execution on any anomaly.

The stock executor only records anomalies (a ``blessed`` property per split) and
lets the pipeline go on; nothing downstream in TFX 1.16 reads that property, so a
bad span would be trained on. Failing here stops the run before Transform and
Trainer, with the anomalies named in the error.

After the schema, the data checks of checks.py run (thresholds from the
``data_checks`` JSON property, a DataChecksConfig):

* with the optional ``examples`` input, one plain pass over each split's gzip
  TFRecords (tf.data, batched parsing) fills a checks.SplitSummary. A Beam job
  would add pipeline start-up and a shuffle for what is a few seconds of work on
  one core at MNIST scale (70k examples, 55 MB of pixels at most), and the summary
  keeps only per-class sums and 16-byte digests, so memory stays small;
* with the optional ``previous_statistics`` input (earlier StatisticsGen outputs,
  see previous_statistics.py; the newest is the reference), TFDV's own drift comparator measures the Jensen-Shannon divergence of
  the image and label distributions (tfdv.validate_statistics with
  previous_statistics, on a copy of the schema with drift_comparator set).

Every finding is written to ``<anomalies>/DataChecks.json``; a failed check raises
DataCheckError, so no successful execution (and no LIVE output) records the span.
"""
import copy
import json
import os
from typing import Any, Dict, List, Optional

from absl import logging
import tensorflow as tf
import tensorflow_data_validation as tfdv
from tfx import types
from tfx.components.example_validator import executor as stock
from tfx.components.example_validator import labels
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.dsl.io import fileio
from tfx.types import artifact_utils
from tfx.types import standard_component_specs
from tfx.utils import io_utils

from components.strict_example_validator import anomalies as anomalies_lib
from components.strict_example_validator import checks
from components.strict_example_validator.checks_config import DataChecksConfig
from components.transform import features

from tensorflow_metadata.proto.v0 import anomalies_pb2

EXAMPLES_KEY = 'examples'
PREVIOUS_STATISTICS_KEY = 'previous_statistics'
DATA_CHECKS_KEY = 'data_checks'
FINDINGS_FILE = 'DataChecks.json'
DRIFT_FEATURES = (features.IMAGE_KEY, features.LABEL_KEY)
_BATCH = 2048
_JSD = anomalies_pb2.DriftSkewInfo.Measurement.JENSEN_SHANNON_DIVERGENCE


class Executor(stock.Executor):

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]):
    self._found = {}
    result = super().Do(input_dict, output_dict, exec_properties)
    if self._found:
      raise anomalies_lib.DataAnomalyError(self._found)
    config = DataChecksConfig.from_json(exec_properties.get(DATA_CHECKS_KEY))
    findings = example_findings(input_dict.get(EXAMPLES_KEY) or [], config)
    findings += drift_findings(
        artifact_utils.get_single_instance(
            input_dict[standard_component_specs.STATISTICS_KEY]),
        input_dict.get(PREVIOUS_STATISTICS_KEY) or [],
        _read_schema(input_dict), config)
    for finding in findings:
      (logging.info if finding.passed else logging.error)('Data check %s', finding.message)
    anomalies_uri = artifact_utils.get_single_uri(
        output_dict[standard_component_specs.ANOMALIES_KEY])
    with fileio.open(os.path.join(anomalies_uri, FINDINGS_FILE), 'w') as f:
      f.write(json.dumps({'config': json.loads(config.to_json()),
                          'findings': [x.to_dict() for x in findings]}, indent=1))
    failed = [x for x in findings if not x.passed]
    if failed:
      raise anomalies_lib.DataCheckError(failed)
    return result

  def _Validate(self, inputs, outputs):
    anomalies = super()._Validate(inputs, outputs)
    described = anomalies_lib.describe(anomalies)
    if described:
      # The split is only known through its output folder, 'Split-<name>'.
      split_dir = os.path.basename(str(outputs[labels.SCHEMA_DIFF_PATH]).rstrip('/'))
      self._found[split_dir.replace('Split-', '', 1)] = described
    return anomalies


def _read_schema(input_dict):
  return io_utils.SchemaReader().read(io_utils.get_only_uri_in_dir(
      artifact_utils.get_single_uri(input_dict[standard_component_specs.SCHEMA_KEY])))


def read_split(split_uri: str) -> checks.SplitSummary:
  """One pass over a split's TFRecords of raw tf.Examples into a SplitSummary."""
  files = sorted(fileio.glob(os.path.join(split_uri, '*')))
  if not files:
    raise ValueError(f'{split_uri}: no example files')
  compression = 'GZIP' if all(f.endswith('.gz') for f in files) else ''
  spec = {
      features.IMAGE_KEY: tf.io.FixedLenFeature([features.NUM_PIXELS], tf.int64),
      features.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
  }
  dataset = (tf.data.TFRecordDataset(files, compression_type=compression)
             .batch(_BATCH)
             .map(lambda batch: tf.io.parse_example(batch, spec)))
  summary = checks.SplitSummary()
  for batch in dataset.as_numpy_iterator():
    summary.add(batch[features.IMAGE_KEY], batch[features.LABEL_KEY])
  return summary


def example_findings(examples: List[types.Artifact],
                     config: DataChecksConfig) -> List[checks.Finding]:
  """The checks that need the examples; none without the examples input."""
  if not examples:
    logging.warning('No examples input: leakage, class balance, blank, inverted and '
                    'label agreement checks are skipped.')
    return []
  artifact = artifact_utils.get_single_instance(examples)
  payload = artifact.get_string_custom_property('payload_format')
  if payload and payload != 'FORMAT_TF_EXAMPLE':
    raise ValueError(f'{artifact.uri}: payload_format {payload}; the data checks read '
                     'tf.Examples (FORMAT_TF_EXAMPLE)')
  summaries = {}
  for split in artifact_utils.decode_split_names(artifact.split_names):
    summaries[split] = read_split(artifact_utils.get_split_uri([artifact], split))
    logging.info('Data checks read %d examples of split %s.',
                 summaries[split].count, split)
  return checks.run_checks(summaries, config)


def reference_statistics(statistics: types.Artifact,
                         candidates: List[types.Artifact]) -> Optional[types.Artifact]:
  """The newest candidate (highest MLMD id) other than the current statistics.

  Not chosen by span: StatisticsGen in TFX 1.16 leaves its output's span at 0. The
  resolver (previous_statistics.py) offers only statistics a validator accepted,
  so the newest of them is the last accepted data, normally the previous span.
  """
  others = [a for a in candidates if a.uri != statistics.uri and
            not (a.id and a.id == statistics.id)]
  return max(others, key=lambda a: a.id) if others else None


def drift_findings(statistics: types.Artifact, previous: List[types.Artifact],
                   schema, config: DataChecksConfig) -> List[checks.Finding]:
  """TFDV's Jensen-Shannon drift of image and label against the previous span."""
  if not config.enabled('max_drift'):
    return []
  if not previous:
    logging.info('No previous statistics: drift not checked (first span?).')
    return []
  prev = reference_statistics(statistics, previous)
  if prev is None:
    logging.info('previous_statistics holds only the current statistics: drift not '
                 'checked.')
    return []
  drift_schema = copy.deepcopy(schema)
  for feature in drift_schema.feature:
    if feature.name in DRIFT_FEATURES:
      feature.drift_comparator.jensen_shannon_divergence.threshold = config.max_drift
  prev_splits = set(artifact_utils.decode_split_names(prev.split_names))
  findings = []
  for split in artifact_utils.decode_split_names(statistics.split_names):
    if split not in prev_splits:
      continue
    result = tfdv.validate_statistics(
        stats_artifact_utils.load_statistics(statistics, split).proto(), drift_schema,
        previous_statistics=stats_artifact_utils.load_statistics(prev, split).proto())
    divergences: Dict[str, float] = {}
    for info in result.drift_skew_info:
      for m in info.drift_measurements:
        if m.type == _JSD:
          divergences['.'.join(info.path.step)] = m.value
    findings.append(checks.check_drift(split, divergences, config.max_drift,
                                       config.allow_drift,
                                       previous=f'the last accepted statistics {prev.uri}'))
  return findings

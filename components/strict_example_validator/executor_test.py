"""The validator's executor on generated raw examples (gzip TFRecords, TFX layout)
and their TFDV statistics: each corruption fails with its named data check, the
matching relaxation passes, and a normal dataset passes."""
import dataclasses
import json
import os
import shutil

import numpy as np
import pyarrow as pa
import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from tensorflow_data_validation.statistics import stats_impl
from tfx import types
from tfx.types import artifact_utils
from tfx.types import standard_artifacts
from tfx.utils import json_utils

from components.mnist_example_gen import testing
from components.strict_example_validator import anomalies as anomalies_lib
from components.strict_example_validator import component
from components.strict_example_validator import executor as executor_lib
from components.strict_example_validator.checks_config import DataChecksConfig
from components.trainer import testing_utils

SCHEMA = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), 'pipeline', 'schema', 'schema.pbtxt')
SPLITS = ('train', 'eval')


def _normal():
  return {'train': testing.fake_digits(200, 0), 'eval': testing.fake_digits(100, 1)}


def _statistics(uri, data):
  stats = standard_artifacts.ExampleStatistics()
  stats.uri = uri
  stats.split_names = artifact_utils.encode_split_names(list(SPLITS))
  for split, (images, labels) in data.items():
    batch = pa.RecordBatch.from_arrays([
        pa.array([im.reshape(-1).astype(np.int64) for im in images],
                 type=pa.list_(pa.int64())),
        pa.array([[int(label)] for label in labels], type=pa.list_(pa.int64())),
    ], ['image', 'label'])
    proto = stats_impl.generate_statistics_in_memory(batch, tfdv.StatsOptions())
    os.makedirs(os.path.join(uri, f'Split-{split}'))
    with open(os.path.join(uri, f'Split-{split}', 'FeatureStats.pb'), 'wb') as f:
      f.write(proto.SerializeToString())
  return stats


def _run(tmp_path, data, config=None, previous=None, with_examples=True):
  """Runs the executor; previous is another dataset, fed as previous_statistics."""
  examples = standard_artifacts.Examples()
  examples.uri = str(tmp_path / 'examples')
  examples.split_names = artifact_utils.encode_split_names(list(SPLITS))
  for split, (images, labels) in data.items():
    os.makedirs(os.path.join(examples.uri, f'Split-{split}'))
    path = os.path.join(examples.uri, f'Split-{split}', 'data_tfrecord-00000-of-00001.gz')
    with tf.io.TFRecordWriter(path, options='GZIP') as writer:
      for record in testing_utils.raw_examples(images, labels):
        writer.write(record)
  schema = standard_artifacts.Schema()
  schema.uri = str(tmp_path / 'schema')
  os.makedirs(schema.uri)
  shutil.copy(SCHEMA, schema.uri)
  anomalies = standard_artifacts.ExampleAnomalies()
  anomalies.uri = str(tmp_path / 'anomalies')
  inputs = {'statistics': [_statistics(str(tmp_path / 'stats'), data)],
            'schema': [schema]}
  if with_examples:
    inputs['examples'] = [examples]
  if previous is not None:
    inputs['previous_statistics'] = [_statistics(str(tmp_path / 'prev'), previous)]
  props = {'exclude_splits': json_utils.dumps([])}
  if config is not None:
    props['data_checks'] = config.to_json()
  executor_lib.Executor().Do(inputs, {'anomalies': [anomalies]}, props)
  with open(os.path.join(anomalies.uri, executor_lib.FINDINGS_FILE)) as f:
    return json.load(f)['findings']


def _fails(tmp_path, data, config=None, previous=None):
  with pytest.raises(anomalies_lib.DataCheckError) as e:
    _run(tmp_path, data, config, previous)
  return e.value


def _copy(data):
  return {s: (im.copy(), lb.copy()) for s, (im, lb) in data.items()}


def _train_equals_eval():
  data = _normal()
  data['eval'] = _copy(data)['train']
  return data


def _single_class_train():
  images, labels = testing.fake_digits(300, 0)
  return {**_normal(), 'train': (images[labels == 3], labels[labels == 3])}


def _blank_train():
  data = _copy(_normal())
  data['train'][0][:20] = 0
  return data


def _inverted():
  return {s: (255 - im, lb) for s, (im, lb) in _normal().items()}


def _shuffled_train_labels():
  data = _normal()
  images, labels = data['train']
  return {**data, 'train': (images, np.random.default_rng(3).permutation(labels))}


CASES = {
    # corruption: (data, named check, message fragment, relaxed config)
    'train_equals_eval': (_train_equals_eval, 'leakage', '--max-duplicate-share 0.01',
                          DataChecksConfig(max_duplicate_share=0)),
    'single_class_train': (_single_class_train, 'class_balance',
                           '--min-class-share 0.02', DataChecksConfig(min_class_share=0)),
    'blank_images': (_blank_train, 'blank_images', '--max-blank-share 0.01',
                     DataChecksConfig(max_blank_share=0.2)),
    'inverted_images': (_inverted, 'inverted_images', 'inverted or non-MNIST images',
                        DataChecksConfig(max_inverted_share=0)),
    'shuffled_train_labels': (_shuffled_train_labels, 'label_agreement',
                              '--min-label-agreement 0.9',
                              DataChecksConfig(min_label_agreement=0)),
}


@pytest.mark.parametrize('case', sorted(CASES))
def test_corruption_fails_its_check_and_the_flag_relaxes_it(tmp_path, case):
  make, check, fragment, relaxed = CASES[case]
  data = make()
  error = _fails(tmp_path / 'strict', data)
  assert {f.check for f in error.findings} == {check}
  assert str(error).startswith('ExampleValidator data checks failed')
  assert f'  {check}: ' in str(error) and fragment in str(error)
  findings = _run(tmp_path / 'relaxed', data, relaxed)
  assert all(f['passed'] for f in findings)


def test_normal_dataset_passes_and_records_its_figures(tmp_path):
  findings = _run(tmp_path, _normal())
  assert all(f['passed'] for f in findings)
  by_check = {(f['check'], f['figures'].get('split')): f for f in findings}
  assert by_check[('class_balance', 'train')]['figures']['class_counts'] == [20] * 10
  assert by_check[('label_agreement', None)]['figures']['agreed'] == 10
  assert by_check[('leakage', None)]['figures']['copies'] == 0


def test_drift_against_the_previous_span(tmp_path):
  # Inverted images, with their own check off: TFDV's comparator sees the pixels move.
  no_inversion_check = DataChecksConfig(max_inverted_share=0)
  error = _fails(tmp_path / 'drift', _inverted(), no_inversion_check, previous=_normal())
  assert {f.check for f in error.findings} == {'drift'}
  assert ("drift: split train: distribution of 'image' moved by Jensen-Shannon "
          'divergence') in str(error)
  assert 'against the last accepted statistics' in str(error)
  assert '--allow-drift' in str(error)
  allowed = dataclasses.replace(no_inversion_check, allow_drift=True)
  findings = _run(tmp_path / 'allowed', _inverted(), allowed, previous=_normal())
  assert [f['passed'] for f in findings if f['check'] == 'drift'] == [True, True]
  other_seed = {'train': testing.fake_digits(200, 5), 'eval': testing.fake_digits(100, 6)}
  same = _run(tmp_path / 'same', _normal(), previous=other_seed)
  drift = [f for f in same if f['check'] == 'drift']
  assert len(drift) == 2 and all(f['passed'] for f in drift)


def _stats_artifact(uri, artifact_id=0):
  a = standard_artifacts.ExampleStatistics()
  a.uri, a.id = uri, artifact_id
  return a


def test_reference_is_the_newest_other_statistics():
  current = _stats_artifact('/s/3', 30)
  candidates = [_stats_artifact('/s/3', 30), _stats_artifact('/s/1', 10),
                _stats_artifact('/s/2', 20)]
  assert executor_lib.reference_statistics(current, candidates).uri == '/s/2'
  assert executor_lib.reference_statistics(current, candidates[:1]) is None
  assert executor_lib.reference_statistics(current, []) is None


def test_without_examples_or_previous_statistics_only_the_schema_is_checked(tmp_path):
  assert _run(tmp_path, _inverted(), with_examples=False) == []


def test_schema_anomaly_still_fails_first(tmp_path):
  data = _copy(_normal())
  data['train'][1][0] = 12   # label out of the schema's 0-9 domain
  with pytest.raises(anomalies_lib.DataAnomalyError, match="split train: feature 'label'"):
    _run(tmp_path, data)


def test_component_spec_takes_the_new_inputs_and_property():
  stats = types.Channel(type=standard_artifacts.ExampleStatistics)
  validator = component.StrictExampleValidator(
      statistics=stats, schema=types.Channel(type=standard_artifacts.Schema),
      examples=types.Channel(type=standard_artifacts.Examples),
      previous_statistics=types.Channel(type=standard_artifacts.ExampleStatistics),
      data_checks=DataChecksConfig(max_blank_share=0.05))
  assert set(validator.inputs) == {'statistics', 'schema', 'examples',
                                   'previous_statistics'}
  assert DataChecksConfig.from_json(
      validator.exec_properties['data_checks']).max_blank_share == 0.05
  bare = component.StrictExampleValidator(
      statistics=stats, schema=types.Channel(type=standard_artifacts.Schema))
  assert set(bare.inputs) == {'statistics', 'schema'}
  with pytest.raises(ValueError, match='unknown field'):
    component.StrictExampleValidator(statistics=stats, schema=stats, data_checks='{"x": 1}')

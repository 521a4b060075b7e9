"""The tfds source on LocalDagRunner: TfdsMnistExampleGen -> StatisticsGen ->
ExampleValidator -> Transform on a small prepared tfds dir; lineage in ml-metadata and
caching per tfds version."""
import collections
import glob
import os

import numpy as np
import pytest
import tensorflow as tf
from tfx import v1 as tfx

from components.mnist_example_gen import tfds_component
from components.mnist_example_gen.tfds_component_test import read_raw_examples, sorted_rows
from pipeline import metadata_queries as mq

pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA_PATH = os.path.join(REPO, 'pipeline', 'schema', 'schema.pbtxt')
PREPROCESSING_FN = 'components.transform.preprocessing.preprocessing_fn'
NODE = 'TfdsMnistExampleGen'


def _pipeline(root, data_dir, version, data_half=True):
  example_gen = tfds_component.TfdsMnistExampleGen(data_dir=data_dir, version=version)
  nodes = [example_gen]
  if data_half:
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs['examples'])
    schema = tfx.components.ImportSchemaGen(schema_file=SCHEMA_PATH)
    validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs['statistics'], schema=schema.outputs['schema'])
    transform = tfx.components.Transform(
        examples=example_gen.outputs['examples'], schema=schema.outputs['schema'],
        preprocessing_fn=PREPROCESSING_FN)
    transform.add_upstream_node(validator)
    nodes += [statistics_gen, schema, validator, transform]
  return tfx.dsl.Pipeline(
      pipeline_name='tfds-data-half', pipeline_root=os.path.join(root, 'root'),
      components=nodes, enable_cache=True,
      metadata_connection_config=tfx.orchestration.metadata
      .sqlite_metadata_connection_config(os.path.join(root, 'metadata.sqlite')),
      beam_pipeline_args=[])  # in-memory DirectRunner; see _run_executor


def _store(root):
  return mq, mq.open_store(os.path.join(root, 'metadata.sqlite'))


def _last_runs(root):
  """node id -> state of its newest execution, and the store."""
  mq, s = _store(root)
  runs = mq.executions_by_node(s)
  return {node: execs[-1] for node, execs in runs.items()}, mq, s


def test_local_dag_runner_data_half_caches_per_version(tfds_mnist, tmp_path):
  from ml_metadata.proto import metadata_store_pb2  # pylint: disable=g-import-not-at-top
  state = metadata_store_pb2.Execution
  root = str(tmp_path)
  d = tfds_mnist.data_dir
  nodes = (NODE, 'StatisticsGen', 'ImportSchemaGen', 'ExampleValidator', 'Transform')

  tfx.orchestration.LocalDagRunner().run(_pipeline(root, d, '3.0.1'))
  last, mq, s = _last_runs(root)
  for node in nodes:
    assert last[node].last_known_state == state.COMPLETE, node
  [examples] = mq.artifacts(s, last[NODE].id)
  # Lineage: the executor's custom properties are in ml-metadata.
  assert mq.prop(examples, 'tfds_name') == 'mnist'
  assert mq.prop(examples, 'tfds_version') == '3.0.1'
  assert mq.prop(examples, 'tfds_data_dir') == d
  assert 'split:train,num_files:1' in mq.prop(examples, 'input_fingerprint')
  # Transform ran on the tfds examples: /255 of the generated pixels.
  [xf] = [a for a in mq.artifacts(s, last['Transform'].id)
          if a.uri.rstrip('/').split('/')[-2] == 'transformed_examples']
  files = glob.glob(os.path.join(xf.uri, 'Split-eval', '*'))
  got = []
  for rec in tf.data.TFRecordDataset(files, 'GZIP').as_numpy_iterator():
    f = tf.train.Example.FromString(rec).features.feature
    got.append((f['label'].int64_list.value[0],
                tuple(np.round(np.array(f['image_xf'].float_list.value) * 255).astype(int))))
  images, labels = tfds_mnist.data['3.0.1']['eval']
  assert collections.Counter(got) == collections.Counter(
      (int(l), tuple(int(p) for p in im.reshape(-1))) for im, l in zip(images, labels))

  # Same version again: every node is a cache hit.
  tfx.orchestration.LocalDagRunner().run(_pipeline(root, d, '3.0.1'))
  last2, mq, s = _last_runs(root)
  for node in nodes:
    assert last2[node].id != last[node].id, node
    assert last2[node].last_known_state == state.CACHED, node
  [cached] = mq.artifacts(s, last2[NODE].id)
  assert cached.id == examples.id

  # Another version misses the cache (ExampleGen alone keeps this part cheap) ...
  tfx.orchestration.LocalDagRunner().run(_pipeline(root, d, '3.0.2', data_half=False))
  last3, mq, s = _last_runs(root)
  assert last3[NODE].last_known_state == state.COMPLETE
  [other] = mq.artifacts(s, last3[NODE].id)
  assert mq.prop(other, 'tfds_version') == '3.0.2' and other.id != examples.id
  images, labels = read_raw_examples(glob.glob(os.path.join(other.uri, 'Split-train', '*')))
  assert np.array_equal(sorted_rows(images, labels),
                        sorted_rows(*tfds_mnist.data['3.0.2']['train']))
  # ... while the same ExampleGen-only pipeline at 3.0.1 still hits it: the miss
  # above came from the version, not from the smaller pipeline.
  tfx.orchestration.LocalDagRunner().run(_pipeline(root, d, '3.0.1', data_half=False))
  last4, mq, s = _last_runs(root)
  assert last4[NODE].last_known_state == state.CACHED
  assert [a.id for a in mq.artifacts(s, last4[NODE].id)] == [examples.id]



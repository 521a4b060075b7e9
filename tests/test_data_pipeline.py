"""The data half (ExampleGen -> ... -> Transform) on LocalDagRunner, generated data."""
import glob
import os

import numpy as np
import pytest
import tensorflow as tf
from tfx import v1 as tfx

from components.mnist_example_gen import idx
from components.mnist_example_gen import testing
from pipeline import config as config_lib
from pipeline import pipeline as pipeline_lib
from pipeline import metadata_queries as mq


def _run(tmp_path, data_dir, **cfg):
  cfg = config_lib.PipelineConfig(pipeline_root=str(tmp_path / 'root'), **cfg)
  p = pipeline_lib.create_pipeline(
      cfg, data_dir,
      metadata_connection_config=tfx.orchestration.metadata
      .sqlite_metadata_connection_config(cfg.metadata), data_only=True)
  tfx.orchestration.LocalDagRunner().run(p)
  return mq.open_store(cfg.metadata)


def _records(pattern):
  files = sorted(glob.glob(pattern))
  assert files, pattern
  return list(tf.data.TFRecordDataset(files, compression_type='GZIP').as_numpy_iterator())


def test_data_half_end_to_end(tmp_path):
  data_dir = testing.write_fake_mnist(str(tmp_path / 'data'), n_train=120, n_eval=40)
  s = _run(tmp_path, data_dir)
  runs = mq.executions_by_node(s)
  for node in ('MnistExampleGen', 'StatisticsGen', 'SchemaGen', 'ImportSchemaGen',
               'ExampleValidator', 'Transform'):
    assert len(mq.done(runs[node])) == 1, node

  [examples] = [a for a in mq.artifacts(s, runs['MnistExampleGen'][0].id)]
  assert examples.custom_properties['span'].int_value == 0 or examples.properties['span'].int_value == 0
  assert len(_records(examples.uri + '/Split-train/*.gz')) == 120
  assert len(_records(examples.uri + '/Split-eval/*.gz')) == 40

  outs = mq.artifacts(s, runs['Transform'][0].id)
  [xf] = [a for a in outs if a.uri.rstrip('/').split('/')[-2] == 'transformed_examples']
  images, labels = [], []
  for rec in _records(xf.uri + '/Split-eval/*.gz'):
    ex = tf.train.Example.FromString(rec)
    images.append(ex.features.feature['image_xf'].float_list.value)
    labels.append(ex.features.feature['label'].int64_list.value[0])
  images = np.array(images)
  assert images.shape == (40, 784)
  assert images.min() >= 0.0 and images.max() <= 1.0 and images.max() > 0.75
  # Normalization is exactly pixel / 255, matched against the source IDX file.
  raw_images, raw_labels = idx.load_split(data_dir, 'eval')
  want = {(int(l), tuple(np.round(im.reshape(-1) / 255.0, 5)))
          for im, l in zip(raw_images, raw_labels)}
  got = {(int(l), tuple(np.round(im, 5))) for im, l in zip(images, labels)}
  assert got == want


def test_label_anomaly_stops_before_transform(tmp_path):
  data_dir = testing.write_fake_mnist(str(tmp_path / 'data'), n_train=60, n_eval=20)
  _, labels = testing.fake_digits(60, 0)
  labels[5] = 12
  idx.write_idx(os.path.join(data_dir, 'train-labels-idx1-ubyte.gz'), labels)
  with pytest.raises(Exception, match=r"(?s)split train: feature 'label'.*"):
    _run(tmp_path, data_dir)
  runs = mq.executions_by_node(
      mq.open_store(str(tmp_path / 'root' / 'metadata.sqlite')))
  assert not mq.done(runs.get('ExampleValidator', []))
  assert 'Transform' not in runs or not mq.done(runs['Transform'])


def test_truncated_file_records_no_examples(tmp_path):
  data_dir = testing.write_fake_mnist(str(tmp_path / 'data'), n_train=60, n_eval=20)
  path = os.path.join(data_dir, 't10k-images-idx3-ubyte.gz')
  import gzip
  raw = gzip.decompress(open(path, 'rb').read())
  open(path, 'wb').write(gzip.compress(raw[:-1000]))
  with pytest.raises(Exception, match='t10k-images-idx3-ubyte.gz: header promises 20'):
    _run(tmp_path, data_dir)
  s = mq.open_store(str(tmp_path / 'root' / 'metadata.sqlite'))
  runs = mq.executions_by_node(s)
  assert not mq.done(runs['MnistExampleGen'])
  for e in runs['MnistExampleGen']:
    assert not mq.artifacts(s, e.id)

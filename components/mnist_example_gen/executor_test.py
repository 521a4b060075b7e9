import collections
import glob
import os

import pytest
import tensorflow as tf
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from components.mnist_example_gen import component
from components.mnist_example_gen import executor
from components.mnist_example_gen import idx
from components.mnist_example_gen import testing


def _ingest(data_dir, out_dir, span_pattern=None):
  examples = standard_artifacts.Examples()
  examples.uri = out_dir
  props = {
      'input_base': data_dir,
      'input_config': proto_utils.proto_to_json(component.input_config(span_pattern)),
      'output_config': proto_utils.proto_to_json(example_gen_pb2.Output()),
      'output_data_format': example_gen_pb2.FORMAT_TF_EXAMPLE,
  }
  executor.Executor(executor.Executor.Context(
      beam_pipeline_args=['--direct_running_mode=in_memory'])).Do(
          {}, {'examples': [examples]}, props)
  out = {}
  for split in ('train', 'eval'):
    files = glob.glob(os.path.join(artifact_utils.get_split_uri([examples], split), '*'))
    out[split] = list(tf.data.TFRecordDataset(files, 'GZIP').as_numpy_iterator())
  return out


def _decode(record):
  f = tf.train.Example.FromString(record).features.feature
  return tuple(f['image'].int64_list.value), f['label'].int64_list.value[0]


def test_examples_match_source_and_are_deterministic(tmp_path):
  data_dir = testing.write_fake_mnist(str(tmp_path / 'data'), n_train=70, n_eval=30)
  first = _ingest(data_dir, str(tmp_path / 'a'))
  second = _ingest(data_dir, str(tmp_path / 'b'))
  for split in ('train', 'eval'):
    assert collections.Counter(first[split]) == collections.Counter(second[split])
    images, labels = idx.load_split(data_dir, split)
    want = collections.Counter((tuple(int(p) for p in im.reshape(-1)), int(l))
                               for im, l in zip(images, labels))
    assert collections.Counter(_decode(r) for r in first[split]) == want


def test_raw_idx_files_are_read(tmp_path):
  data_dir = testing.write_fake_mnist(str(tmp_path / 'raw'), 20, 10, compress=False)
  got = _ingest(data_dir, str(tmp_path / 'out'))
  assert (len(got['train']), len(got['eval'])) == (20, 10)


def test_split_without_labels_file_is_named(tmp_path):
  data_dir = testing.write_fake_mnist(str(tmp_path / 'data'), 20, 10)
  os.remove(os.path.join(data_dir, 't10k-labels-idx1-ubyte.gz'))
  with pytest.raises(idx.MnistDataError, match=r't10k-\*.*labels=\[\]'):
    _ingest(data_dir, str(tmp_path / 'out'))


def test_real_data_split_counts(tmp_path):
  d = os.environ.get('MNIST_DIR')
  if not d:
    pytest.skip('MNIST_DIR not set')
  got = _ingest(d, str(tmp_path / 'real'))
  assert len(got['train']) == 22699
  assert len(got['eval']) == 10000

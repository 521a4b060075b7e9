import collections
import glob
import os

import pytest
import tensorflow as tf
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


def _add_clutter(data_dir):
  """Checksums, a stale copy and an unrelated file beside the four data files."""
  for name in idx.ALL_STEMS:
    with open(os.path.join(data_dir, name + '.gz.md5'), 'w') as f:
      f.write('0' * 32)
  with open(os.path.join(data_dir, 'train-images-idx3-ubyte.old'), 'wb') as f:
    f.write(b'stale')
  open(os.path.join(data_dir, 'train-notes-idx9-ubyte.txt'), 'w').close()


def test_examples_match_source_and_are_deterministic(tmp_path):
  data_dir = testing.write_fake_mnist(str(tmp_path / 'data'), n_train=70, n_eval=30)
  # Raw copies with other content and clutter beside the files: ingestion and
  # idx.load_split must both read the gzip form and ignore the rest.
  testing.write_fake_mnist(data_dir, 30, 15, seed=7, compress=False)
  _add_clutter(data_dir)
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
  open(os.path.join(data_dir, 't10k-labels-idx1-ubyte.gz.md5'), 'w').close()
  with pytest.raises(idx.MnistDataError, match=r't10k-\*.*no t10k-labels-idx1-ubyte or '
                     r't10k-labels-idx1-ubyte.gz file; the pattern matches \[.*md5'):
    _ingest(data_dir, str(tmp_path / 'out'))


def test_split_files_ignores_checksums_and_stray_files(tmp_path):
  data_dir = testing.write_fake_mnist(str(tmp_path / 'data'), 20, 10)
  _add_clutter(data_dir)
  got = [executor.split_files(data_dir, p) for p in
         (component.TRAIN_PATTERN, component.EVAL_PATTERN)]
  assert [[os.path.basename(p) for p in pair] for pair in got] == [
      ['train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'],
      ['t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz']]


def test_split_files_prefers_gzip_next_to_its_raw_copy(tmp_path):
  data_dir = testing.write_fake_mnist(str(tmp_path / 'data'), 20, 10)
  testing.write_fake_mnist(data_dir, 20, 10, compress=False)   # as after gunzip -k
  images, labels = executor.split_files(data_dir, component.TRAIN_PATTERN)
  assert (images, labels) == (os.path.join(data_dir, 'train-images-idx3-ubyte.gz'),
                              os.path.join(data_dir, 'train-labels-idx1-ubyte.gz'))


def test_split_files_reads_raw_only(tmp_path):
  data_dir = testing.write_fake_mnist(str(tmp_path / 'data'), 20, 10, compress=False)
  assert executor.split_files(data_dir, component.EVAL_PATTERN) == (
      os.path.join(data_dir, 't10k-images-idx3-ubyte'),
      os.path.join(data_dir, 't10k-labels-idx1-ubyte'))


def test_split_pattern_matching_both_splits_is_rejected(tmp_path):
  data_dir = testing.write_fake_mnist(str(tmp_path / 'data'), 20, 10)
  with pytest.raises(idx.MnistDataError, match='exactly one images and one labels'):
    executor.split_files(data_dir, '*-idx?-ubyte*')


def test_real_data_split_counts(tmp_path):
  d = os.environ.get('MNIST_DIR')
  if not d:
    pytest.skip('MNIST_DIR not set')
  got = _ingest(d, str(tmp_path / 'real'))
  assert len(got['train']) == 22699
  assert len(got['eval']) == 10000

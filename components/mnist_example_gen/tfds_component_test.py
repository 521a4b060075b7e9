"""TfdsMnistExampleGen: executor output, lineage, driver caching, and (when present)
the real prepared data against the IDX source. The LocalDagRunner data half is
tests/test_tfds_pipeline.py."""
import glob
import os
import time

import numpy as np
import pytest
import tensorflow as tf
from tfx.components.example_gen import utils as example_gen_utils
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from components.mnist_example_gen import idx
from components.mnist_example_gen import tfds_component
from components.mnist_example_gen import tfds_source
from components.transform import features

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run_executor(data_dir, out_dir, version='3.0.1'):
  examples = standard_artifacts.Examples()
  examples.uri = out_dir
  props = {
      'input_base': data_dir,
      'input_config': proto_utils.proto_to_json(tfds_component.input_config(version)),
      'output_config': proto_utils.proto_to_json(example_gen_pb2.Output()),
      'output_data_format': example_gen_pb2.FORMAT_TF_EXAMPLE,
      'output_file_format': example_gen_pb2.FORMAT_TFRECORDS_GZIP,
  }
  # No Beam args: Beam's default DirectRunner (in memory). Any non-empty args make
  # TFX's BaseBeamExecutor build an sdist of the whole TFX install first
  # (dependency_utils.build_ephemeral_package, 5-10 s per executor here).
  tfds_component.Executor(tfds_component.Executor.Context(beam_pipeline_args=[])).Do(
          {}, {'examples': [examples]}, props)
  return examples


def _split_files(examples, split):
  files = sorted(glob.glob(os.path.join(
      artifact_utils.get_split_uri([examples], split), '*')))
  assert files, split
  return files


def read_raw_examples(files):
  """(images uint8 [N, 784], labels int64 [N]) of raw tf.Examples, parsed in batches."""
  spec = {features.IMAGE_KEY: tf.io.FixedLenFeature([features.NUM_PIXELS], tf.int64),
          features.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64)}
  images, labels = [], []
  ds = tf.data.TFRecordDataset(files, compression_type='GZIP').batch(8192)
  for batch in ds.as_numpy_iterator():
    parsed = tf.io.parse_example(batch, spec)
    images.append(parsed[features.IMAGE_KEY].numpy())
    labels.append(parsed[features.LABEL_KEY].numpy())
  images, labels = np.concatenate(images), np.concatenate(labels)
  assert images.min() >= 0 and images.max() <= 255
  return images.astype(np.uint8), labels


def sorted_rows(images, labels):
  """Rows label+pixels as uint8, sorted: equal iff the (image, label) multisets are."""
  rows = np.concatenate([np.asarray(labels, np.uint8).reshape(-1, 1),
                         np.asarray(images, np.uint8).reshape(len(images), -1)], axis=1)
  rows = np.ascontiguousarray(rows)
  return np.sort(rows.view(f'V{rows.shape[1]}').ravel())


def test_executor_output_equals_generated_images_and_has_lineage(tfds_mnist, tmp_path):
  examples = _run_executor(tfds_mnist.data_dir, str(tmp_path / 'out'))
  for split, n in (('train', 50), ('eval', 20)):
    files = _split_files(examples, split)
    records = list(tf.data.TFRecordDataset(files, 'GZIP').as_numpy_iterator())
    assert len(records) == n
    # Exactly today's raw layout: two int64 features, 784 pixels.
    f = tf.train.Example.FromString(records[0]).features.feature
    assert sorted(f) == [features.IMAGE_KEY, features.LABEL_KEY]
    assert len(f[features.IMAGE_KEY].int64_list.value) == features.NUM_PIXELS
    got_images, got_labels = read_raw_examples(files)
    want_images, want_labels = tfds_mnist.data['3.0.1'][split]
    assert np.array_equal(sorted_rows(got_images, got_labels),
                          sorted_rows(want_images, want_labels))
  assert artifact_utils.decode_split_names(examples.split_names) == ['train', 'eval']
  assert examples.get_string_custom_property('tfds_name') == 'mnist'
  assert examples.get_string_custom_property('tfds_version') == '3.0.1'
  assert examples.get_string_custom_property('tfds_data_dir') == tfds_mnist.data_dir


def test_executor_validates_before_any_beam_work(copy_tfds_dir, tmp_path):
  d = copy_tfds_dir()
  path = os.path.join(d, 'mnist', '3.0.1', 'mnist-test.tfrecord-00000-of-00001')
  data = open(path, 'rb').read()
  open(path, 'wb').write(data[:-50])  # an interrupted copy
  out = str(tmp_path / 'out')
  with pytest.raises(tfds_source.TfdsDataError, match='^' + path + ': corrupt or truncated'):
    _run_executor(d, out)
  assert not glob.glob(os.path.join(out, 'Split-*', '*'))  # nothing written


def test_beam_reader_names_a_file_damaged_after_the_check(copy_tfds_dir):
  # check_prepared runs first; should a file change between the check and the Beam
  # read, the reader's DataLossError still surfaces naming the file.
  d = copy_tfds_dir()
  path = os.path.join(d, 'mnist', '3.0.1', 'mnist-train.tfrecord-00000-of-00001')
  data = open(path, 'rb').read()
  open(path, 'wb').write(data[:-10])
  with pytest.raises(tfds_source.TfdsDataError, match='^' + path + ': corrupt or truncated'):
    list(tfds_component._read_record_batches(path))  # pylint: disable=protected-access


def test_decoder_names_the_file_of_an_undecodable_record(tfds_mnist):
  # A record with intact CRCs but a PNG of the wrong size: only decoding can tell.
  # The DoFn is called directly (what Beam runs), without a Beam pipeline.
  path = os.path.join(tfds_mnist.data_dir, 'mnist', '3.0.1',
                      'mnist-test.tfrecord-00000-of-00001')
  [(_, records)] = list(tfds_component._read_record_batches(path))  # pylint: disable=protected-access
  decoder = tfds_component._DecodeToExamples()  # pylint: disable=protected-access
  decoder.setup()
  assert len(list(decoder.process((path, records)))) == 20
  bad = tf.train.Example()
  bad.ParseFromString(records[3])
  bad.features.feature['image'].bytes_list.value[0] = tf.io.encode_png(
      tf.zeros([14, 14, 1], tf.uint8)).numpy()
  records[3] = bad.SerializeToString()
  with pytest.raises(tfds_source.TfdsDataError,
                     match='^' + path + r': an image \(label \d\) is \(14, 14, 1\)'):
    list(decoder.process((path, records)))
  records[3] = b'not a tf.Example'
  with pytest.raises(tfds_source.TfdsDataError,
                     match='^' + path + ': a record is not a tfds MNIST example'):
    list(decoder.process((path, records)))


def _fingerprint(data_dir, version):
  config = tfds_component.input_config(version)
  fingerprint, span, ver = (
      example_gen_utils.calculate_splits_fingerprint_span_and_version(
          data_dir, config.splits))
  assert (span, ver) == (0, None)
  return fingerprint


def test_driver_fingerprint_follows_the_version_files(copy_tfds_dir):
  d = copy_tfds_dir()
  a = _fingerprint(d, '3.0.1')
  assert a == _fingerprint(d, '3.0.1')  # unchanged version: cache hit
  assert 'split:train,num_files:1' in a and 'split:eval,num_files:1' in a
  assert a != _fingerprint(d, '3.0.2')  # other version's files: cache miss
  # The same version prepared again (files rewritten): cache miss.
  path = os.path.join(d, 'mnist', '3.0.1', 'mnist-train.tfrecord-00000-of-00001')
  later = time.time() + 5
  os.utime(path, (later, later))
  assert a != _fingerprint(d, '3.0.1')


# --- real data --------------------------------------------------------------------------

def _real_dir(env, relative):
  d = os.environ.get(env) or os.path.normpath(os.path.join(REPO, relative))
  return d if os.path.isdir(d) else None


def test_real_tfds_data_equals_idx_source(tmp_path):
  tfds_dir = _real_dir('TFDS_MNIST_DIR', '../shared/data/tfds')
  mnist_dir = _real_dir('MNIST_DIR', '../shared/data/mnist')
  if not tfds_dir or not mnist_dir:
    pytest.skip('no ../shared/data/tfds (TFDS_MNIST_DIR) or ../shared/data/mnist')
  assert tfds_source.check_prepared(tfds_dir, '3.0.1') == {'train': 22699, 'eval': 10000}
  examples = _run_executor(tfds_dir, str(tmp_path / 'out'))
  for split, n in (('train', 22699), ('eval', 10000)):
    images, labels = read_raw_examples(_split_files(examples, split))
    assert len(images) == n
    want_images, want_labels = idx.load_split(mnist_dir, split)
    # Same images and labels as the IDX files, image for image (as multisets: tfds
    # shuffles record order). Raw uint8 equality implies equality after Transform.
    assert np.array_equal(sorted_rows(images, labels),
                          sorted_rows(want_images, want_labels)), split

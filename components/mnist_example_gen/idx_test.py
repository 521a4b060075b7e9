import gzip
import os
import struct

import numpy as np
import pytest

from components.mnist_example_gen import idx
from components.mnist_example_gen import testing


@pytest.fixture
def data_dir(tmp_path):
  return testing.write_fake_mnist(str(tmp_path / 'mnist'), n_train=50, n_eval=20)


@pytest.mark.parametrize('compress', [True, False])
def test_reads_gzip_and_raw(tmp_path, compress):
  d = testing.write_fake_mnist(str(tmp_path), n_train=30, n_eval=10, compress=compress)
  images, labels = idx.load_split(d, 'train')
  want_images, want_labels = testing.fake_digits(30, 0)
  np.testing.assert_array_equal(images, want_images)
  np.testing.assert_array_equal(labels, want_labels)
  assert idx.load_split(d, 'eval')[0].shape == (10, 28, 28)


def _path(d, split=0):
  return os.path.join(d, idx.SPLIT_STEMS['train'][split] + '.gz')


def test_corrupt_gzip(data_dir):
  p = _path(data_dir)
  raw = bytearray(open(p, 'rb').read())
  raw[20:40] = b'\xff' * 20
  open(p, 'wb').write(bytes(raw))
  with pytest.raises(idx.MnistDataError, match=r'train-images.*(corrupt gzip|gzip)'):
    idx.load_split(data_dir, 'train')


def test_gzip_stream_cut_short(data_dir):
  p = _path(data_dir)
  raw = open(p, 'rb').read()
  open(p, 'wb').write(raw[:len(raw) // 2])
  with pytest.raises(idx.MnistDataError, match='train-images.*truncated'):
    idx.load_split(data_dir, 'train')


def test_wrong_magic(data_dir):
  p = _path(data_dir, 1)
  data = gzip.decompress(open(p, 'rb').read())
  open(p, 'wb').write(gzip.compress(struct.pack('>I', 2051) + data[4:]))
  with pytest.raises(idx.MnistDataError, match='train-labels.*magic number 2051 is not 2049'):
    idx.load_split(data_dir, 'train')


def test_header_promises_more_records_than_file_holds(data_dir):
  p = _path(data_dir)
  data = gzip.decompress(open(p, 'rb').read())
  open(p, 'wb').write(gzip.compress(data[:-784 * 3 - 100]))
  with pytest.raises(idx.MnistDataError,
                     match=r'header promises 50 records but the file holds only 46'):
    idx.load_split(data_dir, 'train')


def test_count_mismatch(data_dir):
  images, labels = testing.fake_digits(50)
  idx.write_idx(_path(data_dir, 1), labels[:49])
  with pytest.raises(idx.MnistDataError, match='holds 50 images but .*labels.* holds 49'):
    idx.load_split(data_dir, 'train')


def test_wrong_image_dimensions(data_dir):
  idx.write_idx(_path(data_dir), np.zeros((50, 32, 32), np.uint8))
  with pytest.raises(idx.MnistDataError, match=r'images are \(32, 32\), expected \(28, 28\)'):
    idx.load_split(data_dir, 'train')


def test_missing_file(data_dir):
  os.remove(_path(data_dir, 1))
  with pytest.raises(idx.MnistDataError, match='train-labels-idx1-ubyte.*not found'):
    idx.load_split(data_dir, 'train')


def test_empty_directory(tmp_path):
  with pytest.raises(idx.MnistDataError, match='directory is empty'):
    idx.load_split(str(tmp_path), 'train')


def test_missing_directory(tmp_path):
  with pytest.raises(idx.MnistDataError, match='does not exist'):
    idx.load_split(str(tmp_path / 'nope'), 'eval')


def test_real_data_counts():
  d = os.environ.get('MNIST_DIR')
  if not d:
    pytest.skip('MNIST_DIR not set')
  images, labels = idx.load_split(d, 'train')
  assert images.shape == (22699, 28, 28)
  assert np.bincount(labels).tolist() == [2258, 2581, 2215, 2369, 2222, 2010, 2235,
                                          2356, 2163, 2290]
  assert idx.load_split(d, 'eval')[0].shape == (10000, 28, 28)

import gzip
import os
import struct
from unittest import mock

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


def _rewrite_magic(path, magic: bytes):
  data = gzip.decompress(open(path, 'rb').read())
  open(path, 'wb').write(gzip.compress(magic + data[4:]))


def test_images_header_in_labels_file_is_a_dimension_count(data_dir):
  _rewrite_magic(_path(data_dir, 1), struct.pack('>I', 2051))
  with pytest.raises(idx.MnistDataError, match='train-labels.*1 dimension expected for '
                     r'labels, header says 3 \(an images file\?\)'):
    idx.load_split(data_dir, 'train')


def test_wrong_dtype_byte_is_named(data_dir):
  _rewrite_magic(_path(data_dir), bytes([0, 0, 0x0C, 3]))
  with pytest.raises(idx.MnistDataError, match=r'train-images.*dtype byte 0x0C \(int32\), '
                     r'expected 0x08 \(unsigned byte\)'):
    idx.load_split(data_dir, 'train')


def test_wrong_dimension_count_is_named(data_dir):
  _rewrite_magic(_path(data_dir), bytes([0, 0, 0x08, 2]))
  with pytest.raises(idx.MnistDataError,
                     match='train-images.*3 dimensions expected for images, header says 2'):
    idx.load_split(data_dir, 'train')


def test_non_idx_prefix_is_a_bad_magic_number(data_dir):
  _rewrite_magic(_path(data_dir), b'PK\x03\x04')
  with pytest.raises(idx.MnistDataError, match='train-images.*magic number .* is not 2051.*'
                     'expected 0x00 0x00'):
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
  with pytest.raises(idx.MnistDataError, match=r'missing MNIST file\(s\) train-labels-idx1-ubyte'):
    idx.load_split(data_dir, 'train')


def test_empty_directory(tmp_path):
  with pytest.raises(idx.MnistDataError, match='directory is empty'):
    idx.load_split(str(tmp_path), 'train')


def test_missing_directory(tmp_path):
  with pytest.raises(idx.MnistDataError, match='does not exist'):
    idx.load_split(str(tmp_path / 'nope'), 'eval')


def test_gzip_is_read_when_both_forms_are_present(data_dir, monkeypatch):
  stem = idx.SPLIT_STEMS['train'][0]
  # A raw copy with different content: which form was read is visible in the data.
  idx.write_idx(os.path.join(data_dir, stem), np.zeros((50, 28, 28), np.uint8), False)
  # Recorded directly: once TF has set absl logging up (the full suite), its records
  # no longer reach pytest's caplog.
  said = []
  monkeypatch.setattr(idx.logging, 'info', lambda msg, *a: said.append(msg % a))
  images, _ = idx.load_split(data_dir, 'train')
  np.testing.assert_array_equal(images, testing.fake_digits(50)[0])
  assert any(f'reading {stem}.gz (gzip preferred), ignoring {stem}' in m for m in said)


def test_check_data_dir_accepts_the_four_files_among_others(data_dir):
  for extra in ('train-images-idx3-ubyte.gz.md5', 'train-images-idx3-ubyte.old', 'x.txt'):
    open(os.path.join(data_dir, extra), 'w').close()
  assert idx.check_data_dir(data_dir) is None


def test_check_data_dir_file_is_not_a_directory(data_dir):
  with pytest.raises(idx.MnistDataError, match='ubyte.gz: MNIST data directory is a file, '
                     'not a directory'):
    idx.check_data_dir(_path(data_dir))


def test_check_data_dir_missing(tmp_path):
  with pytest.raises(idx.MnistDataError, match='nope: MNIST data directory does not exist'):
    idx.check_data_dir(str(tmp_path / 'nope'))


def test_check_data_dir_unreadable(data_dir):
  # Tests run as root, which reads any mode: the kernel's answer is simulated.
  with mock.patch.object(os, 'listdir', side_effect=PermissionError(13, 'Permission denied')):
    with pytest.raises(idx.MnistDataError, match='directory is not readable'):
      idx.check_data_dir(data_dir)


def test_check_data_dir_lists_what_is_missing(tmp_path):
  open(tmp_path / 'README.txt', 'w').close()
  with pytest.raises(idx.MnistDataError, match='none of the four MNIST IDX files.*'
                     r'missing train-images-idx3-ubyte\[\.gz\], .*t10k-labels-idx1-ubyte'
                     r'\[\.gz\] \(the directory holds: README.txt\)'):
    idx.check_data_dir(str(tmp_path))


def test_check_data_dir_names_one_missing_file(data_dir):
  os.remove(os.path.join(data_dir, 't10k-labels-idx1-ubyte.gz'))
  with pytest.raises(idx.MnistDataError,
                     match=r'missing MNIST file\(s\) t10k-labels-idx1-ubyte\[\.gz\]$'):
    idx.check_data_dir(data_dir)


def test_check_data_dir_file_where_a_data_file_belongs(data_dir):
  os.remove(_path(data_dir))
  os.mkdir(_path(data_dir))
  with pytest.raises(idx.MnistDataError, match='ubyte.gz: is a directory, not a file'):
    idx.check_data_dir(data_dir)


def test_check_data_dir_checks_the_newest_span(tmp_path):
  root = str(tmp_path)
  testing.write_fake_mnist(root, 20, 10, span=2)
  idx.check_data_dir(root, 'span-{SPAN}')
  os.makedirs(os.path.join(root, 'span-10'))   # newest span (numerically) is empty
  with pytest.raises(idx.MnistDataError, match='span-10: directory is empty'):
    idx.check_data_dir(root, 'span-{SPAN}')
  with pytest.raises(idx.MnistDataError, match="no sub-folder matches the span pattern "
                     "'day-{SPAN}'"):
    idx.check_data_dir(root, 'day-{SPAN}')


def test_idx_module_imports_no_tensorflow():
  import subprocess, sys  # pylint: disable=g-import-not-at-top,multiple-imports
  code = ('import sys; import components.mnist_example_gen.idx; '
          'print(sorted(m for m in sys.modules if m.split(".")[0] in '
          '("tensorflow", "tfx", "apache_beam")))')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                       check=True, cwd=os.path.dirname(os.path.dirname(
                           os.path.dirname(os.path.abspath(__file__)))))
  assert out.stdout.strip() == '[]'


def test_real_data_counts():
  d = os.environ.get('MNIST_DIR')
  if not d:
    pytest.skip('MNIST_DIR not set')
  images, labels = idx.load_split(d, 'train')
  assert images.shape == (22699, 28, 28)
  assert np.bincount(labels).tolist() == [2258, 2581, 2215, 2369, 2222, 2010, 2235,
                                          2356, 2163, 2290]
  assert idx.load_split(d, 'eval')[0].shape == (10000, 28, 28)


def test_shared_fixtures_give_a_valid_data_dir_and_learnable_digits(fake_mnist_dir,
                                                                      fake_digits):
  idx.check_data_dir(fake_mnist_dir)
  images, labels = idx.load_split(fake_mnist_dir, 'train')
  expected_images, expected_labels = fake_digits(200, 0)
  assert np.array_equal(images, expected_images)
  assert np.array_equal(labels, expected_labels)

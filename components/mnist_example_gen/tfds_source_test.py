"""tfds_source: data dir resolution, versions, and every validation error.

Uses the small prepared tfds dir of conftest.py (written by tfds's own builder).
Every error test asserts that the message names the offending path.
"""
import json
import os
import re
import subprocess
import sys

import pytest

from components.mnist_example_gen import tfds_source
from components.mnist_example_gen.tfds_source import TfdsDataError

V = '3.0.1'


def _version_dir(data_dir, version=V):
  return os.path.join(data_dir, 'mnist', version)


def _shard(data_dir, split, version=V):
  return os.path.join(_version_dir(data_dir, version),
                      f'mnist-{split}.tfrecord-00000-of-00001')


def _info_path(data_dir, version=V):
  return os.path.join(_version_dir(data_dir, version), 'dataset_info.json')


def _edit_info(data_dir, edit, version=V):
  path = _info_path(data_dir, version)
  with open(path) as f:
    info = json.load(f)
  edit(info)
  with open(path, 'w') as f:
    json.dump(info, f)
  return path


# --- resolution, versions, patterns -----------------------------------------------

def test_resolve_data_dir_order(monkeypatch, tmp_path):
  monkeypatch.setenv('TFDS_DATA_DIR', str(tmp_path / 'env'))
  assert tfds_source.resolve_data_dir(str(tmp_path / 'flag')) == str(tmp_path / 'flag')
  assert tfds_source.resolve_data_dir(None) == str(tmp_path / 'env')
  monkeypatch.delenv('TFDS_DATA_DIR')
  monkeypatch.setenv('HOME', str(tmp_path / 'home'))
  assert tfds_source.resolve_data_dir('') == str(tmp_path / 'home' / 'tensorflow_datasets')
  assert tfds_source.resolve_data_dir('gs://b/tfds') == 'gs://b/tfds'
  monkeypatch.chdir(tmp_path)
  assert tfds_source.resolve_data_dir('rel') == str(tmp_path / 'rel')


def test_resolve_data_dir_agrees_with_tfds(monkeypatch, tmp_path):
  from tensorflow_datasets.core import constants  # pylint: disable=g-import-not-at-top
  monkeypatch.setenv('HOME', str(tmp_path))
  for env in (str(tmp_path / 'somewhere'), None):
    if env:
      monkeypatch.setenv('TFDS_DATA_DIR', env)
    else:
      monkeypatch.delenv('TFDS_DATA_DIR', raising=False)
    assert tfds_source.resolve_data_dir(None) == constants.get_default_data_dir()


def test_module_import_does_not_import_tfds_or_tf():
  code = ('import sys; import components.mnist_example_gen.tfds_source; '
          'print(sorted(m for m in ("tensorflow_datasets", "tensorflow") if m in sys.modules))')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                       check=True, cwd=os.path.dirname(os.path.dirname(
                           os.path.dirname(os.path.abspath(__file__)))))
  assert out.stdout.strip() == '[]'


def test_split_patterns_and_parse():
  p = tfds_source.split_patterns('3.0.1')
  assert p == {'train': 'mnist/3.0.1/mnist-train.tfrecord*',
               'eval': 'mnist/3.0.1/mnist-test.tfrecord*'}
  assert tfds_source.parse_split_pattern(p['eval']) == ('mnist', '3.0.1', 'test')
  with pytest.raises(TfdsDataError, match='X.Y.Z'):
    tfds_source.split_patterns('3.0.*')
  with pytest.raises(TfdsDataError, match='not <name>'):
    tfds_source.parse_split_pattern('train-*-idx?-ubyte*')


def test_available_versions_and_sizes(copy_tfds_dir):
  d = copy_tfds_dir()
  os.makedirs(os.path.join(d, 'mnist', 'incomplete.ABC_3.0.9'), exist_ok=True)
  assert tfds_source.available_versions(d) == ['3.0.1', '3.0.2']
  assert tfds_source.available_versions(d, 'fashion_mnist') == []
  assert tfds_source.check_prepared(d, '3.0.1') == {'train': 50, 'eval': 20}
  assert tfds_source.check_prepared(d, '3.0.2') == {'train': 40, 'eval': 20}


# --- validation errors --------------------------------------------------------------

def test_missing_data_dir(tmp_path):
  d = str(tmp_path / 'nope')
  with pytest.raises(TfdsDataError) as e:
    tfds_source.check_prepared(d)
  assert f'{d}: no such directory' in str(e.value)
  assert f'tfds build mnist --data_dir {d}' in str(e.value)


def test_not_prepared_says_how_to_prepare(tmp_path):
  d = str(tmp_path / 'empty')
  os.makedirs(os.path.join(d, 'mnist', 'incomplete.XYZ_3.0.1'))
  with pytest.raises(TfdsDataError) as e:
    tfds_source.check_prepared(d, V)
  msg = str(e.value)
  assert msg.startswith(f"{d}: no prepared 'mnist' dataset")
  assert f'tfds build mnist --data_dir {d}' in msg
  assert f"tfds.builder('mnist', data_dir='{d}').download_and_prepare()" in msg
  assert f'mnist/3.0.1/` folder' in msg and os.path.join(d, 'mnist') in msg


def test_unknown_version_lists_present_ones(tfds_mnist):
  with pytest.raises(TfdsDataError) as e:
    tfds_source.check_prepared(tfds_mnist.data_dir, '2.0.0')
  msg = str(e.value)
  assert _version_dir(tfds_mnist.data_dir, '2.0.0') in msg
  assert 'versions present: 3.0.1, 3.0.2' in msg


def test_shard_length_mismatch(copy_tfds_dir):
  d = copy_tfds_dir()
  info = _edit_info(d, lambda i: i['splits'][0].__setitem__('shardLengths', ['51']))
  with pytest.raises(TfdsDataError) as e:
    tfds_source.check_prepared(d)
  assert str(e.value).startswith(
      f'{_shard(d, "train")}: holds 50 records but {info} says 51')


def test_num_examples_mismatch(copy_tfds_dir):
  d = copy_tfds_dir()
  info = _edit_info(d, lambda i: i['splits'][1].__setitem__('numExamples', '21'))
  with pytest.raises(TfdsDataError, match=re.escape(
      f"{info}: split 'test' numExamples 21 != 20")):
    tfds_source.check_prepared(d)


def test_missing_record_file(copy_tfds_dir):
  d = copy_tfds_dir()
  os.remove(_shard(d, 'test'))
  with pytest.raises(TfdsDataError, match=re.escape(
      os.path.join(_version_dir(d), 'mnist-test.tfrecord*') + ': no record file')):
    tfds_source.check_prepared(d)


def test_extra_shard_file(copy_tfds_dir):
  d = copy_tfds_dir()
  extra = os.path.join(_version_dir(d), 'mnist-train.tfrecord-00001-of-00002')
  with open(_shard(d, 'train'), 'rb') as src, open(extra, 'wb') as dst:
    dst.write(src.read())
  with pytest.raises(TfdsDataError, match=re.escape(
      f"{_info_path(d)}: lists 1 shard(s) of split 'train' but")):
    tfds_source.check_prepared(d)


def test_corrupt_record_file(copy_tfds_dir):
  d = copy_tfds_dir()
  path = _shard(d, 'train')
  data = bytearray(open(path, 'rb').read())
  data[len(data) // 2] ^= 0xFF  # inside some record's payload: its data CRC fails
  open(path, 'wb').write(bytes(data))
  with pytest.raises(TfdsDataError) as e:
    tfds_source.check_prepared(d)
  assert str(e.value).startswith(f'{path}: corrupt or truncated TFRecord file')
  assert 'corrupted record' in str(e.value)


def test_truncated_record_file(copy_tfds_dir):
  d = copy_tfds_dir()
  path = _shard(d, 'test')
  data = open(path, 'rb').read()
  open(path, 'wb').write(data[:-100])  # an interrupted copy
  with pytest.raises(TfdsDataError) as e:
    tfds_source.check_prepared(d)
  assert str(e.value).startswith(f'{path}: corrupt or truncated TFRecord file')
  assert 'truncated record' in str(e.value)


def test_bad_dataset_info_json(copy_tfds_dir):
  d = copy_tfds_dir()
  open(_info_path(d), 'w').write('{"splits": [')
  with pytest.raises(TfdsDataError, match=re.escape(
      f'{_info_path(d)}: unreadable or not JSON')):
    tfds_source.check_prepared(d)


def test_version_in_info_must_match_folder(copy_tfds_dir):
  d = copy_tfds_dir()
  _edit_info(d, lambda i: i.__setitem__('version', '3.0.2'))
  with pytest.raises(TfdsDataError, match=re.escape(
      f"{_info_path(d)}: says version '3.0.2' but sits in the folder of version 3.0.1")):
    tfds_source.check_prepared(d)


def test_non_mnist_features(copy_tfds_dir):
  d = copy_tfds_dir()
  path = os.path.join(_version_dir(d), 'features.json')
  feats = json.load(open(path))
  feats['featuresDict']['features']['image']['image']['shape']['dimensions'] = ['32', '32', '3']
  json.dump(feats, open(path, 'w'))
  with pytest.raises(TfdsDataError, match=re.escape(f'{path}: features are not MNIST')):
    tfds_source.check_prepared(d)


def test_array_record_format_is_refused(copy_tfds_dir):
  d = copy_tfds_dir()
  _edit_info(d, lambda i: i.__setitem__('fileFormat', 'array_record'))
  with pytest.raises(TfdsDataError, match=re.escape(
      f"{_info_path(d)}: fileFormat is 'array_record'")):
    tfds_source.check_prepared(d)


# --- prepare -------------------------------------------------------------------------

def test_prepare_reuses_a_prepared_dir_without_network(tfds_mnist, monkeypatch):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  def no_network(*a, **k):
    raise AssertionError('network used')
  monkeypatch.setattr(tfds.download.DownloadManager, 'download_and_extract', no_network)
  assert tfds_source.prepare(tfds_mnist.data_dir, V) == {'train': 50, 'eval': 20}


def test_prepare_offline_raises_clear_error(tmp_path, monkeypatch):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  def offline(self, url_or_urls):
    raise ConnectionError('Failed to resolve storage.googleapis.com (offline)')
  monkeypatch.setattr(tfds.download.DownloadManager, 'download_and_extract', offline)
  d = str(tmp_path / 'fresh')
  with pytest.raises(TfdsDataError) as e:
    tfds_source.prepare(d, V)
  msg = str(e.value)
  assert msg.startswith(f'{d}: could not prepare mnist 3.0.1 with tensorflow-datasets')
  assert 'ConnectionError' in msg and f'tfds build mnist --data_dir {d}' in msg
  assert tfds_source.available_versions(d) == []  # nothing half-written is visible


def test_prepare_unknown_version_raises_clear_error(copy_tfds_dir):
  d = copy_tfds_dir()
  with pytest.raises(TfdsDataError) as e:
    tfds_source.prepare(d, '9.9.9')
  assert str(e.value).startswith(f'{d}: could not prepare mnist 9.9.9')
  assert 'Versions already prepared there: 3.0.1, 3.0.2.' in str(e.value)

"""tfds test fixtures (registered for every test folder by the root conftest.py).

``tfds_mnist``: a small but real prepared tensorflow-datasets data dir, written by
tfds's own ``mnist`` builder (``download_and_prepare``) from small generated IDX
files instead of downloads, so its dataset_info.json, features.json and PNG
TFRecords are exactly what tfds writes. It holds two versions with different
images: 3.0.1 (50 train / 20 test) and 3.0.2 (a second build, 40 / 20, with its
dataset_info.json version set to 3.0.2; tfds's code only knows 3.0.1, our reader
does not need it to). Built once per session in about 3 s; tests that damage it
copy it first (``copy_tfds_dir``).

Imports stay inside the fixtures: conftest.py loads this module for every test,
most of which never touch tfds.
"""
import json
import os
import shutil
from typing import Dict, Tuple

import numpy as np
import pytest

SMALL = {'3.0.1': (50, 20, 0), '3.0.2': (40, 20, 7)}  # n_train, n_eval, seed
_IDX_KEYS = {'train_data': 'train-images-idx3-ubyte',
             'train_labels': 'train-labels-idx1-ubyte',
             'test_data': 't10k-images-idx3-ubyte',
             'test_labels': 't10k-labels-idx1-ubyte'}


def build_prepared_mnist(data_dir: str, idx_dir: str, n_train: int, n_eval: int,
                         seed: int) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
  """Runs tfds's mnist builder on generated IDX files; returns the images/labels
  per TFX split ('train', 'eval'), in IDX order (tfds shuffles the records)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from tensorflow_datasets.image_classification import mnist as tfds_mnist_module  # pylint: disable=g-import-not-at-top
  from components.mnist_example_gen import idx  # pylint: disable=g-import-not-at-top
  from components.mnist_example_gen import testing  # pylint: disable=g-import-not-at-top

  # tfds's builder reads the *extracted* (raw) IDX files and exactly
  # _TRAIN_EXAMPLES / _TEST_EXAMPLES records from them.
  src = testing.write_fake_mnist(idx_dir, n_train, n_eval, seed=seed, compress=False)

  def no_network(self, url_or_urls):  # pylint: disable=unused-argument
    return {k: os.path.join(src, stem) for k, stem in _IDX_KEYS.items()}

  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(tfds.download.DownloadManager, 'download_and_extract', no_network)
    mp.setattr(tfds.download.DownloadManager, 'download', no_network)
    mp.setattr(tfds_mnist_module, '_TRAIN_EXAMPLES', n_train)
    mp.setattr(tfds_mnist_module, '_TEST_EXAMPLES', n_eval)
    tfds.builder('mnist', data_dir=data_dir, version='3.0.1').download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  return {split: idx.load_split(src, split) for split in ('train', 'eval')}


class TfdsMnist:
  """The prepared dir and, per version and split, the (images, labels) in it."""

  def __init__(self, data_dir: str, data: Dict[str, Dict[str, Tuple[np.ndarray, np.ndarray]]]):
    self.data_dir = data_dir
    self.data = data


@pytest.fixture(scope='session')
def tfds_mnist(tmp_path_factory) -> TfdsMnist:
  root = tmp_path_factory.mktemp('tfds_mnist')
  data_dir = str(root / 'tfds')
  data = {}
  for version, (n_train, n_eval, seed) in SMALL.items():
    if version == '3.0.1':
      data[version] = build_prepared_mnist(data_dir, str(root / f'idx-{version}'),
                                           n_train, n_eval, seed)
      continue
    other = str(root / f'tfds-{version}')
    data[version] = build_prepared_mnist(other, str(root / f'idx-{version}'),
                                         n_train, n_eval, seed)
    target = os.path.join(data_dir, 'mnist', version)
    shutil.move(os.path.join(other, 'mnist', '3.0.1'), target)
    info_path = os.path.join(target, 'dataset_info.json')
    with open(info_path) as f:
      info = json.load(f)
    info['version'] = version
    with open(info_path, 'w') as f:
      json.dump(info, f, indent=2)
  shutil.rmtree(os.path.join(data_dir, 'downloads'), ignore_errors=True)
  return TfdsMnist(data_dir, data)


@pytest.fixture
def copy_tfds_dir(tfds_mnist, tmp_path):
  """A private copy of the prepared dir, for tests that damage it."""
  def copy() -> str:
    dest = str(tmp_path / 'tfds-copy')
    shutil.copytree(tfds_mnist.data_dir, dest)
    return dest
  return copy

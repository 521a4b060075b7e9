import os

import pytest

from components.mnist_example_gen import download
from components.mnist_example_gen import idx
from components.mnist_example_gen import testing


@pytest.fixture
def mirror(tmp_path, monkeypatch):
  """A file:// mirror of generated files, with their md5s as the 'official' ones."""
  src = testing.write_fake_mnist(str(tmp_path / 'mirror'), n_train=20, n_eval=10)
  md5 = {name: download.md5sum(os.path.join(src, name)) for name in download.OFFICIAL_MD5}
  monkeypatch.setattr(download, 'OFFICIAL_MD5', md5)
  return 'file://' + src + '/'


def test_downloads_and_verifies(tmp_path, mirror):
  cache = str(tmp_path / 'cache')
  got = download.ensure_mnist(cache, mirrors=['file:///nonexistent/', mirror])
  assert sorted(os.listdir(got)) == sorted(download.OFFICIAL_MD5)
  assert idx.load_split(got, 'train')[0].shape == (20, 28, 28)
  # A second call finds the cache and fetches nothing, even with no mirror.
  assert download.ensure_mnist(cache, mirrors=[]) == got


def test_checksum_mismatch_leaves_nothing(tmp_path, mirror, monkeypatch):
  bad = dict(download.OFFICIAL_MD5, **{'t10k-labels-idx1-ubyte.gz': '0' * 32})
  monkeypatch.setattr(download, 'OFFICIAL_MD5', bad)
  cache = str(tmp_path / 'cache')
  with pytest.raises(idx.MnistDataError, match='md5 .* does not match'):
    download.ensure_mnist(cache, mirrors=[mirror])
  assert 't10k-labels-idx1-ubyte.gz' not in os.listdir(cache)
  assert not [f for f in os.listdir(cache) if f.startswith('.partial')]


def test_offline_error_says_how_to_supply_files(tmp_path):
  with pytest.raises(idx.MnistDataError, match='--data-dir DIR or set MNIST_DIR'):
    download.ensure_mnist(str(tmp_path / 'c'), mirrors=['file:///nonexistent/'])


def test_resolve_prefers_given_directory(tmp_path):
  d = testing.write_fake_mnist(str(tmp_path / 'd'), n_train=10, n_eval=10)
  assert download.resolve_data_dir(d) == os.path.abspath(d)
  with pytest.raises(idx.MnistDataError, match='empty'):
    os.makedirs(tmp_path / 'empty')
    download.resolve_data_dir(str(tmp_path / 'empty'))

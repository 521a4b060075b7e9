"""Fetches the official MNIST files into a local cache, verifying their md5 sums.

Used only when no data directory is given. Each file is written to a temporary name
and renamed after its checksum passes, so a cache never holds a half-downloaded file.
"""
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from typing import Dict, Optional, Sequence

from components.mnist_example_gen import idx

OFFICIAL_MD5: Dict[str, str] = {
    'train-images-idx3-ubyte.gz': 'f68b3c2dcbeaaa9fbdd348bbdeb94873',
    'train-labels-idx1-ubyte.gz': 'd53e105ee54ea40749a09fcbcd1e9432',
    't10k-images-idx3-ubyte.gz': '9fb629c4189551a2d022fa330f9573f3',
    't10k-labels-idx1-ubyte.gz': 'ec29112dd5afa0611ce80d1b7f02629c',
}
# The same files as yann.lecun.com, which is often unreachable; tried in order.
MIRRORS: Sequence[str] = (
    'https://storage.googleapis.com/cvdf-datasets/mnist/',
    'https://ossci-datasets.s3.amazonaws.com/mnist/',
)


def default_cache_dir() -> str:
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return os.path.join(base, 'mnist-adv-tfx', 'mnist')


def md5sum(path: str) -> str:
  h = hashlib.md5()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
      h.update(chunk)
  return h.hexdigest()


def _fetch(url: str, dest: str, md5: str, timeout: float) -> None:
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dest), prefix='.partial-')
  try:
    with os.fdopen(fd, 'wb') as out, urllib.request.urlopen(url, timeout=timeout) as r:
      for chunk in iter(lambda: r.read(1 << 20), b''):
        out.write(chunk)
    got = md5sum(tmp)
    if got != md5:
      raise idx.MnistDataError(f'{url}: md5 {got} does not match the official {md5}')
    os.replace(tmp, dest)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def ensure_mnist(cache_dir: Optional[str] = None,
                 mirrors: Sequence[str] = MIRRORS,
                 timeout: float = 30.0) -> str:
  """Returns a directory holding the four official files, downloading missing ones."""
  cache_dir = cache_dir or default_cache_dir()
  os.makedirs(cache_dir, exist_ok=True)
  for name, md5 in OFFICIAL_MD5.items():
    dest = os.path.join(cache_dir, name)
    if os.path.isfile(dest):
      continue
    errors = []
    for mirror in mirrors:
      try:
        _fetch(mirror + name, dest, md5, timeout)
        break
      except (urllib.error.URLError, OSError, idx.MnistDataError) as e:
        errors.append(f'{mirror}{name}: {e}')
    else:
      raise idx.MnistDataError(
          f'could not download MNIST file {name} into {cache_dir}:\n  ' +
          '\n  '.join(errors) +
          '\nIf this machine is offline, put the four IDX files '
          f'({", ".join(OFFICIAL_MD5)}) in a directory and pass --data-dir DIR or set '
          'MNIST_DIR=DIR.')
  return cache_dir


def resolve_data_dir(data_dir: Optional[str] = None,
                     cache_dir: Optional[str] = None,
                     span_pattern: Optional[str] = None) -> str:
  """The directory to ingest: data_dir if given (checked), else the download cache.

  With a span pattern the IDX files sit in span sub-folders; the newest one, which
  ExampleGen's driver will pick, is checked.
  """
  if data_dir:
    data_dir = os.path.abspath(data_dir)
    idx.check_data_dir(data_dir, span_pattern)
    return data_dir
  if span_pattern:
    raise idx.MnistDataError('--span-pattern needs --data-dir (or MNIST_DIR)')
  return os.path.abspath(ensure_mnist(cache_dir))

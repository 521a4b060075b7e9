"""Strict reader for MNIST's IDX files (gzip or raw).

Every failure raises MnistDataError naming the file and the problem, because the
commonest real-world fault, an interrupted download, otherwise shows up much later
as a shape error deep inside training.
"""
import gzip
import os
import struct
import zlib
from typing import Dict, Optional, Tuple

import numpy as np

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
IMAGE_SIZE = 28
_GZIP_MAGIC = b'\x1f\x8b'

# Official file stems per TFX split name.
SPLIT_STEMS: Dict[str, Tuple[str, str]] = {
    'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
    'eval': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'),
}


class MnistDataError(ValueError):
  """Bad MNIST input; the message names the file and what is wrong with it."""


def _read_bytes(path: str) -> bytes:
  if '://' in path:  # gs://, s3:// ... through TF's filesystems
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    if not tf.io.gfile.exists(path):
      raise MnistDataError(f'{path}: file not found')
    with tf.io.gfile.GFile(path, 'rb') as f:
      raw = f.read()
  else:
    if not os.path.isfile(path):
      raise MnistDataError(f'{path}: file not found')
    with open(path, 'rb') as f:
      raw = f.read()
  if raw[:2] != _GZIP_MAGIC:
    return raw
  try:
    return gzip.decompress(raw)
  except EOFError as e:
    raise MnistDataError(
        f'{path}: gzip stream ends early ({e}); the file is truncated, probably an '
        'interrupted download. Delete it and fetch it again.') from e
  except (OSError, zlib.error) as e:
    raise MnistDataError(f'{path}: corrupt gzip data ({e})') from e


def read_idx(path: str, expected_magic: int) -> np.ndarray:
  """Reads one IDX file of unsigned bytes into a uint8 array of its header's shape."""
  data = _read_bytes(path)
  if len(data) < 8:
    raise MnistDataError(f'{path}: {len(data)} bytes is too short for an IDX header')
  magic = struct.unpack('>I', data[:4])[0]
  if magic != expected_magic:
    kind = 'images' if expected_magic == IMAGES_MAGIC else 'labels'
    raise MnistDataError(
        f'{path}: magic number {magic} is not {expected_magic} (IDX {kind} of '
        'unsigned bytes); is this the right file, or undecompressed garbage?')
  ndim = data[3]
  header_len = 4 + 4 * ndim
  if len(data) < header_len:
    raise MnistDataError(f'{path}: header declares {ndim} dimensions but the file '
                         f'holds only {len(data)} bytes')
  dims = struct.unpack(f'>{ndim}I', data[4:header_len])
  record_size = int(np.prod(dims[1:], dtype=np.int64)) if ndim > 1 else 1
  body = len(data) - header_len
  expected = dims[0] * record_size
  if body < expected:
    raise MnistDataError(
        f'{path}: header promises {dims[0]} records but the file holds only '
        f'{body // max(record_size, 1)} complete ones ({body} of {expected} data bytes); '
        'the file is truncated, probably an interrupted download.')
  if body > expected:
    raise MnistDataError(f'{path}: {body - expected} unexpected bytes after the '
                         f'{dims[0]} records the header declares')
  return np.frombuffer(data, dtype=np.uint8, offset=header_len).reshape(dims)


def find_file(data_dir: str, stem: str) -> str:
  """The path of ``stem`` or ``stem.gz`` in data_dir (gzip preferred)."""
  for name in (stem + '.gz', stem):
    path = os.path.join(data_dir, name)
    if os.path.isfile(path):
      return path
  raise MnistDataError(f'{os.path.join(data_dir, stem)}[.gz]: file not found')


def check_data_dir(data_dir: Optional[str]) -> str:
  """Checks that data_dir holds the four IDX files; returns it."""
  if not data_dir or not os.path.isdir(data_dir):
    raise MnistDataError(f'{data_dir}: MNIST data directory does not exist')
  if not os.listdir(data_dir):
    raise MnistDataError(
        f'{data_dir}: directory is empty; expected the four MNIST IDX files '
        '(train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, '
        't10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz)')
  for stems in SPLIT_STEMS.values():
    for stem in stems:
      find_file(data_dir, stem)
  return data_dir


def read_pair(images_path: str, labels_path: str) -> Tuple[np.ndarray, np.ndarray]:
  """Reads and cross-checks one images/labels pair: 28x28 images, equal counts."""
  images = read_idx(images_path, IMAGES_MAGIC)
  labels = read_idx(labels_path, LABELS_MAGIC)
  if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
    raise MnistDataError(f'{images_path}: images are {images.shape[1:]}, expected '
                         f'({IMAGE_SIZE}, {IMAGE_SIZE})')
  if labels.ndim != 1:
    raise MnistDataError(f'{labels_path}: labels have shape {labels.shape}, expected 1-D')
  if len(images) != len(labels):
    raise MnistDataError(f'{images_path} holds {len(images)} images but {labels_path} '
                         f'holds {len(labels)} labels')
  if len(images) == 0:
    raise MnistDataError(f'{images_path}: holds no records')
  return images, labels


def load_split(data_dir: str, split: str) -> Tuple[np.ndarray, np.ndarray]:
  """(images uint8 [N, 28, 28], labels uint8 [N]) of split 'train' or 'eval'."""
  if split not in SPLIT_STEMS:
    raise ValueError(f'split={split!r}: must be one of {sorted(SPLIT_STEMS)}')
  check_data_dir(data_dir)
  images_stem, labels_stem = SPLIT_STEMS[split]
  return read_pair(find_file(data_dir, images_stem), find_file(data_dir, labels_stem))


def write_idx(path: str, array: np.ndarray, compress: bool = True) -> None:
  """Writes a uint8 array as an IDX file: used by tests and the download cache."""
  magic = IMAGES_MAGIC if array.ndim == 3 else LABELS_MAGIC
  header = struct.pack('>I', magic) + struct.pack(f'>{array.ndim}I', *array.shape)
  payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
  with open(path, 'wb') as f:
    f.write(gzip.compress(payload, mtime=0) if compress else payload)

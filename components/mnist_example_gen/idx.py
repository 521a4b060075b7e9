"""Strict reader for MNIST's IDX files (gzip or raw).

Every failure raises MnistDataError naming the file and the problem, because the
commonest real-world fault, an interrupted download, otherwise shows up much later
as a shape error deep inside training.
"""
import gzip
import os
import re
import struct
import zlib
from typing import Dict, List, Optional, Sequence, Tuple

from absl import logging
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
ALL_STEMS: Tuple[str, ...] = tuple(s for stems in SPLIT_STEMS.values() for s in stems)
GZIP_SUFFIX = '.gz'

# IDX magic: 0x00 0x00 <dtype byte> <number of dimensions>.
_UBYTE = 0x08
_DTYPE_NAMES = {0x08: 'unsigned byte', 0x09: 'signed byte', 0x0B: 'int16',
                0x0C: 'int32', 0x0D: 'float32', 0x0E: 'float64'}


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


def _check_magic(path: str, magic: bytes, expected_magic: int) -> None:
  """Names the wrong byte: zero prefix, dtype byte, or dimension count."""
  kind = 'images' if expected_magic == IMAGES_MAGIC else 'labels'
  want_ndim = expected_magic & 0xFF
  if magic[:2] != b'\x00\x00':
    raise MnistDataError(
        f'{path}: magic number {struct.unpack(">I", magic)[0]} is not '
        f'{expected_magic} (first two bytes 0x{magic[0]:02X} 0x{magic[1]:02X}, '
        'expected 0x00 0x00): not an IDX file, or undecompressed garbage?')
  if magic[2] != _UBYTE:
    name = _DTYPE_NAMES.get(magic[2], 'not an IDX type')
    raise MnistDataError(
        f'{path}: dtype byte 0x{magic[2]:02X} ({name}), expected 0x{_UBYTE:02X} '
        f'(unsigned byte); MNIST {kind} are unsigned bytes')
  if magic[3] != want_ndim:
    hint = {3: ' (an images file?)', 1: ' (a labels file?)'}.get(magic[3], '')
    raise MnistDataError(
        f'{path}: {want_ndim} dimension{"s" if want_ndim > 1 else ""} expected for '
        f'{kind}, header says {magic[3]}{hint}')


def read_idx(path: str, expected_magic: int) -> np.ndarray:
  """Reads one IDX file of unsigned bytes into a uint8 array of its header's shape."""
  data = _read_bytes(path)
  if len(data) < 8:
    raise MnistDataError(f'{path}: {len(data)} bytes is too short for an IDX header')
  _check_magic(path, data[:4], expected_magic)
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


def pick(stem: str, paths: Sequence[str]) -> str:
  """The file to read for ``stem`` among its present forms (``stem``, ``stem.gz``).

  The gzip form wins when both are there (e.g. after ``gunzip -k``): it is what
  MNIST is distributed as and what download.py verifies against the official md5,
  and gzip's CRC catches a corrupted copy; a raw file has no published checksum.
  Decompressing costs well under a second per run.
  """
  if len(paths) > 1:
    chosen = next(p for p in paths if p.endswith(GZIP_SUFFIX))
    logging.info('%s: both gzip and raw forms present; reading %s (gzip preferred), '
                 'ignoring %s', stem, os.path.basename(chosen),
                 ', '.join(os.path.basename(p) for p in paths if p != chosen))
    return chosen
  return paths[0]


def stem_of(name: str) -> Optional[str]:
  """The official stem a file name is a form of, or None for any other name."""
  stem = name[:-len(GZIP_SUFFIX)] if name.endswith(GZIP_SUFFIX) else name
  return stem if stem in ALL_STEMS else None


def find_file(data_dir: str, stem: str) -> str:
  """The path of ``stem`` or ``stem.gz`` in data_dir (gzip preferred, see pick)."""
  paths = [os.path.join(data_dir, n) for n in (stem + GZIP_SUFFIX, stem)
           if os.path.isfile(os.path.join(data_dir, n))]
  if not paths:
    raise MnistDataError(f'{os.path.join(data_dir, stem)}[.gz]: file not found')
  return pick(stem, paths)


def _check_dir(path: str, what: str) -> List[str]:
  """The entries of directory path; errors tell a file, a missing and an unreadable dir apart."""
  if os.path.isfile(path):
    raise MnistDataError(f'{path}: {what} is a file, not a directory')
  if not os.path.exists(path):
    raise MnistDataError(f'{path}: {what} does not exist')
  if not os.path.isdir(path):
    raise MnistDataError(f'{path}: {what} is not a directory')
  try:
    return sorted(os.listdir(path))
  except PermissionError as e:
    raise MnistDataError(f'{path}: {what} is not readable ({e.strerror})') from e


def _check_files(data_dir: str, names: List[str]) -> None:
  present = set(names)
  missing = []
  for stem in ALL_STEMS:
    forms = [n for n in (stem + GZIP_SUFFIX, stem) if n in present]
    if not forms:
      missing.append(stem + '[.gz]')
    for name in forms:
      path = os.path.join(data_dir, name)
      if os.path.isdir(path):
        raise MnistDataError(f'{path}: is a directory, not a file')
      if not os.access(path, os.R_OK):
        raise MnistDataError(f'{path}: is not readable')
  if len(missing) == len(ALL_STEMS):
    shown = ', '.join(names[:8]) + (', ...' if len(names) > 8 else '')
    raise MnistDataError(
        f'{data_dir}: none of the four MNIST IDX files is there; missing '
        f'{", ".join(missing)}' + (f' (the directory holds: {shown})' if names else ''))
  if missing:
    raise MnistDataError(f'{data_dir}: missing MNIST file(s) {", ".join(missing)}')


def _span_regex(span_pattern: str) -> Optional[str]:
  """A regex for one folder name with a {SPAN} or {SPAN:width} placeholder, else None."""
  pattern = span_pattern.strip('/')
  parts = re.split(r'\{SPAN(?::\d+)?\}', pattern)
  if len(parts) != 2 or '/' in pattern or re.search(r'[{}*?\[]', ''.join(parts)):
    return None
  return re.escape(parts[0]) + r'(\d+)' + re.escape(parts[1])


def check_data_dir(path: Optional[str], span_pattern: Optional[str] = None) -> None:
  """Checks that path is a readable directory holding the four IDX files, cheaply.

  Meant to run before any heavy import, so a wrong --data-dir fails in
  milliseconds. With span_pattern (e.g. 'span-{SPAN}') path holds span folders:
  the newest matching one (as ExampleGen's driver picks it) must hold the files.
  Object-store URIs (gs://, s3://) are only checked for form here; ExampleGen
  reports their missing files.
  """
  if not path:
    raise MnistDataError('MNIST data directory not given (--data-dir or MNIST_DIR)')
  if '://' in path:
    if not re.match(r'^[a-z][a-z0-9+.-]*://[^/]+', path):
      raise MnistDataError(f'{path}: not a valid URI (expected e.g. gs://bucket/dir)')
    return
  names = _check_dir(path, 'MNIST data directory')
  if span_pattern:
    regex = _span_regex(span_pattern)
    if regex is None:  # nested or dated patterns: ExampleGen's driver resolves them
      if not names:
        raise MnistDataError(f'{path}: span directory is empty (expected sub-folders '
                             f'matching {span_pattern!r})')
      return
    spans = sorted((int(m.group(1)), n) for n in names
                   for m in [re.fullmatch(regex, n)] if m)
    if not spans:
      raise MnistDataError(f'{path}: no sub-folder matches the span pattern '
                           f'{span_pattern!r}' + ('' if names else ' (directory is empty)'))
    path = os.path.join(path, spans[-1][1])
    names = _check_dir(path, 'newest span folder')
  if not names:
    raise MnistDataError(
        f'{path}: directory is empty; expected the four MNIST IDX files '
        '(train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, '
        't10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz)')
  _check_files(path, names)


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

"""A prepared tensorflow-datasets (tfds) MNIST data dir as an ingestion source.

Pure helpers used by TfdsMnistExampleGen (tfds_component.py) and by the runners:
where the data dir is, which versions it holds, whether a version is complete and
intact (checked before any Beam work), and how to prepare it when online.

Layout read (what ``tfds.builder('mnist', data_dir=D).download_and_prepare()``
writes)::

    D/mnist/3.0.1/dataset_info.json   splits with per-shard record counts
    D/mnist/3.0.1/features.json       image 28x28x1 uint8 (PNG), label ClassLabel(10)
    D/mnist/3.0.1/mnist-train.tfrecord-00000-of-00001
    D/mnist/3.0.1/mnist-test.tfrecord-00000-of-00001

Nothing here imports tensorflow_datasets or tensorflow at module level (importing
tfds costs seconds, TF more): the runners import this module while parsing flags.
Only ``prepare`` needs tfds; counting records needs TF.
"""
import json
import os
import re
from typing import Dict, List, Optional, Tuple

DEFAULT_NAME = 'mnist'
DEFAULT_VERSION = '3.0.1'
# TFX split name -> tfds split name. tfds calls MNIST's held-out split 'test'; the
# pipeline calls it 'eval' (as MnistExampleGen does for the t10k-* files).
SPLITS: Dict[str, str] = {'train': 'train', 'eval': 'test'}
INFO_FILE = 'dataset_info.json'
FEATURES_FILE = 'features.json'

_VERSION_RE = re.compile(r'^\d+\.\d+\.\d+$')
_NAME_RE = re.compile(r'^[a-z][a-z0-9_]*$')
# <name>/<version>/<name>-<split>.tfrecord*  (see split_patterns)
_PATTERN_RE = re.compile(
    r'^(?P<name>[a-z][a-z0-9_]*)/(?P<version>\d+\.\d+\.\d+)/'
    r'(?P=name)-(?P<split>[a-z_]+)\.tfrecord\*$')
_SHARD_RE = re.compile(r'-(?P<index>\d{5})-of-(?P<total>\d{5})$')


class TfdsDataError(ValueError):
  """A tfds data dir that cannot be ingested; the message names the path and why."""


def _how_to_prepare(data_dir: str, name: str, version: str) -> str:
  return (
      f'To prepare it (needs internet): `tfds build {name} --data_dir {data_dir}` or '
      f'`python -c "import tensorflow_datasets as tfds; tfds.builder(\'{name}\', '
      f'data_dir=\'{data_dir}\').download_and_prepare()"`. Offline, copy a prepared '
      f'`{name}/{version}/` folder (dataset_info.json, features.json, '
      f'{name}-*.tfrecord-*) into {os.path.join(data_dir, name)}/.')


def check_version(version: str) -> str:
  """Returns version if it is a tfds version string 'X.Y.Z' (no glob characters)."""
  if not isinstance(version, str) or not _VERSION_RE.match(version):
    raise TfdsDataError(f'tfds version {version!r}: expected X.Y.Z, e.g. '
                        f'{DEFAULT_VERSION!r}')
  return version


def check_name(name: str) -> str:
  if not isinstance(name, str) or not _NAME_RE.match(name):
    raise TfdsDataError(f'tfds dataset name {name!r}: expected a tfds name such as '
                        f'{DEFAULT_NAME!r}')
  return name


def resolve_data_dir(explicit: Optional[str] = None) -> str:
  """The tfds data dir, resolved as tfds.load does: explicit, else $TFDS_DATA_DIR,
  else ~/tensorflow_datasets (tfds.core.constants.get_default_data_dir()).

  Read at call time, not at import time like tfds.core.constants.DATA_DIR, so a
  TFDS_DATA_DIR set after import is honoured. Local paths come back absolute and
  user-expanded, because TFX records the ExampleGen's input_base in ml-metadata
  and the pipeline may run from another directory; URLs (gs://...) are unchanged.
  """
  d = explicit or os.environ.get('TFDS_DATA_DIR') or os.path.join(
      os.path.expanduser('~'), 'tensorflow_datasets')
  if '://' in d:
    return d
  return os.path.abspath(os.path.expanduser(d))


def _gfile():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.io.gfile


def _isdir(path: str) -> bool:
  if '://' in path:
    return _gfile().isdir(path)
  return os.path.isdir(path)


def _isfile(path: str) -> bool:
  if '://' in path:
    g = _gfile()
    return g.exists(path) and not g.isdir(path)
  return os.path.isfile(path)


def _listdir(path: str) -> List[str]:
  if '://' in path:
    return [p.rstrip('/') for p in _gfile().listdir(path)]
  return os.listdir(path)


def _read_text(path: str) -> str:
  if '://' in path:
    with _gfile().GFile(path, 'r') as f:
      return f.read()
  with open(path, encoding='utf-8') as f:
    return f.read()


def available_versions(data_dir: str, name: str = DEFAULT_NAME) -> List[str]:
  """Versions of `name` prepared in data_dir (folders X.Y.Z holding a
  dataset_info.json), oldest first. tfds's unfinished ``incomplete.*`` folders and
  anything else are ignored."""
  base = os.path.join(data_dir, name)
  if not _isdir(base):
    return []
  versions = [v for v in _listdir(base)
              if _VERSION_RE.match(v) and _isfile(os.path.join(base, v, INFO_FILE))]
  return sorted(versions, key=lambda v: tuple(int(x) for x in v.split('.')))


def split_patterns(version: str = DEFAULT_VERSION,
                   name: str = DEFAULT_NAME) -> Dict[str, str]:
  """TFX split name -> file pattern relative to the data dir, e.g.
  ``{'train': 'mnist/3.0.1/mnist-train.tfrecord*', 'eval': 'mnist/3.0.1/mnist-test.tfrecord*'}``.

  These are exactly the record files read, so the ExampleGen driver's fingerprint
  (count, sizes and mtimes of the matched files) changes with them.
  """
  check_version(version)
  check_name(name)
  return {split: f'{name}/{version}/{name}-{tfds_split}.tfrecord*'
          for split, tfds_split in SPLITS.items()}


def parse_split_pattern(pattern: str) -> Tuple[str, str, str]:
  """(name, version, tfds split) of a pattern made by split_patterns."""
  m = _PATTERN_RE.match(pattern)
  if not m:
    raise TfdsDataError(
        f'split pattern {pattern!r} is not <name>/<X.Y.Z>/<name>-<split>.tfrecord* '
        '(as made by tfds_source.split_patterns)')
  return m.group('name'), m.group('version'), m.group('split')


def _load_json(path: str) -> dict:
  try:
    return json.loads(_read_text(path))
  except (OSError, ValueError) as e:
    raise TfdsDataError(f'{path}: unreadable or not JSON ({e})') from e


def _check_features(path: str) -> None:
  """The features must be the 28x28x1 uint8 image + label that to_example emits."""
  if not _isfile(path):
    raise TfdsDataError(f'{path}: missing; the version folder is incomplete')
  feats = _load_json(path).get('featuresDict', {}).get('features', {})
  image = feats.get('image', {}).get('image', {})
  dims = [int(d) for d in image.get('shape', {}).get('dimensions', [])]
  if dims != [28, 28, 1] or image.get('dtype') != 'uint8' or 'label' not in feats:
    raise TfdsDataError(
        f'{path}: features are not MNIST\'s (image 28x28x1 uint8 + label); found '
        f'image shape {dims}, dtype {image.get("dtype")!r}, features {sorted(feats)}')


def shard_files(version_dir: str, name: str, tfds_split: str) -> List[str]:
  """The split's record files in version_dir, in shard order."""
  pattern = os.path.join(version_dir, f'{name}-{tfds_split}.tfrecord*')
  return sorted(_gfile().glob(pattern))


def count_records(path: str) -> int:
  """Number of records in one TFRecord file, every length and data CRC checked.

  A corrupt or truncated file (tf.errors.DataLossError) raises TfdsDataError
  naming the file. Reads the file once through tf.data in batches (about 0.1 s
  for MNIST's 7 MB training shard).
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  @tf.autograph.experimental.do_not_convert
  def add(n, batch):
    return n + tf.size(batch, out_type=tf.int64)

  ds = tf.data.TFRecordDataset(path, buffer_size=1 << 22).batch(4096)
  try:
    return int(ds.reduce(np.int64(0), add))
  except tf.errors.DataLossError as e:
    raise TfdsDataError(
        f'{path}: corrupt or truncated TFRecord file ({e.message.strip()}); '
        'prepare the dataset again or copy an intact file.') from e


def check_prepared(data_dir: str, version: str = DEFAULT_VERSION,
                   name: str = DEFAULT_NAME) -> Dict[str, int]:
  """Checks that data_dir holds an intact prepared `name/version`.

  Returns TFX split name -> number of examples ({'train': ..., 'eval': ...}).
  Raises TfdsDataError, naming the path, when: the dataset is not prepared there
  (with how to prepare it), the version is not there (listing those that are),
  dataset_info.json / features.json are missing or not MNIST's, the record files
  are not those dataset_info.json lists, a file's record count differs from its
  shardLengths (or the split's numExamples), or a file is corrupt or truncated.
  Reads every record once (CRC-checked): about 0.2 s for the full MNIST.
  """
  check_version(version)
  check_name(name)
  versions = available_versions(data_dir, name) if _isdir(data_dir) else []
  if not versions:
    where = (f'{data_dir}: no such directory' if not _isdir(data_dir) else
             f'{data_dir}: no prepared {name!r} dataset (no '
             f'{name}/<version>/{INFO_FILE})')
    raise TfdsDataError(f'{where}. {_how_to_prepare(data_dir, name, version)}')
  version_dir = os.path.join(data_dir, name, version)
  if version not in versions:
    raise TfdsDataError(
        f'{version_dir}: {name} version {version} is not prepared in {data_dir}; '
        f'versions present: {", ".join(versions)}. Pass one of them, or prepare '
        f'{version}: {_how_to_prepare(data_dir, name, version)}')

  info_path = os.path.join(version_dir, INFO_FILE)
  info = _load_json(info_path)
  if info.get('version') not in (None, version):
    raise TfdsDataError(f'{info_path}: says version {info.get("version")!r} but sits '
                        f'in the folder of version {version}')
  file_format = info.get('fileFormat', 'tfrecord')
  if file_format != 'tfrecord':
    raise TfdsDataError(
        f'{info_path}: fileFormat is {file_format!r}; only tfrecord is read. Prepare '
        f'it with `tfds build {name} --data_dir {data_dir} --file_format tfrecord`.')
  _check_features(os.path.join(version_dir, FEATURES_FILE))

  splits = {s.get('name'): s for s in info.get('splits', [])}
  sizes: Dict[str, int] = {}
  for split, tfds_split in SPLITS.items():
    if tfds_split not in splits:
      raise TfdsDataError(f'{info_path}: has no {tfds_split!r} split (it has '
                          f'{sorted(k for k in splits if k)})')
    lengths = [int(n) for n in splits[tfds_split].get('shardLengths', [])]
    files = shard_files(version_dir, name, tfds_split)
    if not files:
      raise TfdsDataError(
          f'{os.path.join(version_dir, f"{name}-{tfds_split}.tfrecord*")}: no record '
          f'file, but {info_path} lists {len(lengths)} shard(s) of split '
          f'{tfds_split!r}; the version folder is incomplete.')
    if len(files) != len(lengths):
      raise TfdsDataError(
          f'{info_path}: lists {len(lengths)} shard(s) of split {tfds_split!r} but '
          f'{version_dir} holds {len(files)}: {[os.path.basename(f) for f in files]}')
    for i, (path, want) in enumerate(zip(files, lengths)):
      m = _SHARD_RE.search(path)
      if not m or int(m.group('index')) != i or int(m.group('total')) != len(lengths):
        raise TfdsDataError(
            f'{path}: expected shard {i:05d}-of-{len(lengths):05d} of split '
            f'{tfds_split!r} (per {info_path})')
      got = count_records(path)
      if got != want:
        raise TfdsDataError(
            f'{path}: holds {got} records but {info_path} says {want} (shardLengths '
            f'of split {tfds_split!r}); the file and the dataset info disagree, '
            'prepare the dataset again.')
    total = sum(lengths)
    declared = splits[tfds_split].get('numExamples')
    if declared is not None and int(declared) != total:
      raise TfdsDataError(
          f'{info_path}: split {tfds_split!r} numExamples {declared} != {total}, the '
          'sum of its shardLengths')
    if total == 0:
      raise TfdsDataError(f'{info_path}: split {tfds_split!r} holds no examples')
    sizes[split] = total
  return sizes


def prepare(data_dir: str, version: str = DEFAULT_VERSION,
            name: str = DEFAULT_NAME) -> Dict[str, int]:
  """Prepares name/version in data_dir with tfds's own builder, then checks it.

  tfds downloads from its default source and verifies the registered checksums
  itself; an already prepared version is reused without network access. Offline
  (or for a version the installed tfds cannot build) the failure is re-raised as
  TfdsDataError saying how to prepare the data dir by hand. Returns the split
  sizes, as check_prepared does.
  """
  check_version(version)
  check_name(name)
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    tfds.builder(name, data_dir=data_dir, version=version).download_and_prepare()
  except Exception as e:  # pylint: disable=broad-except  # network, checksum, version
    present = available_versions(data_dir, name) if _isdir(data_dir) else []
    present_msg = (f' Versions already prepared there: {", ".join(present)}.'
                   if present else '')
    raise TfdsDataError(
        f'{data_dir}: could not prepare {name} {version} with tensorflow-datasets '
        f'({type(e).__name__}: {e}).{present_msg} '
        f'{_how_to_prepare(data_dir, name, version)}') from e
  return check_prepared(data_dir, version, name)

"""The one reader of Transform's output: gzip TFRecords of transformed tf.Examples
-> in-memory arrays. The Trainer and the robustness evaluator both read through it.

MNIST fits in memory (60k x 784 float32 = 188 MB), so files are parsed once, in
batches, instead of per example on every epoch.
"""
from typing import Dict, Iterable, Optional, Tuple

import numpy as np
import tensorflow as tf

from components.transform import features

Arrays = Tuple[np.ndarray, np.ndarray]
_READ_BATCH = 4096

# What Transform writes (components/transform/preprocessing.py); the default spec
# when the caller has no TFTransformOutput at hand.
TRANSFORMED_SPEC = {
    features.IMAGE_XF_KEY: tf.io.FixedLenFeature([features.NUM_PIXELS], tf.float32),
    features.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
}


def list_files(file_patterns: Iterable[str]) -> list:
  """All files matching the patterns (TFX passes e.g. '.../Split-train/*')."""
  patterns = list(file_patterns)
  files = sorted(f for p in patterns for f in tf.io.gfile.glob(p))
  if not files:
    raise FileNotFoundError(f'no transformed example files match {patterns}')
  return files


def read_transformed(
    file_patterns: Iterable[str],
    feature_spec: Optional[Dict[str, tf.io.FixedLenFeature]] = None) -> Arrays:
  """Parses gzip TFRecords of transformed tf.Examples into (images, labels).

  images float32 [N, 784] (``image_xf``), labels int64 [N]. Raises ValueError naming
  the files when they hold no examples or the wrong shapes, and lets
  tf.errors.OpError (corrupt data) through for the caller to word.
  """
  files = list_files(file_patterns)
  feature_spec = TRANSFORMED_SPEC if feature_spec is None else feature_spec
  for key in (features.IMAGE_XF_KEY, features.LABEL_KEY):
    if key not in feature_spec:
      raise ValueError(f'transformed feature spec lacks {key!r}: has {sorted(feature_spec)}')
  spec = {k: feature_spec[k] for k in (features.IMAGE_XF_KEY, features.LABEL_KEY)}
  ds = (tf.data.TFRecordDataset(files, compression_type='GZIP',
                                num_parallel_reads=tf.data.AUTOTUNE)
        .batch(_READ_BATCH)
        .map(lambda s: tf.io.parse_example(s, spec), num_parallel_calls=tf.data.AUTOTUNE))
  images, labels = [], []
  for batch in ds.as_numpy_iterator():
    images.append(batch[features.IMAGE_XF_KEY])
    labels.append(batch[features.LABEL_KEY])
  if not images:
    raise ValueError(f'{files}: hold no examples')
  images = np.concatenate(images).astype(np.float32, copy=False)
  labels = np.concatenate(labels).astype(np.int64, copy=False).reshape(-1)
  if images.ndim != 2 or images.shape[1] != features.NUM_PIXELS:
    raise ValueError(f'{files}: {features.IMAGE_XF_KEY} has shape {images.shape[1:]}, '
                     f'expected ({features.NUM_PIXELS},)')
  return images, labels

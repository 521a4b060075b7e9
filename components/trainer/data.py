"""Input pipeline: transformed TFRecords -> in-memory arrays -> batched tf.data.

MNIST fits in memory (60k x 784 float32 = 188 MB), so the files are parsed once and
every epoch draws batches by gathering shuffled indices from the resident arrays:
one gather per batch instead of per-example parsing, copying and batching, which
keeps the input pipeline far off the critical path of a ~10 ms step on 2 cores.

Batches are GLOBAL: batch_size (per replica, TrainConfig) x replicas, and
tf.distribute splits each one across the replicas.
"""
from typing import Dict, Iterable, Tuple

import numpy as np
import tensorflow as tf

from components.transform import features

Arrays = Tuple[np.ndarray, np.ndarray]
_READ_BATCH = 4096


def list_files(file_patterns: Iterable[str]) -> list:
  """All files matching the patterns (TFX passes e.g. '.../Split-train/*')."""
  patterns = list(file_patterns)
  files = sorted(f for p in patterns for f in tf.io.gfile.glob(p))
  if not files:
    raise FileNotFoundError(f'no transformed example files match {patterns}')
  return files


def read_transformed(file_patterns: Iterable[str],
                     feature_spec: Dict[str, tf.io.FixedLenFeature]) -> Arrays:
  """Parses gzip TFRecords of transformed tf.Examples into (images, labels).

  images float32 [N, 784] in [0, 1] (``image_xf``), labels int64 [N].
  """
  files = list_files(file_patterns)
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


def split_holdout(images: np.ndarray, labels: np.ndarray, count: int,
                  seed: int) -> Tuple[Arrays, Arrays]:
  """(train, holdout): a seeded random ``count`` examples set aside for model
  selection, so the selection metric is not measured on what the model fit."""
  n = len(labels)
  if count >= n:
    raise ValueError(f'robust_eval_examples={count}: must be smaller than the '
                     f'{n} training examples')
  order = np.random.default_rng(seed).permutation(n)
  held, kept = np.sort(order[:count]), np.sort(order[count:])
  return (images[kept], labels[kept]), (images[held], labels[held])


def global_batch_size(per_replica_batch: int, replicas: int) -> int:
  return per_replica_batch * replicas


def training_dataset(images: np.ndarray, labels: np.ndarray, *, batch_size: int,
                     seed: int, shuffle_buffer: int) -> tf.data.Dataset:
  """Reshuffled every epoch (seeded), batched by ``batch_size`` (the global batch),
  last partial batch kept so every example is seen once per epoch."""
  n = len(labels)
  images_t, labels_t = tf.constant(images), tf.constant(labels)
  return (tf.data.Dataset.range(n)
          .shuffle(max(1, min(shuffle_buffer, n)), seed=seed, reshuffle_each_iteration=True)
          .batch(batch_size)
          .map(lambda i: (tf.gather(images_t, i), tf.gather(labels_t, i)),
               num_parallel_calls=tf.data.AUTOTUNE)
          .prefetch(tf.data.AUTOTUNE))


def evaluation_dataset(images: np.ndarray, labels: np.ndarray, *,
                       batch_size: int) -> tf.data.Dataset:
  return (tf.data.Dataset.from_tensor_slices((images, labels))
          .batch(batch_size)
          .prefetch(tf.data.AUTOTUNE))

"""Input pipeline: in-memory arrays (components/transform/transformed_io.py) ->
batched tf.data.

Every epoch draws batches by gathering shuffled indices from the resident arrays:
one gather per batch instead of per-example parsing, copying and batching, which
keeps the input pipeline far off the critical path of a ~10 ms step on 2 cores.

Batches are GLOBAL: batch_size (per replica, TrainConfig) x replicas, and
tf.distribute splits each one across the replicas.
"""
from typing import Tuple

import numpy as np
import tensorflow as tf

from components.transform.transformed_io import Arrays


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


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  """Batches per epoch of training_dataset (the last partial batch counts)."""
  return -(-num_examples // batch_size)


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

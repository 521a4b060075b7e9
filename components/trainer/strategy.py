"""Which tf.distribute strategy the Trainer runs under.

More than one visible GPU -> MirroredStrategy over all of them (synchronous data
parallelism; the global batch is batch_size x replicas, see data.py). Otherwise the
default strategy, which places work on the single GPU if there is one, else on CPU.
Tests force a device list (e.g. two logical CPUs) to exercise the mirrored path.
"""
from typing import Optional, Sequence

import tensorflow as tf


def make_strategy(devices: Optional[Sequence[str]] = None) -> tf.distribute.Strategy:
  if devices is not None:
    devices = list(devices)
    if not devices:
      raise ValueError('devices=[]: give at least one device, or None to auto-detect')
    return tf.distribute.MirroredStrategy(devices=devices)
  gpus = tf.config.list_logical_devices('GPU')
  if len(gpus) > 1:
    return tf.distribute.MirroredStrategy(devices=[d.name for d in gpus])
  return tf.distribute.get_strategy()

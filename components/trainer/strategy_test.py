"""Tests of the distribution strategy, including real two-replica training.

The mirrored test runs in a subprocess: splitting the CPU into two logical devices
must happen before TF initialises and would change every other test's TF state.
"""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _two_replica_child() -> None:
  """Trains the same data under MirroredStrategy on two logical CPUs and under the
  default strategy; prints what the parent checks."""
  import numpy as np
  import tensorflow as tf
  cpu = tf.config.list_physical_devices('CPU')[0]
  tf.config.set_logical_device_configuration(
      cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
  from components.trainer import data, testing_utils, training
  from components.trainer.strategy import make_strategy
  from components.config import ModelConfig, TrainerConfig

  config = TrainerConfig(model=ModelConfig(conv_filters=(4, 8), dense_units=16)).replace(
      **{'train.batch_size': 8, 'train.jit_compile': False})
  images, labels = testing_utils.generated_images(64)
  x = images.reshape(64, -1).astype(np.float32) / 255.0
  result = {}
  for name, devices in (('mirrored', ['/cpu:0', '/cpu:1']), ('single', None)):
    strategy = make_strategy(devices)
    replicas = strategy.num_replicas_in_sync
    # Same global batch both times: 2 replicas x 8, or 16 on one device.
    batch = 16 if name == 'single' else data.global_batch_size(8, replicas)
    tf.keras.utils.set_random_seed(0)   # same shuffle order both times
    ds = data.training_dataset(x, labels, batch_size=batch, seed=0, shuffle_buffer=64)
    with strategy.scope():
      model = training.compile_model(config, 'adversarial')
    history = model.fit(ds, epochs=2, verbose=0).history
    with strategy.scope():
      jit_model = training.compile_model(config.replace(**{'train.jit_compile': True}),
                                         'adversarial')
    result[name] = {
        'replicas': replicas, 'strategy': type(strategy).__name__,
        'jit_compile_kept': bool(jit_model.jit_compile),
        'loss': history['loss'],
        'scaled_adversarial_loss': history['scaled_adversarial_loss'],
        'weights': [w.tolist() for w in model.base.get_weights()]}
  print(json.dumps(result))


def test_two_logical_cpus_train_like_one_device_with_the_same_global_batch():
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL='2')
  proc = subprocess.run([sys.executable, os.path.abspath(__file__)], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  mirrored, single = result['mirrored'], result['single']
  assert mirrored['replicas'] == 2 and mirrored['strategy'] == 'MirroredStrategy'
  assert single['replicas'] == 1
  # XLA cannot run MirroredStrategy over CPU devices, so it is turned off there only.
  assert not mirrored['jit_compile_kept'] and single['jit_compile_kept']
  assert mirrored['loss'] == pytest.approx(single['loss'], rel=1e-4)
  assert mirrored['scaled_adversarial_loss'] == pytest.approx(
      single['scaled_adversarial_loss'], rel=1e-4)
  import numpy as np
  for a, b in zip(mirrored['weights'], single['weights']):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def test_default_strategy_without_gpus():
  import tensorflow as tf
  from components.trainer.strategy import make_strategy
  if tf.config.list_logical_devices('GPU'):
    pytest.skip('machine has GPUs')
  strategy = make_strategy()
  assert strategy is tf.distribute.get_strategy()
  assert strategy.num_replicas_in_sync == 1


def test_empty_device_list_is_rejected():
  from components.trainer.strategy import make_strategy
  with pytest.raises(ValueError, match='devices=\\[\\]'):
    make_strategy([])


if __name__ == '__main__':
  _two_replica_child()

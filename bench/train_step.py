"""Benchmark of the Trainer's step: adversarial vs base throughput on real MNIST.

Trains the pipeline's model (components.trainer.training.compile_model, same
in-memory tf.data input) with batch 32 on the training split of MNIST_DIR, once in
base mode and once in the chosen adversarial mode. The first epoch of each run is a
warm-up (tracing, oneDNN primitive creation) and is excluded; throughput is
examples / mean wall time of the remaining full epochs. Timings on shared cores are
noisy: compare runs made back to back.

  MNIST_DIR=/path/to/mnist python bench/train_step.py [--mode fgsm] [--epochs 2]

The last line printed is one JSON object: adv_examples_per_s, base_examples_per_s,
adv_over_base_ratio, mode, adv_epoch_seconds, base_epoch_seconds, examples, ...

It also prints the multiply-adds per example of each step, counted from the traced
graph (bench/step_cost.py), the arithmetic rate each run reached, and the rate of a
large float32 matmul in the same process: the step is compute-bound when its rate is
a good fraction of that, and then the time ratio cannot go much below the MAC ratio.
"""
import argparse
import json
import os
import sys
import time
from typing import Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # pylint: disable=g-import-not-at-top
import tf_keras as keras

from bench import step_cost
from components.mnist_example_gen import idx
from components.transform import features
from components.trainer import data
from components.trainer import training
from pipeline.config import PipelineConfig

# Adversarial scenarios, as overrides of the pipeline config (epsilon 0.2 throughout,
# the tutorial's radius).
MODES: Dict[str, Optional[Dict[str, object]]] = {
    'fgsm': {},   # the tutorial: one 0.2 L-inf step, multiplier 0.2
    'base': None,
    'pgd7': {'adv.pgd_iterations': 7, 'adv.pgd_epsilon': 0.2,
             'adv.adv_step_size': 0.05, 'adv.random_init': True},
    # Fast adversarial training: random start, one 1.25*eps step, projected.
    'fast': {'adv.pgd_epsilon': 0.2, 'adv.adv_step_size': 0.25, 'adv.random_init': True},
    'madry7': {'adv.loss': 'adv_only', 'adv.pgd_iterations': 7, 'adv.pgd_epsilon': 0.2,
               'adv.adv_step_size': 0.05, 'adv.random_init': True},
    'trades': {'adv.loss': 'trades', 'adv.pgd_iterations': 7, 'adv.pgd_epsilon': 0.2,
               'adv.adv_step_size': 0.05, 'adv.random_init': True},
}
BATCH_SIZE = 32


class _EpochTimer(keras.callbacks.Callback):
  def __init__(self):
    super().__init__()
    self.seconds: List[float] = []
    self.logs: List[dict] = []

  def on_epoch_begin(self, epoch, logs=None):
    self._start = time.perf_counter()

  def on_epoch_end(self, epoch, logs=None):
    self.seconds.append(time.perf_counter() - self._start)
    self.logs.append({k: round(float(v), 4) for k, v in (logs or {}).items()})


def matmul_gflops(size: int = 2048, repeats: int = 20) -> float:
  """Float32 rate of a large matmul here: what this CPU's kernels reach at best."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  a = tf.random.uniform([size, size])
  matmul = tf.function(lambda m: tf.matmul(m, m))
  matmul(a).numpy()
  start = time.perf_counter()
  for _ in range(repeats):
    out = matmul(a)
  out.numpy()
  return 2 * size ** 3 * repeats / (time.perf_counter() - start) / 1e9


def parse_override(text: str):
  key, sep, value = text.partition('=')
  if not sep:
    raise argparse.ArgumentTypeError(f'--set {text!r}: expected key=value')
  return key, json.loads(value)


def load_normalized(data_dir: str, split: str):
  """One IDX split as the Transform outputs it: float32 [N, 784] in [0, 1], int64 labels."""
  images, labels = idx.load_split(data_dir, split)
  return (images.reshape(len(images), -1).astype(np.float32) / features.MAX_PIXEL,
          labels.astype(np.int64))


def train(config: PipelineConfig, mode: str, images, labels, callbacks=()):
  """The Trainer's model, data and precision policy, fit for config.train.epochs."""
  ds = data.training_dataset(images, labels, batch_size=config.train.batch_size,
                             seed=config.train.seed, shuffle_buffer=config.train.shuffle_buffer)
  with training.precision_policy(config.train.precision):
    model = training.compile_model(config, mode)
    model.fit(ds, epochs=config.train.epochs, verbose=0, callbacks=list(callbacks))
  return model


def _run(config: PipelineConfig, mode: str, images, labels) -> dict:
  timer = _EpochTimer()
  model = train(config, mode, images, labels, callbacks=[timer])
  macs = step_cost.train_step_macs(model, BATCH_SIZE, images.shape[1],
                                   config.adv.pgd_iterations) / BATCH_SIZE
  measured = timer.seconds[1:] if len(timer.seconds) > 1 else timer.seconds
  result = {'epoch_seconds': [round(s, 3) for s in timer.seconds],
            'warmup_seconds': round(timer.seconds[0], 3),
            'mean_epoch_seconds': float(np.mean(measured)),
            'examples_per_s': len(labels) / float(np.mean(measured)),
            'last_logs': timer.logs[-1], 'macs_per_example': macs}
  result['gflops'] = 2 * macs * result['examples_per_s'] / 1e9
  print(f'{mode:11s} epochs (s): {result["epoch_seconds"]}  -> '
        f'{result["examples_per_s"]:.0f} examples/s, '
        f'{1000 * result["mean_epoch_seconds"] / -(-len(labels) // BATCH_SIZE):.2f} ms/step; '
        f'{macs / 1e6:.2f} M multiply-adds/example = {result["gflops"]:.0f} GFLOP/s; '
        f'last epoch {result["last_logs"]}', flush=True)
  return result


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--mode', choices=sorted(MODES), default='fgsm')
  parser.add_argument('--epochs', type=int, default=2,
                      help='epochs per run; the first is a warm-up, not timed')
  parser.add_argument('--examples', type=int, default=None,
                      help='use only the first N training examples')
  parser.add_argument('--data-dir', default=os.environ.get('MNIST_DIR'))
  parser.add_argument('--set', dest='overrides', action='append', default=[],
                      type=parse_override, metavar='KEY=JSON',
                      help='config override, e.g. --set train.jit_compile=false')
  args = parser.parse_args(argv)
  if not args.data_dir:
    parser.error('set MNIST_DIR or pass --data-dir (directory of the four IDX files)')
  if args.epochs < 1:
    parser.error(f'--epochs={args.epochs}: must be >= 1')

  # The Transform's normalization, done here without a Beam run.
  x, y = load_normalized(args.data_dir, 'train')
  if args.examples:
    x, y = x[:args.examples], y[:args.examples]
  overrides = dict(args.overrides)
  overrides.update({'train.batch_size': BATCH_SIZE, 'train.epochs': args.epochs})
  base_config = PipelineConfig().replace(**overrides)
  print(f'bench: {len(y)} examples, batch {BATCH_SIZE}, {args.epochs} epoch(s) per run '
        f'(first is warm-up), jit_compile={base_config.train.jit_compile}, '
        f'precision={base_config.train.precision}', flush=True)

  peak = matmul_gflops()
  print(f'reference: a 2048x2048 float32 matmul runs at {peak:.0f} GFLOP/s here', flush=True)
  base = _run(base_config, 'base', x, y)
  adv = None
  if MODES[args.mode] is not None:
    adv_config = base_config.replace(**MODES[args.mode])
    adv = _run(adv_config, 'adversarial', x, y)
  result = {
      'mode': args.mode,
      'adv_examples_per_s': round(adv['examples_per_s'], 1) if adv else None,
      'base_examples_per_s': round(base['examples_per_s'], 1),
      'adv_over_base_ratio': (round(base['examples_per_s'] / adv['examples_per_s'], 3)
                              if adv else None),
      'adv_epoch_seconds': round(adv['mean_epoch_seconds'], 3) if adv else None,
      'base_epoch_seconds': round(base['mean_epoch_seconds'], 3),
      'adv_all_epoch_seconds': adv['epoch_seconds'] if adv else None,
      'base_all_epoch_seconds': base['epoch_seconds'],
      'adv_macs_per_example': adv['macs_per_example'] if adv else None,
      'base_macs_per_example': base['macs_per_example'],
      'adv_over_base_macs': (round(adv['macs_per_example'] / base['macs_per_example'], 3)
                             if adv else None),
      'adv_gflops': round(adv['gflops'], 1) if adv else None,
      'base_gflops': round(base['gflops'], 1),
      'matmul_gflops': round(peak, 1),
      'examples': int(len(y)), 'batch_size': BATCH_SIZE, 'epochs': args.epochs,
      'jit_compile': base_config.train.jit_compile,
      'precision': base_config.train.precision,
  }
  if adv:
    print(f'adversarial: {result["adv_examples_per_s"]} examples/s '
          f'({result["adv_epoch_seconds"]} s/epoch); base: '
          f'{result["base_examples_per_s"]} examples/s ({result["base_epoch_seconds"]} '
          f's/epoch); ratio {result["adv_over_base_ratio"]} (multiply-adds: '
          f'{result["adv_over_base_macs"]}x)')
  print(json.dumps(result), flush=True)
  return result


if __name__ == '__main__':
  main()

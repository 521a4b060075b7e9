"""The tutorial's table over several seeds, trained directly (no pipeline).

One pipeline run gives one sample of each number, and the FGSM-transfer column
depends on the base model the attack is crafted on, whose own FGSM accuracy moves
by tens of points between seeds. This trains base and adversarial models (the
pipeline's training code and default config) for each seed and prints clean,
FGSM transfer-from-base, white-box FGSM and white-box PGD accuracy, then the spread.

  MNIST_DIR=/path/to/mnist python bench/quality.py [--seeds 0 1 2] [--set KEY=JSON]

The last line printed is one JSON object: per-seed results and their mean/min/max.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf

from bench.train_step import parse_override
from components.mnist_example_gen import idx
from components.robustness_evaluator import attacks
from components.transform import features
from components.trainer import data
from components.trainer import training
from pipeline.config import PipelineConfig

EPSILON = 0.2


def _normalized(data_dir: str, split: str):
  images, labels = idx.load_split(data_dir, split)
  return (images.reshape(len(images), -1).astype(np.float32) / features.MAX_PIXEL,
          labels.astype(np.int64))


def _train(config: PipelineConfig, mode: str, x, y):
  ds = data.training_dataset(x, y, batch_size=config.train.batch_size,
                             seed=config.train.seed, shuffle_buffer=config.train.shuffle_buffer)
  with training.precision_policy(config.train.precision):
    model = training.compile_model(config, mode)
    start = time.perf_counter()
    model.fit(ds, epochs=config.train.epochs, verbose=0)
  return model.base, time.perf_counter() - start


def _attack(model, x, y, steps: int, batch: int = 500) -> np.ndarray:
  """L-inf neighbors at EPSILON: FGSM (one step) or PGD (steps of EPSILON/10 from
  a random start), clipped to [0, 1] as the Evaluator does."""
  logits_fn = tf.function(lambda v: model(v, training=False))
  out = []
  for start in range(0, len(y), batch):
    x_adv, _ = attacks.attack_batch(
        logits_fn, tf.constant(x[start:start + batch]), tf.constant(y[start:start + batch]),
        norm='infinity', steps=steps, random_start=steps > 1, restarts=1,
        epsilon=tf.constant(EPSILON), step_size=tf.constant(EPSILON if steps == 1 else EPSILON / 10),
        seed=tf.constant([0, start]), clip_min=0.0, clip_max=1.0)
    out.append(x_adv.numpy())
  return np.concatenate(out)


def _accuracy(model, x, y) -> float:
  return float(np.mean(np.argmax(model.predict(x, batch_size=1000, verbose=0), -1) == y))


def run_seed(config: PipelineConfig, train, test, pgd_examples: int, pgd_steps: int) -> dict:
  (x, y), (xt, yt) = train, test
  base, base_s = _train(config, 'base', x, y)
  adv, adv_s = _train(config, 'adversarial', x, y)
  from_base = _attack(base, xt, yt, steps=1)
  xp, yp = xt[:pgd_examples], yt[:pgd_examples]
  result = {}
  for name, model, seconds in (('base', base, base_s), ('adversarial', adv, adv_s)):
    result[name] = {
        'clean': _accuracy(model, xt, yt),
        'fgsm_transfer': _accuracy(model, from_base, yt),
        'fgsm_whitebox': _accuracy(model, _attack(model, xt, yt, steps=1), yt),
        f'pgd{pgd_steps}_whitebox': _accuracy(model, _attack(model, xp, yp, pgd_steps), yp),
        'train_seconds': round(seconds, 1)}
  return result


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
  parser.add_argument('--data-dir', default=os.environ.get('MNIST_DIR'))
  parser.add_argument('--pgd-examples', type=int, default=2000)
  parser.add_argument('--pgd-steps', type=int, default=20)
  parser.add_argument('--set', dest='overrides', action='append', default=[],
                      type=parse_override, metavar='KEY=JSON')
  args = parser.parse_args(argv)
  if not args.data_dir:
    parser.error('set MNIST_DIR or pass --data-dir (directory of the four IDX files)')
  train, test = _normalized(args.data_dir, 'train'), _normalized(args.data_dir, 'eval')
  base_config = PipelineConfig().replace(**dict(args.overrides))
  print(f'quality: {len(train[1])} training / {len(test[1])} test images, seeds '
        f'{args.seeds}, {base_config.train.epochs} epochs, adv={base_config.adv}', flush=True)
  per_seed = {}
  for seed in args.seeds:
    per_seed[seed] = run_seed(base_config.replace(**{'train.seed': seed}), train, test,
                              args.pgd_examples, args.pgd_steps)
    print(f'seed {seed}: {json.dumps(per_seed[seed])}', flush=True)
  spread = {}
  for model in ('base', 'adversarial'):
    spread[model] = {}
    for metric in per_seed[args.seeds[0]][model]:
      values = [per_seed[s][model][metric] for s in args.seeds]
      spread[model][metric] = {'mean': round(float(np.mean(values)), 4),
                               'min': min(values), 'max': max(values)}
      print(f'{model:12s} {metric:16s} mean {np.mean(values):.4f}  '
            f'[{min(values):.4f}, {max(values):.4f}]')
  result = {'seeds': per_seed, 'spread': spread}
  print(json.dumps(result), flush=True)
  return result


if __name__ == '__main__':
  main()

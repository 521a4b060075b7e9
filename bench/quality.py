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

from bench.train_step import load_normalized, parse_override, train
from components.robustness_evaluator import attacks
from components.config import AttackConfig, TrainerConfig

EPSILON = 0.2
BATCH = 500


def _train(config: TrainerConfig, mode: str, x, y):
  start = time.perf_counter()
  model = train(config, mode, x, y)
  return model.base, time.perf_counter() - start


def _accuracy(attacker: attacks.Attacker, x, y, attack=None) -> float:
  """Clean accuracy, or accuracy on the attack's white-box neighbors."""
  logits = attacker.logits(x) if attack is None else attacker.attack(x, y, attack)[1]
  return float(np.mean(attacks.predictions(logits) == y))


def run_seed(config: TrainerConfig, train_split, test, pgd_examples: int,
             pgd_steps: int) -> dict:
  """The Evaluator's Attacker, L-inf at EPSILON: FGSM, and PGD of EPSILON/10 steps
  from a random start, clipped to [0, 1]."""
  (x, y), (xt, yt) = train_split, test
  fgsm = AttackConfig(name='fgsm', epsilon=EPSILON, steps=1)
  pgd = AttackConfig(name=f'pgd{pgd_steps}', epsilon=EPSILON, steps=pgd_steps,
                     step_size=EPSILON / 10, random_start=True)
  trained = {mode: _train(config, mode, x, y) for mode in ('base', 'adversarial')}
  attackers = {mode: attacks.Attacker(lambda v, m=model: m(v, training=False),
                                      batch_size=BATCH, seed=config.train.seed, name=mode)
               for mode, (model, _) in trained.items()}
  from_base = attackers['base'].attack(xt, yt, fgsm)[0]
  xp, yp = xt[:pgd_examples], yt[:pgd_examples]
  result = {}
  for mode, attacker in attackers.items():
    result[mode] = {
        'clean': _accuracy(attacker, xt, yt),
        'fgsm_transfer': _accuracy(attacker, from_base, yt),
        'fgsm_whitebox': _accuracy(attacker, xt, yt, fgsm),
        f'pgd{pgd_steps}_whitebox': _accuracy(attacker, xp, yp, pgd),
        'train_seconds': round(trained[mode][1], 1)}
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
  train_split = load_normalized(args.data_dir, 'train')
  test = load_normalized(args.data_dir, 'eval')
  base_config = TrainerConfig().replace(**dict(args.overrides))
  print(f'quality: {len(train_split[1])} training / {len(test[1])} test images, seeds '
        f'{args.seeds}, {base_config.train.epochs} epochs, adv={base_config.adv}', flush=True)
  per_seed = {}
  for seed in args.seeds:
    per_seed[seed] = run_seed(base_config.replace(**{'train.seed': seed}), train_split, test,
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

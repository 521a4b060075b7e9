"""Where the Square attack's time goes: its loop against the bare forward passes.

Square (components/adversarial/square.py) costs one forward pass of the active
images per query, plus the loop's own work (the window draw, the candidate, the
margin, the gathers and scatters of the not-yet-flipped images). This times, in the
same process and on the same trained classifier and test images:

* ``forward``: the classifier's forward pass over the batch in a tf.while_loop, as
  many iterations as Square runs, nothing else;
* ``square``: square_attack with that many queries on the same batch;
* ``incremental``: the same Square through the classifier's split
  (components/trainer/local_split.py), which recomputes only the features under a
  small window; it also reports how many images the two runs disagree on;

and prints ms per iteration, the loop's overhead over the forward pass, and both
arithmetic rates (multiply-adds from bench/attack_cost.py's layer count) next to a
1024^2 float32 matmul timed in the same run. On a robust model almost no image
flips, so every iteration runs the whole batch: the figure is Square's cost per
query in the AutoAttack suite, where it attacks the images APGD left standing.

  python bench/square_loop.py --weights runs/q1128/.../seed-0/model/classifier \
      --preset robust-eps0.3 [--batches 460,920] [--iterations 100] [--rounds 3]
"""
import argparse
import datetime
import json
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, 'bench'))

from pipeline import progress  # pylint: disable=g-import-not-at-top
progress.quiet_environment()   # the Evaluator's environment: oneDNN on

from bench.quality import (add_checkpoint_arguments, build_config,  # pylint: disable=g-import-not-at-top
                           check_checkpoint_arguments, load_classifier)
from bench.train_step import cpu_info, load_normalized  # pylint: disable=g-import-not-at-top


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  add_checkpoint_arguments(parser)
  parser.add_argument('--batches', default='460,920')
  parser.add_argument('--iterations', type=int, default=100)
  parser.add_argument('--rounds', type=int, default=3)
  parser.add_argument('--epsilon', type=float, default=0.3)
  args = parser.parse_args(argv)
  check_checkpoint_arguments(parser, args)
  batches = [int(b) for b in args.batches.split(',') if b]
  if not batches or min(batches) < 1 or args.iterations < 1 or args.rounds < 1:
    parser.error('--batches, --iterations and --rounds must be positive')

  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from attack_cost import cnn_forward_macs  # pylint: disable=g-import-not-at-top
  from components.adversarial import square  # pylint: disable=g-import-not-at-top
  from components.trainer import local_split  # pylint: disable=g-import-not-at-top
  from nsl_reference import matmul_rates  # pylint: disable=g-import-not-at-top

  model_config = build_config(args.preset, None, {}).model
  classifier = load_classifier(args.preset, args.weights)
  x, y = load_normalized(args.data_dir, 'eval')
  macs = cnn_forward_macs(model_config)
  steps = args.iterations
  logits_fn = lambda v: classifier(v, training=False)
  local = local_split.split_classifier(classifier).local_model
  info = cpu_info()
  print(f'square loop: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, '
        f'CPU {info["cpu_model"]} ({info["cores"]} cores), {args.preset} CNN '
        f'({macs / 1e6:.2f} M multiply-adds a forward pass), {steps} iterations, '
        f'{args.rounds} rounds, fastest round reported', flush=True)
  results = []
  for n in batches:
    xb, yb = tf.constant(x[:n]), tf.constant(y[:n])

    @tf.function
    def forward(xb):
      # The input moves each iteration so no pass can be hoisted out of the loop.
      def body(i, total):
        shifted = xb + tf.cast(i, tf.float32) * 1e-7
        return i + 1, total + tf.reduce_sum(logits_fn(shifted))
      return tf.while_loop(lambda i, _: i < steps, body, (0, 0.0))[1]

    def attack(with_split):
      # queries = iterations + 1: the stripes are the first query. The schedule maps
      # iteration i to i * 10000 // queries, so a short run visits every window side
      # in the same proportions as the suite's 5,000 queries.
      @tf.function
      def run(xb, yb):
        r = square.square_attack(logits_fn, xb, yb, epsilon=args.epsilon,
                                 queries=steps + 1, seed=tf.constant([1, 2], tf.int64),
                                 local=local if with_split else None)
        return r.flipped
      return run

    calls = {'forward': forward, 'square': attack(False), 'incremental': attack(True)}
    args_of = {'forward': (xb,), 'square': (xb, yb), 'incremental': (xb, yb)}
    flipped = {k: calls[k](*args_of[k]).numpy() for k in ('square', 'incremental')}
    timings = {k: [] for k in calls}
    for _ in range(args.rounds):   # interleaved, so drift hits all alike
      for name, call in calls.items():
        start = time.perf_counter()
        call(*args_of[name]).numpy()
        timings[name].append(time.perf_counter() - start)
    ms = {k: 1e3 * min(v) / steps for k, v in timings.items()}
    rate = {k: 2 * macs * n / (v / 1e3) / 1e9 for k, v in ms.items()}
    row = {'batch': n, 'ms_per_iteration': ms, 'gflops_full_pass_equivalent': rate,
           'overhead': ms['square'] / ms['forward'] - 1,
           'incremental_speedup': ms['square'] / ms['incremental'],
           'flips': {k: int(v.sum()) for k, v in flipped.items()},
           'flip_disagreements': int(np.sum(flipped['square'] != flipped['incremental']))}
    results.append(row)
    print(f'  batch {n}: forward {ms["forward"]:.1f} ms/iteration ({rate["forward"]:.0f} '
          f'GFLOP/s), square {ms["square"]:.1f} ms ({rate["square"]:.0f} GFLOP/s): the '
          f'loop adds {100 * row["overhead"]:.0f}% to the forward pass; incremental '
          f'{ms["incremental"]:.1f} ms ({row["incremental_speedup"]:.2f}x faster than '
          f'square; flips {row["flips"]}, {row["flip_disagreements"]} images differ)',
          flush=True)
  matmul = matmul_rates()
  print(f'  1024^2 matmul, same run: {matmul["best"]:.0f} GFLOP/s (fastest call), '
        f'{matmul["wall"]:.0f} (median)', flush=True)
  summary = {'cpu': info, 'preset': args.preset, 'macs': macs, 'iterations': steps,
             'results': results, 'matmul': matmul}
  print(json.dumps(summary), flush=True)
  return summary


if __name__ == '__main__':
  main()

"""The AutoAttack suite's floor on this CPU: its attack loops' kernel time, one core each.

Issue #11 asks for the standard suite 10x faster than a library in the same run. How
close can it get with TF's CPU kernels? This profiles, in one process pinned to one
thread (intra- and inter-op), the two loops that hold ~95% of the suite's time, on a
``quality.py`` checkpoint at the suite's batch:

* APGD-T: ``apgd(loss='dlr_targeted')``, one forward pass and input gradient per
  image and iteration (APGD-CE costs the same per iteration);
* Square: ``square_attack`` through the model's split (the incremental pass the
  Evaluator uses), queries spread over the window sides as a 5,000-query run's are.

Each loop's CPU-ms per iteration is split into the network's kernels (convolutions,
their input gradients incl. the first layer's col2im Pad/AddN, pooling and its
gradient, matmuls, ReluGrad) and everything else (the attack's own selects, gathers,
scatters, RNG, losses). The floor is the suite's iteration count times the kernels'
CPU time, shared perfectly by ``--cores`` cores: the suite's time if the attack code
cost nothing and two batches ran on two cores with no contention. A second floor adds
the attack's own ops. Single-thread kernels are the right unit: the suite runs two
batches at once, one per core.

It also says if a pooling gradient ran on Eigen's kernel: before
components/adversarial/noinline.py an attack loop drew it in some processes
(bench/README.md, 2026-11-26 night), and such a process's APGD-T figure is not the
floor.

  MNIST_DIR=... python bench/suite_floor.py --weights runs/q1129/robust/seed-0/model/classifier \\
      [--batch 460] [--survivors 925] [--apgd-steps 40] [--square-queries 1001]

The last line printed is one JSON object.
"""
import argparse
import collections
import datetime
import glob
import json
import math
import os
import shutil
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from pipeline import progress  # pylint: disable=g-import-not-at-top
progress.quiet_environment()   # the Evaluator's environment: oneDNN on

from bench.quality import (add_checkpoint_arguments, check_checkpoint_arguments,  # pylint: disable=g-import-not-at-top
                           load_classifier)
from bench.train_step import cpu_info, load_normalized  # pylint: disable=g-import-not-at-top
from components.config import standard_autoattack  # pylint: disable=g-import-not-at-top

# Op types of the network's own work (forward and input gradient). Pad and AddN are
# the first layer's col2im input gradient (components/trainer/input_conv.py).
NETWORK_TYPES = ('Conv2D', 'MatMul', 'MaxPool', 'ReluGrad', 'BiasAdd', 'Pad', 'AddN')

def is_network(op_type: str) -> bool:
  return any(t in op_type for t in NETWORK_TYPES)


def profile_loop(run, args_, iterations: int, rounds: int) -> dict:
  """Wall ms per iteration (fastest of ``rounds``) and the traced op time split into
  the network's kernels and the rest, CPU-ms per iteration (one thread)."""
  from bench import profile_step  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  run(*args_)
  walls = []
  for _ in range(rounds):
    start = time.perf_counter()
    tf.nest.map_structure(lambda t: t.numpy(), run(*args_))
    walls.append(1e3 * (time.perf_counter() - start) / iterations)
  logdir = tempfile.mkdtemp()
  try:
    tf.profiler.experimental.start(logdir)
    tf.nest.map_structure(lambda t: t.numpy(), run(*args_))
    tf.profiler.experimental.stop()
    trace = glob.glob(os.path.join(logdir, '**', '*.xplane.pb'), recursive=True)[0]
    ops = profile_step.parse_xspace(trace, iterations)['ops']
  finally:
    shutil.rmtree(logdir, ignore_errors=True)
  by_type = collections.defaultdict(float)
  for op in ops.values():
    by_type[op['type']] += op['mean_ms']
  network = sum(v for t, v in by_type.items() if is_network(t))
  total = sum(by_type.values())
  eigen_pool_grad = by_type.get('MaxPoolGrad', 0.0)
  return {'wall_ms': min(walls), 'op_ms': total, 'network_ms': network,
          'other_ms': total - network, 'eigen_maxpoolgrad_ms': eigen_pool_grad,
          'top_types': sorted(((t, round(v, 3)) for t, v in by_type.items()),
                              key=lambda kv: -kv[1])[:8]}


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  add_checkpoint_arguments(parser)
  parser.add_argument('--batch', type=int, default=460,
                      help="images per loop: the Evaluator's batch of 500 holds ~460 "
                           'still-robust images of the first 1,000 after APGD-CE')
  parser.add_argument('--survivors', type=int, default=925,
                      help='images each of APGD-T and Square attacks in the suite run '
                           'being bounded (925 of the first 1,000 for the robust preset)')
  parser.add_argument('--apgd-images', type=int, default=990,
                      help='images APGD-CE attacks (the clean-correct ones)')
  parser.add_argument('--apgd-steps', type=int, default=40)
  parser.add_argument('--square-queries', type=int, default=1001)
  parser.add_argument('--epsilon', type=float, default=0.2)
  parser.add_argument('--cores', type=int, default=2)
  parser.add_argument('--rounds', type=int, default=2)
  args = parser.parse_args(argv)
  check_checkpoint_arguments(parser, args)
  if min(args.batch, args.survivors, args.apgd_steps, args.cores, args.rounds) < 1 or (
      args.square_queries < 2):
    parser.error('--batch, --survivors, --apgd-steps, --cores and --rounds must be '
                 '>= 1 and --square-queries >= 2')

  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.threading.set_intra_op_parallelism_threads(1)
  tf.config.threading.set_inter_op_parallelism_threads(1)
  from components.adversarial import apgd, square  # pylint: disable=g-import-not-at-top
  from components.trainer import local_split  # pylint: disable=g-import-not-at-top

  classifier = load_classifier(args.preset, args.weights)
  x, y = load_normalized(args.data_dir, 'eval')
  xb = tf.constant(x[:args.batch])
  yb = tf.constant(y[:args.batch].astype(np.int64))
  logits_fn = lambda v: tf.cast(classifier(v, training=False), tf.float32)
  local = local_split.split_classifier(classifier).local_model
  seed = tf.constant([1, 2], tf.int64)

  @tf.function(autograph=False)
  def apgd_t(xb, yb):
    return apgd.apgd(logits_fn, xb, yb, epsilon=args.epsilon, steps=args.apgd_steps,
                     loss='dlr_targeted', target_rank=2, seed=seed).flipped

  @tf.function(autograph=False)
  def square_incremental(xb, yb):
    # queries - 1 iterations after the stripes; the schedule maps iteration i to
    # i * 10000 // queries, so every window side gets a 5,000-query run's share.
    return square.square_attack(logits_fn, xb, yb, epsilon=args.epsilon,
                                queries=args.square_queries, seed=seed,
                                local=local).flipped

  info = cpu_info()
  now = f'{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M}'
  print(f'suite floor: {now} UTC, CPU {info["cpu_model"]} ({info["cores"]} cores), '
        f'one thread, batch {args.batch}, eps {args.epsilon}', flush=True)
  # APGD-T runs steps + 1 gradient passes and one clean pass: dividing by steps + 2
  # puts a pass slightly under its cost. Square's four whole-batch forward passes
  # (clean, stripes, split, verdict) add < 1% to 1,000 iterations.
  loops = {'apgd_t': profile_loop(apgd_t, (xb, yb), args.apgd_steps + 2, args.rounds),
           'square': profile_loop(square_incremental, (xb, yb),
                                  args.square_queries - 1, args.rounds)}
  # Image-passes of the Evaluator's standard suite (its own AttackConfig): gradient
  # passes for APGD-CE and APGD-T (every target), queries for Square. Forward-only
  # passes (APGD-T's clean pass, Square's clean check and verdict) are left out, so
  # the floor stays below what the suite must do. APGD-CE's cost per pass is APGD-T's.
  suite = standard_autoattack(args.epsilon)
  gradient_passes = suite.restarts * (suite.steps + 1)
  # The boundary member's first round (it runs at least one): its starts for CE and
  # for the runner-up target on boundary_share of the sample (CE's breaks skip the
  # second loss, so slightly over; a round that breaks an image adds another).
  boundary_images = math.ceil(suite.boundary_share * suite.sample_size)
  work = {'apgd_ce': ('apgd_t', gradient_passes * args.apgd_images),
          'apgd_t': ('apgd_t', gradient_passes * suite.targets * args.survivors),
          'square': ('square', suite.queries * args.survivors),
          'boundary': ('apgd_t', (suite.steps + 1) * 2 * suite.boundary_restarts *
                       boundary_images)}
  floors = {what: {member: passes * loops[loop][what] / args.batch / 1e3 / args.cores
                   for member, (loop, passes) in work.items()}
            for what in ('network_ms', 'op_ms')}
  for name, r in loops.items():
    eigen = (f'; a pooling gradient on Eigen ({r["eigen_maxpoolgrad_ms"]:.1f} ms): NOT '
             'the floor, run again' if r['eigen_maxpoolgrad_ms'] > 0.5 else '')
    print(f'  {name}: {r["wall_ms"]:.2f} ms/iteration wall, op time {r["op_ms"]:.2f} '
          f'CPU-ms = network kernels {r["network_ms"]:.2f} + attack ops '
          f'{r["other_ms"]:.2f}{eigen}', flush=True)
    print(f'    top op types: {r["top_types"]}', flush=True)
  for what, label in (('network_ms', 'kernels only'), ('op_ms', 'kernels + attack ops')):
    f = floors[what]
    print(f'  floor on {args.cores} cores, {label}: {sum(f.values()):.1f} s (APGD-CE '
          f'{f["apgd_ce"]:.1f}, APGD-T {f["apgd_t"]:.1f}, Square {f["square"]:.1f}, '
          f'boundary {f["boundary"]:.1f})', flush=True)
  summary = {'date': now,
             'cpu': info, 'batch': args.batch, 'survivors': args.survivors,
             'apgd_images': args.apgd_images, 'cores': args.cores, 'loops': loops,
             'floor_seconds': {w: {**f, 'total': sum(f.values())}
                               for w, f in floors.items()}}
  print(json.dumps(summary), flush=True)
  return summary


if __name__ == '__main__':
  main()

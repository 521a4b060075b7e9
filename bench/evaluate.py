"""Throughput and arithmetic of the robustness Evaluator's attacks on MNIST.

    MNIST_DIR=../shared/data/mnist python bench/evaluate.py [--model-dir DIR] [--quick]

The model: --model-dir (a SavedModel with the ``normalized_logits`` signature: a
pushed version serving/mnist_adv/<version>, a parent holding numbered versions (the
newest is taken), or a Trainer output dir holding Format-Serving/), else a reference
CNN adversarially trained here with the project's training code
(components/trainer/training.compile_model, the Trainer's data pipeline) and exported
like the Trainer's normalized_logits signature; by default the 'robust' preset's
PGD-7 neighbors (eps 0.25, multiplier 1) for 2 epochs (--train-mode, --train-epochs).
On a non-robust model every image flips within a few iterations and the attacks
exit early, so their timing says nothing about the work on robust images.

In one process, with the Evaluator's batched, compiled Attacker (as the Evaluator
loads the model):

* clean logits, FGSM on all 10,000 test images, FGSM with the other jit_compile
  setting and the tutorial-style eager FGSM loop on subsets (as before);
* on the first --attack-images test images (default 1,000): PGD-40 and APGD-CE
  (100 steps) alternated for --ratio-rounds rounds (their ratio of images/s is
  taken within the run, from wall and from CPU seconds; APGD-CE runs 101 gradient
  evaluations against PGD-40's 40, so 0.40 means the same cost per iteration), then
  the standard AutoAttack suite (standard_autoattack(0.2): APGD-CE, APGD-T, Square),
  the tutorial's default suite (default_attacks()[2]: APGD-CE + APGD-T with 3
  targets), APGD-T alone (9 targets x 100 steps) and Square alone (5,000 queries),
  each traced beforehand and timed once, each reported as soon as it ends (and
  saved to --json-out);
* the arithmetic: forward multiply-adds per image (from the CNN's layer shapes and
  counted in the model's traced graph, bench/attack_cost.py), each attack's TFLOP as
  an UPPER BOUND from its settings and the suite's details (every iteration an early
  exit skipped is counted; backward = 2x forward by convention), the same from the
  image-passes actually run (counted by a wrapper around the model), and the
  achieved GFLOP/s next to a 2048^2 float32 matmul's, measured in this process
  before and after the attacks.

--reference art (with --weights): then the standard suite again on the first
--reference-images images (default 100), and bench/library_reference.py (ART's
APGD-CE, APGD-T and Square in the standard order, a subprocess) on the same images:
their same-run ratio is the suite's speed against the library.

Wall seconds depend on what else runs on these shared cores; process CPU seconds are
printed next to them. Compare only figures of one run. Last line: one JSON object.
--quick: 200 attack images, Square with 500 queries, 1 training epoch on 10,000 images.
"""
import argparse
import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from typing import Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
from pipeline import progress  # pylint: disable=g-import-not-at-top

progress.quiet_environment()

import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-position
tf.get_logger().setLevel('ERROR')  # AutoGraph's notes on train_step's matmul lambda
import tf_keras as keras  # pylint: disable=g-import-not-at-top,wrong-import-position
from tfx.types import standard_artifacts  # pylint: disable=g-import-not-at-top,wrong-import-position

import attack_cost  # pylint: disable=g-import-not-at-top,wrong-import-position
import train_step as train_bench  # pylint: disable=g-import-not-at-top,wrong-import-position
from components.mnist_example_gen import idx  # pylint: disable=g-import-not-at-top,wrong-import-position
from components.robustness_evaluator import attacks  # pylint: disable=g-import-not-at-top,wrong-import-position
from components.robustness_evaluator import autoattack  # pylint: disable=g-import-not-at-top,wrong-import-position
from components import serving_contract as contract  # pylint: disable=g-import-not-at-top,wrong-import-position
from components.robustness_evaluator import evaluation  # pylint: disable=g-import-not-at-top,wrong-import-position
from components.robustness_evaluator import executor  # pylint: disable=g-import-not-at-top,wrong-import-position
from components.trainer import data as train_data  # pylint: disable=g-import-not-at-top,wrong-import-position
from components.trainer import export as export_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from components.trainer import training  # pylint: disable=g-import-not-at-top,wrong-import-position
from components.transform import features  # pylint: disable=g-import-not-at-top,wrong-import-position
from components.config import (AttackConfig, EvalConfig, ModelConfig,  # pylint: disable=g-import-not-at-top,wrong-import-position
                               default_attacks, standard_autoattack, with_fab)

# The tutorial's FGSM over the 10,000 test images took this long (the target is 10x).
TUTORIAL_FGSM_SECONDS = 28.6
TUTORIAL_BATCH = 32
EPSILON = 0.2
# The library figure, ~350 s per 100 MNIST images on another day (ART 1.20.1
# took 595 s per 100 in one run with the suite: --reference art measures it); the
# target for the suite is 10x that rate: <= 350 s per 1,000 images.
SUITE_TARGET_SECONDS_PER_1000 = 350.0
RATIO_TARGET = 0.40
# --train-mode: bench/train_step.py's adversarial scenarios (config overrides);
# 'robust' is the robust preset's PGD-7 neighbors, 'fgsm' the tutorial's.
TRAIN_MODES = ('robust', 'pgd7', 'fgsm', 'fast', 'madry7', 'trades', 'base')
QUICK = {'attack_images': 200, 'square_queries': 500, 'train_examples': 10000,
         'train_epochs': 1, 'ratio_rounds': 1, 'tutorial_examples': 500,
         'jit_examples': 500}
DEFAULTS = {'attack_images': 1000, 'square_queries': 5000, 'train_examples': None,
            'train_epochs': 2, 'ratio_rounds': 2, 'tutorial_examples': 2000,
            'jit_examples': 2000}
ALL_ATTACKS = ('pgd40', 'apgd_ce', 'apgd_t', 'square', 'autoattack_default',
               'autoattack_standard')
# On request only (--attacks): FAB-T alone and the standard suite with it.
EXTRA_ATTACKS = ('fab_t', 'autoattack_full')


def normalized(images: np.ndarray) -> np.ndarray:
  """Transform's image_xf: row-major pixels scaled to [0, 1]."""
  return images.reshape(len(images), -1).astype(np.float32) / features.MAX_PIXEL


# ------------------------------------------------------------------ the model

def train_reference(data_dir: str, mode: str, epochs: int, examples):
  """The reference CNN trained with the Trainer's own model, adversarial step and
  input pipeline (no Transform: the IDX pixels scaled as Transform's image_xf)."""
  overrides = dict(train_bench.MODES[mode] or {})
  overrides['train.epochs'] = epochs
  config = train_bench.make_config(overrides)
  images, labels = idx.load_split(data_dir, 'train')
  x, y = normalized(images), labels.astype(np.int64)
  if examples:
    x, y = x[:examples], y[:examples]
  ds = train_data.training_dataset(x, y, batch_size=config.train.batch_size,
                                   seed=config.train.seed,
                                   shuffle_buffer=config.train.shuffle_buffer)
  with training.precision_policy(config.train.precision):
    model = training.compile_model(config, 'base' if mode == 'base' else 'adversarial')
    model.fit(ds, epochs=config.train.epochs, verbose=2)
  adv = config.adv
  description = (f'reference CNN trained here: --train-mode {mode} ('
                 + ('no adversary' if mode == 'base' else
                    f'{adv.loss}, multiplier {adv.multiplier}, {adv.pgd_iterations}-step '
                    f'neighbors, step {adv.adv_step_size}, eps {adv.epsilon}, '
                    f'random start {adv.random_init}')
                 + f'), {epochs} epoch(s) on {len(y)} training images, batch '
                 f'{config.train.batch_size}')
  return model.base, description


class _Export(tf.Module):
  def __init__(self, model):
    super().__init__()
    self.model = model

  # No AutoGraph: plain TF, and nothing re-reads this file's source at export time.
  @tf.function(input_signature=[tf.TensorSpec(
      [None, features.NUM_PIXELS], tf.float32, name=contract.NORMALIZED_INPUT)],
               autograph=False)
  def normalized_logits(self, image_xf):
    return {contract.LOGITS: tf.cast(self.model(image_xf, training=False), tf.float32)}


def export(model: keras.Model, root: str) -> standard_artifacts.Model:
  """Saves like the Trainer's normalized_logits and split signatures (Format-Serving,
  custom gradients kept) and returns a Model artifact for it."""
  artifact = standard_artifacts.Model()
  artifact.uri = root
  module = _Export(model)
  tf.saved_model.save(module, os.path.join(root, 'Format-Serving'),
                      signatures={contract.NORMALIZED_LOGITS: module.normalized_logits,
                                  **export_lib.split_signatures(model)},
                      options=tf.saved_model.SaveOptions(
                          experimental_custom_gradients=True))
  return artifact


def resolve_saved_model(path: str) -> str:
  """The SavedModel dir for --model-dir: the dir itself, its Format-Serving/, or its
  newest numbered version (a Pusher's serving dir)."""
  if os.path.exists(os.path.join(path, 'saved_model.pb')):
    return path
  serving = os.path.join(path, 'Format-Serving')
  if os.path.exists(os.path.join(serving, 'saved_model.pb')):
    return serving
  versions = sorted((int(d) for d in (os.listdir(path) if os.path.isdir(path) else [])
                     if re.fullmatch(r'\d+', d) and
                     os.path.exists(os.path.join(path, d, 'saved_model.pb'))))
  if versions:
    return os.path.join(path, str(versions[-1]))
  sys.exit(f'error: --model-dir {path}: no saved_model.pb there, in Format-Serving/ '
           'or in a numbered version dir')


def load_saved_model(path: str):
  """logits_fn of the normalized_logits signature, checked as the Evaluator's
  load_model checks it (that function takes a Model artifact, i.e. Format-Serving)."""
  loaded = tf.saved_model.load(path)
  signature = loaded.signatures.get(contract.NORMALIZED_LOGITS)
  if signature is None:
    sys.exit(f'error: {path}: no {contract.NORMALIZED_LOGITS!r} signature (it has '
             f'{sorted(loaded.signatures)})')
  inputs = signature.structured_input_signature[1]
  if contract.NORMALIZED_INPUT not in inputs or contract.LOGITS not in (
      signature.structured_outputs):
    sys.exit(f'error: {path}: {contract.NORMALIZED_LOGITS!r} must map '
             f'{contract.NORMALIZED_INPUT!r} to {contract.LOGITS!r}')

  def logits_fn(x):
    return signature(**{contract.NORMALIZED_INPUT: x})[contract.LOGITS]
  return logits_fn, loaded, evaluation.local_model(loaded)


# ------------------------------------------------------------------ timing

def tutorial_fgsm(model, x: np.ndarray, y: np.ndarray, epsilon: float) -> float:
  """Eager per-batch FGSM + predict, as NSL's perturb_on_batch loop; accuracy.

  model: the Keras model, or (with --model-dir) the loaded signature's logits function.
  """
  loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
  correct = 0
  for start in range(0, len(x), TUTORIAL_BATCH):
    xb = tf.constant(x[start:start + TUTORIAL_BATCH])
    yb = tf.constant(y[start:start + TUTORIAL_BATCH])
    with tf.GradientTape() as tape:
      tape.watch(xb)
      loss = loss_fn(yb, model(xb))
    grad = tape.gradient(loss, xb)
    x_adv = tf.clip_by_value(xb + epsilon * tf.sign(grad), 0.0, 1.0)
    preds = tf.argmax(model(x_adv), axis=-1)
    correct += int(tf.reduce_sum(tf.cast(preds == tf.cast(yb, preds.dtype), tf.int32)))
  return correct / len(x)


def timed(fn, *args):
  start = time.perf_counter()
  out = fn(*args)
  return out, time.perf_counter() - start


def attack_rate(attacker, x, y, attack):
  """(per-example correctness, seconds) of one timed pass, traced beforehand."""
  warm = attacker.batch_size
  attacker.attack(x[:warm], y[:warm], attack)
  (_, logits), seconds = timed(attacker.attack, x, y, attack)
  return attacks.predictions(logits) == y, seconds


def matmul(size: int = 2048, repeats: int = 10) -> dict:
  """GFLOP/s of a size^2 float32 matmul here (wall and process CPU)."""
  rates = train_bench.matmul_rates(size, repeats)
  return {k: round(v, 1) for k, v in rates.items()}


def warm_up(attacker, x, y, attack: AttackConfig) -> float:
  """Traces the APGD/Square functions ``attack`` uses, for a fixed and then a
  generalized (None) batch size, with labels the model does not predict: every
  image counts as flipped at once, so no iteration runs."""
  wrong = (y + 1) % 10
  members = attack.suite if attack.method == 'autoattack' else (attack.method,)
  start = time.perf_counter()
  for k in (2, 3):
    for member in members:
      if member == 'apgd-ce':
        attacker.apgd(x[:k], wrong[:k], attack, loss='ce')
      elif member == 'apgd-t':
        attacker.apgd(x[:k], wrong[:k], attack, loss='dlr_targeted', target_rank=2)
      elif member == 'fab-t':
        attacker.fab(x[:k], wrong[:k], attack, target_rank=2)
      elif member == 'square':
        attacker.square(x[:k], wrong[:k], attack, image_shape=autoattack.IMAGE_SHAPE)
  return time.perf_counter() - start


@dataclasses.dataclass
class Run:
  """One timed attack on n images."""
  name: str
  attack: AttackConfig
  n: int
  wall: float
  cpu: float
  robust_accuracy: float
  clean_correct: int
  details: dict
  counted: attack_cost.Passes   # image-passes that ran (None: not counted)
  bound: dict                   # member -> upper-bound Passes
  robust: np.ndarray            # bool [n]: the worst case per image

  @property
  def images_per_s(self) -> float:
    return self.n / self.wall


def run_attack(attacker, counter, x, y, clean_logits, attack: AttackConfig,
               name: str) -> Run:
  if counter is not None:
    counter.reset()
  start, cpu = time.perf_counter(), time.process_time()
  outcome = autoattack.run_attack(attacker, x, y, attack, clean_logits)
  wall, cpu = time.perf_counter() - start, time.process_time() - cpu
  clean_correct = int(np.sum(attacks.predictions(clean_logits) == y))
  bound = attack_cost.upper_bound_passes(
      attack, len(x), batch_size=attacker.batch_size,
      details=outcome.details or None, attacked=clean_correct)
  robust = autoattack.robust_mask(outcome)
  return Run(name, attack, len(x), wall, cpu, float(np.mean(robust)), clean_correct,
             outcome.details, counter.read() if counter is not None else None, bound,
             robust)


def library_reference(args, attacker, counter, x, y, clean_logits,
                      suite: AttackConfig) -> dict:
  """The standard suite and bench/library_reference.py (a subprocess, after it) on
  the same first --reference-images images: the same-run ratio of their wall times."""
  n = min(args.reference_images, len(x))
  warm_up(attacker, x[:n], y[:n], suite)
  ours = run_attack(attacker, counter, x[:n], y[:n], clean_logits[:n], suite,
                    'autoattack_standard')
  print(f'standard suite on the first {n} images: {ours.wall:.1f} s wall '
        f'({ours.cpu:.1f} s CPU), robust accuracy {100 * ours.robust_accuracy:.1f}%',
        flush=True)
  command = [sys.executable, os.path.join(HERE, 'library_reference.py'),
             '--weights', args.weights, '--preset', args.preset, '--images', str(n),
             '--epsilon', str(suite.epsilon), '--batch-size', str(args.batch_size),
             '--square-queries', str(suite.queries), '--data-dir', args.data_dir]
  lines = subprocess.run(command, check=True, stdout=subprocess.PIPE,
                         text=True).stdout.strip().splitlines()
  print('\n'.join(lines[:-1]), flush=True)
  library = json.loads(lines[-1])
  # Per image: a break the library found and the suite missed is the one that matters
  # (the suite's figure would be too high); the other way, the library was weaker.
  library_broken = np.zeros(n, bool)
  library_broken[library['broken_indices']] = True
  only_library = np.flatnonzero(library_broken & ours.robust)
  only_suite = np.flatnonzero(~library_broken & ~ours.robust)
  out = {'images': n, 'suite_seconds': ours.wall, 'suite_cpu_seconds': ours.cpu,
         'suite_robust_accuracy': ours.robust_accuracy, 'library': library,
         'library_per_suite_wall': library['seconds'] / ours.wall,
         'library_per_suite_cpu': library['cpu_seconds'] / ours.cpu,
         'broken_by_library_only': only_library.tolist(),
         'broken_by_suite_only': only_suite.tolist()}
  print(f'{library["library"]} / standard suite on the same {n} images, same run: '
        f'{out["library_per_suite_wall"]:.1f}x the wall time '
        f'({library["seconds"]:.1f} against {ours.wall:.1f} s), '
        f'{out["library_per_suite_cpu"]:.1f}x the CPU time; robust accuracy '
        f'{100 * library["robust_accuracy"]:.1f}% against '
        f'{100 * ours.robust_accuracy:.1f}%', flush=True)
  print(f'  per image: the library broke {len(only_library)} the suite held '
        f'{only_library.tolist()}, the suite broke {len(only_suite)} the library held '
        f'{only_suite.tolist()}', flush=True)
  return out


def report(run: Run, fwd_macs: int, useful_bwd: float, matmul_wall: float,
           matmul_cpu: float) -> Tuple[dict, str]:
  """(JSON fields, printable line) of one run; rates also as fractions of the
  matmul's (per wall second and per process CPU second)."""
  bound = attack_cost.total(run.bound)
  tflop_bound = bound.tflop(fwd_macs)
  out = {'examples': run.n, 'seconds': run.wall, 'cpu_seconds': run.cpu,
         'images_per_s': run.images_per_s, 'robust_accuracy': run.robust_accuracy,
         'tflop_upper_bound': tflop_bound,
         'gflops_upper_bound': tflop_bound * 1e3 / run.wall,
         'fraction_of_matmul_upper_bound': tflop_bound * 1e3 / run.wall / matmul_wall}
  line = (f'{run.name}: {run.n} images, {run.wall:.1f} s wall ({run.cpu:.1f} s CPU), '
          f'{run.images_per_s:.2f} images/s, robust {100 * run.robust_accuracy:.1f}%; '
          f'UPPER BOUND (early-exited iterations counted) {tflop_bound:.3f} TFLOP -> '
          f'{out["gflops_upper_bound"]:.1f} GFLOP/s')
  if run.counted is not None:
    tflop = run.counted.tflop(fwd_macs)
    useful = run.counted.tflop(fwd_macs, useful_bwd)
    out.update(passes_forward=run.counted.forward, passes_backward=run.counted.backward,
               passes_forward_upper_bound=bound.forward,
               passes_backward_upper_bound=bound.backward,
               tflop_counted=tflop, gflops_counted=tflop * 1e3 / run.wall,
               tflop_counted_input_grad=useful,
               gflops_counted_input_grad=useful * 1e3 / run.wall,
               fraction_of_matmul_counted=tflop * 1e3 / run.wall / matmul_wall,
               gflops_counted_per_cpu_second=tflop * 1e3 / run.cpu,
               fraction_of_matmul_counted_per_cpu_second=(
                   tflop * 1e3 / run.cpu / matmul_cpu))
    line += (f'\n    passes run {run.counted.forward:.0f} fwd / {run.counted.backward:.0f} '
             f'bwd (upper bound {bound.forward:.0f} / {bound.backward:.0f}) -> '
             f'{tflop:.3f} TFLOP, {out["gflops_counted"]:.1f} GFLOP/s = '
             f'{100 * out["fraction_of_matmul_counted"]:.0f}% of the matmul (per CPU-'
             f'second {out["gflops_counted_per_cpu_second"]:.1f} = '
             f'{100 * out["fraction_of_matmul_counted_per_cpu_second"]:.0f}%) with '
             f'bwd=2x fwd; {out["gflops_counted_input_grad"]:.1f} GFLOP/s counting the '
             f'input gradient as {useful_bwd:.2f}x fwd')
  if run.details:
    out.update(member_seconds=run.details['member_seconds'],
               flipped_by_member=run.details['flipped_by_member'],
               robust_accuracy_after=run.details['robust_accuracy_after'],
               recheck_disagreements=run.details['recheck_disagreements'],
               member_tflop_upper_bound={m: p.tflop(fwd_macs)
                                         for m, p in run.bound.items()})
    members = ', '.join(
        f'{m} {run.details["member_seconds"][m]:.1f} s (flipped '
        f'{run.details["flipped_by_member"][m]}, bound {run.bound[m].tflop(fwd_macs):.3f}'
        ' TFLOP)' for m in run.details['members'])
    line += f'\n    members: {members}'
  return out, line


def rounded(obj):
  if isinstance(obj, float):
    return round(obj, 4)
  if isinstance(obj, dict):
    return {k: rounded(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [rounded(v) for v in obj]
  return obj


# ------------------------------------------------------------------ main

def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--data-dir', default=os.environ.get('MNIST_DIR'))
  p.add_argument('--model-dir', '--model', dest='model_dir',
                 help='SavedModel with the normalized_logits signature: a pushed '
                 'version (serving/mnist_adv/<version>), a dir of numbered versions '
                 '(newest taken) or a Trainer output dir holding Format-Serving/; '
                 'default: train the reference CNN adversarially here')
  p.add_argument('--weights', help='TF checkpoint prefix of a classifier (quality.py\'s '
                 'seed-N/model/classifier) to evaluate instead of training one')
  p.add_argument('--preset', default='robust',
                 help='whose ModelConfig --weights belong to (default robust)')
  p.add_argument('--full-square', action='store_true',
                 help="run Square through the model's full forward pass even when the "
                      'model has a split (the incremental pass is the default)')
  p.add_argument('--sequential-batches', action='store_true',
                 help='run APGD and Square batches one after the other (before '
                      'attacks.CONCURRENT_BATCHES; for a same-machine comparison)')
  p.add_argument('--export-dir', help='keep the trained model here (a Model artifact '
                 'dir for a later --model-dir); default: a temp dir')
  p.add_argument('--train-mode', choices=TRAIN_MODES, default='robust',
                 help="adversary of the reference training (default: the 'robust' "
                 "preset's PGD-7, eps 0.25)")
  p.add_argument('--train-epochs', type=int, default=None)
  p.add_argument('--train-examples', type=int, default=None,
                 help='first N training images (default: the whole train split)')
  p.add_argument('--batch-size', type=int, default=EvalConfig().batch_size)
  p.add_argument('--attack-images', type=int, default=None,
                 help='first N test images for PGD-40, APGD, Square and the suites '
                 f'(default {DEFAULTS["attack_images"]})')
  p.add_argument('--square-queries', type=int, default=None,
                 help=f'Square budget, alone and in the standard suite (default '
                 f'{DEFAULTS["square_queries"]})')
  p.add_argument('--ratio-rounds', type=int, default=None,
                 help='PGD-40 / APGD-CE alternations (default 2)')
  p.add_argument('--attacks', default=','.join(ALL_ATTACKS),
                 help=f'comma-separated subset of {",".join(ALL_ATTACKS + EXTRA_ATTACKS)} '
                      f'(default: all but {",".join(EXTRA_ATTACKS)})')
  p.add_argument('--tutorial-examples', type=int, default=None,
                 help='subset timed with the tutorial-style eager loop (0 skips)')
  p.add_argument('--jit-examples', type=int, default=None,
                 help='subset on which FGSM is also timed with the other jit_compile '
                 'setting (0 skips)')
  p.add_argument('--json-out', help='also write the JSON here, rewritten after every '
                 'attack (a killed run keeps what it measured)')
  p.add_argument('--deterministic', action='store_true',
                 help='tf.config.experimental.enable_op_determinism() first, as a '
                 'robust-preset Trainer leaves it in a LocalDagRunner process')
  p.add_argument('--no-count-passes', action='store_true',
                 help='do not wrap the model with the pass counter')
  p.add_argument('--reference', choices=('art',),
                 help='also time the library reference (bench/library_reference.py: '
                      "ART's APGD-CE, APGD-T and Square in the standard order) and the "
                      'standard suite on the same first --reference-images images, in '
                      'this run; needs --weights')
  p.add_argument('--reference-images', type=int, default=100)
  p.add_argument('--quick', action='store_true',
                 help='smoke run: ' + ', '.join(f'{k}={v}' for k, v in QUICK.items()))
  args = p.parse_args()
  if args.deterministic:
    tf.config.experimental.enable_op_determinism()
    tf.random.set_seed(0)   # determinism refuses unseeded random ops (the matmul's)
  if not args.data_dir:
    sys.exit('error: set MNIST_DIR or pass --data-dir')
  for key, value in (QUICK if args.quick else DEFAULTS).items():
    if getattr(args, key) is None:
      setattr(args, key, value)
  wanted = [a.strip() for a in args.attacks.split(',') if a.strip()]
  unknown = sorted(set(wanted) - set(ALL_ATTACKS + EXTRA_ATTACKS))
  if unknown:
    sys.exit(f'error: --attacks: unknown {unknown}; choose from '
             f'{ALL_ATTACKS + EXTRA_ATTACKS}')
  if args.reference and not args.weights:
    sys.exit('error: --reference needs --weights (the library loads the same checkpoint)')
  if args.reference_images < 1:
    sys.exit(f'error: --reference-images {args.reference_images}: must be >= 1')
  model_dir = resolve_saved_model(args.model_dir) if args.model_dir else None

  config = EvalConfig()
  fgsm, pgd40 = config.attacks[0], config.attacks[1]
  images, labels = idx.load_split(args.data_dir, 'eval')
  x, y = normalized(images), labels.astype(np.int64)
  cpu = train_bench.cpu_info()
  print(train_bench.cpu_line(cpu), flush=True)
  result = {'examples': len(x), 'batch_size': args.batch_size, 'cpus': os.cpu_count(),
            'cpu_model': cpu['cpu_model'], 'tf_version': tf.__version__,
            'jit_compile': executor.JIT_COMPILE, 'quick': args.quick,
            'deterministic': args.deterministic}

  with tempfile.TemporaryDirectory() as root:
    keras_model = None
    if model_dir:
      logits_fn, _keep, local = load_saved_model(model_dir)
      result['model'] = f'SavedModel {os.path.abspath(model_dir)}'
    else:
      if args.weights:
        from bench.quality import load_classifier  # pylint: disable=g-import-not-at-top
        keras_model = load_classifier(args.preset, args.weights)
        description, result['train_seconds'] = (
            f'{args.preset} CNN, weights {os.path.abspath(args.weights)}', 0.0)
      else:
        (keras_model, description), result['train_seconds'] = timed(
            train_reference, args.data_dir, args.train_mode, args.train_epochs,
            args.train_examples)
      artifact = export(keras_model, args.export_dir or root)
      loaded = evaluation.load_model(artifact, 'bench')   # as the Evaluator loads it
      logits_fn, local = loaded.logits_fn, loaded.local
      result['model'] = description + (
          f'; exported to {os.path.abspath(args.export_dir)}' if args.export_dir else '')
    print(f'model: {result["model"]}', flush=True)

    if args.sequential_batches:
      attacks.CONCURRENT_BATCHES = 1
    result['concurrent_batches'] = attacks.CONCURRENT_BATCHES
    counter = None if args.no_count_passes else attack_cost.PassCounter(logits_fn)
    attacker = attacks.Attacker(counter or logits_fn, batch_size=args.batch_size,
                                seed=config.seed, jit_compile=executor.JIT_COMPILE,
                                local=None if args.full_square else local)
    result['square_forward_pass'] = attacker.square_forward_pass
    if attacker.square_forward_pass == 'incremental':
      print("Square runs through the model's split (incremental forward pass): its "
            "queries are not in 'passes run' below, and the upper bound counts each as "
            'a full forward pass', flush=True)
    result['matmul_gflops_before'] = matmul()
    print(f'2048^2 float32 matmul: {result["matmul_gflops_before"]["wall"]:.1f} GFLOP/s '
          f'wall ({result["matmul_gflops_before"]["cpu"]:.1f} per CPU-second)',
          flush=True)

    # -------------------------------------------------------- the model's arithmetic
    traced = attack_cost.traced_macs(logits_fn, features.NUM_PIXELS)
    fwd_macs = traced.forward
    result['forward_macs_per_image'] = fwd_macs
    result['forward_macs_per_image_layer_shapes'] = attack_cost.cnn_forward_macs(
        ModelConfig())
    result['signature_traced_backward_per_forward'] = traced.backward_per_forward
    # An input gradient is each conv/dense layer's transpose: as many multiply-adds
    # as the forward pass. Counted on the Keras graph when it is in this process.
    useful_bwd = 1.0
    if keras_model is not None:
      useful_bwd = attack_cost.traced_macs(keras_model,
                                           features.NUM_PIXELS).backward_per_forward
      result['keras_traced_input_grad_per_forward'] = useful_bwd
    print(f'forward multiply-adds per image: {fwd_macs:,} traced '
          f'({result["forward_macs_per_image_layer_shapes"]:,} from the default CNN\'s '
          f'layer shapes); input gradient {useful_bwd:.2f}x forward'
          + (' (traced, Keras model)' if keras_model is not None else
             ' (each layer\'s transpose)')
          + f'; the signature\'s traced backward function holds '
          f'{traced.backward_per_forward:.2f}x forward (weight gradients included)',
          flush=True)

    # -------------------------------------------------------- clean and FGSM, 10k
    attacker.logits(x[:args.batch_size])
    logits, seconds = timed(attacker.logits, x)
    result.update(clean_accuracy=float(np.mean(attacks.predictions(logits) == y)),
                  clean_seconds=seconds, clean_images_per_s=len(x) / seconds)
    print(f'clean: {len(x) / seconds:.0f} images/s, accuracy '
          f'{100 * result["clean_accuracy"]:.2f}%', flush=True)

    fgsm_correct, seconds = attack_rate(attacker, x, y, fgsm)
    result.update(fgsm_accuracy=float(fgsm_correct.mean()), fgsm_seconds=seconds,
                  fgsm_images_per_s=len(x) / seconds,
                  fgsm_speedup_vs_tutorial_28_6s=TUTORIAL_FGSM_SECONDS / seconds)
    print(f'fgsm: {len(x) / seconds:.0f} images/s, {seconds:.1f} s, accuracy '
          f'{100 * fgsm_correct.mean():.1f}%', flush=True)

    if args.jit_examples:
      n = min(args.jit_examples, len(x))
      jit = attacks.Attacker(logits_fn, batch_size=args.batch_size,
                             seed=config.seed, jit_compile=not executor.JIT_COMPILE)
      _, seconds = attack_rate(jit, x[:n], y[:n], fgsm)
      key = 'jit' if not executor.JIT_COMPILE else 'nojit'
      result[f'fgsm_{key}_images_per_s'] = n / seconds
      print(f'fgsm with jit_compile={not executor.JIT_COMPILE}: {n / seconds:.0f} '
            'images/s', flush=True)

    if args.tutorial_examples:
      n = min(args.tutorial_examples, len(x))
      model = keras_model or logits_fn
      tutorial_fgsm(model, x[:TUTORIAL_BATCH], y[:TUTORIAL_BATCH], fgsm.epsilon)
      acc, seconds = timed(tutorial_fgsm, model, x[:n], y[:n], fgsm.epsilon)
      # Same model, same attack: both ways must agree on the accuracy.
      result.update(tutorial_fgsm_accuracy=acc,
                    fgsm_accuracy_same_examples=float(fgsm_correct[:n].mean()),
                    tutorial_fgsm_images_per_s=n / seconds,
                    tutorial_fgsm_examples=n,
                    tutorial_fgsm_10k_seconds_extrapolated=seconds * len(x) / n,
                    fgsm_speedup_vs_tutorial_loop=(
                        result['fgsm_images_per_s'] * seconds / n))
      print(f'tutorial-style eager FGSM: {n / seconds:.0f} images/s; speed-up '
            f"{result['fgsm_speedup_vs_tutorial_loop']:.1f}x", flush=True)

    # -------------------------------------------------------- PGD, APGD, Square, suites
    n = min(args.attack_images, len(x))
    xa, ya, la = x[:n], y[:n], logits[:n]
    result['attack_images'] = n
    result['clean_correct_attack_images'] = int(np.sum(attacks.predictions(la) == ya))
    apgd_ce = AttackConfig(name='apgd-ce', method='apgd-ce', epsilon=EPSILON, steps=100)
    apgd_t = AttackConfig(name='apgd-t', method='apgd-t', epsilon=EPSILON, steps=100,
                          targets=9)
    square = AttackConfig(name='square', method='square', epsilon=EPSILON,
                          queries=args.square_queries)
    fab_t = AttackConfig(name='fab-t', method='fab-t', epsilon=EPSILON, steps=100,
                         targets=9)
    suite_default = default_attacks()[2]
    suite_standard = dataclasses.replace(standard_autoattack(EPSILON),
                                         queries=args.square_queries)
    planned = {'pgd40': pgd40, 'apgd_ce': apgd_ce, 'apgd_t': apgd_t, 'square': square,
               'autoattack_default': suite_default,
               'autoattack_standard': suite_standard, 'fab_t': fab_t,
               'autoattack_full': with_fab(suite_standard)}
    result['attack_settings'] = {k: dataclasses.asdict(a) for k, a in planned.items()
                                 if k in wanted}
    print(f'attacks on the first {n} test images ({result["clean_correct_attack_images"]} '
          f'classified correctly), eps {EPSILON}, batch {args.batch_size}; the upper '
          'bound counts every iteration an early exit skipped (APGD: steps + 1 '
          'forward+backward per attacked image, per target and restart; Square: '
          'queries + 1 forward per attacked image; backward = 2x forward)', flush=True)

    traced_seconds = 0.0
    if 'pgd40' in wanted:   # traced (one padded batch) before the first round
      traced_seconds += timed(attacker.attack, xa[:1], ya[:1], pgd40)[1]
    for key in wanted:
      if key != 'pgd40':
        traced_seconds += warm_up(attacker, xa, ya, planned[key])
    result['trace_seconds'] = traced_seconds

    runs = {}

    def matmul_best():
      samples = ([result['matmul_gflops_before']] + result['matmul_gflops_during'] +
                 ([result['matmul_gflops_after']] if 'matmul_gflops_after' in result
                  else []))
      # The fastest sample is the denominator: fractions of the matmul are not
      # flattered.
      return (samples, max(m['wall'] for m in samples), max(m['cpu'] for m in samples))

    def record(key, run):
      """Reports a run at once and saves the JSON so far: a run killed later (the
      machine is shared) keeps what it measured."""
      runs[key] = run
      result['matmul_gflops_during'].append(matmul())
      _, mm, mm_cpu = matmul_best()
      result[key], line = report(run, fwd_macs, useful_bwd, mm, mm_cpu)
      print(line, flush=True)
      if args.json_out:
        with open(args.json_out, 'w') as f:
          f.write(json.dumps(rounded(result)) + '\n')

    result['matmul_gflops_during'] = []
    ratio_keys = [k for k in ('pgd40', 'apgd_ce') if k in wanted]
    rounds = {k: [] for k in ratio_keys}
    for r in range(args.ratio_rounds if ratio_keys else 0):
      for key in ratio_keys:
        run = run_attack(attacker, counter, xa, ya, la, planned[key], key)
        rounds[key].append(run)
        print(f'  round {r + 1}: {key} {run.wall:.1f} s wall, {run.cpu:.1f} s CPU '
              f'({run.images_per_s:.2f} images/s)', flush=True)
    if len(ratio_keys) == 2:
      pgd_s = [run.wall for run in rounds['pgd40']]
      apgd_s = [run.wall for run in rounds['apgd_ce']]
      result['apgd_ce_per_pgd40_images_per_s'] = sum(pgd_s) / sum(apgd_s)
      result['apgd_ce_per_pgd40_images_per_s_best'] = min(pgd_s) / min(apgd_s)
      result['apgd_ce_per_pgd40_per_round'] = [p_ / a_ for p_, a_ in zip(pgd_s, apgd_s)]
      # The same from process CPU seconds: less exposed to the other jobs' load.
      result['apgd_ce_per_pgd40_cpu'] = (sum(run.cpu for run in rounds['pgd40']) /
                                         sum(run.cpu for run in rounds['apgd_ce']))
      result['apgd_ce_per_pgd40_target'] = RATIO_TARGET
    for key in ratio_keys:
      # The report uses the round with the median wall time (the first of two).
      ordered = sorted(rounds[key], key=lambda run: run.wall)
      result[f'{key}_round_seconds'] = [run.wall for run in rounds[key]]
      result[f'{key}_round_cpu_seconds'] = [run.cpu for run in rounds[key]]
      record(key, ordered[(len(ordered) - 1) // 2])

    # The headline suite first, then the rest; the matmul after each (load drifts).
    for key in ('autoattack_standard', 'autoattack_default', 'apgd_t', 'square',
                'autoattack_full', 'fab_t'):
      if key in wanted:
        record(key, run_attack(attacker, counter, xa, ya, la, planned[key], key))

    if args.reference:
      result['reference'] = library_reference(args, attacker, counter, x, y, logits,
                                              suite_standard)
    result['matmul_gflops_after'] = matmul()

  # ------------------------------------------------------------------ summary
  samples, mm, mm_cpu = matmul_best()
  result.update(matmul_gflops_max=mm, matmul_gflops_per_cpu_second_max=mm_cpu)
  print(f'\n=== {cpu["cpu_model"]}, {os.cpu_count()} cores (shared); model: '
        f'{result["model"]}', flush=True)
  print('2048^2 float32 matmul in this process, GFLOP/s before, between and after the '
        'attacks: ' + ', '.join(f'{m["wall"]}' for m in samples) + ' (per CPU-second: '
        + ', '.join(f'{m["cpu"]}' for m in samples) + f'); fractions below are of the '
        f'best, {mm} ({mm_cpu} per CPU-second)', flush=True)
  for key, run in runs.items():
    result[key], line = report(run, fwd_macs, useful_bwd, mm, mm_cpu)
    print(line, flush=True)
  if 'apgd_ce_per_pgd40_images_per_s' in result:
    print(f'APGD-CE images/s / PGD-40 images/s: '
          f'{result["apgd_ce_per_pgd40_images_per_s"]:.3f} (all rounds), '
          f'{result["apgd_ce_per_pgd40_images_per_s_best"]:.3f} (best of each); per round '
          + ', '.join(f'{v:.3f}' for v in result['apgd_ce_per_pgd40_per_round'])
          + f'; from CPU seconds {result["apgd_ce_per_pgd40_cpu"]:.3f}; target >= '
          f'{RATIO_TARGET}', flush=True)
  if 'autoattack_standard' in runs:
    run = runs['autoattack_standard']
    per_1000 = run.wall * 1000 / run.n
    result['autoattack_standard_seconds_per_1000'] = per_1000
    result['autoattack_standard_target_seconds_per_1000'] = SUITE_TARGET_SECONDS_PER_1000
    print(f'standard AutoAttack suite: {run.wall:.1f} s wall ({run.cpu:.1f} s CPU) for '
          f'{run.n} images ({per_1000:.0f} s per 1,000; target <= '
          f'{SUITE_TARGET_SECONDS_PER_1000:.0f} s), robust accuracy '
          f'{100 * run.robust_accuracy:.1f}%; '
          f'{result["autoattack_standard"]["gflops_upper_bound"]:.1f} GFLOP/s by the '
          f'UPPER-BOUND count (early-exited iterations counted) = '
          f'{100 * result["autoattack_standard"]["fraction_of_matmul_upper_bound"]:.0f}% '
          f'of the matmul\'s {mm:.1f} GFLOP/s', flush=True)
  print(json.dumps(rounded(result)))
  if args.json_out:
    with open(args.json_out, 'w') as f:
      f.write(json.dumps(rounded(result)) + '\n')


if __name__ == '__main__':
  main()

"""The same-run library reference for the Evaluator's AutoAttack suite: ART's attacks
in AutoAttack's standard order, on the same checkpoint and test images.

  MNIST_DIR=../shared/data/mnist python bench/library_reference.py \
      --weights runs/q1127/robust/seed-0/model/classifier --preset robust [--images 100]

The Adversarial Robustness Toolbox (ART 1.20.1, installed apart from the lock by
bench/art_lib.sh) is the maintained library of these attacks that runs a TF model: a
host loop per iteration, NumPy between TF calls. It runs here on the project's own
TensorFlow, so the comparison is of the attack code. In the standard order, each on
the images still robust (as AutoAttack and the Evaluator's suite do):

* APGD-CE: AutoProjectedGradientDescent, cross-entropy, 100 iterations, 1 restart,
  first step 2 eps (the paper's);
* APGD-T: the same with ART's 'difference_logits_ratio' loss, targeted, once per
  target in the standard's order (the other classes by clean logit, highest first; 9
  on MNIST). ART's targeted DLR is its untargeted DLR toward the target label, not the
  paper's targeted DLR, so its flips may differ; its cost per iteration is the same
  kind (one forward and input gradient per image);
* Square: SquareAttack, L-inf, 5,000 queries, p_init 0.8, 1 restart.

Prints each member's seconds and flips, the robust accuracy, and a JSON last line.
bench/evaluate.py --reference art runs this after its own suite on the same images
and prints the ratio.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)

from pipeline import progress  # pylint: disable=g-import-not-at-top
from bench.quality import (add_checkpoint_arguments, check_checkpoint_arguments,  # pylint: disable=g-import-not-at-top
                           load_classifier)

APGD_STEPS = 100
TARGETS = 9
SQUARE_QUERIES = 5000
SQUARE_P_INIT = 0.8


def art_path() -> str:
  """bench/.art-lib, installed on first use by bench/art_lib.sh (idempotent)."""
  out = subprocess.run(['bash', os.path.join(HERE, 'art_lib.sh')], check=True,
                       stdout=subprocess.PIPE, text=True).stdout
  return out.strip().splitlines()[-1]


def targets_by_rank(clean_logits: np.ndarray, labels: np.ndarray, rank: int) -> np.ndarray:
  """Per image, the class with the rank-th highest clean logit among the classes other
  than its label (rank 1 = the runner-up): APGD-T's target order."""
  logits = np.array(clean_logits, dtype=np.float64)
  logits[np.arange(len(labels)), labels] = -np.inf
  return np.argsort(-logits, axis=1, kind='stable')[:, rank - 1]


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  add_checkpoint_arguments(parser)
  parser.add_argument('--images', type=int, default=100,
                      help='the first N test images (default 100)')
  parser.add_argument('--epsilon', type=float, default=0.2)
  parser.add_argument('--batch-size', type=int, default=500,
                      help="ART's batch size (default 500: the Evaluator's; the "
                           "library's per-iteration host work is per batch)")
  parser.add_argument('--square-queries', type=int, default=SQUARE_QUERIES)
  parser.add_argument('--seed', type=int, default=0,
                      help="seeds NumPy's global generator, which ART's random starts "
                           'and Square draw from, so a run can be repeated')
  args = parser.parse_args(argv)
  check_checkpoint_arguments(parser, args)
  if args.images < 1 or args.batch_size < 1 or args.square_queries < 1:
    parser.error('--images, --batch-size and --square-queries must be positive')
  sys.path.insert(0, art_path())

  progress.quiet_environment()
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import art  # pylint: disable=g-import-not-at-top
  np.random.seed(args.seed)
  from art.attacks.evasion import AutoProjectedGradientDescent, SquareAttack  # pylint: disable=g-import-not-at-top
  from art.estimators.classification import TensorFlowV2Classifier  # pylint: disable=g-import-not-at-top
  from bench.train_step import cpu_info, load_normalized  # pylint: disable=g-import-not-at-top

  classifier = load_classifier(args.preset, args.weights)
  x, y = load_normalized(args.data_dir, 'eval')
  side = int(round(np.sqrt(x.shape[1])))
  # Images [n, H, W, 1]: ART's Square draws its windows on image-shaped inputs.
  x = x[:args.images].astype(np.float32).reshape(-1, side, side, 1)
  y = y[:args.images].astype(np.int64)
  estimator = TensorFlowV2Classifier(
      model=lambda v, training=False: classifier(tf.reshape(v, [-1, side * side]),
                                                 training=False),
      nb_classes=10, input_shape=(side, side, 1), clip_values=(0.0, 1.0),
      loss_object=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  info = cpu_info()
  print(f'library reference: ART {art.__version__} on TF {tf.__version__}, CPU '
        f'{info["cpu_model"]} ({info["cores"]} cores), {args.preset} CNN, first '
        f'{len(x)} test images, eps {args.epsilon}, batch {args.batch_size}', flush=True)

  clean = estimator.predict(x, batch_size=args.batch_size)
  robust = np.argmax(clean, axis=1) == y
  result = {'library': f'ART {art.__version__}', 'tf_version': tf.__version__,
            'cpu': info, 'preset': args.preset, 'weights': os.path.abspath(args.weights),
            'images': len(x), 'epsilon': args.epsilon, 'batch_size': args.batch_size,
            'clean_correct': int(robust.sum()), 'members': {}}

  def run(name, attack, labels):
    """Attacks the still-robust images, keeps the ones it flips, times it."""
    index = np.flatnonzero(robust)
    start, cpu = time.perf_counter(), time.process_time()
    if len(index):
      x_adv = attack.generate(x[index], labels[index])
      flipped = np.argmax(estimator.predict(x_adv, batch_size=args.batch_size),
                          axis=1) != y[index]
      # Within the ball and the box, or the flip does not count.
      axes = tuple(range(1, x.ndim))
      ok = (np.max(np.abs(x_adv - x[index]), axis=axes) <= args.epsilon + 1e-6) & (
          x_adv.min(axis=axes) >= 0.0) & (x_adv.max(axis=axes) <= 1.0)
      flipped &= ok
      robust[index[flipped]] = False
    else:
      flipped = np.zeros(0, bool)
    member = result['members'].setdefault(name, {'seconds': 0.0, 'cpu_seconds': 0.0,
                                                 'attacked': 0, 'flipped': 0})
    member['seconds'] += time.perf_counter() - start
    member['cpu_seconds'] += time.process_time() - cpu
    member['attacked'] += len(index)
    member['flipped'] += int(flipped.sum())

  def apgd(loss_type, targeted):
    return AutoProjectedGradientDescent(
        estimator, norm=np.inf, eps=args.epsilon, eps_step=2 * args.epsilon,
        max_iter=APGD_STEPS, targeted=targeted, nb_random_init=1,
        batch_size=args.batch_size, loss_type=loss_type, verbose=False)

  run('apgd-ce', apgd('cross_entropy', False), y)
  print(f'  apgd-ce: {result["members"]["apgd-ce"]}', flush=True)
  targeted = apgd('difference_logits_ratio', True)
  for rank in range(1, TARGETS + 1):
    run('apgd-t', targeted, targets_by_rank(clean, y, rank))
  print(f'  apgd-t: {result["members"]["apgd-t"]}', flush=True)
  run('square', SquareAttack(estimator, norm=np.inf, max_iter=args.square_queries,
                             eps=args.epsilon, p_init=SQUARE_P_INIT, nb_restarts=1,
                             batch_size=args.batch_size, verbose=False), y)
  print(f'  square: {result["members"]["square"]}', flush=True)
  members = result['members'].values()
  result.update(seconds=sum(m['seconds'] for m in members),
                cpu_seconds=sum(m['cpu_seconds'] for m in members),
                robust_accuracy=float(robust.mean()),
                # Misclassified clean or flipped by a member: for a per-image check.
                broken_indices=np.flatnonzero(~robust).tolist())
  print(f'  suite: {result["seconds"]:.1f} s wall ({result["cpu_seconds"]:.1f} s CPU), '
        f'robust accuracy {100 * result["robust_accuracy"]:.1f}% of {len(x)}', flush=True)
  print(json.dumps(result), flush=True)
  return result


if __name__ == '__main__':
  main()

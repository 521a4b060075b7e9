"""Throughput of the robustness Evaluator's attacks on the 10,000 MNIST test images.

    MNIST_DIR=../shared/data/mnist python bench/evaluate.py [--model MODEL_URI]

Trains the reference CNN for one epoch and exports it like the Trainer (or takes
--model, a Trainer output dir holding Format-Serving/), loads it exactly as the
Evaluator does, then times clean, FGSM and PGD-40 (EvalConfig's default attacks) over the
whole test split with the Evaluator's batched, compiled Attacker. For comparison it
times the tutorial's way, NSL-style ``perturb_on_batch``: eager FGSM per batch of
32 with the Keras model, on a subset. Last line: one JSON object.
"""
import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pipeline import progress  # pylint: disable=g-import-not-at-top

progress.quiet_environment()

import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-position
import tf_keras as keras  # pylint: disable=g-import-not-at-top,wrong-import-position
from tfx.types import standard_artifacts  # pylint: disable=g-import-not-at-top,wrong-import-position

from components.mnist_example_gen import idx  # pylint: disable=g-import-not-at-top,wrong-import-position
from components.robustness_evaluator import attacks  # pylint: disable=g-import-not-at-top,wrong-import-position
from components import serving_contract as contract  # pylint: disable=g-import-not-at-top,wrong-import-position
from components.robustness_evaluator import evaluation  # pylint: disable=g-import-not-at-top,wrong-import-position
from components.robustness_evaluator import executor  # pylint: disable=g-import-not-at-top,wrong-import-position
from components.trainer.model import build_cnn  # pylint: disable=g-import-not-at-top,wrong-import-position
from components.transform import features  # pylint: disable=g-import-not-at-top,wrong-import-position
from components.config import EvalConfig, ModelConfig, TrainConfig  # pylint: disable=g-import-not-at-top,wrong-import-position

# The tutorial's FGSM over the 10,000 test images took this long (the target is 10x).
TUTORIAL_FGSM_SECONDS = 28.6
TUTORIAL_BATCH = 32


def normalized(images: np.ndarray) -> np.ndarray:
  """Transform's image_xf: row-major pixels scaled to [0, 1]."""
  return images.reshape(len(images), -1).astype(np.float32) / features.MAX_PIXEL


def train_reference(data_dir: str) -> keras.Model:
  train = TrainConfig()
  images, labels = idx.load_split(data_dir, 'train')
  model = build_cnn(ModelConfig())
  model.compile(optimizer=keras.optimizers.Adam(train.learning_rate),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=['accuracy'])
  model.fit(normalized(images), labels.astype(np.int64), batch_size=train.batch_size,
            epochs=1, verbose=2)
  return model


class _Export(tf.Module):
  def __init__(self, model):
    super().__init__()
    self.model = model

  @tf.function(input_signature=[tf.TensorSpec(
      [None, features.NUM_PIXELS], tf.float32, name=contract.NORMALIZED_INPUT)])
  def normalized_logits(self, image_xf):
    return {contract.LOGITS: self.model(image_xf, training=False)}


def export(model: keras.Model, root: str) -> standard_artifacts.Model:
  """Saves like the Trainer (Format-Serving) and returns a Model artifact for it."""
  artifact = standard_artifacts.Model()
  artifact.uri = root
  module = _Export(model)
  tf.saved_model.save(module, os.path.join(root, 'Format-Serving'),
                      signatures={contract.NORMALIZED_LOGITS: module.normalized_logits})
  return artifact


def tutorial_fgsm(model, x: np.ndarray, y: np.ndarray, epsilon: float) -> float:
  """Eager per-batch FGSM + predict, as NSL's perturb_on_batch loop; accuracy.

  model: the Keras model, or (with --model) the loaded signature's logits function.
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


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--data-dir', default=os.environ.get('MNIST_DIR'))
  p.add_argument('--model', help='Trainer output dir (holding Format-Serving/ with a '
                 'normalized_logits signature); default: train the reference CNN '
                 'for one epoch')
  p.add_argument('--export-dir', help='keep the trained model here (a Model '
                 'artifact dir for a later --model); default: a temp dir')
  p.add_argument('--batch-size', type=int, default=EvalConfig().batch_size)
  p.add_argument('--tutorial-examples', type=int, default=2000,
                 help='subset timed with the tutorial-style eager loop')
  p.add_argument('--jit-examples', type=int, default=2000,
                 help='subset on which FGSM is also timed with jit_compile=True '
                 '(0 skips)')
  p.add_argument('--skip-pgd', action='store_true')
  args = p.parse_args()
  if not args.data_dir:
    sys.exit('error: set MNIST_DIR or pass --data-dir')

  config = EvalConfig()
  fgsm, pgd = config.attacks[0], config.attacks[1]
  images, labels = idx.load_split(args.data_dir, 'eval')
  x, y = normalized(images), labels.astype(np.int64)
  result = {'examples': len(x), 'batch_size': args.batch_size,
            'cpus': os.cpu_count()}

  with tempfile.TemporaryDirectory() as root:
    keras_model = None
    if args.model:
      artifact = standard_artifacts.Model()
      artifact.uri = args.model
    else:
      keras_model, result['train_seconds'] = timed(train_reference, args.data_dir)
      artifact = export(keras_model, args.export_dir or root)
    loaded = evaluation.load_model(artifact, 'bench')
    attacker = attacks.Attacker(loaded.logits_fn, batch_size=args.batch_size,
                                seed=config.seed, jit_compile=executor.JIT_COMPILE)

    attacker.logits(x[:args.batch_size])
    logits, seconds = timed(attacker.logits, x)
    result.update(clean_accuracy=float(np.mean(attacks.predictions(logits) == y)),
                  clean_seconds=seconds, clean_images_per_s=len(x) / seconds)
    print(f'clean: {len(x) / seconds:.0f} images/s', flush=True)

    fgsm_correct, seconds = attack_rate(attacker, x, y, fgsm)
    result.update(fgsm_accuracy=float(fgsm_correct.mean()), fgsm_seconds=seconds,
                  fgsm_images_per_s=len(x) / seconds,
                  fgsm_speedup_vs_tutorial_28_6s=TUTORIAL_FGSM_SECONDS / seconds)
    print(f'fgsm: {len(x) / seconds:.0f} images/s, {seconds:.1f} s', flush=True)

    if args.jit_examples:
      n = min(args.jit_examples, len(x))
      jit = attacks.Attacker(loaded.logits_fn, batch_size=args.batch_size,
                             seed=config.seed, jit_compile=not executor.JIT_COMPILE)
      _, seconds = attack_rate(jit, x[:n], y[:n], fgsm)
      key = 'jit' if not executor.JIT_COMPILE else 'nojit'
      result[f'fgsm_{key}_images_per_s'] = n / seconds
      print(f'fgsm with jit_compile={not executor.JIT_COMPILE}: {n / seconds:.0f} '
            'images/s', flush=True)

    if args.tutorial_examples:
      n = min(args.tutorial_examples, len(x))
      model = keras_model or loaded.logits_fn
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

    if not args.skip_pgd:
      pgd_correct, seconds = attack_rate(attacker, x, y, pgd)
      result.update(pgd40_accuracy=float(pgd_correct.mean()), pgd40_seconds=seconds,
                    pgd40_images_per_s=len(x) / seconds)
      print(f'pgd40: {len(x) / seconds:.0f} images/s, {seconds:.1f} s', flush=True)

  print(json.dumps({k: round(v, 4) if isinstance(v, float) else v
                    for k, v in result.items()}))


if __name__ == '__main__':
  main()

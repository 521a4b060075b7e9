"""Batched, compiled attacks (clean, FGSM, PGD, APGD, FAB-T, Square) against any
``logits_fn(x) -> logits``.

The perturbation math is components/adversarial/perturbation.adversarial_neighbor,
the same code the Trainer trains against, so "robust to the training attack" means
the same thing in both places. This module adds what an *evaluation* needs on top:

* the loss the adversary maximises is the cross-entropy of the true label;
* restarts keep, per example, the worst case: a misclassifying neighbor beats a
  correctly classified one, and among equals the higher loss wins;
* every neighbor stays in [clip_min, clip_max] and in the epsilon ball (epsilon is
  always passed, so even one-step FGSM is projected);
* random starts use stateless seeds folded from (EvalConfig.seed, attack, batch,
  restart), so a run is reproducible and every model sees the same starts;
* epsilon and step size are tensor arguments, so one compiled graph per attack
  *shape* (norm, steps, random start, restarts) serves the whole epsilon sweep.

APGD, FAB-T and Square (components/adversarial/apgd.py, fab.py, square.py) run on
batches of any size through one trace each (a None batch dimension), because the
AutoAttack suite (autoattack.py) hands them only the images still robust.

numpy in, numpy out at the Attacker boundary; everything inside is TF.
"""
import concurrent.futures
import dataclasses
import zlib
from typing import Callable, Dict, Iterator, Optional, Tuple

import numpy as np
import tensorflow as tf

from components.adversarial import apgd as apgd_lib
from components.adversarial import fab as fab_lib
from components.adversarial import local_forward
from components.adversarial import noinline
from components.adversarial import perturbation
from components.adversarial import square as square_lib
from components.adversarial.losses import cross_entropy
from components.config import AttackConfig, EvalConfig

LogitsFn = Callable[[tf.Tensor], tf.Tensor]

# Names of the two attack families of the robustness curve.
FGSM = 'fgsm'
PGD = 'pgd'
APGD = 'apgd-ce'


# APGD and Square batches run this many at a time, each in its own thread. The ops of
# one batch keep ~1.5 of 2 cores busy (the elementwise ones run on one thread); two
# at once filled them: APGD-T on 2 x 460 images took 22.8 s against 26.4 s one after
# the other, with bit-identical results (2026-11-26, AMD EPYC, 2 cores).
CONCURRENT_BATCHES = 2

# Square trusts a model's split (local_forward.LocalModel) only if its logits match
# logits_fn's this closely on the first batch it attacks: float rounding is ~1e-6.
SPLIT_TOLERANCE = 1e-3


class NonFiniteLogitsError(ValueError):
  """The model returned NaN or infinite logits; no accuracy computed from them holds."""


class SplitMismatchError(ValueError):
  """A model's exported split (local_features + features_logits) is not the model."""


def attack_batch(logits_fn: LogitsFn, x: tf.Tensor, y: tf.Tensor, *,
                 norm: str, steps: int, random_start: bool, restarts: int,
                 epsilon: tf.Tensor, step_size: tf.Tensor, seed: tf.Tensor,
                 clip_min: float, clip_max: float) -> Tuple[tf.Tensor, tf.Tensor]:
  """Worst-case neighbor over ``restarts`` runs, and the model's logits there."""
  @noinline.noinline   # the loop's pooling gradients always on oneDNN (noinline.py)
  def grad_fn(x_adv):
    return perturbation.input_gradient(
        lambda v: tf.reduce_sum(cross_entropy(y, logits_fn(v))), x_adv)

  best_x, best_logits, best_wrong, best_loss = None, None, None, None
  for r in range(restarts):
    x_adv = perturbation.adversarial_neighbor(
        x, grad_fn, step_size=step_size, norm=norm, iterations=steps,
        epsilon=epsilon, random_init=random_start, clip_min=clip_min,
        clip_max=clip_max,
        seed=tf.random.experimental.stateless_fold_in(seed, r))
    logits = logits_fn(x_adv)
    loss = cross_entropy(y, logits)
    wrong = tf.not_equal(tf.argmax(logits, axis=-1, output_type=tf.int64), y)
    if r == 0:
      best_x, best_logits, best_wrong, best_loss = x_adv, logits, wrong, loss
      continue
    better = tf.logical_or(
        tf.logical_and(wrong, tf.logical_not(best_wrong)),
        tf.logical_and(tf.equal(wrong, best_wrong), loss > best_loss))
    best_x = tf.where(better[:, None], x_adv, best_x)
    best_logits = tf.where(better[:, None], logits, best_logits)
    best_wrong = tf.logical_or(best_wrong, wrong)
    best_loss = tf.where(better, loss, best_loss)
  return best_x, best_logits


def attack_salt(attack: AttackConfig) -> int:
  """Stable per-attack seed component (independent of the order of the attacks)."""
  return zlib.crc32(attack.name.encode('utf-8')) & 0x7FFFFFFF


def batch_seed(seed: int, salt: int, batch_index: int) -> tf.Tensor:
  """Stateless seed of one batch; restart r folds in r on top of it."""
  base = tf.constant([seed, salt], dtype=tf.int64)
  return tf.random.experimental.stateless_fold_in(base, batch_index)


def batch_slices(n: int, batch_size: int) -> Iterator[slice]:
  for start in range(0, n, batch_size):
    yield slice(start, min(start + batch_size, n))


def even_slices(n: int, batch_size: int) -> Iterator[slice]:
  """ceil(n / batch_size) batches of near-equal size: no padding rows to pay for
  when the suite hands over e.g. 540 images with batch_size 500 (2 x 270)."""
  if n <= 0:
    return
  count = -(-n // batch_size)
  bounds = np.linspace(0, n, count + 1).round().astype(int)
  for a, b in zip(bounds[:-1], bounds[1:]):
    yield slice(int(a), int(b))


def _pad_to(a: np.ndarray, rows: int) -> np.ndarray:
  """Pads a short batch to the compiled batch shape, so nothing retraces.

  Examples are independent (per-example gradients, no batch statistics), so the
  padding rows do not change the real rows' results.
  """
  if len(a) == rows:
    return a
  pad = np.zeros((rows - len(a),) + a.shape[1:], dtype=a.dtype)
  return np.concatenate([a, pad])


class Attacker:
  """Compiled clean and adversarial evaluation of one model.

  One tf.function per attack shape is traced on first use and then reused for
  every epsilon and batch. Every batch, the last and any short input included, is
  padded to batch_size, so each function is traced (and, with jit_compile=True,
  XLA-compiled) exactly once.
  """

  def __init__(self, logits_fn: LogitsFn, *, batch_size: int, seed: int,
               clip_min: float = 0.0, clip_max: float = 1.0,
               jit_compile: bool = False, name: str = 'model',
               local: Optional[local_forward.LocalModel] = None):
    if batch_size < 1:
      raise ValueError(f'batch_size={batch_size!r}: must be >= 1')
    self._logits_fn = logits_fn
    self._batch_size = batch_size
    self._seed = seed
    self._clip = (clip_min, clip_max)
    self._jit = jit_compile
    self.name = name
    self._compiled_logits = tf.function(logits_fn, jit_compile=jit_compile)
    self._compiled_attacks: Dict[Tuple, Callable] = {}
    self._local = local        # Square's incremental forward pass, if the model has one
    self._local_checked = False

  @property
  def batch_size(self) -> int:
    return self._batch_size

  @property
  def square_forward_pass(self) -> str:
    """'incremental' when Square recomputes only what its window changes, else 'full'."""
    return 'full' if self._local is None else 'incremental'

  def _attack_fn(self, norm: str, steps: int, random_start: bool, restarts: int):
    key = (norm, steps, random_start, restarts)
    if key not in self._compiled_attacks:
      clip_min, clip_max = self._clip

      def run(x, y, epsilon, step_size, seed):
        return attack_batch(self._logits_fn, x, y, norm=norm, steps=steps,
                            random_start=random_start, restarts=restarts,
                            epsilon=epsilon, step_size=step_size, seed=seed,
                            clip_min=clip_min, clip_max=clip_max)
      self._compiled_attacks[key] = tf.function(run, jit_compile=self._jit)
    return self._compiled_attacks[key]

  def _check_finite(self, logits: np.ndarray, where: slice, what: str) -> None:
    if not np.all(np.isfinite(logits)):
      bad = where.start + int(np.argmax(~np.all(np.isfinite(logits), axis=-1)))
      raise NonFiniteLogitsError(
          f'{self.name}: non-finite (NaN/inf) logits on {what} input, first at row '
          f'{bad}; the model is broken or diverged')

  def logits(self, x: np.ndarray, what: str = 'clean') -> np.ndarray:
    """Logits on x, in batches; ``what`` names the input in errors."""
    rows = self._batch_size
    out = []
    for s in batch_slices(len(x), rows):
      batch = tf.constant(_pad_to(x[s], rows))
      logits = self._compiled_logits(batch).numpy()[:s.stop - s.start]
      self._check_finite(logits, s, what)
      out.append(logits)
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

  def attack(self, x: np.ndarray, y: np.ndarray,
             attack: AttackConfig) -> Tuple[np.ndarray, np.ndarray]:
    """White-box neighbors of (x, y) against this model, and its logits on them."""
    fn = self._attack_fn(attack.norm, attack.steps, attack.random_start,
                         attack.restarts)
    epsilon = tf.constant(attack.epsilon, tf.float32)
    step_size = tf.constant(attack.effective_step_size, tf.float32)
    salt = attack_salt(attack)
    rows = self._batch_size
    xs, ls = [], []
    for i, s in enumerate(batch_slices(len(x), rows)):
      x_adv, logits = fn(tf.constant(_pad_to(x[s], rows)),
                         tf.constant(_pad_to(y[s].astype(np.int64), rows)),
                         epsilon, step_size, batch_seed(self._seed, salt, i))
      n = s.stop - s.start
      logits = logits.numpy()[:n]
      self._check_finite(logits, s, f'{attack.name} adversarial')
      xs.append(x_adv.numpy()[:n])
      ls.append(logits)
    return np.concatenate(xs), np.concatenate(ls)


  # ------------------------------------------------ APGD and Square (any batch size)

  def _dynamic(self, key: Tuple, build: Callable, signature) -> Callable:
    """One tf.function per key, traced once for every batch size: the input
    signature's batch dimension is None, so a batch of one image (all the suite may
    have left) and a batch of 500 share the graph, and no loop variable's shape can
    change between iterations."""
    if key not in self._compiled_attacks:
      # autograph=False: the loops are explicit tf.while_loops, and converting a
      # tf_keras model's own code costs 20-45 s per trace.
      self._compiled_attacks[key] = tf.function(
          build, input_signature=signature, jit_compile=self._jit, autograph=False)
    return self._compiled_attacks[key]

  @staticmethod
  def _signature(x: np.ndarray, *scalars):
    return [tf.TensorSpec([None] + list(x.shape[1:]), tf.float32),
            tf.TensorSpec([None], tf.int64),
            *[tf.TensorSpec([], dtype) for dtype in scalars],
            tf.TensorSpec([2], tf.int64)]

  def apgd(self, x: np.ndarray, y: np.ndarray, attack: AttackConfig, *, loss: str,
           target_rank: int = 2, salt: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """(x_adv, flipped) of ``attack.restarts`` APGD restarts (worst case per image).

    salt separates the random starts of different suite members and targets.
    """
    clip_min, clip_max = self._clip
    norm, steps = attack.norm, attack.steps

    def run(x, y, epsilon, target_rank, seed):
      r = apgd_lib.apgd(self._logits_fn, x, y, epsilon=epsilon, norm=norm, steps=steps,
                        loss=loss, target_rank=target_rank, seed=seed,
                        clip_min=clip_min, clip_max=clip_max)
      return r.x_adv, r.flipped, r.best_loss
    fn = self._dynamic(('apgd', norm, steps, loss, x.shape[1:]), run,
                       self._signature(x, tf.float32, tf.int32))
    best = None
    for restart in range(attack.restarts):
      seed_salt = zlib.crc32(
          f'{attack_salt(attack)}/{salt}/{restart}'.encode()) & 0x7FFFFFFF
      outs = _per_batch(
          lambda i, s: fn(tf.constant(x[s]), tf.constant(y[s].astype(np.int64)),
                          tf.constant(attack.epsilon, tf.float32),
                          tf.constant(target_rank, tf.int32),
                          tf.cast(batch_seed(self._seed, seed_salt, i), tf.int64)),
          even_slices(len(x), self._batch_size))
      if not outs:
        return x.copy(), np.zeros(0, bool)
      result = apgd_lib.ApgdResult(*(np.concatenate([o[k].numpy() for o in outs])
                                     for k in range(3)))
      if best is None:
        best = result
      else:
        best = apgd_lib.ApgdResult(*(t.numpy() for t in apgd_lib.merge_worst_case(
            apgd_lib.ApgdResult(*(tf.constant(v) for v in best)),
            apgd_lib.ApgdResult(*(tf.constant(v) for v in result)))))
    return best.x_adv, best.flipped

  def fab(self, x: np.ndarray, y: np.ndarray, attack: AttackConfig, *,
          target_rank: int) -> Tuple[np.ndarray, np.ndarray]:
    """(x_adv, flipped) of FAB-T towards the target_rank-th class, ``attack.steps``
    iterations. FAB starts at x itself, so it has no seed. x_adv is x wherever FAB
    found no misclassifying point within epsilon: a nearest point beyond it is not
    an adversarial example of this threat model."""
    clip_min, clip_max = self._clip
    steps = attack.steps

    def run(x, y, epsilon, target_rank):
      r = fab_lib.fab_targeted(self._logits_fn, x, y, epsilon=epsilon, steps=steps,
                               target_rank=target_rank, clip_min=clip_min,
                               clip_max=clip_max)
      return tf.where(apgd_lib._per_example(r.flipped, x), r.x_adv, x), r.flipped
    fn = self._dynamic(('fab', steps, x.shape[1:]), run,
                       self._signature(x, tf.float32, tf.int32)[:-1])  # no seed
    return _joined(x, _per_batch(
        lambda i, s: fn(tf.constant(x[s]), tf.constant(y[s].astype(np.int64)),
                        tf.constant(attack.epsilon, tf.float32),
                        tf.constant(target_rank, tf.int32)),
        even_slices(len(x), self._batch_size)))

  def square(self, x: np.ndarray, y: np.ndarray, attack: AttackConfig,
             *, image_shape: Tuple[int, int, int], salt: int = 0
             ) -> Tuple[np.ndarray, np.ndarray]:
    """(x_adv, flipped) of the Square attack with ``attack.queries`` queries, through
    the model's incremental forward pass when it has one (checked first)."""
    clip_min, clip_max = self._clip
    queries = attack.queries
    if self._local is not None and not self._local_checked and len(x):
      self._check_split(x[:self._batch_size], image_shape)
    local = self._local

    def run(x, y, epsilon, seed):
      r = square_lib.square_attack(self._logits_fn, x, y, epsilon=epsilon,
                                   queries=queries, image_shape=image_shape, seed=seed,
                                   clip_min=clip_min, clip_max=clip_max, local=local)
      return r.x_adv, r.flipped
    fn = self._dynamic(('square', queries, tuple(image_shape), x.shape[1:]), run,
                       self._signature(x, tf.float32))
    seed_salt = zlib.crc32(f'{attack_salt(attack)}/square/{salt}'.encode()) & 0x7FFFFFFF
    return _joined(x, _per_batch(
        lambda i, s: fn(tf.constant(x[s]), tf.constant(y[s].astype(np.int64)),
                        tf.constant(attack.epsilon, tf.float32),
                        tf.cast(batch_seed(self._seed, seed_salt, i), tf.int64)),
        even_slices(len(x), self._batch_size)))

  def _check_split(self, x: np.ndarray, image_shape: Tuple[int, int, int]) -> None:
    images = tf.constant(x.reshape((-1,) + tuple(image_shape)), tf.float32)
    gap = float(local_forward.max_disagreement(self._local, self._logits_fn, images))
    if not gap <= SPLIT_TOLERANCE:
      raise SplitMismatchError(
          f'{self.name}: its exported split (local_features + features_logits) gives '
          f'logits up to {gap:.3g} away from normalized_logits on clean images '
          f'(tolerance {SPLIT_TOLERANCE}); the export is broken, so no Square figure '
          'computed through it would hold')
    self._local_checked = True


def _per_batch(call: Callable[[int, slice], Tuple], slices: Iterator[slice]) -> list:
  """[call(i, slice_i) for each batch], CONCURRENT_BATCHES at a time, in order. Every
  batch keeps its own index (so its own seed) and shape, so the results are those
  of running the batches one after the other."""
  slices = list(slices)
  if len(slices) < 2:
    return [call(i, s) for i, s in enumerate(slices)]
  with concurrent.futures.ThreadPoolExecutor(CONCURRENT_BATCHES) as pool:
    return list(pool.map(lambda item: call(*item), enumerate(slices)))


def _joined(x: np.ndarray, outs: list) -> Tuple[np.ndarray, np.ndarray]:
  """(x_adv, flipped) of all batches, in order; x itself when there were none."""
  if not outs:
    return x.copy(), np.zeros(0, bool)
  return (np.concatenate([o[0].numpy() for o in outs]),
          np.concatenate([o[1].numpy() for o in outs]))


def predictions(logits: np.ndarray) -> np.ndarray:
  return np.argmax(logits, axis=-1).astype(np.int64)


def sweep_attacks(config: EvalConfig) -> Dict[str, Dict[float, AttackConfig]]:
  """The robustness curve's attacks: FGSM and PGD at every epsilon of the sweep.

  FGSM is one step of size epsilon with the norm of the first one-step attack; PGD
  copies the first multi-step attack (steps, step size, random start, restarts)
  with only epsilon changed. Without a multi-step attack there is no PGD curve.
  """
  pgd = [a for a in config.attacks if a.method == 'pgd']
  one_step = next((a for a in pgd if a.steps == 1), None)
  multi_step = next((a for a in pgd if a.steps > 1), None)
  apgd = next((a for a in config.attacks
               if a.method == 'apgd-ce' or (a.method == 'autoattack' and
                                            'apgd-ce' in a.suite)), None)
  norm = one_step.norm if one_step else 'infinity'
  sweep: Dict[str, Dict[float, AttackConfig]] = {FGSM: {}}
  if multi_step is not None:
    sweep[PGD] = {}
  if apgd is not None:
    sweep[APGD] = {}
  for eps in config.epsilon_sweep:
    sweep[FGSM][eps] = AttackConfig(name=f'{FGSM}_sweep', norm=norm, epsilon=eps,
                                    steps=1)
    if multi_step is not None:
      sweep[PGD][eps] = dataclasses.replace(
          multi_step, name=f'{PGD}_sweep', epsilon=eps,
          sample_size=config.sweep_sample_size)
    if apgd is not None:
      sweep[APGD][eps] = AttackConfig(
          name=f'{APGD}_sweep', method='apgd-ce', norm=apgd.norm, epsilon=eps,
          steps=apgd.steps, restarts=1, sample_size=config.sweep_apgd_sample_size)
  return sweep


def attack_settings(attack: AttackConfig, sample_size: int) -> Dict:
  """What the attack actually ran with (defaults resolved), for metrics.json."""
  d = dataclasses.asdict(attack)
  d.update(sample_size=sample_size, white_box=True)
  if attack.method == 'pgd':
    d.update(step_size=attack.effective_step_size)
  elif attack.method == 'fab-t':
    d.update(step_size=FAB_STEPS)
  else:
    d.update(step_size='APGD schedule: 2 * epsilon, halved at checkpoints'
             + (f'; fab-t: {FAB_STEPS}' if 'fab-t' in attack.suite and
                attack.method == 'autoattack' else ''))
  return d


FAB_STEPS = (f'projections onto the linearized boundary, overshoot eta {fab_lib.ETA}, '
             f'alpha_max {fab_lib.ALPHA_MAX}, step back beta {fab_lib.BETA}')


def sample_size(attack: AttackConfig, config: EvalConfig, available: int) -> int:
  """First-N examples an attack runs on: its own sample_size, else the config's."""
  wanted = attack.sample_size if attack.sample_size is not None else config.sample_size
  return min(wanted, available)


"""Keras callbacks of the Trainer: NaN guard and model selection on robustness."""
from typing import Callable, List, Optional, Sequence, Tuple, Union

from absl import logging
import numpy as np
import tensorflow as tf
import tf_keras as keras

from components.adversarial import apgd
from components.adversarial import losses
from components.adversarial import perturbation
from components.config import AdvConfig, AttackConfig

# metric(model) -> robust accuracy, or (robust accuracy, clean accuracy).
RobustMetric = Callable[[keras.Model], Union[float, Tuple[float, float]]]
ROBUST_ACCURACY = 'robust_accuracy'
CLEAN_ACCURACY = 'holdout_clean_accuracy'


def select_epoch(history: Sequence[Tuple[float, Optional[float]]],
                 min_clean: Optional[float]) -> Tuple[Optional[int], bool]:
  """(epoch index, qualified): the gate-aware choice among (robust, clean) figures.

  Highest robust accuracy among the epochs whose clean accuracy clears min_clean;
  ties go to the higher clean accuracy, then to the earlier epoch. When no epoch
  qualifies (or min_clean is None) the choice is made over all epochs and
  ``qualified`` says whether the clean bound held.
  """
  if not history:
    return None, False
  def key(i):
    robust, clean = history[i]
    return (robust, clean if clean is not None else -1.0, -i)
  everyone = range(len(history))
  if min_clean is None:
    return max(everyone, key=key), True
  ok = [i for i in everyone
        if history[i][1] is not None and history[i][1] >= min_clean]
  if ok:
    return max(ok, key=key), True
  return max(everyone, key=key), False


class NanLossError(RuntimeError):
  """Training diverged; raised so that no model is exported."""


class StopOnNanLoss(keras.callbacks.Callback):
  """Raises NanLossError when an epoch's mean loss is NaN or infinite.

  Checked once per epoch: a NaN anywhere in the epoch makes the epoch mean NaN, and
  a per-batch check would force a device sync on every step.
  """

  def on_epoch_end(self, epoch, logs=None):
    loss = (logs or {}).get('loss')
    if loss is not None and not np.isfinite(loss):
      raise NanLossError(f'epoch {epoch + 1}: training loss is {loss}; stopping without '
                         'exporting a model (lower train.learning_rate or check the data)')


class RobustModelSelection(keras.callbacks.Callback):
  """Keeps the weights with the best robust accuracy and restores them at the end.

  metric(model) -> float is measured after every epoch (in the pipeline: PGD accuracy
  on examples held out of the training split; in tests: a stub). After ``patience``
  epochs without improvement training stops (patience 0: never stop early). The
  curve goes into the epoch logs (History, TensorBoard) and, if log_dir is given,
  into its own TensorBoard run.

  Epochs before ``start_epoch`` (1-based) are neither measured nor candidates; a
  run shorter than that measures its last epoch. ``figures[i]`` belongs to epoch
  ``first_epoch + i`` (0-based).
  """

  def __init__(self, metric: RobustMetric, patience: int = 0,
               log_dir: Optional[str] = None, min_clean: Optional[float] = None,
               start_epoch: int = 1):
    super().__init__()
    if patience < 0:
      raise ValueError(f'patience={patience!r}: must be >= 0')
    if start_epoch < 1:
      raise ValueError(f'start_epoch={start_epoch!r}: must be >= 1')
    self._metric = metric
    self._start_epoch = start_epoch
    self.first_epoch: Optional[int] = None
    self._patience = patience
    self.min_clean = min_clean
    self.figures: List[Tuple[float, Optional[float]]] = []
    self.qualified = True
    self._writer = tf.summary.create_file_writer(log_dir) if log_dir else None
    self.history: List[float] = []
    self.best_epoch: Optional[int] = None
    self.best_value = -np.inf
    self._best_weights = None
    self._wait = 0

  def on_train_begin(self, logs=None):
    self.history, self.best_epoch, self.best_value = [], None, -np.inf
    self._best_weights, self._wait, self.figures = None, 0, []
    self.first_epoch = None

  def _measures(self, epoch: int) -> bool:
    if self.first_epoch is not None or epoch + 1 >= self._start_epoch:
      return True
    params = getattr(self, 'params', None) or {}
    last = params.get('epochs')
    return last is not None and epoch + 1 >= last

  def on_epoch_end(self, epoch, logs=None):
    if not self._measures(epoch):
      return
    if self.first_epoch is None:
      self.first_epoch = epoch
    measured = self._metric(self.model)
    value, clean = (measured if isinstance(measured, tuple) else (measured, None))
    value = float(value)
    clean = None if clean is None else float(clean)
    self.history.append(value)
    self.figures.append((value, clean))
    if logs is not None:
      logs[ROBUST_ACCURACY] = value
      if clean is not None:
        logs[CLEAN_ACCURACY] = clean
    if self._writer is not None:
      with self._writer.as_default():
        tf.summary.scalar(ROBUST_ACCURACY, value, step=epoch)
        if clean is not None:
          tf.summary.scalar(CLEAN_ACCURACY, clean, step=epoch)
      self._writer.flush()
    choice, self.qualified = select_epoch(self.figures, self.min_clean)
    if choice is not None and self.first_epoch + choice == epoch:
      self.best_value, self.best_epoch, self._wait = value, epoch, 0
      self._best_weights = self.model.get_weights()
    else:
      self._wait += 1
      if self._patience and self._wait >= self._patience:
        logging.info('Robust accuracy has not improved for %d epochs; stopping.',
                     self._wait)
        self.model.stop_training = True
    logging.info('epoch %d: %s=%.4f (best %.4f)', epoch + 1, ROBUST_ACCURACY, value,
                 self.best_value)

  def on_train_end(self, logs=None):
    if not self.qualified and self.min_clean is not None:
      logging.warning(
          'Model selection: NO epoch reached held-out clean accuracy %.4f (best was '
          '%.4f); keeping the most robust epoch, which the clean gate will likely '
          'refuse.', self.min_clean, max((c or 0.0 for _, c in self.figures), default=0.0))
    if self._best_weights is not None:
      self.model.set_weights(self._best_weights)
      logging.info('Restored the weights of epoch %d (%s=%.4f).', self.best_epoch + 1,
                   ROBUST_ACCURACY, self.best_value)


def robust_eval_attack(adv: AdvConfig, steps: int, method: str = 'pgd') -> AttackConfig:
  """The model-selection attack in the training epsilon ball, from a random start:
  PGD with step size epsilon / steps (AttackConfig's default), or APGD-CE with
  ``steps`` iterations and its own step-size schedule."""
  return AttackConfig(name='robust_eval', norm=adv.adv_grad_norm, epsilon=adv.epsilon,
                      steps=steps, random_start=True, method=method).validate()


class HeldoutAccuracy:
  """metric(model) -> (robust, clean) accuracy on a fixed dataset, under the
  selection attack (method 'pgd' or 'apgd-ce').

  The attack's random start uses a fixed seed, so epochs are compared on the same
  draw. The compiled attack is reused across epochs. Under PGD an example is robust if
  its final neighbor is classified correctly (as the selection always measured it);
  under APGD-CE, if it is correct clean and no iterate was misclassified.
  """

  def __init__(self, dataset: tf.data.Dataset, attack: AttackConfig, adv: AdvConfig,
               seed: int):
    self._dataset = dataset
    self._attack = attack
    self._adv = adv
    self._seed = seed
    self._fn = None
    self._fn_model = None

  def __call__(self, model: keras.Model) -> Tuple[float, float]:
    """(robust accuracy, clean accuracy) on the held-out examples."""
    if self._fn is None or self._fn_model is not model:
      self._fn, self._fn_model = self._compile(model), model
    correct, clean, total = 0, 0, 0
    for i, (x, y) in enumerate(self._dataset):
      c, k, n = self._fn(x, y, tf.constant([self._seed, i], tf.int32))
      correct, clean, total = correct + int(c), clean + int(k), total + int(n)
    return correct / max(total, 1), clean / max(total, 1)

  def _compile(self, model: keras.Model):
    attack, adv = self._attack, self._adv

    def correct(v, y):
      pred = tf.argmax(model(v, training=False), axis=-1)
      return tf.equal(pred, tf.cast(y, pred.dtype))

    def robust(x, y, clean, seed):
      if attack.method == 'apgd-ce':
        result = apgd.apgd(lambda v: model(v, training=False), x, y,
                           epsilon=attack.epsilon, norm=attack.norm, steps=attack.steps,
                           loss='ce', seed=seed, clip_min=adv.clip_value_min,
                           clip_max=adv.clip_value_max)
        return tf.logical_and(clean, tf.logical_not(result.flipped))

      def grad_fn(x_adv):
        with tf.GradientTape() as tape:
          tape.watch(x_adv)
          loss = tf.reduce_mean(losses.cross_entropy(y, model(x_adv, training=False)))
        return tape.gradient(loss, x_adv)

      x_adv = perturbation.adversarial_neighbor(
          x, grad_fn, step_size=attack.effective_step_size, norm=attack.norm,
          iterations=attack.steps, epsilon=attack.epsilon, random_init=True,
          clip_min=adv.clip_value_min, clip_max=adv.clip_value_max, seed=seed)
      return correct(x_adv, y)

    # autograph=False: no tensor-dependent Python control flow (APGD's loop is an
    # explicit tf.while_loop); the method branch is taken once, at trace time.
    @tf.function(autograph=False)
    def correct_under_attack(x, y, seed):
      x = tf.cast(x, tf.float32)
      clean = correct(x, y)
      count = lambda mask: tf.reduce_sum(tf.cast(mask, tf.int64))
      return (count(robust(x, y, clean, seed)), count(clean),
              tf.size(y, out_type=tf.int64))

    return correct_under_attack

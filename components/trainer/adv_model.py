"""Keras model whose train_step does NSL-style adversarial regularization.

A custom train_step because neural-structured-learning 1.4 does not import on
TF 2.16. Semantics are NSL's: total = labeled loss + multiplier * loss on the
adversarial neighbors, a neighbor being the input moved along the gradient of the
labeled loss w.r.t. the input (AdvConfig names). For speed, ONE backward pass of the
labeled loss yields the gradients w.r.t. [input] + weights together; the input part
is the first adversarial direction (``first_grad``), so an FGSM step costs one extra
forward/backward on the neighbors and nothing else. No Python runs per batch.

Settings (all AdvConfig):
* FGSM (default): pgd_iterations=1, adv_step_size=0.2, 'infinity', clip to [0, 1].
* PGD: pgd_iterations=k, pgd_epsilon=eps, adv_step_size per step, random_init.
* Fast adversarial training (Wong et al. 2020) is a combination of settings:
  random_init=True, pgd_iterations=1, pgd_epsilon=eps, adv_step_size=1.25*eps
  (random start in the ball, one step, projected back onto it).
* loss='adv_only' (Madry): the adversarial loss alone; 'trades': clean CE +
  trades_beta * KL(clean || neighbor), the adversary maximising the KL (needs
  random_init, since the KL gradient vanishes at the clean input).

Mode 'base' trains on the labeled loss only (the non-robust baseline).
Logged per epoch: loss, labeled_loss, scaled_adversarial_loss (multiplier * adversarial
loss, NSL's metric name) and accuracy.
Distribution: per-example losses are averaged over the GLOBAL batch
(tf.nn.compute_average_loss), so summing replica gradients gives the one-device
gradient. Mixed precision: losses are scaled when the optimizer is a
LossScaleOptimizer (compile() wraps it under the 'mixed_float16' policy).
"""
from typing import Dict, List, Optional, Sequence

import tensorflow as tf
import tf_keras as keras

from components.adversarial import losses
from components.adversarial import perturbation
from components.config import AdvConfig

MODES = ('adversarial', 'base')


class AdversarialModel(keras.Model):
  """Wraps the classifier ``base``; call() is the classifier's, fit() is adversarial.

  The exported model is ``base`` itself, so serving carries no training logic.
  """

  def __init__(self, base: keras.Model, adv_config: AdvConfig, mode: str = 'adversarial',
               seed: int = 0, **kwargs):
    super().__init__(**kwargs)
    if mode not in MODES:
      raise ValueError(f'mode={mode!r}: must be one of {MODES}')
    adv_config.validate()  # also rejects TRADES without a random start
    self.base = base
    self.adv_config = adv_config
    self.mode = mode
    self._seed = seed
    self._loss_tracker = keras.metrics.Mean('loss')
    self._labeled_tracker = keras.metrics.Mean('labeled_loss')
    self._adv_tracker = keras.metrics.Mean('scaled_adversarial_loss')
    self._accuracy = keras.metrics.SparseCategoricalAccuracy('accuracy')

  def call(self, inputs, training=None):
    return self.base(inputs, training=training)

  @property
  def metrics(self) -> List[keras.metrics.Metric]:
    trackers = [self._loss_tracker, self._labeled_tracker, self._accuracy]
    if self.mode == 'adversarial':
      trackers.insert(2, self._adv_tracker)
    return trackers

  # --- training -------------------------------------------------------------

  # Plain TF ops with Python branches on config only, so AutoGraph has nothing to
  # convert; skipping it saves seconds of tracing (tens of seconds under
  # MirroredStrategy, which converts once per replica thread).
  @tf.autograph.experimental.do_not_convert
  def train_step(self, data):
    x, labels = data
    x = tf.cast(x, tf.float32)
    variables = self.trainable_variables
    if self.mode == 'base':
      with tf.GradientTape() as tape:
        logits = self(x, training=True)
        labeled = losses.cross_entropy(labels, logits)
        loss = self._scaled(tf.nn.compute_average_loss(labeled))
      grads = self._unscaled(tape.gradient(loss, variables))
      self.optimizer.apply_gradients(zip(grads, variables))
      return self._update_metrics(labels, logits, labeled, labeled, None)

    cfg = self.adv_config
    if cfg.loss == 'trades':
      # The KL term depends on the clean logits, so both forward passes share a tape.
      with tf.GradientTape() as tape:
        clean_logits = self(x, training=True)
        with tape.stop_recording():
          x_adv = self._neighbor(x, labels, clean_logits, first_grad=None)
        terms = self._terms(labels, clean_logits, self(x_adv, training=True))
        total = self._scaled(tf.nn.compute_average_loss(terms.total))
      grads = self._unscaled(tape.gradient(total, variables))
    else:
      # One backward pass of the labeled loss gives the input gradient (the first
      # adversarial direction; useless under random_init, so not requested then)
      # and, for clean_plus_adv, the labeled part of the weight gradient.
      reuse_input_grad = not cfg.random_init
      labeled_vars = list(variables) if cfg.loss == 'clean_plus_adv' else []
      sources = ([x] if reuse_input_grad else []) + labeled_vars
      with tf.GradientTape() as tape:
        if reuse_input_grad:
          tape.watch(x)
        clean_logits = self(x, training=True)
        labeled_mean = self._scaled(tf.nn.compute_average_loss(
            losses.cross_entropy(labels, clean_logits)))
      first = self._unscaled(tape.gradient(labeled_mean, sources)) if sources else []
      first_grad = first[0] if reuse_input_grad else None
      labeled_grads = first[1:] if reuse_input_grad else first
      x_adv = self._neighbor(x, labels, clean_logits, first_grad=first_grad)
      with tf.GradientTape() as adv_tape:
        # clean_logits are constants here, so only the adversarial term has a gradient.
        terms = self._terms(labels, clean_logits, self(x_adv, training=True))
        total = self._scaled(tf.nn.compute_average_loss(terms.total))
      grads = self._unscaled(adv_tape.gradient(total, variables))
      if labeled_grads:
        grads = [a + b for a, b in zip(labeled_grads, grads)]
    self.optimizer.apply_gradients(zip(grads, variables))
    return self._update_metrics(labels, clean_logits, terms.total, terms.labeled,
                                terms.scaled_adv)

  @tf.autograph.experimental.do_not_convert
  def test_step(self, data):
    x, labels = data
    logits = self(tf.cast(x, tf.float32), training=False)
    labeled = losses.cross_entropy(labels, logits)
    self._loss_tracker.update_state(labeled)
    self._labeled_tracker.update_state(labeled)
    self._accuracy.update_state(labels, logits)
    return {m.name: m.result() for m in
            (self._loss_tracker, self._labeled_tracker, self._accuracy)}

  # --- pieces ---------------------------------------------------------------

  def _terms(self, labels, clean_logits, adv_logits) -> losses.LossTerms:
    return losses.combine(self.adv_config.loss, labels, clean_logits, adv_logits,
                          multiplier=self.adv_config.multiplier,
                          trades_beta=self.adv_config.trades_beta)

  def _neighbor(self, x, labels, clean_logits, first_grad):
    cfg = self.adv_config

    def grad_fn(x_adv):
      with tf.GradientTape() as tape:
        tape.watch(x_adv)
        objective = self._scaled(losses.adversary_objective(
            cfg.loss, labels, clean_logits, self(x_adv, training=False)))
      return self._unscaled([tape.gradient(objective, x_adv)])[0]

    return perturbation.adversarial_neighbor(
        x, grad_fn, step_size=cfg.adv_step_size, norm=cfg.adv_grad_norm,
        iterations=cfg.pgd_iterations, epsilon=cfg.pgd_epsilon,
        random_init=cfg.random_init, clip_min=cfg.clip_value_min,
        clip_max=cfg.clip_value_max, first_grad=first_grad,
        seed=self._step_seed() if cfg.random_init else None)

  def _step_seed(self) -> tf.Tensor:
    """Stateless seed of this step and replica: reproducible, and XLA-friendly
    (no random-generator state to carry through the compiled step)."""
    replica = tf.distribute.get_replica_context().replica_id_in_sync_group
    return tf.stack([tf.cast(self._seed, tf.int32) + tf.cast(replica, tf.int32),
                     tf.cast(self.optimizer.iterations, tf.int32)])

  def _loss_scaling(self) -> bool:
    return isinstance(self.optimizer, keras.mixed_precision.LossScaleOptimizer)

  def _scaled(self, loss: tf.Tensor) -> tf.Tensor:
    """Under mixed precision, the loss times the loss scale, so float16 gradients
    do not underflow. Call it inside the tape."""
    return self.optimizer.get_scaled_loss(loss) if self._loss_scaling() else loss

  def _unscaled(self, grads: Sequence[tf.Tensor]) -> List[tf.Tensor]:
    if self._loss_scaling():
      return self.optimizer.get_unscaled_gradients(grads)
    return list(grads)

  def _update_metrics(self, labels, logits, total, labeled,
                      scaled_adv: Optional[tf.Tensor]) -> Dict[str, tf.Tensor]:
    self._loss_tracker.update_state(total)
    self._labeled_tracker.update_state(labeled)
    if scaled_adv is not None:
      self._adv_tracker.update_state(scaled_adv)
    self._accuracy.update_state(labels, logits)
    return {m.name: m.result() for m in self.metrics}

"""Loss math of adversarial training: labeled cross-entropy, the TRADES KL term, and
how the three AdvConfig.loss modes combine them.

Tensors in, tensors out. Per-example functions return shape [batch]; the Trainer
averages them over the GLOBAL batch (``tf.nn.compute_average_loss``) so the sum of
the replicas' gradients under MirroredStrategy equals the single-device gradient.
"""
from typing import NamedTuple

import tensorflow as tf

from components.config import ADV_LOSSES as LOSS_MODES


def cross_entropy(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
  """Per-example sparse softmax cross-entropy, computed in float32 from logits."""
  return tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=tf.cast(labels, tf.int32), logits=tf.cast(logits, tf.float32))


def trades_kl(clean_logits: tf.Tensor, adv_logits: tf.Tensor) -> tf.Tensor:
  """Per-example KL(softmax(clean) || softmax(adv)), the TRADES robustness term.

  Written with log-softmax on both sides so it stays finite when a probability
  underflows to zero.
  """
  clean_log_p = tf.nn.log_softmax(tf.cast(clean_logits, tf.float32))
  adv_log_p = tf.nn.log_softmax(tf.cast(adv_logits, tf.float32))
  return tf.reduce_sum(tf.exp(clean_log_p) * (clean_log_p - adv_log_p), axis=-1)


def mean_trades_kl(clean_logits: tf.Tensor, adv_logits: tf.Tensor) -> tf.Tensor:
  return tf.reduce_mean(trades_kl(clean_logits, adv_logits))


def adversary_objective(mode: str, labels: tf.Tensor, clean_logits: tf.Tensor,
                        adv_logits: tf.Tensor) -> tf.Tensor:
  """Scalar the adversary maximises at a candidate neighbor.

  Cross-entropy for 'clean_plus_adv' and 'adv_only' (NSL and Madry), the KL to the
  clean prediction for 'trades' (clean_logits must then carry no gradient).
  """
  _check_mode(mode)
  if mode == 'trades':
    return mean_trades_kl(tf.stop_gradient(clean_logits), adv_logits)
  return tf.reduce_mean(cross_entropy(labels, adv_logits))


class LossTerms(NamedTuple):
  """Per-example terms. ``total`` is what is minimised; ``scaled_adv`` is the
  adversarial part of it (multiplier or beta already applied), logged as adv_loss."""
  total: tf.Tensor
  labeled: tf.Tensor
  scaled_adv: tf.Tensor


def combine(mode: str, labels: tf.Tensor, clean_logits: tf.Tensor,
            adv_logits: tf.Tensor, *, multiplier: float,
            trades_beta: float) -> LossTerms:
  """Per-example training loss of one AdvConfig.loss mode.

  'clean_plus_adv': CE(clean) + multiplier * CE(adv)       (NSL AdversarialRegularization)
  'adv_only':       CE(adv); the clean CE is only reported  (Madry et al.)
  'trades':         CE(clean) + trades_beta * KL(clean || adv)  (Zhang et al.)
  """
  _check_mode(mode)
  labeled = cross_entropy(labels, clean_logits)
  if mode == 'clean_plus_adv':
    scaled_adv = multiplier * cross_entropy(labels, adv_logits)
    return LossTerms(labeled + scaled_adv, labeled, scaled_adv)
  if mode == 'adv_only':
    adv = cross_entropy(labels, adv_logits)
    return LossTerms(adv, labeled, adv)
  scaled_adv = trades_beta * trades_kl(clean_logits, adv_logits)
  return LossTerms(labeled + scaled_adv, labeled, scaled_adv)


def _check_mode(mode: str) -> None:
  if mode not in LOSS_MODES:
    raise ValueError(f'loss mode={mode!r}: must be one of {LOSS_MODES}')

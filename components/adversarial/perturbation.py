"""Adversarial neighbors: FGSM and projected gradient descent (PGD).

Written here because neural-structured-learning 1.4 (which defines these semantics in
``nsl.lib.adversarial_neighbor``) imports ``tf.estimator`` and so fails on TF 2.16.
The semantics follow NSL's AdvNeighborConfig:

* each step moves the input by ``step_size * direction(grad)``, where the direction
  is ``sign(grad)`` for the L-infinity norm and ``grad / ||grad||_2`` per example for
  L2 (NSL's 'infinity' and 'l2');
* with ``epsilon`` set, the total perturbation is projected back onto the epsilon
  ball after every step (NSL's ``pgd_epsilon``); with ``epsilon=None`` there is no
  projection, so one step of ``adv_step_size`` is plain FGSM;
* ``random_init`` starts from a uniform point of the epsilon ball;
* the result is clipped to ``[clip_min, clip_max]`` and carries no gradient.

All functions work on a batch whose first axis is the example axis, any feature shape.
"""
from typing import Callable, Optional

import tensorflow as tf

GradFn = Callable[[tf.Tensor], tf.Tensor]
_TINY = 1e-12


def _per_example_reduce_axes(x: tf.Tensor):
  return tf.range(1, tf.rank(x))


def _l2_norm(x: tf.Tensor) -> tf.Tensor:
  """Per-example L2 norm, shaped to broadcast against x."""
  return tf.sqrt(tf.reduce_sum(tf.square(x), axis=_per_example_reduce_axes(x),
                               keepdims=True))


def direction(grad: tf.Tensor, norm: str) -> tf.Tensor:
  """Steepest-ascent unit direction of ``grad`` under the given norm."""
  if norm == 'infinity':
    return tf.sign(grad)
  if norm == 'l2':
    return grad / tf.maximum(_l2_norm(grad), _TINY)
  raise ValueError(f'norm={norm!r}: must be "infinity" or "l2"')


def project(delta: tf.Tensor, norm: str, epsilon: float) -> tf.Tensor:
  """Projects each example's perturbation onto the epsilon ball of ``norm``."""
  if norm == 'infinity':
    return tf.clip_by_value(delta, -epsilon, epsilon)
  if norm == 'l2':
    scale = tf.minimum(1.0, epsilon / tf.maximum(_l2_norm(delta), _TINY))
    return delta * scale
  raise ValueError(f'norm={norm!r}: must be "infinity" or "l2"')


def random_start(x: tf.Tensor, norm: str, epsilon: float,
                 seed: Optional[tf.Tensor] = None) -> tf.Tensor:
  """A uniform random perturbation inside the epsilon ball (same shape as x).

  ``seed`` is a stateless seed of shape [2]; None draws from the global generator.
  """
  shape = tf.shape(x)
  if seed is None:
    seed = tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int32)
  if norm == 'infinity':
    return tf.random.stateless_uniform(shape, seed, -epsilon, epsilon, dtype=x.dtype)
  if norm == 'l2':
    # Uniform in the L2 ball: Gaussian direction, radius ~ eps * U^(1/d).
    g = tf.random.stateless_normal(shape, seed, dtype=x.dtype)
    g = g / tf.maximum(_l2_norm(g), _TINY)
    d = tf.cast(tf.reduce_prod(shape[1:]), x.dtype)
    u = tf.random.stateless_uniform(
        tf.concat([shape[:1], tf.ones_like(shape[1:])], 0), seed + 1, dtype=x.dtype)
    return g * epsilon * tf.pow(u, 1.0 / d)
  raise ValueError(f'norm={norm!r}: must be "infinity" or "l2"')


def input_gradient(loss_fn: Callable[[tf.Tensor], tf.Tensor], x: tf.Tensor) -> tf.Tensor:
  """Gradient of the scalar ``loss_fn(x)`` with respect to x."""
  with tf.GradientTape() as tape:
    tape.watch(x)
    loss = loss_fn(x)
  return tape.gradient(loss, x)


def adversarial_neighbor(x: tf.Tensor,
                         grad_fn: GradFn,
                         *,
                         step_size: float,
                         norm: str = 'infinity',
                         iterations: int = 1,
                         epsilon: Optional[float] = None,
                         random_init: bool = False,
                         clip_min: Optional[float] = 0.0,
                         clip_max: Optional[float] = 1.0,
                         first_grad: Optional[tf.Tensor] = None,
                         seed: Optional[tf.Tensor] = None) -> tf.Tensor:
  """Returns the adversarial neighbor of x (no gradient flows through it).

  grad_fn(x_adv) returns the gradient of the loss to maximise at x_adv.
  first_grad, if given, is that gradient at x itself: the Trainer passes the gradient
  it already computed in its labeled-loss pass, so FGSM costs no extra backward pass.
  It is ignored under random_init, whose first step starts elsewhere.
  iterations is a Python int; steps run in a tf.while_loop so a 40-step attack
  compiles to one loop body instead of 40 unrolled copies.
  """
  if iterations < 1:
    raise ValueError(f'iterations={iterations!r}: must be >= 1')
  if random_init and epsilon is None:
    raise ValueError('random_init needs epsilon (the radius of the start ball)')
  x = tf.stop_gradient(x)

  def finish(x_adv):
    if epsilon is not None:
      x_adv = x + project(x_adv - x, norm, epsilon)
    if clip_min is not None or clip_max is not None:
      x_adv = tf.clip_by_value(
          x_adv, clip_min if clip_min is not None else x_adv.dtype.min,
          clip_max if clip_max is not None else x_adv.dtype.max)
    return x_adv

  def step(x_adv, grad):
    return finish(x_adv + step_size * direction(grad, norm))

  if random_init:
    x_adv = finish(x + random_start(x, norm, epsilon, seed))
    first_grad = None
  else:
    x_adv = x
  grad = first_grad if first_grad is not None else grad_fn(x_adv)
  x_adv = step(x_adv, tf.stop_gradient(grad))
  if iterations > 1:
    x_adv = tf.while_loop(
        lambda i, _: i < iterations,
        lambda i, xa: (i + 1, step(xa, tf.stop_gradient(grad_fn(xa)))),
        (tf.constant(1), x_adv))[1]
  return tf.stop_gradient(x_adv)

"""A small CNN split for the incremental forward pass, shared by the attack tests."""
import numpy as np
import tensorflow as tf

from components.adversarial import local_forward

SIDE = 28
# (stride, receptive field) of conv 3x3 -> max-pool 2 -> conv 3x3 [-> max-pool 2].
GEOMETRY = {False: (2, 8), True: (4, 10)}


def small_cnn(seed: int = 0, pooled: bool = False):
  """(LocalModel, logits_fn on flattened 28x28 images) of conv-pool-conv-pool-dense,
  split after the second convolution, or after the pool behind it if ``pooled``
  (as components/trainer/local_split.py splits the Trainer's CNNs)."""
  rng = np.random.default_rng(seed)
  k1 = tf.constant(rng.normal(0, 0.5, (3, 3, 1, 4)), tf.float32)
  k2 = tf.constant(rng.normal(0, 0.3, (3, 3, 4, 6)), tf.float32)
  b2 = tf.constant(rng.normal(0, 0.1, (6,)), tf.float32)
  w = tf.constant(rng.normal(0, 0.2, (5 * 5 * 6, 10)), tf.float32)

  def conv_pool_conv(images):
    h = tf.nn.relu(tf.nn.conv2d(images, k1, 1, 'VALID'))
    h = tf.nn.max_pool2d(h, 2, 2, 'VALID')
    return tf.nn.relu(tf.nn.conv2d(h, k2, 1, 'VALID') + b2)

  def pool_dense(features):
    h = tf.nn.max_pool2d(features, 2, 2, 'VALID')
    return dense(h)

  def dense(h):
    return tf.reshape(h, [tf.shape(h)[0], -1]) @ w

  if pooled:
    features_fn = lambda images: tf.nn.max_pool2d(conv_pool_conv(images), 2, 2, 'VALID')
    head_fn = dense
  else:
    features_fn, head_fn = conv_pool_conv, pool_dense
  model = local_forward.LocalModel(features_fn, head_fn, *GEOMETRY[pooled])
  return model, lambda x: head_fn(features_fn(tf.reshape(x, [-1, SIDE, SIDE, 1])))

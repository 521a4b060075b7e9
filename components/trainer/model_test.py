"""Tests of the classifier and its first convolution's custom input gradient."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from components.trainer import input_conv
from components.trainer.model import build_cnn
from components.trainer.training import precision_policy
from components.config import ConfigError, ModelConfig


def test_architecture_follows_the_config():
  cfg = ModelConfig(conv_filters=(4, 6, 8), kernel_size=3, dense_units=12, num_classes=10)
  model = build_cnn(cfg)
  convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
  assert [c.filters for c in convs] == [4, 6, 8]
  assert all(c.kernel_size == (3, 3) for c in convs)
  assert all(c.activation is keras.activations.relu for c in convs)
  pools = [l for l in model.layers if isinstance(l, keras.layers.MaxPooling2D)]
  assert len(pools) == 2 and all(p.pool_size == (2, 2) for p in pools)
  # 28 -conv-> 26 -pool-> 13 -conv-> 11 -pool-> 5 -conv-> 3: 3*3*8 features.
  assert model.get_layer('flatten').output_shape == (None, 72)
  assert model.get_layer('dense').units == 12
  logits = model(tf.zeros([2, 784]))
  assert logits.shape == (2, 10) and logits.dtype == tf.float32


def test_reference_model_has_the_tutorial_parameter_count():
  # conv 32/64/64 3x3, dense 64, 10 classes on 28x28: the NSL tutorial's CNN.
  assert build_cnn(ModelConfig()).count_params() == (
      (9 * 1 * 32 + 32) + (9 * 32 * 64 + 64) + (9 * 64 * 64 + 64) +
      (3 * 3 * 64 * 64 + 64) + (64 * 10 + 10))


def test_invalid_model_config_is_rejected():
  with pytest.raises(ConfigError, match='conv_filters'):
    build_cnn(ModelConfig(conv_filters=()))


@pytest.mark.parametrize('c_in,kernel', [(1, 3), (3, 2)])
def test_col2im_equals_the_stock_input_gradient(c_in, kernel):
  rng = np.random.default_rng(c_in)
  x = tf.constant(rng.normal(size=(2, 7, 6, c_in)), tf.float32)
  k = tf.constant(rng.normal(size=(kernel, kernel, c_in, 5)), tf.float32)
  dy = tf.constant(rng.normal(size=(2, 8 - kernel, 7 - kernel, 5)), tf.float32)
  expected = tf.compat.v1.nn.conv2d_backprop_input(x.shape, k, dy, [1, 1, 1, 1], 'VALID')
  np.testing.assert_allclose(input_conv.col2im_input_gradient(dy, k), expected,
                             rtol=1e-5, atol=1e-5)


def test_input_conv_matches_keras_conv2d_values_and_gradients():
  x = tf.random.stateless_uniform([3, 10, 10, 1], seed=[1, 2])
  fast = input_conv.InputConv2D(4, 3, activation='relu')
  stock = keras.layers.Conv2D(4, 3, activation='relu')
  fast.build(x.shape)
  stock.build(x.shape)
  stock.set_weights(fast.get_weights())
  grads = []
  for layer in (fast, stock):
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = layer(x)
      loss = tf.reduce_sum(tf.square(y))
    grads.append((y, *tape.gradient(loss, [x] + layer.trainable_variables)))
  for a, b in zip(*grads):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_input_conv_rejects_unsupported_settings():
  with pytest.raises(ValueError, match='strides=1'):
    input_conv.InputConv2D(4, 3, strides=2)


@pytest.mark.parametrize('policy,compute', [('mixed_float16', 'float16'),
                                            ('mixed_bfloat16', 'bfloat16')])
def test_mixed_precision_keeps_logits_float32(policy, compute):
  with precision_policy(policy):
    model = build_cnn(ModelConfig(conv_filters=(4,), dense_units=8))
    assert model.get_layer('conv1').compute_dtype == compute
    logits = model(tf.zeros([2, 784]))
  assert logits.dtype == tf.float32
  assert keras.mixed_precision.global_policy().name == 'float32'

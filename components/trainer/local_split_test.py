"""Tests of the classifier split: its geometry, and that it is the model (whole
images, and patches against the same features of the whole image)."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from components.adversarial import local_forward
from components.config import ModelConfig
from components.trainer import local_split
from components.trainer.model import build_cnn


@pytest.mark.parametrize('filters,dense,feature_shape,stride,receptive', [
    ((32, 64, 64), 64, (5, 5, 64), 4, 10),     # the reference CNN: after pool2
    ((8, 16), 16, (11, 11, 16), 2, 8),          # two convolutions: no pool follows
])
def test_the_split_is_the_model(filters, dense, feature_shape, stride, receptive):
  tf.keras.utils.set_random_seed(0)
  model = build_cnn(ModelConfig(conv_filters=filters, dense_units=dense))
  split = local_split.split_classifier(model)
  assert (split.feature_shape, split.stride, split.receptive_field) == (
      feature_shape, stride, receptive)
  x = np.random.default_rng(0).uniform(size=(6, 784)).astype(np.float32)
  images = x.reshape(6, 28, 28, 1)
  whole = split.features_fn(images).numpy()
  np.testing.assert_allclose(split.head_fn(whole), model(x), atol=1e-5)
  span = 2
  side = stride * (span - 1) + receptive
  patch = split.features_fn(images[:, stride:stride + side, 2 * stride:2 * stride + side])
  np.testing.assert_allclose(patch, whole[:, 1:1 + span, 2:2 + span], atol=1e-6)
  local = split.local_model
  assert float(local_forward.max_disagreement(local, model, tf.constant(images))) < 1e-5


def test_no_split_for_a_model_it_cannot_cut():
  one_conv = build_cnn(ModelConfig(conv_filters=(8,), dense_units=16))
  assert local_split.split_classifier(one_conv) is None
  inputs = keras.Input(shape=(784,))
  image = keras.layers.Reshape((28, 28, 1))(inputs)
  a = keras.layers.Conv2D(4, 3)(image)
  b = keras.layers.Conv2D(4, 3)(a)
  skip = keras.layers.Add()([keras.layers.Cropping2D(1)(a), b])   # not a chain
  out = keras.layers.Dense(10)(keras.layers.Flatten()(skip))
  assert local_split.split_classifier(keras.Model(inputs, out)) is None
  strided = keras.Sequential([keras.Input(shape=(784,)), keras.layers.Reshape((28, 28, 1)),
                              keras.layers.Conv2D(4, 3, strides=2),
                              keras.layers.Conv2D(4, 3), keras.layers.Flatten(),
                              keras.layers.Dense(10)])
  assert local_split.split_classifier(strided) is None

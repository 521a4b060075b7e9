"""Tests that the exported SavedModel honours the signature contract."""
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft

from components import serving_contract as contract
from components.trainer import export
from components.trainer import testing_utils
from components.trainer.model import build_cnn
from components.config import ModelConfig


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
  fixture = testing_utils.shared_transform_output()
  tf.keras.utils.set_random_seed(0)
  model = build_cnn(ModelConfig(conv_filters=(4, 8), dense_units=16))
  export_dir = str(tmp_path_factory.mktemp('serving'))
  export.export_serving_model(model, tft.TFTransformOutput(fixture.transform_dir),
                              export_dir)
  return fixture, model, tf.saved_model.load(export_dir)


def test_has_the_serving_and_split_signatures(exported):
  _, _, loaded = exported
  assert set(loaded.signatures) == {
      contract.SERVING_DEFAULT, contract.SERVING_IMAGES, contract.NORMALIZED_LOGITS,
      contract.LOCAL_FEATURES, contract.FEATURES_LOGITS, contract.LOCAL_GEOMETRY}
  outputs = loaded.signatures[contract.NORMALIZED_LOGITS].structured_outputs
  assert outputs[contract.LOGITS].dtype == tf.float32
  assert outputs[contract.LOGITS].shape.as_list() == [None, 10]


def test_signatures_agree_with_each_other_and_with_the_model(exported):
  fixture, model, loaded = exported
  images = fixture.eval_images[:8]
  labels = fixture.eval_labels[:8]
  by_examples = loaded.signatures[contract.SERVING_DEFAULT](
      examples=tf.constant(testing_utils.raw_examples(images, labels)))[contract.PROBABILITIES]
  by_images = loaded.signatures[contract.SERVING_IMAGES](
      images=tf.constant(images))[contract.PROBABILITIES]
  normalized = tf.constant(images.reshape(8, -1) / 255.0, tf.float32)
  logits = loaded.signatures[contract.NORMALIZED_LOGITS](image_xf=normalized)[contract.LOGITS]
  np.testing.assert_allclose(by_examples, by_images, atol=1e-6)
  np.testing.assert_allclose(by_images, tf.nn.softmax(logits), atol=1e-6)
  np.testing.assert_allclose(logits, model(normalized), atol=1e-5)
  np.testing.assert_allclose(np.sum(by_images, axis=1), 1.0, atol=1e-5)


def test_normalized_logits_are_differentiable_with_the_model_gradient(exported):
  fixture, model, loaded = exported
  x = tf.constant(fixture.eval_images[:4].reshape(4, -1) / 255.0, tf.float32)
  grads = []
  for fn in (lambda v: loaded.signatures[contract.NORMALIZED_LOGITS](image_xf=v)[
      contract.LOGITS], model):
    with tf.GradientTape() as tape:
      tape.watch(x)
      loss = tf.reduce_sum(tf.nn.log_softmax(fn(x))[:, 3])
    grads.append(tape.gradient(loss, x))
  assert grads[0] is not None and float(tf.reduce_max(tf.abs(grads[0]))) > 0
  np.testing.assert_allclose(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_the_split_signatures_compose_to_the_logits(exported):
  fixture, _, loaded = exported
  geometry = loaded.signatures[contract.LOCAL_GEOMETRY]()
  assert (int(geometry[contract.STRIDE]), int(geometry[contract.RECEPTIVE_FIELD])) == (2, 8)
  images = tf.constant(fixture.eval_images[:4].reshape(4, 28, 28, 1) / 255.0, tf.float32)
  features_map = loaded.signatures[contract.LOCAL_FEATURES](
      image_patch=images)[contract.FEATURES]
  assert features_map.shape == (4, 11, 11, 8)
  logits = loaded.signatures[contract.FEATURES_LOGITS](
      features=features_map)[contract.LOGITS]
  expected = loaded.signatures[contract.NORMALIZED_LOGITS](
      image_xf=tf.reshape(images, [4, -1]))[contract.LOGITS]
  np.testing.assert_allclose(logits, expected, atol=1e-5)

"""SavedModel export with the signatures the Evaluator and Pusher rely on.

* ``serving_default``: serialized raw tf.Examples -> tf.Transform graph -> softmax.
* ``serving_images``: uint8 [N, 28, 28] raw pixels -> the same graph -> softmax.
* ``normalized_logits``: float32 [N, 784] in [0, 1] (``image_xf``) -> logits; the
  robustness Evaluator differentiates through this one.
* ``local_features``, ``features_logits`` and ``local_geometry``: the same classifier
  split where its features are local (local_split.py), which the Evaluator's Square
  attack uses to recompute only what a small window changes.

Both serving signatures run the Transform graph itself (embedded through
``TFTransformOutput.transform_features_layer``), so serving can never drift from
the preprocessing the model was trained on.
"""
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

from components import serving_contract as contract
from components.serving_contract import (EXAMPLES_INPUT, IMAGES_INPUT, LOGITS,
                                         NORMALIZED_INPUT, NORMALIZED_LOGITS,
                                         PROBABILITIES, SERVING_DEFAULT,
                                         SERVING_IMAGES)
from components.trainer import local_split
from components.transform import features


def export_serving_model(classifier: keras.Model,
                         transform_output: tft.TFTransformOutput,
                         export_dir: str) -> None:
  """Saves ``classifier`` (normalized pixels -> logits) with its signatures."""
  # Split first: the Transform layer attached below joins classifier.layers.
  split = split_signatures(classifier)
  # Attached to the model so the SavedModel tracks the Transform graph's assets.
  classifier.tft_layer = transform_output.transform_features_layer()
  raw_spec = dict(transform_output.raw_feature_spec())
  raw_spec.pop(features.LABEL_KEY, None)
  image_spec = raw_spec.get(features.IMAGE_KEY)
  if not isinstance(image_spec, tf.io.FixedLenFeature):
    raise ValueError(f'raw feature {features.IMAGE_KEY!r} must be a FixedLenFeature of '
                     f'{features.NUM_PIXELS} int64 pixels (a fixed-shape schema); '
                     f'the Transform output has {image_spec!r}')
  side = features.IMAGE_SIZE

  def probabilities(raw_features):
    transformed = classifier.tft_layer(raw_features)
    logits = classifier(transformed[features.IMAGE_XF_KEY], training=False)
    return {PROBABILITIES: tf.nn.softmax(tf.cast(logits, tf.float32))}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)])
  def serve_examples(examples):
    return probabilities(tf.io.parse_example(examples, raw_spec))

  @tf.function(input_signature=[
      tf.TensorSpec([None, side, side], tf.uint8, name=IMAGES_INPUT)])
  def serve_images(images):
    pixels = tf.cast(tf.reshape(images, [-1, side * side]), tf.int64)
    return probabilities({features.IMAGE_KEY: pixels})

  @tf.function(input_signature=[
      tf.TensorSpec([None, features.NUM_PIXELS], tf.float32, name=NORMALIZED_INPUT)])
  def normalized_logits(image_xf):
    return {LOGITS: tf.cast(classifier(image_xf, training=False), tf.float32)}

  signatures = {
      SERVING_DEFAULT: serve_examples.get_concrete_function(),
      SERVING_IMAGES: serve_images.get_concrete_function(),
      NORMALIZED_LOGITS: normalized_logits.get_concrete_function(),
      **split,
  }
  classifier.save(export_dir, save_format='tf', signatures=signatures,
                  options=tf.saved_model.SaveOptions(experimental_custom_gradients=True))


def split_signatures(classifier: keras.Model) -> dict:
  """The split's three signatures (name -> concrete function), or none for a model
  local_split cannot split. Call it before attaching non-model layers."""
  split = local_split.split_classifier(classifier)
  if split is None:
    return {}

  @tf.function(input_signature=[
      tf.TensorSpec([None, None, None, 1], tf.float32, name=contract.PATCH_INPUT)])
  def local_features(image_patch):
    return {contract.FEATURES: split.features_fn(image_patch)}

  @tf.function(input_signature=[
      tf.TensorSpec([None, *split.feature_shape], tf.float32, name=contract.FEATURES)])
  def features_logits(features):  # pylint: disable=redefined-outer-name
    return {LOGITS: split.head_fn(features)}

  @tf.function(input_signature=[])
  def local_geometry():
    return {contract.STRIDE: tf.constant(split.stride, tf.int32),
            contract.RECEPTIVE_FIELD: tf.constant(split.receptive_field, tf.int32)}

  return {contract.LOCAL_FEATURES: local_features.get_concrete_function(),
          contract.FEATURES_LOGITS: features_logits.get_concrete_function(),
          contract.LOCAL_GEOMETRY: local_geometry.get_concrete_function()}

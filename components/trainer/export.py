"""SavedModel export with the three signatures the Evaluator and Pusher rely on.

* ``serving_default``: serialized raw tf.Examples -> tf.Transform graph -> softmax.
* ``serving_images``: uint8 [N, 28, 28] raw pixels -> the same graph -> softmax.
* ``normalized_logits``: float32 [N, 784] in [0, 1] (``image_xf``) -> logits; the
  robustness Evaluator differentiates through this one.

Both serving signatures run the Transform graph itself (embedded through
``TFTransformOutput.transform_features_layer``), so serving can never drift from
the preprocessing the model was trained on.
"""
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

from components.serving_contract import (EXAMPLES_INPUT, IMAGES_INPUT, LOGITS,
                                         NORMALIZED_INPUT, NORMALIZED_LOGITS,
                                         PROBABILITIES, SERVING_DEFAULT,
                                         SERVING_IMAGES)
from components.transform import features


def export_serving_model(classifier: keras.Model,
                         transform_output: tft.TFTransformOutput,
                         export_dir: str) -> None:
  """Saves ``classifier`` (normalized pixels -> logits) with the three signatures."""
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
  }
  classifier.save(export_dir, save_format='tf', signatures=signatures,
                  options=tf.saved_model.SaveOptions(experimental_custom_gradients=True))

"""tf.Transform preprocessing_fn: pixels 0-255 -> float32 in [0, 1].

The same graph is applied at training time (by Transform) and at serving time (the
exported model embeds it), so a served model takes raw pixels.
"""
import tensorflow as tf

from components.transform import features


def preprocessing_fn(inputs):
  image = tf.cast(inputs[features.IMAGE_KEY], tf.float32) / features.MAX_PIXEL
  return {
      features.IMAGE_XF_KEY: tf.clip_by_value(image, 0.0, 1.0),
      features.LABEL_KEY: inputs[features.LABEL_KEY],
  }

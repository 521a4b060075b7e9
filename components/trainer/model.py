"""The classifier: the reference tutorial's CNN, built from ModelConfig.

It maps normalized pixels (float32 [batch, image_size**2] in [0, 1], Transform's
``image_xf``) to logits, so the adversary perturbs exactly the space the
robustness Evaluator attacks through the ``normalized_logits`` signature.
"""
import tensorflow as tf
import tf_keras as keras

from components.trainer.input_conv import InputConv2D
from components.config import ModelConfig


def build_cnn(config: ModelConfig, name: str = 'cnn') -> keras.Model:
  """conv(ReLU) [2x2 max-pool conv(ReLU)]... -> flatten -> dense(ReLU) -> logits.

  Pooling sits between convolutions, as in the tutorial (none after the last).
  Under a mixed global policy (TrainConfig.precision) the layers compute in float16
  or bfloat16 and the final cast keeps the logits float32, so losses and softmax
  stay accurate.
  """
  config.validate()
  side = config.image_size
  inputs = keras.Input(shape=(side * side,), dtype=tf.float32, name='image_xf')
  x = keras.layers.Reshape((side, side, 1), name='to_image')(inputs)
  for i, filters in enumerate(config.conv_filters):
    if i > 0:
      x = keras.layers.MaxPooling2D(config.pool_size, name=f'pool{i}')(x)
    # The first convolution's input gradient drives every adversarial step.
    conv = InputConv2D if i == 0 else keras.layers.Conv2D
    x = conv(filters, config.kernel_size, activation='relu', name=f'conv{i + 1}')(x)
  x = keras.layers.Flatten(name='flatten')(x)
  x = keras.layers.Dense(config.dense_units, activation='relu', name='dense')(x)
  x = keras.layers.Dense(config.num_classes, name='dense_logits')(x)
  logits = keras.layers.Activation('linear', dtype=tf.float32, name='logits')(x)
  return keras.Model(inputs, logits, name=name)

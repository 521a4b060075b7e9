"""The classifier split for Square's incremental forward pass (the model's side of
components/adversarial/local_forward.py): local layers up to the second convolution
and the max-pool after it, and the head after those.

The second convolution is where build_cnn spends ~80% of a forward pass's
multiply-adds (conv2 of the reference CNN: 2.23 of 2.79 M), and its feature map is
still local: feature (i, j) reads a stride*i..stride*i + receptive_field pixel
square. The pool after it joins the local part because the attack caches the
features and pastes a patch into them every query: the pooled map is 4x smaller to
copy (2026-11-26: pasting into conv2's map cost as much as the convolutions saved). The geometry is computed from the layers themselves, so it cannot drift from
the model. A model that is not a plain chain of VALID stride-1 convolutions and
non-overlapping max-pools gets no split, and attacks fall back to the full pass.
"""
from typing import Callable, List, NamedTuple, Optional

import tensorflow as tf
import tf_keras as keras

from components.adversarial import local_forward


class Split(NamedTuple):
  features_fn: Callable[[tf.Tensor], tf.Tensor]   # [n, h, w, 1] -> [n, h', w', C]
  head_fn: Callable[[tf.Tensor], tf.Tensor]       # [n, F, F, C] -> float32 logits
  stride: int
  receptive_field: int
  feature_shape: tuple                            # (F, F, C) of a whole image

  @property
  def local_model(self) -> local_forward.LocalModel:
    """The split as the attacks take it (in-process, without the export)."""
    return local_forward.LocalModel(self.features_fn, self.head_fn, self.stride,
                                    self.receptive_field)


def _chain(model: keras.Model) -> Optional[List[keras.layers.Layer]]:
  """The model's layers in order if each one reads exactly the previous one's output."""
  layers = [l for l in model.layers if not isinstance(l, keras.layers.InputLayer)]
  for prev, layer in zip(layers, layers[1:]):
    if len(layer.inbound_nodes) != 1 or layer.input is not prev.output:
      return None
  return layers


def _apply(layers, x):
  for layer in layers:
    x = layer(x, training=False)
  return tf.cast(x, tf.float32)


def split_classifier(model: keras.Model) -> Optional[Split]:
  """The Split of a build_cnn classifier (input Reshape to [side, side, 1] first), or
  None when the model is not such a chain."""
  layers = _chain(model)
  if not layers or not isinstance(layers[0], keras.layers.Reshape):
    return None
  rest = layers[1:]  # the split works on images: the Reshape only makes them
  stride, receptive, convs, end = 1, 1, 0, None
  for k, layer in enumerate(rest):
    if isinstance(layer, keras.layers.Conv2D):
      if convs == 2:
        break
      k_h, k_w = layer.kernel_size
      if (k_h != k_w or tuple(layer.strides) != (1, 1) or layer.padding != 'valid' or
          tuple(layer.dilation_rate) != (1, 1) or layer.data_format != 'channels_last'):
        return None
      receptive += (k_h - 1) * stride
      convs += 1
      end = k + 1 if convs == 2 else None
    elif isinstance(layer, keras.layers.MaxPooling2D):
      pool = layer.pool_size[0]
      if (tuple(layer.pool_size) != (pool, pool) or tuple(layer.strides) != (pool, pool)
          or layer.padding != 'valid' or layer.data_format != 'channels_last'):
        return None
      receptive += (pool - 1) * stride
      stride *= pool
      if convs == 2:   # the pool right after the second convolution joins it
        end = k + 1
        break
    else:
      break
  if end is None:
    return None
  local, head = rest[:end], rest[end:]
  feature_shape = tuple(int(d) for d in local[-1].output.shape[1:])
  return Split(features_fn=lambda x: _apply(local, x),
               head_fn=lambda f: _apply(head, f),
               stride=stride, receptive_field=receptive, feature_shape=feature_shape)

"""Square's incremental forward pass: recompute only what a small window changes.

Late in a Square run the window is 1-4 pixels wide, yet a full forward pass
recomputes every convolution. In a CNN of VALID stride-1 convolutions and max-pools,
the feature map after the first layers is local: feature (i, j) reads only the input
pixels [stride*i, stride*i + receptive_field) along each axis. So a query can

1. cut out the input patch under the q x q features the window can touch,
2. run the local layers on that patch (q x q features),
3. paste them into the cached features of the current best point,
4. run only the head (the remaining, cheaper layers).

The result equals the full forward pass up to float rounding, since every cached
feature is computed from the current pixels (there is no drift to accumulate).
Hand-written because no maintained library does incremental inference of a TF model;
the model's side of the contract (the split and its geometry) is exported by the
Trainer (components/trainer/local_split.py).
"""
from typing import Callable, NamedTuple, Tuple

import tensorflow as tf


class LocalModel(NamedTuple):
  """A classifier split where its feature map is still local.

  features_fn:     float32 [n, h, w, c] pixels -> float32 [n, h', w', C] with
                   h' = (h - receptive_field) // stride + 1; any h, w >= receptive_field
                   whose (h - receptive_field) is a multiple of stride.
  head_fn:         float32 [n, F, F, C] features of a whole image -> logits.
  stride:          pixels between neighbouring features (the product of pool sizes).
  receptive_field: pixels one feature reads along each axis.
  """
  features_fn: Callable[[tf.Tensor], tf.Tensor]
  head_fn: Callable[[tf.Tensor], tf.Tensor]
  stride: int
  receptive_field: int


def feature_side(image_side: int, stride: int, receptive_field: int) -> int:
  return (image_side - receptive_field) // stride + 1


def touched_features(window: int, image_side: int, stride: int,
                     receptive_field: int) -> int:
  """The most feature rows a window of ``window`` pixels touches, over all positions.

  Feature row j reads pixel rows [stride*j, stride*j + receptive_field), so a window
  at rows [r, r + window) touches j in [ceil((r - R + 1) / s), floor((r + window - 1)
  / s)], clipped to the map. Exhaustive over positions: exact and cheap (Python ints).
  """
  side = feature_side(image_side, stride, receptive_field)
  most = 0
  for r in range(image_side - window + 1):
    first = max(0, -(-(r - receptive_field + 1) // stride))
    last = min(side - 1, (r + window - 1) // stride)
    most = max(most, last - first + 1)
  return most


def first_feature(pixel: tf.Tensor, span: int, side: int, stride: int,
                  receptive_field: int) -> tf.Tensor:
  """Per example, the first of ``span`` consecutive feature rows that cover every
  feature a window starting at pixel row ``pixel`` touches (int32 [n])."""
  lowest = -tf.math.floordiv(-(pixel - receptive_field + 1), stride)  # ceil division
  return tf.minimum(tf.maximum(lowest, 0), side - span)


def crop(images: tf.Tensor, top: tf.Tensor, left: tf.Tensor, size: int) -> tf.Tensor:
  """Per-example ``size`` x ``size`` crops of [n, H, W, C] at (top, left) (int32 [n]).

  One gather of whole pixels (C values each) from the flattened batch. Two
  batch_dims gathers (rows, then columns) copied each row band first and took ~1.6x
  the gather time in Square's loop (bench/README.md, 2026-11-26 night).
  """
  shape = tf.shape(images)
  n, height, width = shape[0], shape[1], shape[2]
  grid = tf.range(size)
  corner = (tf.range(n) * height + top) * width + left         # [n], flat pixel index
  offsets = grid[:, tf.newaxis] * width + grid[tf.newaxis, :]  # [size, size]
  index = corner[:, tf.newaxis, tf.newaxis] + offsets
  channels = images.shape[-1] if images.shape[-1] is not None else shape[3]
  pixels = tf.reshape(images, tf.stack([-1, channels]))
  return tf.gather(pixels, index)


def paste(features: tf.Tensor, patch: tf.Tensor, top: tf.Tensor,
          left: tf.Tensor) -> tf.Tensor:
  """features [n, F, F, C] with patch [n, q, q, C] written at (top, left) per example."""
  n = tf.shape(patch)[0]
  q = patch.shape[1]
  grid = tf.range(q)
  b = tf.broadcast_to(tf.range(n)[:, tf.newaxis, tf.newaxis], [n, q, q])
  r = tf.broadcast_to(top[:, tf.newaxis, tf.newaxis] + grid[:, tf.newaxis], [n, q, q])
  c = tf.broadcast_to(left[:, tf.newaxis, tf.newaxis] + grid[tf.newaxis, :], [n, q, q])
  return tf.tensor_scatter_nd_update(features, tf.stack([b, r, c], axis=-1), patch)


class WindowedQuery(NamedTuple):
  """logits of the candidates; patch [n, q, q, C], their features under the window,
  to be pasted at feature (top, left) if a candidate is kept."""
  logits: tf.Tensor
  patch: tf.Tensor
  top: tf.Tensor
  left: tf.Tensor


def windowed_query(model: LocalModel, candidate: tf.Tensor, features: tf.Tensor,
                   row: tf.Tensor, col: tf.Tensor, span: int) -> WindowedQuery:
  """Logits of candidate images that differ from the point whose features are
  ``features`` only inside windows starting at pixel (row, col) (int32 [n]) and
  touching at most ``span`` feature rows and columns.

  candidate: [n, H, W, C] images; features: [n, F, F, C'] of the unchanged point.
  """
  side = features.shape[1]
  s, rf = model.stride, model.receptive_field
  top = first_feature(row, span, side, s, rf)
  left = first_feature(col, span, side, s, rf)
  pixels = crop(candidate, s * top, s * left, s * (span - 1) + rf)
  patch = tf.cast(model.features_fn(pixels), features.dtype)
  return WindowedQuery(model.head_fn(paste(features, patch, top, left)), patch, top, left)


def keep(features: tf.Tensor, query: WindowedQuery, better: tf.Tensor) -> tf.Tensor:
  """features with the query's patch pasted where ``better`` (bool [n]): only the
  q x q window is written, not the whole map."""
  span = query.patch.shape[1]
  old = crop(features, query.top, query.left, span)
  chosen = tf.where(tf.reshape(better, [-1, 1, 1, 1]), query.patch, old)
  return paste(features, chosen, query.top, query.left)


def full_logits(model: LocalModel, images: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
  """(logits, features) of whole images [n, H, W, C] through the split model."""
  features = model.features_fn(images)
  return model.head_fn(features), features


def max_disagreement(model: LocalModel, logits_fn: Callable[[tf.Tensor], tf.Tensor],
                     images: tf.Tensor) -> tf.Tensor:
  """Largest |logit| difference between the split model and logits_fn (which takes
  the images flattened) on ``images`` [n, H, W, C]: the check that the split is the
  model before an attack trusts it."""
  split, _ = full_logits(model, images)
  whole = logits_fn(tf.reshape(images, [tf.shape(images)[0], -1]))
  return tf.reduce_max(tf.abs(tf.cast(split, tf.float32) - tf.cast(whole, tf.float32)))

"""Tests of the incremental forward pass on a small CNN written with tf.nn ops: the
geometry against which features really change, crop and paste against NumPy, and
the differential check that a windowed query equals the full forward pass."""
import numpy as np
import pytest
import tensorflow as tf

from components.adversarial import local_forward
from components.adversarial.testing import GEOMETRY, SIDE
from components.adversarial.testing import small_cnn as _cnn

STRIDE, RECEPTIVE = GEOMETRY[False]


def test_feature_side_and_spans_of_the_reference_geometry():
  assert local_forward.feature_side(SIDE, STRIDE, RECEPTIVE) == 11
  # By hand: a 1-pixel window touches conv2 rows j with 2j <= r <= 2j + 7: up to 4.
  spans = [local_forward.touched_features(w, SIDE, STRIDE, RECEPTIVE)
           for w in (1, 2, 3, 4, 6, 9, 28)]
  assert spans == [4, 5, 5, 6, 7, 8, 11]
  # After the second pool (the Trainer's split): rows j with 4j <= r <= 4j + 9.
  assert local_forward.feature_side(SIDE, *GEOMETRY[True]) == 5
  assert [local_forward.touched_features(w, SIDE, *GEOMETRY[True])
          for w in (1, 3, 4, 6, 9)] == [3, 3, 4, 4, 5]


def test_every_feature_a_window_changes_lies_in_the_span_it_is_given():
  model, _ = _cnn()
  rng = np.random.default_rng(1)
  base = rng.uniform(size=(1, SIDE, SIDE, 1)).astype(np.float32)
  before = model.features_fn(base).numpy()[0]
  seen = 0
  for window in (1, 2, 3, 4, 6):
    span = local_forward.touched_features(window, SIDE, STRIDE, RECEPTIVE)
    for row, col in [(0, 0), (SIDE - window, SIDE - window), (13, 6), (7, 20)]:
      moved = base.copy()
      moved[0, row:row + window, col:col + window] = 1 - moved[0, row:row + window,
                                                               col:col + window]
      changed = np.any(model.features_fn(moved).numpy()[0] != before, axis=-1)
      top = int(local_forward.first_feature(tf.constant([row]), span, 11, STRIDE,
                                            RECEPTIVE)[0])
      left = int(local_forward.first_feature(tf.constant([col]), span, 11, STRIDE,
                                             RECEPTIVE)[0])
      inside = np.zeros_like(changed)
      inside[top:top + span, left:left + span] = True
      assert not np.any(changed & ~inside), (window, row, col)
      seen += int(changed.any())  # ReLU and max-pool may hide a change, not all
  assert seen >= 15


def test_crop_and_paste_match_numpy():
  rng = np.random.default_rng(2)
  images = rng.normal(size=(3, 9, 9, 2)).astype(np.float32)
  top, left = np.array([0, 4, 6], np.int32), np.array([5, 0, 6], np.int32)
  crops = local_forward.crop(tf.constant(images), tf.constant(top), tf.constant(left), 3)
  patch = rng.normal(size=(3, 3, 3, 2)).astype(np.float32)
  pasted = local_forward.paste(tf.constant(images), tf.constant(patch),
                               tf.constant(top), tf.constant(left)).numpy()
  for i in range(3):
    np.testing.assert_array_equal(crops[i], images[i, top[i]:top[i] + 3,
                                                   left[i]:left[i] + 3])
    expected = images[i].copy()
    expected[top[i]:top[i] + 3, left[i]:left[i] + 3] = patch[i]
    np.testing.assert_array_equal(pasted[i], expected)


@pytest.mark.parametrize('pooled', [False, True])
@pytest.mark.parametrize('window', [1, 2, 3, 4, 6])
def test_a_windowed_query_equals_the_full_forward_pass(window, pooled):
  model, logits_fn = _cnn(pooled=pooled)
  rng = np.random.default_rng(window)
  n = 16
  best = rng.uniform(size=(n, SIDE, SIDE, 1)).astype(np.float32)
  row = rng.integers(0, SIDE - window + 1, n).astype(np.int32)
  col = rng.integers(0, SIDE - window + 1, n).astype(np.int32)
  row[:2], col[:2] = 0, SIDE - window       # the clamped corners
  candidate = best.copy()
  for i in range(n):
    candidate[i, row[i]:row[i] + window, col[i]:col[i] + window] = rng.uniform(
        size=(window, window, 1))
  span = local_forward.touched_features(window, SIDE, model.stride,
                                        model.receptive_field)
  best_features = model.features_fn(best)
  query = local_forward.windowed_query(model, tf.constant(candidate), best_features,
                                       tf.constant(row), tf.constant(col), span)
  np.testing.assert_allclose(query.logits, logits_fn(candidate.reshape(n, -1)),
                             atol=1e-5)
  # Kept where better, the patch makes the cached features the candidate's own.
  better = np.arange(n) % 2 == 0
  kept = local_forward.keep(best_features, query, tf.constant(better)).numpy()
  np.testing.assert_allclose(kept[better], model.features_fn(candidate[better]),
                             atol=1e-5)
  np.testing.assert_array_equal(kept[~better], best_features.numpy()[~better])


def test_max_disagreement_is_zero_for_the_model_and_not_for_another():
  model, logits_fn = _cnn()
  _, other = _cnn(seed=1)
  images = tf.constant(np.random.default_rng(3).uniform(size=(4, SIDE, SIDE, 1)),
                       tf.float32)
  assert float(local_forward.max_disagreement(model, logits_fn, images)) < 1e-5
  assert float(local_forward.max_disagreement(model, other, images)) > 1e-2

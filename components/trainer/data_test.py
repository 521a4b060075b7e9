"""Tests of the in-memory input pipeline on a real tf.Transform output."""
import numpy as np
import pytest
import tensorflow_transform as tft

from components.trainer import data
from components.transform import transformed_io
from components.trainer import testing_utils


@pytest.fixture(scope='module')
def fixture():
  return testing_utils.shared_transform_output()


def test_reads_transformed_records_as_normalized_pixels(fixture):
  spec = tft.TFTransformOutput(fixture.transform_dir).transformed_feature_spec()
  images, labels = transformed_io.read_transformed([fixture.train_pattern], spec)
  assert images.shape == (64, 784) and images.dtype == np.float32
  assert labels.dtype == np.int64
  assert images.min() >= 0.0 and images.max() <= 1.0
  # Order within the files is not part of the contract: compare as sets of rows,
  # each row mapped back to its 0-255 pixels.
  pixels = np.round(images * 255).astype(np.int64)
  np.testing.assert_allclose(pixels / 255.0, images, atol=1e-6)
  got = sorted(zip(labels.tolist(), map(tuple, pixels.tolist())))
  want = sorted(zip(fixture.train_labels.tolist(),
                    map(tuple, fixture.train_images.reshape(64, -1).tolist())))
  assert got == want


def test_missing_files_name_the_pattern(tmp_path):
  pattern = str(tmp_path / 'Split-train' / '*')
  with pytest.raises(FileNotFoundError, match='Split-train'):
    transformed_io.read_transformed([pattern], {})


def test_holdout_is_a_seeded_disjoint_split():
  images = np.arange(20, dtype=np.float32).reshape(10, 2)
  labels = np.arange(10)
  (train_x, train_y), (held_x, held_y) = data.split_holdout(images, labels, 3, seed=1)
  assert len(held_y) == 3 and len(train_y) == 7
  assert sorted(np.concatenate([train_y, held_y]).tolist()) == list(range(10))
  np.testing.assert_array_equal(held_x[:, 0], held_y * 2)
  again = data.split_holdout(images, labels, 3, seed=1)[1][1]
  np.testing.assert_array_equal(again, held_y)
  with pytest.raises(ValueError, match='robust_eval_examples=10'):
    data.split_holdout(images, labels, 10, seed=1)


def test_training_dataset_covers_every_example_once_per_epoch_and_reshuffles():
  images = np.arange(10, dtype=np.float32).reshape(10, 1).repeat(3, axis=1)
  labels = np.arange(10, dtype=np.int64)
  ds = data.training_dataset(images, labels, batch_size=4, seed=0, shuffle_buffer=100)
  epochs = [[(x.numpy(), y.numpy()) for x, y in ds] for _ in range(2)]
  for batches in epochs:
    assert [len(y) for _, y in batches] == [4, 4, 2]
    order = np.concatenate([y for _, y in batches])
    assert sorted(order.tolist()) == list(range(10))
    for x, y in batches:
      np.testing.assert_array_equal(x[:, 0], y)   # images stay with their labels
  first, second = (np.concatenate([y for _, y in b]) for b in epochs)
  assert not np.array_equal(first, second)
  same_seed = data.training_dataset(images, labels, batch_size=4, seed=0, shuffle_buffer=100)
  np.testing.assert_array_equal(np.concatenate([y for _, y in same_seed]), first)


def test_global_batch_scales_with_replicas():
  assert data.global_batch_size(32, 1) == 32
  assert data.global_batch_size(32, 4) == 128

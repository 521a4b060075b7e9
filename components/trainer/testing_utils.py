"""Test fixtures shared by Trainer tests (and reusable by the pipeline's tests):
learnable generated MNIST-like data and a real tf.Transform output built from it.

The Transform output is produced by tensorflow_transform.beam with the project's
preprocessing_fn, exactly like TFX Transform does, and the transformed examples are
written as gzip TFRecords under Split-train / Split-eval, the layout TFX gives the
Trainer.
"""
import dataclasses
import os
import tempfile
from typing import Dict, List, Tuple

import numpy as np
import tensorflow as tf

from components.mnist_example_gen import testing as fake_mnist
from components.transform import features

TRAIN_SPLIT = 'Split-train'
EVAL_SPLIT = 'Split-eval'


def generated_images(count: int, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
  """(uint8 [count, 28, 28], int64 [count]): the project's one fake-MNIST generator
  (components/mnist_example_gen/testing.fake_digits), labels as the Trainer reads
  them."""
  images, labels = fake_mnist.fake_digits(count, seed)
  return images, labels.astype(np.int64)


def raw_examples(images: np.ndarray, labels: np.ndarray) -> List[bytes]:
  """Serialized raw tf.Examples in the ingestion format (784 int64 pixels, label)."""
  result = []
  for image, label in zip(images, labels):
    example = tf.train.Example(features=tf.train.Features(feature={
        features.IMAGE_KEY: tf.train.Feature(int64_list=tf.train.Int64List(
            value=image.reshape(-1).astype(np.int64))),
        features.LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(
            value=[int(label)])),
    }))
    result.append(example.SerializeToString())
  return result


def raw_feature_spec() -> Dict[str, tf.io.FixedLenFeature]:
  return {
      features.IMAGE_KEY: tf.io.FixedLenFeature([features.NUM_PIXELS], tf.int64),
      features.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
  }


@dataclasses.dataclass(frozen=True)
class TransformFixture:
  transform_dir: str          # tft.TFTransformOutput directory
  train_pattern: str          # file pattern of transformed train examples
  eval_pattern: str
  train_images: np.ndarray    # the raw uint8 images and labels written
  train_labels: np.ndarray
  eval_images: np.ndarray
  eval_labels: np.ndarray


def build_transform_output(root: str, train_count: int = 64, eval_count: int = 32,
                           seed: int = 0) -> TransformFixture:
  """Runs AnalyzeAndTransformDataset + WriteTransformFn on generated examples."""
  # Imported here: Beam and tf.Transform take seconds to import.
  import apache_beam as beam
  import tensorflow_transform as tft
  import tensorflow_transform.beam as tft_beam
  from tensorflow_transform.tf_metadata import dataset_metadata
  from tensorflow_transform.tf_metadata import schema_utils
  from components.transform.preprocessing import preprocessing_fn

  images, labels = generated_images(train_count + eval_count, seed)
  splits = {TRAIN_SPLIT: (images[:train_count], labels[:train_count]),
            EVAL_SPLIT: (images[train_count:], labels[train_count:])}
  instances = {
      name: [{features.IMAGE_KEY: im.reshape(-1).astype(np.int64),
              features.LABEL_KEY: np.int64(lb)} for im, lb in zip(*arrays)]
      for name, arrays in splits.items()}
  metadata = dataset_metadata.DatasetMetadata(
      schema_utils.schema_from_feature_spec(raw_feature_spec()))
  transform_dir = os.path.join(root, 'transform_graph')
  examples_dir = os.path.join(root, 'transformed_examples')

  with beam.Pipeline() as pipeline, tft_beam.Context(
      temp_dir=os.path.join(root, 'tft_tmp'), force_tf_compat_v1=False):
    train = pipeline | 'CreateTrain' >> beam.Create(instances[TRAIN_SPLIT])
    evals = pipeline | 'CreateEval' >> beam.Create(instances[EVAL_SPLIT])
    (train_xf, train_md), transform_fn = (
        (train, metadata) | tft_beam.AnalyzeAndTransformDataset(preprocessing_fn))
    eval_xf, _ = (((evals, metadata), transform_fn) | tft_beam.TransformDataset())
    _ = transform_fn | tft_beam.WriteTransformFn(transform_dir)
    # TFX Transform also records the raw schema; serving parses raw examples by it.
    _ = metadata | tft_beam.WriteMetadata(
        os.path.join(transform_dir, tft.TFTransformOutput.RAW_METADATA_DIR), pipeline)
    coder = tft.coders.ExampleProtoCoder(train_md.schema)
    for name, transformed in ((TRAIN_SPLIT, train_xf), (EVAL_SPLIT, eval_xf)):
      _ = (transformed
           | f'Encode{name}' >> beam.Map(coder.encode)
           | f'Write{name}' >> beam.io.WriteToTFRecord(
               os.path.join(examples_dir, name, 'transformed_examples'),
               file_name_suffix='.gz'))

  return TransformFixture(
      transform_dir=transform_dir,
      train_pattern=os.path.join(examples_dir, TRAIN_SPLIT, '*'),
      eval_pattern=os.path.join(examples_dir, EVAL_SPLIT, '*'),
      train_images=splits[TRAIN_SPLIT][0], train_labels=splits[TRAIN_SPLIT][1],
      eval_images=splits[EVAL_SPLIT][0], eval_labels=splits[EVAL_SPLIT][1])


_CACHED: Dict[Tuple[int, int, int], TransformFixture] = {}


def shared_transform_output(train_count: int = 64, eval_count: int = 32,
                            seed: int = 0) -> TransformFixture:
  """build_transform_output, run once per process (Beam takes several seconds) in a
  temp dir that lives until the process exits. Treat the files as read-only."""
  key = (train_count, eval_count, seed)
  if key not in _CACHED:
    root = tempfile.mkdtemp(prefix='trainer_tft_')
    _CACHED[key] = build_transform_output(root, train_count, eval_count, seed)
  return _CACHED[key]

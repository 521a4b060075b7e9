"""Beam executor of MnistExampleGen: IDX files -> serialized tf.Examples.

A custom ExampleGen because no TFX ExampleGen reads IDX. It plugs into TFX's
BaseExampleGenExecutor, so splitting, span/version resolution and the TFRecord
writing stay TFX's own.
"""
import os
from typing import Any, Dict, Iterator, List, Tuple

import apache_beam as beam
import numpy as np
import tensorflow as tf
from tfx.components.example_gen import base_example_gen_executor
from tfx.types import standard_component_specs

from components.mnist_example_gen import idx
from components.transform import features

# Examples per Beam work item: lets several workers serialize one split.
CHUNK_SIZE = 4096


def split_files(input_base: str, split_pattern: str) -> Tuple[str, str]:
  """(images_path, labels_path) matched by one split's pattern under input_base."""
  pattern = os.path.join(input_base, split_pattern)
  matches = sorted(tf.io.gfile.glob(pattern))
  images = [m for m in matches if 'images-idx3' in os.path.basename(m)]
  labels = [m for m in matches if 'labels-idx1' in os.path.basename(m)]
  if not matches:
    raise idx.MnistDataError(f'{pattern}: no file matches (is the directory empty?)')
  if len(images) != 1 or len(labels) != 1:
    raise idx.MnistDataError(
        f'{pattern}: expected one *images-idx3* and one *labels-idx1* file, found '
        f'images={images} labels={labels}')
  return images[0], labels[0]


def to_example(image: np.ndarray, label: int) -> bytes:
  return tf.train.Example(features=tf.train.Features(feature={
      features.IMAGE_KEY: tf.train.Feature(
          int64_list=tf.train.Int64List(value=image.reshape(-1).tolist())),
      features.LABEL_KEY: tf.train.Feature(
          int64_list=tf.train.Int64List(value=[int(label)])),
  })).SerializeToString(deterministic=True)  # sorted map keys: same bytes every run


def _chunk_examples(chunk: Tuple[str, str, int, int]) -> Iterator[bytes]:
  images_path, labels_path, start, stop = chunk
  images, labels = idx.read_pair(images_path, labels_path)
  for i in range(start, stop):
    yield to_example(images[i], labels[i])


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(bytes)
def _IdxToExample(pipeline: beam.Pipeline, exec_properties: Dict[str, Any],
                  split_pattern: str) -> beam.pvalue.PCollection:
  input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
  images_path, labels_path = split_files(input_base, split_pattern)
  # Read (and so validate) eagerly: a bad file fails the execution before Beam starts.
  n = len(idx.read_pair(images_path, labels_path)[1])
  chunks: List[Tuple[str, str, int, int]] = [
      (images_path, labels_path, s, min(s + CHUNK_SIZE, n))
      for s in range(0, n, CHUNK_SIZE)]
  return (pipeline
          | 'Chunks' >> beam.Create(chunks, reshuffle=True)
          | 'ToExamples' >> beam.FlatMap(_chunk_examples))


class Executor(base_example_gen_executor.BaseExampleGenExecutor):

  def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
    return _IdxToExample

"""Beam executor of MnistExampleGen: IDX files -> serialized tf.Examples.

A custom ExampleGen because no TFX ExampleGen reads IDX. It plugs into TFX's
BaseExampleGenExecutor, so splitting, span/version resolution and the TFRecord
writing stay TFX's own.
"""
import fnmatch
import os
from typing import Any, Dict, Iterator, List, Tuple

from absl import logging
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
  """(images_path, labels_path) of one split, picked by exact official file name.

  The split pattern only narrows the directory listing (see component.py); files
  are then selected by their exact names (``<stem>`` or ``<stem>.gz``), so a
  ``.md5`` beside the data, a ``.old`` copy or other files are ignored, and when
  both the gzip and the raw form are present idx.pick chooses (gzip).
  """
  pattern = os.path.join(input_base, split_pattern)
  base = os.path.basename(pattern)
  wanted = [stem for stem in idx.ALL_STEMS
            if fnmatch.fnmatchcase(stem, base)
            or fnmatch.fnmatchcase(stem + idx.GZIP_SUFFIX, base)]
  images_stems = [s for s in wanted if '-images-' in s]
  labels_stems = [s for s in wanted if '-labels-' in s]
  if len(images_stems) != 1 or len(labels_stems) != 1:
    raise idx.MnistDataError(
        f'{pattern}: the split pattern must match exactly one images and one labels '
        f'file name of {list(idx.ALL_STEMS)} (with or without .gz); it matches '
        f'{wanted or "none"}')
  matches = sorted(tf.io.gfile.glob(pattern))
  forms: Dict[str, List[str]] = {}
  for path in matches:
    stem = idx.stem_of(os.path.basename(path.rstrip('/')))
    if stem in wanted:
      forms.setdefault(stem, []).append(path)
    else:
      logging.info('%s: ignored (not an official MNIST file name)', path)
  found = [os.path.basename(m) for m in matches]
  chosen = []
  for stem in (images_stems[0], labels_stems[0]):
    if stem not in forms:
      raise idx.MnistDataError(
          f'{pattern}: no {stem} or {stem}{idx.GZIP_SUFFIX} file; the pattern '
          f'matches {found or "no file (is the directory empty?)"}')
    chosen.append(idx.pick(stem, forms[stem]))
  logging.info('%s: reading %s and %s', pattern, *chosen)
  return chosen[0], chosen[1]


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

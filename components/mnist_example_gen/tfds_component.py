"""TfdsMnistExampleGen: ingests a prepared tensorflow-datasets MNIST data dir.

A FileBasedExampleGen whose ``input_base`` is the tfds data dir and whose split
patterns are the prepared record files of one version::

    train <- mnist/<version>/mnist-train.tfrecord*
    eval  <- mnist/<version>/mnist-test.tfrecord*

Caching comes from TFX, not from us: the FileBasedExampleGen driver fingerprints
the files the patterns match (count, sizes, mtimes) and resolves input_config into
the execution's properties, so re-running the same version hits the cache, while
another version (other patterns, other files) or a re-prepared one misses it.

One schema whatever the source
------------------------------
tfds stores each image as a PNG string (``image`` bytes, 28x28x1 uint8) with an
int64 ``label``. The executor decodes the PNG (tf.io.decode_png, which is what
tfds's own Image feature does) and re-emits TODAY's raw layout through
executor.to_example, the function MnistExampleGen's IDX executor uses: ``image``
= 784 int64 pixels in row-major order, ``label`` = one int64. Downstream
(StatisticsGen, the curated pipeline/schema/schema.pbtxt, ExampleValidator,
Transform's /255, Trainer, the serving signature taking raw pixels) therefore
sees one schema whatever the source, and nothing downstream changes. Passing the
PNG bytes through instead would need a second schema, a decoding step in
preprocessing_fn and a different serving contract per source.

Lineage: the output Examples artifact carries the custom properties
``tfds_name``, ``tfds_version`` and ``tfds_data_dir`` (set by the executor; TFX
persists executor-set custom properties of output artifacts to ml-metadata).
"""
import os
from typing import Any, Dict, Iterator, List, Tuple

import apache_beam as beam
import tensorflow as tf
from tfx import types
from tfx.components.example_gen import base_example_gen_executor
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

from components.mnist_example_gen import executor as idx_executor
from components.mnist_example_gen import tfds_source
from components.transform import features

# Custom properties of the output Examples artifact.
NAME_PROPERTY = 'tfds_name'
VERSION_PROPERTY = 'tfds_version'
DATA_DIR_PROPERTY = 'tfds_data_dir'
# Records per Beam element and per TF call: one graph call decodes a batch of PNGs
# (about 30 us per image, against several hundred for one eager op per image).
DECODE_BATCH = 1024


def input_config(version: str = tfds_source.DEFAULT_VERSION,
                 name: str = tfds_source.DEFAULT_NAME) -> example_gen_pb2.Input:
  return example_gen_pb2.Input(splits=[
      example_gen_pb2.Input.Split(name=split, pattern=pattern)
      for split, pattern in tfds_source.split_patterns(version, name).items()])


def source_of(exec_properties: Dict[str, Any]) -> Tuple[str, str, str]:
  """(data_dir, name, version) of an execution, read back from its input_config."""
  config = example_gen_pb2.Input()
  proto_utils.json_to_proto(
      exec_properties[standard_component_specs.INPUT_CONFIG_KEY], config)
  parsed = {tfds_source.parse_split_pattern(s.pattern)[:2] for s in config.splits}
  if len(parsed) != 1:
    raise tfds_source.TfdsDataError(
        f'input_config splits mix tfds datasets/versions: {sorted(parsed)}')
  (name, version), = parsed
  return exec_properties[standard_component_specs.INPUT_BASE_KEY], name, version


def _read_record_batches(path: str) -> Iterator[Tuple[str, List[bytes]]]:
  """(path, up to DECODE_BATCH serialized records) of one tfds record file.

  tf.data's TFRecord reader, as tfds reads its own files: every length and data
  CRC is checked, and a corrupt or truncated file raises TfdsDataError naming it.
  """
  ds = tf.data.TFRecordDataset(path, buffer_size=1 << 22).batch(DECODE_BATCH)
  try:
    for batch in ds.as_numpy_iterator():
      yield path, list(batch)
  except tf.errors.DataLossError as e:
    raise tfds_source.TfdsDataError(
        f'{path}: corrupt or truncated TFRecord file ({e.message.strip()})') from e


class _DecodeToExamples(beam.DoFn):
  """(file, batch of tfds records) -> TODAY's raw tf.Examples, serialized."""

  def setup(self):
    spec = {'image': tf.io.FixedLenFeature([], tf.string),
            'label': tf.io.FixedLenFeature([], tf.int64)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def decode(records):
      parsed = tf.io.parse_example(records, spec)
      images = tf.map_fn(
          lambda png: tf.io.decode_png(png, channels=1), parsed['image'],
          fn_output_signature=tf.TensorSpec(
              [features.IMAGE_SIZE, features.IMAGE_SIZE, 1], tf.uint8))
      return images, parsed['label']

    self._decode = decode

  def process(self, element: Tuple[str, List[bytes]]) -> Iterator[bytes]:
    path, records = element
    try:
      images, labels = self._decode(tf.constant(records))
    except (tf.errors.InvalidArgumentError, ValueError) as e:
      _raise_for_bad_record(path, records, e)
    for image, label in zip(images.numpy(), labels.numpy()):
      yield idx_executor.to_example(image, int(label))


def _raise_for_bad_record(path: str, records: List[bytes], error: Exception):
  """Finds the first undecodable record of a failed batch; names its file."""
  for record in records:
    try:
      f = tf.train.Example.FromString(record).features.feature
      image = tf.io.decode_png(f['image'].bytes_list.value[0], channels=1)
      label = f['label'].int64_list.value[0]
    except Exception as e:  # pylint: disable=broad-except
      raise tfds_source.TfdsDataError(
          f'{path}: a record is not a tfds MNIST example with a PNG `image` and an '
          f'int64 `label` ({type(e).__name__}: {e})') from e
    if tuple(image.shape) != (features.IMAGE_SIZE, features.IMAGE_SIZE, 1):
      raise tfds_source.TfdsDataError(
          f'{path}: an image (label {label}) is {tuple(image.shape)}, expected '
          f'({features.IMAGE_SIZE}, {features.IMAGE_SIZE}, 1)')
  raise tfds_source.TfdsDataError(f'{path}: records failed to decode ({error})')


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(bytes)
def _TfdsToExample(pipeline: beam.Pipeline, exec_properties: Dict[str, Any],
                   split_pattern: str) -> beam.pvalue.PCollection:
  input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
  pattern = os.path.join(input_base, split_pattern)
  files = sorted(tf.io.gfile.glob(pattern))
  if not files:  # Do() checked the whole version already; this is a race.
    raise tfds_source.TfdsDataError(f'{pattern}: no record file matches')
  # A tfds shard file is read sequentially by one worker; reshuffling its record
  # batches lets several workers decode it (the PNG decode and the tf.Example
  # building are the costly part). Fewer Beam stages than ReadAllFromTFRecord +
  # BatchElements, whose fixed overhead dominated small inputs.
  return (pipeline
          | 'Files' >> beam.Create(files)
          | 'ReadBatches' >> beam.FlatMap(_read_record_batches)
          | 'Spread' >> beam.Reshuffle()
          | 'ToExamples' >> beam.ParDo(_DecodeToExamples()))


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
  """Beam executor: tfds MNIST records -> raw tf.Examples, plus tfds lineage."""

  def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
    return _TfdsToExample

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    data_dir, name, version = source_of(exec_properties)
    # Every validation (layout, version, counts vs dataset_info.json, CRCs) before
    # any Beam work: a bad data dir fails the execution with a clear message.
    tfds_source.check_prepared(data_dir, version, name)
    super().Do(input_dict, output_dict, exec_properties)
    examples = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.EXAMPLES_KEY])
    examples.set_string_custom_property(NAME_PROPERTY, name)
    examples.set_string_custom_property(VERSION_PROPERTY, version)
    examples.set_string_custom_property(DATA_DIR_PROPERTY, data_dir)


class TfdsMnistExampleGen(FileBasedExampleGen):
  """Ingests version `version` of tfds dataset `name` prepared in `data_dir`.

  data_dir is the tfds data dir (the one holding ``mnist/``); resolve it with
  tfds_source.resolve_data_dir(flag) and, for an early clear error in a local
  run, check it with tfds_source.check_prepared(data_dir, version) (the executor
  checks it again, before any Beam work). Output splits: train, eval.
  """

  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

  def __init__(self, data_dir: str, version: str = tfds_source.DEFAULT_VERSION,
               name: str = tfds_source.DEFAULT_NAME):
    super().__init__(input_base=data_dir, input_config=input_config(version, name))

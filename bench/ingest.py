"""Ingestion + validation + Transform throughput on the real data, against numpy.

    MNIST_DIR=../shared/data/mnist python bench/ingest.py [--beam-workers N]
    python bench/ingest.py --source tfds --tfds-data-dir ../shared/data/tfds

Runs the data half of the pipeline (LocalDagRunner, fresh pipeline root, no cache)
and, in the same process, a plain parse + normalization of the same files outside
the pipeline: numpy for the IDX files; for a prepared tensorflow-datasets dir
(--source tfds, TfdsMnistExampleGen) a batched tf.data parse + PNG decode of its
records (reported under the same ``numpy_*`` keys, so the JSON keeps one format).
Last line: one JSON object.
"""
import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pipeline import progress  # pylint: disable=g-import-not-at-top

progress.quiet_environment()

from components.mnist_example_gen import idx  # pylint: disable=g-import-not-at-top,wrong-import-position
from pipeline import config as config_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from pipeline import local_runner  # pylint: disable=g-import-not-at-top,wrong-import-position


def numpy_parse(data_dir: str) -> int:
  n = 0
  for split in ('train', 'eval'):
    images, labels = idx.load_split(data_dir, split)
    normalized = images.reshape(len(images), -1).astype('float32') / 255.0
    n += len(normalized) + 0 * int(labels[0])
  return n


def tfds_parse(data_dir: str, version: str) -> int:
  """The tfds records parsed, PNG-decoded and normalized in batches by tf.data."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from components.mnist_example_gen import tfds_source  # pylint: disable=g-import-not-at-top
  spec = {'image': tf.io.FixedLenFeature([], tf.string),
          'label': tf.io.FixedLenFeature([], tf.int64)}

  @tf.autograph.experimental.do_not_convert
  def decode(records):
    parsed = tf.io.parse_example(records, spec)
    images = tf.map_fn(lambda png: tf.io.decode_png(png, channels=1), parsed['image'],
                       fn_output_signature=tf.TensorSpec([28, 28, 1], tf.uint8))
    return tf.reshape(tf.cast(images, tf.float32) / 255.0, [-1, 784]), parsed['label']

  n = 0
  for tfds_split in tfds_source.SPLITS.values():
    files = tfds_source.shard_files(os.path.join(data_dir, 'mnist', version), 'mnist',
                                    tfds_split)
    ds = tf.data.TFRecordDataset(files).batch(4096).map(decode)
    for normalized, labels in ds.as_numpy_iterator():
      n += len(normalized) + 0 * int(labels[0])
  return n


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--source', choices=('idx', 'tfds'), default='idx',
                 help='idx: --data-dir of IDX files (MnistExampleGen); tfds: a prepared '
                      'tensorflow-datasets mnist (TfdsMnistExampleGen)')
  p.add_argument('--data-dir', default=os.environ.get('MNIST_DIR'),
                 help='IDX directory for --source idx (default $MNIST_DIR)')
  p.add_argument('--tfds-data-dir', default=None,
                 help='tfds data dir for --source tfds (default $TFDS_DATA_DIR, else '
                      '~/tensorflow_datasets)')
  p.add_argument('--tfds-version', default='3.0.1')
  p.add_argument('--beam-workers', type=int, default=1)
  args = p.parse_args()
  source_config = {}
  if args.source == 'idx':
    if not args.data_dir:
      sys.exit('error: set MNIST_DIR or pass --data-dir')
    data_dir = args.data_dir
    t = time.perf_counter()
    n = numpy_parse(data_dir)
    numpy_s = time.perf_counter() - t
  else:
    from components.mnist_example_gen import tfds_source  # pylint: disable=g-import-not-at-top
    data_dir = tfds_source.resolve_data_dir(args.tfds_data_dir)
    try:
      sizes = tfds_source.check_prepared(data_dir, args.tfds_version)
    except tfds_source.TfdsDataError as e:
      sys.exit(f'error: {e}')
    import tensorflow  # pylint: disable=unused-import,g-import-not-at-top  # import time is not parsing
    t = time.perf_counter()
    n = tfds_parse(data_dir, args.tfds_version)
    numpy_s = time.perf_counter() - t
    assert n == sum(sizes.values()), (n, sizes)
    source_config = {'data_source': 'tfds', 'tfds_data_dir': data_dir,
                     'tfds_version': args.tfds_version}

  import tfx.v1  # pylint: disable=unused-import,g-import-not-at-top  # import time is not ingestion
  import components.mnist_example_gen.component  # pylint: disable=unused-import,g-import-not-at-top
  if args.source == 'tfds':
    import components.mnist_example_gen.tfds_component  # pylint: disable=unused-import,g-import-not-at-top
  mode = 'in_memory' if args.beam_workers == 1 else 'multi_processing'
  with tempfile.TemporaryDirectory() as root:
    cfg = config_lib.PipelineConfig(
        pipeline_root=root, enable_cache=False,
        beam_args=(f'--direct_running_mode={mode}',
                   f'--direct_num_workers={args.beam_workers}'),
        **source_config)  # tfds: the runners' data_source/tfds_* config fields
    timer = progress.install()
    t = time.perf_counter()
    local_runner.run(cfg, data_dir if args.source == 'idx' else None,
                     data_only=True, timer=timer)
    pipeline_s = time.perf_counter() - t

  per_component = {node: round(s, 2) for node, s in timer.timings}
  result = {
      'source': args.source,
      'examples': n,
      'pipeline_s': round(pipeline_s, 2),
      'numpy_s': round(numpy_s, 4),
      'examples_per_s': round(n / pipeline_s, 1),
      'numpy_examples_per_s': round(n / numpy_s, 1),
      'ratio': round((n / pipeline_s) / (n / numpy_s), 5),
      'beam_workers': args.beam_workers,
      'component_s': per_component,
  }
  print(f'[{args.source}] ingest+validate+transform: {result["examples_per_s"]:.0f} '
        f'examples/s ({pipeline_s:.1f} s for {n}); plain parse: '
        f'{result["numpy_examples_per_s"]:.0f} examples/s; ratio {result["ratio"]:.5f}')
  print(json.dumps(result))


if __name__ == '__main__':
  main()

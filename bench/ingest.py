"""Ingestion + validation + Transform throughput on the real data, against numpy.

    MNIST_DIR=../shared/data/mnist python bench/ingest.py [--beam-workers N]

Runs the data half of the pipeline (LocalDagRunner, fresh pipeline root, no cache)
and, in the same process, a plain numpy parse + normalization of the same files.
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


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--data-dir', default=os.environ.get('MNIST_DIR'))
  p.add_argument('--beam-workers', type=int, default=1)
  args = p.parse_args()
  if not args.data_dir:
    sys.exit('error: set MNIST_DIR or pass --data-dir')

  t = time.perf_counter()
  n = numpy_parse(args.data_dir)
  numpy_s = time.perf_counter() - t

  import tfx.v1  # pylint: disable=unused-import,g-import-not-at-top  # import time is not ingestion
  import components.mnist_example_gen.component  # pylint: disable=unused-import,g-import-not-at-top
  mode = 'in_memory' if args.beam_workers == 1 else 'multi_processing'
  with tempfile.TemporaryDirectory() as root:
    cfg = config_lib.PipelineConfig(
        pipeline_root=root, enable_cache=False,
        beam_args=(f'--direct_running_mode={mode}',
                   f'--direct_num_workers={args.beam_workers}'))
    timer = progress.install()
    t = time.perf_counter()
    local_runner.run(cfg, args.data_dir, data_only=True, timer=timer)
    pipeline_s = time.perf_counter() - t

  per_component = {node: round(s, 2) for node, s in timer.timings}
  result = {
      'examples': n,
      'pipeline_s': round(pipeline_s, 2),
      'numpy_s': round(numpy_s, 4),
      'examples_per_s': round(n / pipeline_s, 1),
      'numpy_examples_per_s': round(n / numpy_s, 1),
      'ratio': round((n / pipeline_s) / (n / numpy_s), 5),
      'beam_workers': args.beam_workers,
      'component_s': per_component,
  }
  print(f'ingest+validate+transform: {result["examples_per_s"]:.0f} examples/s '
        f'({pipeline_s:.1f} s for {n}); numpy parse: '
        f'{result["numpy_examples_per_s"]:.0f} examples/s; ratio {result["ratio"]:.5f}')
  print(json.dumps(result))


if __name__ == '__main__':
  main()

"""`make run`: the whole pipeline on LocalDagRunner, SQLite ml-metadata and Beam's
DirectRunner, then a report of what was trained, how robust it is and what shipped.

    python -m pipeline.local_runner [--epochs 1] [--data-dir DIR] [--help]
"""
import argparse
import os
import sys
import time
from typing import List, Optional

from pipeline import progress

progress.quiet_environment()

# pylint: disable=g-import-not-at-top,wrong-import-position
from pipeline import config as config_lib
from pipeline import flags


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(prog='python -m pipeline.local_runner',
                              description=__doc__.split('\n\n')[0])
  flags.add_config_flags(p)
  p.add_argument('--data-only', action='store_true',
                 help='stop after Transform (ingest, validate, normalize)')
  return p.parse_args(argv)


def absolute(config: config_lib.PipelineConfig) -> config_lib.PipelineConfig:
  """Local paths made absolute: TFX records URIs, and the Pusher needs a fixed root."""
  changes = {'pipeline_root': os.path.abspath(config.pipeline_root),
             'serving_dir': os.path.abspath(config.serving_dir)}
  if config.metadata_path:
    changes['metadata_path'] = os.path.abspath(config.metadata_path)
  return config.replace(**changes)


def run(config: config_lib.PipelineConfig, data_dir: Optional[str],
        data_only: bool = False, timer: Optional[progress.ComponentTimer] = None):
  """Runs the pipeline; returns the report dict (None for data_only)."""
  from tfx import v1 as tfx
  from components.mnist_example_gen import download
  from pipeline import pipeline as pipeline_lib

  config = absolute(config)
  data_dir = download.resolve_data_dir(data_dir, span_pattern=config.span_pattern)
  os.makedirs(config.pipeline_root, exist_ok=True)
  p = pipeline_lib.create_pipeline(
      config, data_dir,
      metadata_connection_config=tfx.orchestration.metadata
      .sqlite_metadata_connection_config(config.metadata),
      data_only=data_only)
  timer = progress.install(timer)
  started = time.time()
  tfx.orchestration.LocalDagRunner().run(p)
  wall = time.time() - started
  if data_only:
    return None
  from pipeline import report as report_lib
  return report_lib.build_and_write(config, timer.timings, wall)


def main(argv: Optional[List[str]] = None) -> int:
  args = parse_args(argv)
  try:
    config = flags.config_from_args(args)
  except config_lib.ConfigError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  from components.mnist_example_gen import idx
  timer = progress.install()
  try:
    report = run(config, flags.data_dir_from_args(args), args.data_only, timer)
  except idx.MnistDataError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  if report is not None:
    from pipeline import report as report_lib
    print(report_lib.render(report))
  return 0


if __name__ == '__main__':
  sys.exit(main())

"""`make run`: the whole pipeline on LocalDagRunner, SQLite ml-metadata and Beam's
DirectRunner, then a report of what was trained, how robust it is and what shipped.

    python -m pipeline.local_runner [--epochs 1] [--data-dir DIR] [--help]
"""
import argparse
import os
import sys
import tempfile
import time
import traceback
from typing import List, Optional, Tuple

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
  p.add_argument('--debug', action='store_true',
                 help='show the Python traceback of an expected failure too')
  return p.parse_args(argv)


class InputError(ValueError):
  """A bad path or flag found before any component runs."""


def _check_writable_dir(path: str, flag: str) -> None:
  """Creates and removes a probe file in path (or its nearest existing parent)."""
  if '://' in path:
    return  # object stores: checked for form by the components that write there
  probe_dir = path
  while not os.path.exists(probe_dir):
    parent = os.path.dirname(probe_dir)
    if parent == probe_dir:
      break
    probe_dir = parent
  if os.path.exists(probe_dir) and not os.path.isdir(probe_dir):
    raise InputError(f'{flag} {path}: {probe_dir} is a file, not a directory')
  try:
    fd, probe = tempfile.mkstemp(dir=probe_dir, prefix='.write-probe-')
    os.close(fd)
    os.remove(probe)
  except OSError as e:
    raise InputError(f'{flag} {path}: cannot write there ({e.strerror})') from e


def check_inputs(config: config_lib.PipelineConfig,
                 data_dir: Optional[str]) -> Tuple[config_lib.PipelineConfig, str]:
  """Everything checkable before the heavy imports: the data source and its paths,
  the pipeline root and the serving dir. Returns (config with the source resolved,
  the directory ExampleGen reads)."""
  from components.mnist_example_gen import idx
  from components.mnist_example_gen import tfds_source
  from components.pusher import serving_dir
  source = config.data_source or ('idx' if data_dir else 'tfds')
  try:
    if source == 'idx':
      idx.check_data_dir(data_dir, config.span_pattern)
      read_dir = data_dir
    else:
      read_dir = tfds_source.resolve_data_dir(config.tfds_data_dir)
      try:
        tfds_source.check_prepared(read_dir, config.tfds_version)
      except tfds_source.TfdsDataError:
        # Not prepared here: tfds downloads and verifies it itself when online,
        # and says how to prepare the dir by hand when not.
        tfds_source.prepare(read_dir, config.tfds_version)
    _check_writable_dir(config.pipeline_root, '--pipeline-root')
    serving_dir.check_writable(config.serving_dir)
  except (idx.MnistDataError, tfds_source.TfdsDataError,
          serving_dir.ServingDirError) as e:
    raise InputError(str(e)) from e
  return config.replace(data_source=source), read_dir


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
  config = absolute(config)
  config, data_dir = check_inputs(config, data_dir)
  from tfx import v1 as tfx
  from pipeline import pipeline as pipeline_lib

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


def _expected_failures() -> tuple:
  """Errors that are the user's input, not a bug: an `error:` line, no traceback."""
  from components.mnist_example_gen import idx
  from components.mnist_example_gen import tfds_source
  from components.strict_example_validator import anomalies
  return (idx.MnistDataError, tfds_source.TfdsDataError, anomalies.DataAnomalyError,
          anomalies.DataCheckError)


def main(argv: Optional[List[str]] = None) -> int:
  args = parse_args(argv)
  try:
    config = flags.config_from_args(args)
    config, data_dir = check_inputs(absolute(config), flags.data_dir_from_args(args))
  except (config_lib.ConfigError, InputError) as e:
    if args.debug:
      traceback.print_exc()
    print(f'error: {e}', file=sys.stderr)
    return 2
  timer = progress.install()
  try:
    report = run(config, data_dir, args.data_only, timer)
  except _expected_failures() as e:
    if args.debug:
      traceback.print_exc()
    print(f'error: {e}', file=sys.stderr)
    return 2
  if report is not None:
    from pipeline import report as report_lib
    print(report_lib.render(report))
  return 0


if __name__ == '__main__':
  sys.exit(main())

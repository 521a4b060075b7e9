"""MnistExampleGen: a FileBasedExampleGen whose executor reads MNIST IDX files.

Splits keep the official partition: ``train`` from train-*, ``eval`` from t10k-*.
With a span pattern (e.g. ``span-{SPAN}``) the driver picks the latest span folder,
so a new data drop becomes a new span and retrains the pipeline downstream.
"""
from typing import Optional

from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2

from components.mnist_example_gen import executor

# Deliberately broader than the files read: a glob cannot say "stem, optionally
# .gz", and the driver fingerprints every match, so the fingerprint must cover at
# least the files read (a narrower pattern could miss a changed one and reuse a stale
# cache). The executor then selects the exact official names (executor.split_files);
# an extra match such as a .md5 file only costs a re-ingestion when it changes.
TRAIN_PATTERN = 'train-*-idx?-ubyte*'
EVAL_PATTERN = 't10k-*-idx?-ubyte*'


def input_config(span_pattern: Optional[str] = None) -> example_gen_pb2.Input:
  prefix = span_pattern.rstrip('/') + '/' if span_pattern else ''
  return example_gen_pb2.Input(splits=[
      example_gen_pb2.Input.Split(name='train', pattern=prefix + TRAIN_PATTERN),
      example_gen_pb2.Input.Split(name='eval', pattern=prefix + EVAL_PATTERN),
  ])


class MnistExampleGen(FileBasedExampleGen):
  """Ingests MNIST IDX files (gzip or raw) from ``input_base``."""

  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

  def __init__(self, input_base: str, span_pattern: Optional[str] = None):
    super().__init__(input_base=input_base, input_config=input_config(span_pattern))

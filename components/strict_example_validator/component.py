"""ExampleValidator that stops the pipeline on anomalies and on failed data checks.

The stock ExampleValidator's spec (statistics, schema, exclude_splits) plus two
optional inputs and one property:

* ``examples``: the raw examples; with them the executor runs the semantic checks
  of checks.py (leakage, class balance, blank and inverted images, train/eval label
  agreement);
* ``previous_statistics``: earlier StatisticsGen outputs (e.g. from a resolver of
  the latest few); the newest of an older span is the reference for the drift of
  the image and label distributions; none (first span) skips that check;
* ``data_checks``: a DataChecksConfig as JSON, the checks' thresholds.
"""
from typing import List, Optional, Union

from absl import logging
from tfx import types
from tfx.dsl.components.base import base_component
from tfx.dsl.components.base import executor_spec
from tfx.types import component_spec
from tfx.types import standard_artifacts
from tfx.types import standard_component_specs
from tfx.utils import json_utils

from components.strict_example_validator import executor
from components.strict_example_validator.checks_config import DataChecksConfig

EXAMPLES_KEY = executor.EXAMPLES_KEY
PREVIOUS_STATISTICS_KEY = executor.PREVIOUS_STATISTICS_KEY
DATA_CHECKS_KEY = executor.DATA_CHECKS_KEY

_Stock = standard_component_specs.ExampleValidatorSpec


class StrictExampleValidatorSpec(types.ComponentSpec):
  """ExampleValidatorSpec + optional examples, previous statistics, data_checks."""
  PARAMETERS = {
      **_Stock.PARAMETERS,
      DATA_CHECKS_KEY: component_spec.ExecutionParameter(type=str, optional=True),
  }
  INPUTS = {
      **_Stock.INPUTS,
      EXAMPLES_KEY: component_spec.ChannelParameter(
          type=standard_artifacts.Examples, optional=True),
      # Empty for the first span: the executor then skips the drift check.
      PREVIOUS_STATISTICS_KEY: component_spec.ChannelParameter(
          type=standard_artifacts.ExampleStatistics, optional=True, allow_empty=True),
  }
  OUTPUTS = dict(_Stock.OUTPUTS)


class StrictExampleValidator(base_component.BaseComponent):
  """Fails its execution on schema anomalies or failed data checks (see executor.py)."""

  SPEC_CLASS = StrictExampleValidatorSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

  def __init__(self,
               statistics: types.BaseChannel,
               schema: types.BaseChannel,
               examples: Optional[types.BaseChannel] = None,
               previous_statistics: Optional[types.BaseChannel] = None,
               data_checks: Union[DataChecksConfig, str, None] = None,
               exclude_splits: Optional[List[str]] = None):
    if isinstance(data_checks, DataChecksConfig):
      data_checks = data_checks.to_json()
    elif data_checks is not None:
      data_checks = DataChecksConfig.from_json(data_checks).to_json()  # fail early
    if examples is None:
      logging.info('StrictExampleValidator without examples: only the schema and '
                   'drift checks run.')
    spec = StrictExampleValidatorSpec(
        statistics=statistics,
        schema=schema,
        examples=examples,
        previous_statistics=previous_statistics,
        exclude_splits=json_utils.dumps(exclude_splits or []),
        data_checks=data_checks,
        anomalies=types.Channel(type=standard_artifacts.ExampleAnomalies))
    super().__init__(spec=spec)

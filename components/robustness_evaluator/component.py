"""RobustnessEvaluator: blesses a model only if it is accurate *and* robust.

The stock Evaluator (TFMA) computes metrics on the examples as given; it cannot
craft adversarial examples against the model, so robustness needs its own
component. Its outputs are the standard ModelEvaluation and ModelBlessing
artifacts, so the stock Pusher and LatestBlessedModelStrategy work unchanged.
"""
from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_component
from tfx.dsl.components.base import executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter
from tfx.types.component_spec import ExecutionParameter

from components.robustness_evaluator import executor
from components.robustness_evaluator.spec import (
    BASE_MODEL_KEY, BASELINE_BLESSING_KEY, BASELINE_MODEL_KEY, BLESSING_KEY,
    CONFIG_KEY, EVALUATION_KEY, EXAMPLES_KEY, MODEL_KEY, eval_config_from_json)


class RobustnessEvaluatorSpec(types.ComponentSpec):
  """model: the candidate; examples: Transform's output (split 'eval' is read);
  baseline_model: the latest blessed model; base_model: the same run's
  non-adversarial model; baseline_blessing: the baseline's blessing (its figures
  are reused when unchanged); config: EvalConfig as JSON (spec.eval_config_to_json)."""
  PARAMETERS = {CONFIG_KEY: ExecutionParameter(type=str)}
  INPUTS = {
      MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
      EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
      BASELINE_MODEL_KEY: ChannelParameter(type=standard_artifacts.Model,
                                           optional=True),
      BASE_MODEL_KEY: ChannelParameter(type=standard_artifacts.Model, optional=True),
      BASELINE_BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing,
                                              optional=True),
  }
  OUTPUTS = {
      EVALUATION_KEY: ChannelParameter(type=standard_artifacts.ModelEvaluation),
      BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing),
  }


class RobustnessEvaluator(base_component.BaseComponent):
  SPEC_CLASS = RobustnessEvaluatorSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

  def __init__(self, model: types.BaseChannel, examples: types.BaseChannel,
               config: str,
               baseline_model: Optional[types.BaseChannel] = None,
               base_model: Optional[types.BaseChannel] = None,
               baseline_blessing: Optional[types.BaseChannel] = None):
    # Parsed here too, so a bad config fails when the pipeline is built, not
    # after training.
    eval_config_from_json(config)
    spec = RobustnessEvaluatorSpec(
        **{MODEL_KEY: model, EXAMPLES_KEY: examples,
           BASELINE_MODEL_KEY: baseline_model, BASE_MODEL_KEY: base_model,
           BASELINE_BLESSING_KEY: baseline_blessing,
           CONFIG_KEY: config,
           EVALUATION_KEY: types.Channel(type=standard_artifacts.ModelEvaluation),
           BLESSING_KEY: types.Channel(type=standard_artifacts.ModelBlessing)})
    super().__init__(spec=spec)

"""The component wires the standard artifact types and rejects a bad config early."""
import json

import pytest
from tfx import types
from tfx.types import standard_artifacts

from components.robustness_evaluator import component
from components.robustness_evaluator import spec
from components.config import ConfigError, EvalConfig


def _channels():
  return dict(model=types.Channel(type=standard_artifacts.Model),
              examples=types.Channel(type=standard_artifacts.Examples))


def test_outputs_are_the_standard_evaluation_and_blessing():
  evaluator = component.RobustnessEvaluator(
      config=spec.eval_config_to_json(EvalConfig()),
      baseline_model=types.Channel(type=standard_artifacts.Model), **_channels())
  assert evaluator.outputs['evaluation'].type is standard_artifacts.ModelEvaluation
  assert evaluator.outputs['blessing'].type is standard_artifacts.ModelBlessing
  assert set(evaluator.inputs) == {'model', 'examples', 'baseline_model'}


def test_bad_config_fails_when_the_pipeline_is_built():
  bad = json.dumps({'sample_size': 0})
  with pytest.raises(ConfigError, match='sample_size'):
    component.RobustnessEvaluator(config=bad, **_channels())

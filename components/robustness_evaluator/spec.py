"""The RobustnessEvaluator's interface, light enough to import anywhere: artifact
keys, output file names, blessing properties and the config's JSON form. No
TensorFlow here, so the runners and the report read the evaluator's outputs by name
without loading the attack stack.
"""
import dataclasses
import json

from components.config import ConfigError, EvalConfig, from_dict

# Artifact keys: the same strings as TFX's standard_component_specs, so the stock
# Pusher and LatestBlessedModelStrategy read our outputs unchanged
# (component_test.py checks the equality).
MODEL_KEY = 'model'
EXAMPLES_KEY = 'examples'
BASELINE_MODEL_KEY = 'baseline_model'
BASE_MODEL_KEY = 'base_model'
# The latest blessed model's blessing: it names the evaluation that blessed it, whose
# figures are reused when model, eval data and attack are unchanged.
BASELINE_BLESSING_KEY = 'baseline_blessing'
CONFIG_KEY = 'config'
EVALUATION_KEY = 'evaluation'
BLESSING_KEY = 'blessing'

EVAL_SPLIT = 'eval'
# Files of the ModelEvaluation artifact.
METRICS_FILE = 'metrics.json'
CURVE_FILE = 'robustness_curve.png'
EXAMPLES_FILE = 'perturbed_examples.png'
PLOT_FILES = (CURVE_FILE, EXAMPLES_FILE)
# File and custom property of the ModelBlessing artifact: the checks as JSON.
CHECKS_FILE = 'checks.json'
CHECKS_PROPERTY = 'checks'
EVALUATION_URI_PROPERTY = 'evaluation_uri'

# Roles of the evaluated models; 'adversarial' is the candidate's row name in the
# tutorial's base-vs-adversarial table.
CANDIDATE, BASE, BASELINE = 'candidate', 'base', 'baseline'
TABLE_ROWS = {BASE: 'base', CANDIDATE: 'adversarial'}


def eval_config_to_json(config: EvalConfig) -> str:
  return json.dumps(dataclasses.asdict(config.validate()), sort_keys=True)


def eval_config_from_json(text: str) -> EvalConfig:
  """Parses and validates EvalConfig JSON; errors are ConfigErrors naming the text."""
  try:
    data = json.loads(text)
  except (TypeError, json.JSONDecodeError) as e:
    raise ConfigError(f'evaluator config is not valid JSON ({e}): {text!r:.200}') from e
  if not isinstance(data, dict):
    raise ConfigError(f'evaluator config must be a JSON object, got {text!r:.200}')
  return from_dict(EvalConfig, data).validate()

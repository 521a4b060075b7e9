"""RobustnessEvaluator executor: attacks the candidate (and the base and baseline
models), writes metrics.json and two figures, and blesses or not.

TFX plumbing only: the evaluation is evaluation.py (attacks in attacks.py, numbers
and checks in metrics.py), the figures plots.py, names and keys spec.py.
The blessing is written last, after every figure exists, so any fault (no
``normalized_logits`` signature, empty eval split, NaN logits, a crash) fails the
execution with no blessing, and the Pusher never runs.
"""
import dataclasses
import json
import os
import time
from typing import Any, Dict, List, Optional, Tuple

from absl import logging
import numpy as np
from tfx import types
from tfx.components.evaluator import constants
from tfx.dsl.components.base import base_executor
from tfx.dsl.io import fileio
from tfx.types import artifact_utils
from tfx.utils import io_utils

from components.config import EvalConfig
from components.robustness_evaluator import attacks as attacks_lib
from components.robustness_evaluator import evaluation as evaluation_lib
from components.robustness_evaluator import metrics as metrics_lib
from components.robustness_evaluator import plots
from components.robustness_evaluator.spec import (
    BASE, BASE_MODEL_KEY, BASELINE, BASELINE_BLESSING_KEY, BASELINE_MODEL_KEY,
    BLESSING_KEY, CANDIDATE, EVALUATION_URI_PROPERTY,
    CHECKS_FILE, CHECKS_PROPERTY, CONFIG_KEY, CURVE_FILE, EVALUATION_KEY,
    EXAMPLES_FILE, EXAMPLES_KEY, METRICS_FILE, MODEL_KEY, eval_config_from_json)

# Images in perturbed_examples.png.
GRID_IMAGES = 16
# XLA on CPU made the attacks ~4x slower than TF's own kernels in bench/evaluate.py.
JIT_COMPILE = False


# ---------------------------------------------------------------- outputs


def _write_bytes(path: str, data: bytes) -> None:
  with fileio.open(path, 'wb') as f:
    f.write(data)


def _previous_metrics(blessing: types.Artifact) -> Optional[Dict[str, Any]]:
  """metrics.json of the evaluation that blessed the baseline, if still readable."""
  if not blessing.has_custom_property(EVALUATION_URI_PROPERTY):
    return None
  path = os.path.join(blessing.get_string_custom_property(EVALUATION_URI_PROPERTY),
                      METRICS_FILE)
  try:
    return json.loads(io_utils.read_string_file(path))
  except Exception:  # pylint: disable=broad-except  # gone or unreadable: recompute
    logging.info('RobustnessEvaluator: no reusable baseline figures at %s', path)
    return None


def _sibling_metrics(evaluation_uri: str, model_uri: str,
                     newest: int = 20) -> Optional[Dict[str, Any]]:
  """The newest earlier evaluation (a sibling of this one) whose candidate was
  model_uri. Found by path rather than through a blessing input, so a re-run's
  inputs do not change and TFX's cache still holds."""
  parent = os.path.dirname(evaluation_uri.rstrip('/'))
  def order(path):
    name = os.path.basename(os.path.dirname(path))
    return int(name) if name.isdigit() else -1
  paths = sorted(fileio.glob(os.path.join(parent, '*', METRICS_FILE)), key=order,
                 reverse=True)[:newest]
  for path in paths:
    try:
      metrics = json.loads(io_utils.read_string_file(path))
    except Exception:  # pylint: disable=broad-except  # unreadable: skip it
      continue
    if metrics.get('models', {}).get(CANDIDATE, {}).get('uri') == model_uri:
      return metrics
  return None


def write_blessing(blessing: types.Artifact, blessed: bool, checks: List[Dict],
                   candidate: evaluation_lib.LoadedModel,
                   baseline: Optional[evaluation_lib.LoadedModel],
                   exec_properties: Dict[str, Any], evaluation_uri: str) -> None:
  """Marker file and properties exactly as the stock Evaluator writes them."""
  blessing.set_string_custom_property(
      constants.ARTIFACT_PROPERTY_CURRENT_MODEL_URI_KEY, candidate.uri)
  blessing.set_int_custom_property(
      constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY, candidate.artifact_id)
  if baseline is not None:
    blessing.set_string_custom_property(
        constants.ARTIFACT_PROPERTY_BASELINE_MODEL_URI_KEY, baseline.uri)
    blessing.set_int_custom_property(
        constants.ARTIFACT_PROPERTY_BASELINE_MODEL_ID_KEY, baseline.artifact_id)
  if 'current_component_id' in exec_properties:
    blessing.set_string_custom_property(
        'component_id', exec_properties['current_component_id'])
  checks_json = json.dumps(checks, sort_keys=True)
  blessing.set_string_custom_property(EVALUATION_URI_PROPERTY, evaluation_uri)
  blessing.set_string_custom_property(CHECKS_PROPERTY, checks_json)
  failed = metrics_lib.failed(checks)
  blessing.set_string_custom_property(
      constants.ARTIFACT_PROPERTY_BLESSING_MESSAGE_KEY,
      'all checks passed' if blessed else 'failed: ' + '; '.join(failed))
  io_utils.write_string_file(os.path.join(blessing.uri, CHECKS_FILE), checks_json)
  marker = constants.BLESSED_FILE_NAME if blessed else constants.NOT_BLESSED_FILE_NAME
  io_utils.write_string_file(os.path.join(blessing.uri, marker), '')
  blessing.set_int_custom_property(
      constants.ARTIFACT_PROPERTY_BLESSED_KEY,
      constants.BLESSED_VALUE if blessed else constants.NOT_BLESSED_VALUE)


class Executor(base_executor.BaseExecutor):
  """Evaluates robustness and writes ModelEvaluation + ModelBlessing."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    self._log_startup(input_dict, output_dict, exec_properties)
    start = time.perf_counter()
    config = eval_config_from_json(exec_properties[CONFIG_KEY])
    evaluation = artifact_utils.get_single_instance(output_dict[EVALUATION_KEY])
    blessing = artifact_utils.get_single_instance(output_dict[BLESSING_KEY])

    x, y = evaluation_lib.load_eval_split(
        artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY]))
    floor = config.thresholds.min_eval_examples
    if len(x) < floor:
      raise evaluation_lib.EvaluationError(
          f'eval split has {len(x)} example(s), fewer than min_eval_examples={floor}: '
          'no gate figure can rest on so few images (--min-eval-examples to change)')
    models = {CANDIDATE: evaluation_lib.load_model(
        artifact_utils.get_single_instance(input_dict[MODEL_KEY]), CANDIDATE)}
    for role, key in ((BASE, BASE_MODEL_KEY), (BASELINE, BASELINE_MODEL_KEY)):
      if input_dict.get(key):
        models[role] = evaluation_lib.load_model(
            artifact_utils.get_single_instance(input_dict[key]),
                                  role)
    attackers = {role: attacks_lib.Attacker(
        m.logits_fn, batch_size=config.batch_size, seed=config.seed,
        jit_compile=JIT_COMPILE, name=f'{role} model {m.uri}', local=m.local)
                 for role, m in models.items()}

    fingerprint = evaluation_lib.data_fingerprint(x, y)
    cached = None
    if BASELINE in models:
      previous = (_previous_metrics(artifact_utils.get_single_instance(
          input_dict[BASELINE_BLESSING_KEY])) if input_dict.get(BASELINE_BLESSING_KEY)
                  else _sibling_metrics(evaluation.uri, models[BASELINE].uri))
      cached = evaluation_lib.reusable(previous, models[BASELINE], fingerprint, config)
    runs: Dict[str, evaluation_lib.ModelRun] = {}
    for role, model in models.items():
      if role == BASELINE and model.uri == models[CANDIDATE].uri:
        runs[role] = runs[CANDIDATE]  # the candidate is itself the latest blessed
        continue
      logging.info('RobustnessEvaluator: attacking the %s model %s', role, model.uri)
      runs[role] = evaluation_lib.evaluate_white_box(
          model, attackers[role], x, y,
          evaluation_lib.base_model_config(config) if role == BASE else config,
          cached=cached if role == BASELINE else None)
      if runs[role].report['reused']:
        logging.info('RobustnessEvaluator: %s model: reused %s from its own earlier '
                     'evaluation', role, runs[role].report['reused'])
    num_classes = len(runs[CANDIDATE].report['clean']['per_class'])

    report: Dict[str, Any] = {
        'config': dataclasses.asdict(config),
        'eval_examples': int(len(x)),
        'eval_data_sha256': fingerprint,
        'jit_compile': JIT_COMPILE,
        'models': {role: run.report for role, run in runs.items()},
        'warnings': [],
    }
    for role, run in runs.items():
      report['warnings'] += evaluation_lib.ordering_warnings(
          role, run, evaluation_lib.base_model_config(config) if role == BASE else config)
    report['sanity'], sanity_warnings = evaluation_lib.sanity_checks(
        attackers[CANDIDATE], x, y, config, runs[CANDIDATE].masks)
    report['warnings'] += sanity_warnings
    if BASE in runs:
      transfer = evaluation_lib.evaluate_transfer(
          runs[BASE], {r: a for r, a in attackers.items() if r != BASE}, y,
          num_classes)
      report['transfer_from_base'] = transfer
      report['comparison_table'] = evaluation_lib.comparison_table(runs, transfer,
                                                                   config)

    baseline_headline = runs[BASELINE].headline() if BASELINE in runs else None
    checks = metrics_lib.blessing_checks(runs[CANDIDATE].headline(), config.thresholds,
                                         baseline_headline)
    blessed = metrics_lib.is_blessed(checks)
    report.update(checks=checks, blessed=blessed)

    curve, grid = self._figures(runs, attackers, x, y, config)
    report['seconds'] = time.perf_counter() - start
    fileio.makedirs(evaluation.uri)
    _write_bytes(os.path.join(evaluation.uri, CURVE_FILE), curve)
    _write_bytes(os.path.join(evaluation.uri, EXAMPLES_FILE), grid)
    io_utils.write_string_file(os.path.join(evaluation.uri, METRICS_FILE),
                               json.dumps(report, indent=2, sort_keys=True))
    for name, fig in runs[CANDIDATE].headline().items():
      evaluation.set_float_custom_property(f'{name}_accuracy', fig.accuracy)

    for w in report['warnings']:
      logging.warning('RobustnessEvaluator: %s', w)
    logging.info('RobustnessEvaluator: blessed=%s, checks: %s', blessed,
                 json.dumps(checks))
    write_blessing(blessing, blessed, checks, models[CANDIDATE],
                   models.get(BASELINE), exec_properties, evaluation.uri)

  def _figures(self, runs: Dict[str, evaluation_lib.ModelRun],
               attackers: Dict[str, attacks_lib.Attacker], x: np.ndarray,
               y: np.ndarray, config: EvalConfig) -> Tuple[bytes, bytes]:
    curves = {role: run.report['sweep']['accuracy'] for role, run in runs.items()}
    clean = {role: run.report['sweep']['clean_accuracy'] for role, run in runs.items()}
    curve = plots.robustness_curve(
        curves, clean, title=f"first {runs[CANDIDATE].report['sweep']['sample_size']} "
        'eval examples, white-box attacks')

    source = BASE if BASE in runs else CANDIDATE
    if config.attacks:
      attack = evaluation_lib.grid_attack(config)
      images = runs[source].adversarial[attack.name][:GRID_IMAGES]
      title = f'{attack.name} eps={attack.epsilon} crafted against the {source} model'
    else:
      images, title = x[:GRID_IMAGES], 'clean eval images (no attacks configured)'
    preds = {role: attacks_lib.predictions(attacker.logits(images))
             for role, attacker in attackers.items()}
    grid = plots.perturbed_examples(images, y[:len(images)], preds, title=title)
    return curve, grid

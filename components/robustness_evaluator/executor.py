"""RobustnessEvaluator executor: attacks the candidate (and the base and baseline
models), writes metrics.json and two figures, and blesses or not.

Plumbing only: the attacks are attacks.py, the numbers and checks metrics.py, the
figures plots.py. The blessing is written last, after every figure exists, so any
fault (no ``normalized_logits`` signature, empty eval split, NaN logits, a crash)
fails the execution with no blessing, and the Pusher never runs.
"""
import dataclasses
import json
import os
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from absl import logging
import numpy as np
import tensorflow as tf
from tfx import types
from tfx.components.evaluator import constants
from tfx.dsl.components.base import base_executor
from tfx.dsl.io import fileio
from tfx.types import artifact_utils
from tfx.types import standard_component_specs
from tfx.utils import io_utils
from tfx.utils import path_utils

from components.robustness_evaluator import attacks as attacks_lib
from components.robustness_evaluator import metrics as metrics_lib
from components.robustness_evaluator import plots
from components.transform import features
from pipeline.config import AttackConfig, ConfigError, EvalConfig, PipelineConfig

MODEL_KEY = standard_component_specs.MODEL_KEY
EXAMPLES_KEY = standard_component_specs.EXAMPLES_KEY
BASELINE_MODEL_KEY = standard_component_specs.BASELINE_MODEL_KEY
BASE_MODEL_KEY = 'base_model'
CONFIG_KEY = 'config'
EVALUATION_KEY = standard_component_specs.EVALUATION_KEY
BLESSING_KEY = standard_component_specs.BLESSING_KEY

EVAL_SPLIT = 'eval'
SIGNATURE = 'normalized_logits'
SIGNATURE_INPUT = features.IMAGE_XF_KEY
SIGNATURE_OUTPUT = 'logits'
METRICS_FILE = 'metrics.json'
CURVE_FILE = 'robustness_curve.png'
EXAMPLES_FILE = 'perturbed_examples.png'
CHECKS_FILE = 'checks.json'
CHECKS_PROPERTY = 'checks'
# Images in perturbed_examples.png.
GRID_IMAGES = 16
# Roles of the evaluated models; 'adversarial' is the candidate's row name in the
# tutorial's base-vs-adversarial table.
CANDIDATE, BASE, BASELINE = 'candidate', 'base', 'baseline'
TABLE_ROWS = {BASE: 'base', CANDIDATE: 'adversarial'}
# XLA on CPU made the attacks ~4x slower than TF's own kernels in bench/evaluate.py.
JIT_COMPILE = False
_PARSE_BATCH = 1024


class EvaluationError(RuntimeError):
  """The evaluation cannot produce trustworthy numbers; the message says why."""


def eval_config_to_json(config: EvalConfig) -> str:
  return json.dumps(dataclasses.asdict(config.validate()), sort_keys=True)


def eval_config_from_json(text: str) -> EvalConfig:
  """Parses and validates EvalConfig JSON (pipeline/config.py's own parser)."""
  try:
    data = json.loads(text)
  except (TypeError, json.JSONDecodeError) as e:
    raise ConfigError(f'evaluator config is not valid JSON ({e}): {text!r:.200}') from e
  if not isinstance(data, dict):
    raise ConfigError(f'evaluator config must be a JSON object, got {text!r:.200}')
  return PipelineConfig.from_dict({'eval': data}).eval


# ---------------------------------------------------------------- inputs


def load_eval_split(examples: types.Artifact) -> Tuple[np.ndarray, np.ndarray]:
  """(image_xf float32 [N, 784], label int64 [N]) of the transformed eval split."""
  uri = artifact_utils.get_split_uri([examples], EVAL_SPLIT)
  files = sorted(fileio.glob(os.path.join(uri, '*'))) if fileio.exists(uri) else []
  if not files:
    raise EvaluationError(f'eval split {uri}: no files; nothing to evaluate on')
  spec = {
      features.IMAGE_XF_KEY: tf.io.FixedLenFeature([features.NUM_PIXELS], tf.float32),
      features.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
  }
  ds = (tf.data.TFRecordDataset(files, compression_type='GZIP')
        .batch(_PARSE_BATCH).map(lambda s: tf.io.parse_example(s, spec)))
  xs, ys = [], []
  try:
    for batch in ds:
      xs.append(batch[features.IMAGE_XF_KEY].numpy())
      ys.append(batch[features.LABEL_KEY].numpy())
  except tf.errors.OpError as e:
    raise EvaluationError(
        f'eval split {uri}: cannot read transformed examples (gzip TFRecords with '
        f'{features.IMAGE_XF_KEY} float[{features.NUM_PIXELS}] and '
        f'{features.LABEL_KEY} int64): {e.message}') from e
  if not xs:
    raise EvaluationError(f'eval split {uri}: {len(files)} file(s) but no examples')
  x, y = np.concatenate(xs), np.concatenate(ys)
  lo, hi = float(x.min()), float(x.max())
  if lo < 0.0 or hi > 1.0 or not np.isfinite(x).all():
    raise EvaluationError(
        f'eval split {uri}: {features.IMAGE_XF_KEY} spans [{lo}, {hi}], outside [0, 1]; '
        'these are not normalized pixels')
  return x, y


@dataclasses.dataclass
class LoadedModel:
  role: str
  uri: str
  artifact_id: int
  logits_fn: Callable[[tf.Tensor], tf.Tensor]
  saved_model: Any  # kept referenced: the signature needs the loaded variables


def load_model(artifact: types.Artifact, role: str) -> LoadedModel:
  path = path_utils.serving_model_path(
      artifact.uri, path_utils.is_old_model_artifact(artifact))
  if not fileio.exists(path):
    raise EvaluationError(f'{role} model {artifact.uri}: no SavedModel at {path}')
  try:
    loaded = tf.saved_model.load(path)
  except (OSError, ValueError, tf.errors.OpError) as e:
    raise EvaluationError(f'{role} model {path}: cannot load the SavedModel: {e}') from e
  signature = loaded.signatures.get(SIGNATURE)
  if signature is None:
    raise EvaluationError(
        f'{role} model {path}: no {SIGNATURE!r} signature (it has '
        f'{sorted(loaded.signatures)}); the evaluator needs logits of normalized '
        'pixels to differentiate through. Re-export the model with it.')
  inputs = signature.structured_input_signature[1]
  outputs = signature.structured_outputs
  if SIGNATURE_INPUT not in inputs or SIGNATURE_OUTPUT not in outputs:
    raise EvaluationError(
        f'{role} model {path}: signature {SIGNATURE!r} must map {SIGNATURE_INPUT!r} '
        f'to {SIGNATURE_OUTPUT!r}; it maps {sorted(inputs)} to {sorted(outputs)}')
  def logits_fn(x):
    return signature(**{SIGNATURE_INPUT: x})[SIGNATURE_OUTPUT]
  return LoadedModel(role=role, uri=artifact.uri, artifact_id=artifact.id,
                     logits_fn=logits_fn, saved_model=loaded)


# ---------------------------------------------------------------- evaluation


@dataclasses.dataclass
class ModelRun:
  """One model's white-box results: the JSON report plus arrays kept for transfer
  and plots."""
  report: Dict[str, Any]
  clean_preds: np.ndarray
  adversarial: Dict[str, np.ndarray]  # attack name -> neighbors of x[:n]

  def headline(self) -> Dict[str, float]:
    out = {metrics_lib.CLEAN: self.report['clean']['accuracy']}
    out.update({k: v['accuracy'] for k, v in self.report['attacks'].items()})
    return out


def _timed(fn, *args):
  start = time.perf_counter()
  result = fn(*args)
  return result, time.perf_counter() - start


def _rate(n: int, seconds: float) -> float:
  return n / seconds if seconds > 0 else float('inf')


def evaluate_white_box(model: LoadedModel, attacker: attacks_lib.Attacker,
                       x: np.ndarray, y: np.ndarray, config: EvalConfig) -> ModelRun:
  """Clean accuracy on all examples, every attack and the epsilon sweep."""
  start = time.perf_counter()
  logits, seconds = _timed(attacker.logits, x)
  num_classes = logits.shape[-1]
  if y.min() < 0 or y.max() >= num_classes:
    raise EvaluationError(f'eval labels span [{y.min()}, {y.max()}] but the {model.role} '
                          f'model has {num_classes} classes')
  clean_preds = attacks_lib.predictions(logits)
  report: Dict[str, Any] = {
      'uri': model.uri, 'artifact_id': model.artifact_id,
      'clean': dict(metrics_lib.summary(y, clean_preds, num_classes),
                    seconds=seconds, images_per_s=_rate(len(x), seconds)),
      'attacks': {}}
  adversarial = {}
  for attack in config.attacks:
    n = attacks_lib.sample_size(attack, config, len(x))
    (x_adv, adv_logits), seconds = _timed(attacker.attack, x[:n], y[:n], attack)
    report['attacks'][attack.name] = dict(
        metrics_lib.summary(y[:n], attacks_lib.predictions(adv_logits), num_classes),
        clean_accuracy_on_sample=metrics_lib.accuracy(y[:n], clean_preds[:n]),
        settings=attacks_lib.attack_settings(attack, n),
        seconds=seconds, images_per_s=_rate(n, seconds))
    adversarial[attack.name] = x_adv

  n = min(config.sweep_sample_size, len(x))
  sweep: Dict[str, Any] = {
      'sample_size': n,
      'clean_accuracy': metrics_lib.accuracy(y[:n], clean_preds[:n]),
      'settings': {}, 'accuracy': {}, 'seconds': {}}
  for family, by_eps in attacks_lib.sweep_attacks(config).items():
    sweep['accuracy'][family], sweep['seconds'][family] = {}, {}
    for eps, attack in by_eps.items():
      (_, adv_logits), seconds = _timed(attacker.attack, x[:n], y[:n], attack)
      sweep['accuracy'][family][str(eps)] = metrics_lib.accuracy(
          y[:n], attacks_lib.predictions(adv_logits))
      sweep['seconds'][family][str(eps)] = seconds
      settings = attacks_lib.attack_settings(attack, n)
      settings.update(epsilon=list(config.epsilon_sweep),
                      step_size=attack.step_size or 'epsilon / steps')
      sweep['settings'][family] = settings
  report['sweep'] = sweep
  report['seconds'] = time.perf_counter() - start
  return ModelRun(report, clean_preds, adversarial)


def ordering_warnings(role: str, run: ModelRun, config: EvalConfig) -> List[str]:
  """PGD <= FGSM <= clean on the same examples, and no gain from a larger epsilon."""
  warnings = []
  groups: Dict[Tuple, List[AttackConfig]] = {}
  for attack in config.attacks:
    n = run.report['attacks'][attack.name]['num_examples']
    groups.setdefault((attack.norm, attack.epsilon, n), []).append(attack)
  for (norm, eps, n), group in groups.items():
    group.sort(key=lambda a: (a.steps, a.restarts, a.random_start))
    first = run.report['attacks'][group[0].name]
    ladder = [('clean', first['clean_accuracy_on_sample'])]
    ladder += [(a.name, run.report['attacks'][a.name]['accuracy']) for a in group]
    warnings += metrics_lib.ordering_warnings(
        ladder, f'{role} model, {norm} eps={eps}, first {n} examples')
  sweep = run.report['sweep']
  families = list(sweep['accuracy'])
  for eps in config.epsilon_sweep:
    ladder = [('clean', sweep['clean_accuracy'])]
    ladder += [(f, sweep['accuracy'][f][str(eps)]) for f in families]
    warnings += metrics_lib.ordering_warnings(ladder, f'{role} model, sweep eps={eps}')
  for f in families:
    ladder = [('clean', sweep['clean_accuracy'])]
    ladder += [(f'{f} eps={e}', sweep['accuracy'][f][str(e)])
               for e in sorted(config.epsilon_sweep)]
    warnings += metrics_lib.ordering_warnings(ladder, f'{role} model, {f} sweep')
  return warnings


def evaluate_transfer(base: ModelRun, targets: Dict[str, attacks_lib.Attacker],
                      y: np.ndarray, num_classes: int) -> Dict[str, Any]:
  """Accuracy of every model on the neighbors crafted against the base model."""
  out = {}
  for name, x_adv in base.adversarial.items():
    n = len(x_adv)
    out[name] = {'crafted_against': BASE, 'num_examples': n,
                 BASE: base.report['attacks'][name]['accuracy']}
    for role, attacker in targets.items():
      preds = attacks_lib.predictions(attacker.logits(x_adv, f'{name} transfer'))
      out[name][role] = metrics_lib.summary(y[:n], preds, num_classes)
  return out


def comparison_table(runs: Dict[str, ModelRun], transfer: Dict[str, Any],
                     config: EvalConfig) -> Dict[str, Any]:
  """The tutorial's side-by-side table: rows base / adversarial."""
  columns = ['clean']
  for attack in config.attacks:
    columns += [f'{attack.name} transfer-from-base', f'{attack.name} white-box']
  rows = {}
  for role, row in TABLE_ROWS.items():
    run = runs[role]
    values = {'clean': run.report['clean']['accuracy']}
    for attack in config.attacks:
      crafted = transfer[attack.name]
      values[f'{attack.name} transfer-from-base'] = (
          crafted[BASE] if role == BASE else crafted[role]['accuracy'])
      values[f'{attack.name} white-box'] = run.report['attacks'][attack.name]['accuracy']
    rows[row] = values
  return {'columns': columns, 'rows': rows}


def _grid_attack(config: EvalConfig) -> AttackConfig:
  """The tutorial's figure shows FGSM: the first one-step attack, else the first."""
  return next((a for a in config.attacks if a.steps == 1), config.attacks[0])


# ---------------------------------------------------------------- outputs


def _write_bytes(path: str, data: bytes) -> None:
  with fileio.open(path, 'wb') as f:
    f.write(data)


def write_blessing(blessing: types.Artifact, blessed: bool, checks: List[Dict],
                   candidate: LoadedModel, baseline: Optional[LoadedModel],
                   exec_properties: Dict[str, Any]) -> None:
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

    x, y = load_eval_split(
        artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY]))
    models = {CANDIDATE: load_model(
        artifact_utils.get_single_instance(input_dict[MODEL_KEY]), CANDIDATE)}
    for role, key in ((BASE, BASE_MODEL_KEY), (BASELINE, BASELINE_MODEL_KEY)):
      if input_dict.get(key):
        models[role] = load_model(artifact_utils.get_single_instance(input_dict[key]),
                                  role)
    attackers = {role: attacks_lib.Attacker(
        m.logits_fn, batch_size=config.batch_size, seed=config.seed,
        jit_compile=JIT_COMPILE, name=f'{role} model {m.uri}')
                 for role, m in models.items()}

    runs: Dict[str, ModelRun] = {}
    for role, model in models.items():
      if role == BASELINE and model.uri == models[CANDIDATE].uri:
        runs[role] = runs[CANDIDATE]  # the candidate is itself the latest blessed
        continue
      logging.info('RobustnessEvaluator: attacking the %s model %s', role, model.uri)
      runs[role] = evaluate_white_box(model, attackers[role], x, y, config)
    num_classes = len(runs[CANDIDATE].report['clean']['per_class'])

    report: Dict[str, Any] = {
        'config': dataclasses.asdict(config),
        'eval_examples': int(len(x)),
        'jit_compile': JIT_COMPILE,
        'models': {role: run.report for role, run in runs.items()},
        'warnings': [],
    }
    for role, run in runs.items():
      report['warnings'] += ordering_warnings(role, run, config)
    if BASE in runs:
      transfer = evaluate_transfer(
          runs[BASE], {r: a for r, a in attackers.items() if r != BASE}, y,
          num_classes)
      report['transfer_from_base'] = transfer
      report['comparison_table'] = comparison_table(runs, transfer, config)

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
    for name, value in runs[CANDIDATE].headline().items():
      evaluation.set_float_custom_property(f'{name}_accuracy', value)

    for w in report['warnings']:
      logging.warning('RobustnessEvaluator: %s', w)
    logging.info('RobustnessEvaluator: blessed=%s, checks: %s', blessed,
                 json.dumps(checks))
    write_blessing(blessing, blessed, checks, models[CANDIDATE],
                   models.get(BASELINE), exec_properties)

  def _figures(self, runs: Dict[str, ModelRun],
               attackers: Dict[str, attacks_lib.Attacker], x: np.ndarray,
               y: np.ndarray, config: EvalConfig) -> Tuple[bytes, bytes]:
    curves = {role: run.report['sweep']['accuracy'] for role, run in runs.items()}
    clean = {role: run.report['sweep']['clean_accuracy'] for role, run in runs.items()}
    curve = plots.robustness_curve(
        curves, clean, title=f"first {runs[CANDIDATE].report['sweep']['sample_size']} "
        'eval examples, white-box attacks')

    source = BASE if BASE in runs else CANDIDATE
    if config.attacks:
      attack = _grid_attack(config)
      images = runs[source].adversarial[attack.name][:GRID_IMAGES]
      title = f'{attack.name} eps={attack.epsilon} crafted against the {source} model'
    else:
      images, title = x[:GRID_IMAGES], 'clean eval images (no attacks configured)'
    preds = {role: attacks_lib.predictions(attacker.logits(images))
             for role, attacker in attackers.items()}
    grid = plots.perturbed_examples(images, y[:len(images)], preds, title=title)
    return curve, grid

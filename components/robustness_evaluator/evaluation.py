"""Evaluation logic of the RobustnessEvaluator: load the eval split and the models,
attack them, and turn the results into metrics.json's sections.

Kept out of executor.py (TFX plumbing) so bench/ and tests drive the same code.
"""
import dataclasses
import hashlib
import json
import os
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf
from tfx import types
from tfx.dsl.io import fileio
from tfx.types import artifact_utils
from tfx.utils import path_utils

from components import serving_contract as contract
from components.adversarial import local_forward
from components.config import AttackConfig, EvalConfig
from components.robustness_evaluator import attacks as attacks_lib
from components.robustness_evaluator import autoattack
from components.robustness_evaluator import metrics as metrics_lib
from components.robustness_evaluator.spec import BASE, CANDIDATE, EVAL_SPLIT, TABLE_ROWS
from components.transform import features
from components.transform import transformed_io


class EvaluationError(RuntimeError):
  """The evaluation cannot produce trustworthy numbers; the message says why."""


# ---------------------------------------------------------------- inputs


def load_eval_split(examples: types.Artifact) -> Tuple[np.ndarray, np.ndarray]:
  """(image_xf float32 [N, 784], label int64 [N]) of the transformed eval split."""
  uri = artifact_utils.get_split_uri([examples], EVAL_SPLIT)
  if not fileio.exists(uri) or not fileio.glob(os.path.join(uri, '*')):
    raise EvaluationError(f'eval split {uri}: no files; nothing to evaluate on')
  try:
    x, y = transformed_io.read_transformed([os.path.join(uri, '*')])
  except tf.errors.OpError as e:
    raise EvaluationError(
        f'eval split {uri}: cannot read transformed examples (gzip TFRecords with '
        f'{features.IMAGE_XF_KEY} float[{features.NUM_PIXELS}] and '
        f'{features.LABEL_KEY} int64): {e.message}') from e
  except ValueError as e:
    raise EvaluationError(f'eval split {uri}: {e}') from e
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
  local: Optional[local_forward.LocalModel] = None  # Square's incremental pass


def load_model(artifact: types.Artifact, role: str) -> LoadedModel:
  path = path_utils.serving_model_path(
      artifact.uri, path_utils.is_old_model_artifact(artifact))
  if not fileio.exists(path):
    raise EvaluationError(f'{role} model {artifact.uri}: no SavedModel at {path}')
  try:
    loaded = tf.saved_model.load(path)
  except (OSError, ValueError, tf.errors.OpError) as e:
    raise EvaluationError(f'{role} model {path}: cannot load the SavedModel: {e}') from e
  signature = loaded.signatures.get(contract.NORMALIZED_LOGITS)
  if signature is None:
    raise EvaluationError(
        f'{role} model {path}: no {contract.NORMALIZED_LOGITS!r} signature (it has '
        f'{sorted(loaded.signatures)}); the evaluator needs logits of normalized '
        'pixels to differentiate through. Re-export the model with it.')
  inputs = signature.structured_input_signature[1]
  outputs = signature.structured_outputs
  if contract.NORMALIZED_INPUT not in inputs or contract.LOGITS not in outputs:
    raise EvaluationError(
        f'{role} model {path}: signature {contract.NORMALIZED_LOGITS!r} must map {contract.NORMALIZED_INPUT!r} '
        f'to {contract.LOGITS!r}; it maps {sorted(inputs)} to {sorted(outputs)}')
  def logits_fn(x):
    return signature(**{contract.NORMALIZED_INPUT: x})[contract.LOGITS]
  return LoadedModel(role=role, uri=artifact.uri, artifact_id=artifact.id,
                     logits_fn=logits_fn, saved_model=loaded, local=local_model(loaded))


def local_model(loaded) -> Optional[local_forward.LocalModel]:
  """The model's split for Square's incremental forward pass, or None if it was
  exported without one (older models): Square then runs the full pass."""
  names = (contract.LOCAL_FEATURES, contract.FEATURES_LOGITS, contract.LOCAL_GEOMETRY)
  if not all(name in loaded.signatures for name in names):
    return None
  local_sig, head_sig, geometry_sig = (loaded.signatures[name] for name in names)
  geometry = geometry_sig()
  return local_forward.LocalModel(
      features_fn=lambda p: local_sig(**{contract.PATCH_INPUT: p})[contract.FEATURES],
      head_fn=lambda f: head_sig(**{contract.FEATURES: f})[contract.LOGITS],
      stride=int(geometry[contract.STRIDE]),
      receptive_field=int(geometry[contract.RECEPTIVE_FIELD]))


# ---------------------------------------------------------------- evaluation


@dataclasses.dataclass
class ModelRun:
  """One model's white-box results: the JSON report plus arrays kept for transfer
  and plots."""
  report: Dict[str, Any]
  clean_preds: np.ndarray
  adversarial: Dict[str, np.ndarray]  # attack name -> neighbors of x[:n]
  # same_attack_key -> (attack name, per-image robust mask of x[:n]) of the attacks
  # run here, so the sweep and the sanity checks never attack again for a figure
  # one of them already holds.
  masks: Dict[str, Tuple[str, np.ndarray]] = dataclasses.field(default_factory=dict)

  def headline(self) -> Dict[str, metrics_lib.Figure]:
    """Clean and per-attack figures, with sample sizes and per-example results."""
    out = {metrics_lib.CLEAN: metrics_lib.figure_of(self.report['clean'])}
    out.update({k: metrics_lib.figure_of(v) for k, v in self.report['attacks'].items()})
    return out


def _timed(fn, *args):
  start = time.perf_counter()
  result = fn(*args)
  return result, time.perf_counter() - start


def _rate(n: int, seconds: float) -> float:
  return n / seconds if seconds > 0 else float('inf')


def data_fingerprint(x: np.ndarray, y: np.ndarray) -> str:
  """sha256 of the eval images and labels: reused figures must be of these images."""
  digest = hashlib.sha256()
  digest.update(np.ascontiguousarray(x, np.float32).tobytes())
  digest.update(np.ascontiguousarray(y, np.int64).tobytes())
  return digest.hexdigest()


def reusable(previous: Optional[Dict[str, Any]], model: LoadedModel, fingerprint: str,
             config: EvalConfig) -> Optional[Dict[str, Any]]:
  """The model's own earlier report from a metrics.json, if it was made on the same
  eval data with the same seed and batching (its attacks are matched one by one)."""
  if not previous or previous.get('eval_data_sha256') != fingerprint:
    return None
  old = previous.get('config', {})
  if (old.get('seed'), old.get('batch_size')) != (config.seed, config.batch_size):
    return None
  run = previous.get('models', {}).get(CANDIDATE)
  if not run or run.get('uri') != model.uri:
    return None
  return run


def evaluate_white_box(model: LoadedModel, attacker: attacks_lib.Attacker,
                       x: np.ndarray, y: np.ndarray, config: EvalConfig,
                       cached: Optional[Dict[str, Any]] = None) -> ModelRun:
  """Clean accuracy on all examples, every attack and the epsilon sweep.

  cached: this model's earlier report on the same data (``reusable``); an attack or
  sweep whose settings are unchanged is taken from it instead of attacked again.
  """
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
  adversarial: Dict[str, np.ndarray] = {}
  masks: Dict[str, Tuple[str, np.ndarray]] = {}
  cached_attacks = (cached or {}).get('attacks', {})
  reused = []
  for attack in config.attacks:
    n = attacks_lib.sample_size(attack, config, len(x))
    old = cached_attacks.get(attack.name)
    # Compared as JSON (tuples and lists alike), as the earlier report was stored.
    settings = json.loads(json.dumps(attacks_lib.attack_settings(attack, n)))
    if old and old.get('settings') == settings:
      report['attacks'][attack.name] = dict(old, reused_from=cached.get('uri'))
      reused.append(attack.name)
      continue
    outcome, seconds = _timed(autoattack.run_attack, attacker, x[:n], y[:n], attack,
                              logits[:n])
    robust = autoattack.robust_mask(outcome)
    # Worst case per image: an image some member broke counts as wrong even if its
    # final point happens to be classified correctly again.
    preds = np.where(robust, y[:n], np.where(
        attacks_lib.predictions(outcome.logits) == y[:n], -1,
        attacks_lib.predictions(outcome.logits)))
    entry = dict(
        metrics_lib.summary(y[:n], preds, num_classes),
        clean_accuracy_on_sample=metrics_lib.accuracy(y[:n], clean_preds[:n]),
        settings=attacks_lib.attack_settings(attack, n),
        seconds=seconds, images_per_s=_rate(n, seconds))
    if attack.method != 'pgd':
      entry.update(outcome.details,
                   flipped_by=metrics_lib.pack_codes(outcome.flipped_by))
    report['attacks'][attack.name] = entry
    adversarial[attack.name] = outcome.x_adv
    masks.update(single_attack_masks(attack, outcome))

  report['reused'] = reused
  n = min(config.sweep_sample_size, len(x))
  old_sweep = (cached or {}).get('sweep')
  if old_sweep and old_sweep.get('sample_size') == n and old_sweep.get(
      'settings_key') == _sweep_key(config, n):
    report['sweep'] = old_sweep
    report['reused'].append('sweep')
    report['seconds'] = time.perf_counter() - start
    return ModelRun(report, clean_preds, adversarial, masks)
  sweep: Dict[str, Any] = {
      'sample_size': n,
      'clean_accuracy': metrics_lib.accuracy(y[:n], clean_preds[:n]),
      'settings': {}, 'accuracy': {}, 'seconds': {}, 'taken_from': {}}
  for family, by_eps in attacks_lib.sweep_attacks(config).items():
    sweep['accuracy'][family], sweep['seconds'][family] = {}, {}
    for eps, attack in by_eps.items():
      m = min(n, config.sweep_apgd_sample_size) if attack.method != 'pgd' else n
      known = masks.get(same_attack_key(attack))
      if known is not None and len(known[1]) >= m:
        # The same attack already ran on these first m images (its random starts
        # drew other seeds): its figure, not a second attack.
        robust, seconds = known[1][:m], 0.0
        sweep['taken_from'][f'{family} eps={eps}'] = known[0]
      else:
        outcome, seconds = _timed(autoattack.run_attack, attacker, x[:m], y[:m], attack,
                                  logits[:m])
        robust = autoattack.robust_mask(outcome)
        masks.update(single_attack_masks(attack, outcome))
      sweep['accuracy'][family][str(eps)] = float(np.mean(robust))
      sweep['seconds'][family][str(eps)] = seconds
      settings = attacks_lib.attack_settings(attack, m)
      settings.update(epsilon=list(config.epsilon_sweep))
      if attack.method == 'pgd':
        settings.update(step_size=attack.step_size or 'epsilon / steps')
      sweep['settings'][family] = settings
  sweep['settings_key'] = _sweep_key(config, n)
  report['sweep'] = sweep
  report['seconds'] = time.perf_counter() - start
  return ModelRun(report, clean_preds, adversarial, masks)


def same_attack_key(attack: AttackConfig) -> Optional[str]:
  """Everything a single PGD or APGD-CE attack's per-image outcome depends on,
  except its name (which only salts the random starts) and its sample size; None
  for attacks whose outcome is not reused (APGD-T, Square, suites)."""
  if attack.method == 'pgd':
    fields = dict(method='pgd', norm=attack.norm, epsilon=attack.epsilon,
                  steps=attack.steps, step_size=attack.effective_step_size,
                  random_start=attack.random_start, restarts=attack.restarts)
  elif attack.method == 'apgd-ce':
    fields = dict(method='apgd-ce', norm=attack.norm, epsilon=attack.epsilon,
                  steps=attack.steps, restarts=attack.restarts)
  else:
    return None
  return json.dumps(fields, sort_keys=True)


def single_attack_masks(attack: AttackConfig, outcome: autoattack.Outcome
                        ) -> Dict[str, Tuple[str, np.ndarray]]:
  """Per-image robust masks this outcome holds for single attacks: the attack's own,
  and for a suite that starts with APGD-CE (which ran on every image), APGD-CE's."""
  key = same_attack_key(attack)
  if key is not None:
    return {key: (attack.name, autoattack.robust_mask(outcome))}
  if attack.method == 'autoattack' and attack.suite and attack.suite[0] == 'apgd-ce':
    first = dataclasses.replace(attack, method='apgd-ce')
    # Robust after APGD-CE: neither a clean error nor its flip; later members'
    # flips do not count against it.
    robust = (outcome.flipped_by == autoattack.ROBUST) | (outcome.flipped_by > 1)
    return {same_attack_key(first): (f'{attack.name} (apgd-ce)', robust)}
  return {}


def _sweep_key(config: EvalConfig, n: int) -> str:
  """Everything the sweep's figures depend on, as one comparable string."""
  families = attacks_lib.sweep_attacks(config)
  return json.dumps({'n': n, 'apgd_n': config.sweep_apgd_sample_size,
                     'attacks': {f: {str(e): dataclasses.asdict(a) for e, a in by.items()}
                                 for f, by in families.items()}}, sort_keys=True)


def ordering_warnings(role: str, run: ModelRun, config: EvalConfig) -> List[str]:
  """PGD <= FGSM <= clean on the same examples, and no gain from a larger epsilon."""
  warnings = []
  groups: Dict[Tuple, List[AttackConfig]] = {}
  for attack in config.attacks:
    n = run.report['attacks'][attack.name]['num_examples']
    groups.setdefault((attack.norm, attack.epsilon, n), []).append(attack)
  for (norm, eps, n), group in groups.items():
    group.sort(key=lambda a: (METHOD_STRENGTH[a.method], a.steps, a.restarts,
                              a.random_start))
    first = run.report['attacks'][group[0].name]
    ladder = [('clean', first['clean_accuracy_on_sample'])]
    ladder += [(a.name, run.report['attacks'][a.name]['accuracy']) for a in group]
    warnings += metrics_lib.ordering_warnings(
        ladder, f'{role} model, {norm} eps={eps}, first {n} examples')
  warnings += worst_case_warnings(role, run, config)
  sweep = run.report['sweep']
  families = list(sweep['accuracy'])
  # Across families only on the same images: the APGD curve runs on fewer.
  same = [f for f in families
          if sweep.get('settings', {}).get(f, {}).get('sample_size') ==
          sweep.get('sample_size')]
  for eps in config.epsilon_sweep:
    ladder = [('clean', sweep['clean_accuracy'])]
    ladder += [(f, sweep['accuracy'][f][str(eps)]) for f in same]
    warnings += metrics_lib.ordering_warnings(ladder, f'{role} model, sweep eps={eps}')
  for f in families:
    ladder = [('clean', sweep['clean_accuracy'])]
    ladder += [(f'{f} eps={e}', sweep['accuracy'][f][str(e)])
               for e in sorted(config.epsilon_sweep)]
    warnings += metrics_lib.ordering_warnings(ladder, f'{role} model, {f} sweep')
  return warnings


# Weakest first: the order in which a stronger attack must not score higher. FAB-T
# ranks with Square: a different search, not one that dominates PGD.
METHOD_STRENGTH = {'pgd': 0, 'square': 1, 'fab-t': 1, 'apgd-ce': 2, 'apgd-t': 3,
                   'autoattack': 4}


def worst_case_warnings(role: str, run: ModelRun, config: EvalConfig) -> List[str]:
  """An AutoAttack-style worst case must sit at or below every single attack at the
  same epsilon, image by image on the images both saw; and Square must not beat the
  gradient attacks (masking)."""
  warnings = []
  attacks = run.report['attacks']
  for suite in (a for a in config.attacks if a.method == 'autoattack'):
    s = attacks[suite.name]
    context = f'{role} model, {suite.name}'
    warnings += autoattack.masking_warnings(
        suite.name, autoattack.Outcome(None, None, metrics_lib.unpack_codes(
            s['flipped_by']), tuple(s['members']), s), context)
    worst = metrics_lib.unpack_mask(s['correct'], s['num_examples'])
    for other in config.attacks:
      if other is suite or (other.norm, other.epsilon) != (suite.norm, suite.epsilon):
        continue
      o = attacks[other.name]
      m = min(len(worst), o['num_examples'])
      single = metrics_lib.unpack_mask(o['correct'], o['num_examples'])[:m]
      if np.any(worst[:m] & ~single):
        warnings.append(
            f'{context}: {int(np.sum(worst[:m] & ~single))} image(s) broken by '
            f'{other.name} survived {suite.name} on the first {m} images: the worst '
            f'case is not below every single attack ({metrics_lib.WEAK_ATTACK})')
  return warnings


SANITY_EXAMPLES = 200
LARGE_EPSILON = 0.5


def sanity_checks(attacker: attacks_lib.Attacker, x: np.ndarray, y: np.ndarray,
                  config: EvalConfig,
                  masks: Optional[Dict[str, Tuple[str, np.ndarray]]] = None
                  ) -> Tuple[Dict[str, Any], List[str]]:
  """Masking checks on a small sample, for the candidate: at epsilon 0.5 almost no
  MNIST digit survives (half-grey images are ambiguous), and more APGD iterations
  never raise accuracy. masks: ModelRun.masks, whose figures are taken instead of
  attacking again."""
  apgd = next((a for a in config.attacks
               if a.method in ('apgd-ce', 'autoattack')), None)
  if apgd is None:
    return {}, []
  n = min(SANITY_EXAMPLES, len(x))
  xs, ys = x[:n], y[:n]
  base = AttackConfig(name='sanity', method='apgd-ce', norm=apgd.norm,
                      epsilon=apgd.epsilon, steps=apgd.steps)
  def acc(attack):
    known = (masks or {}).get(same_attack_key(attack))
    if known is not None and len(known[1]) >= n:
      return float(np.mean(known[1][:n]))
    return float(np.mean(autoattack.robust_mask(
        autoattack.run_attack(attacker, xs, ys, attack))))
  short = dataclasses.replace(base, steps=max(1, apgd.steps // 4))
  large = dataclasses.replace(base, epsilon=LARGE_EPSILON, steps=max(1, apgd.steps // 4))
  out = {'sample_size': n, f'apgd-ce {short.steps} steps': acc(short),
         f'apgd-ce {base.steps} steps': acc(base),
         f'apgd-ce eps={LARGE_EPSILON}': acc(large)}
  warnings = []
  if out[f'apgd-ce {base.steps} steps'] > out[f'apgd-ce {short.steps} steps'] + 0.01:
    warnings.append(
        f'sanity: APGD-CE with {base.steps} steps leaves more of the first {n} images '
        f'correct than with {short.steps} ({out}): {metrics_lib.WEAK_ATTACK}')
  if out[f'apgd-ce eps={LARGE_EPSILON}'] > 0.1:
    warnings.append(
        f'sanity: {100 * out[f"apgd-ce eps={LARGE_EPSILON}"]:.1f}% of the first {n} '
        f'images survive APGD-CE at eps={LARGE_EPSILON}, where almost none should: '
        f'{metrics_lib.WEAK_ATTACK}')
  return out, warnings


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
    if attack.name in transfer:
      columns.append(f'{attack.name} transfer-from-base')
    columns.append(f'{attack.name} white-box')
  rows = {}
  for role, row in TABLE_ROWS.items():
    run = runs[role]
    values = {'clean': run.report['clean']['accuracy']}
    for attack in config.attacks:
      crafted = transfer.get(attack.name)
      if crafted is not None:
        values[f'{attack.name} transfer-from-base'] = (
            crafted[BASE] if role == BASE else crafted[role]['accuracy'])
      white_box = run.report['attacks'].get(attack.name)
      values[f'{attack.name} white-box'] = white_box['accuracy'] if white_box else None
    rows[row] = values
  return {'columns': columns, 'rows': rows}


def base_model_config(config: EvalConfig) -> EvalConfig:
  """The base model is only the tutorial's reference row and the source of transfer
  attacks: FGSM and PGD, not the AutoAttack suite or its APGD curve, which would
  only confirm at length that an undefended model is not robust."""
  return dataclasses.replace(
      config, attacks=tuple(a for a in config.attacks if a.method == 'pgd'))


def grid_attack(config: EvalConfig) -> AttackConfig:
  """The tutorial's figure shows FGSM: the first one-step attack, else the first."""
  return next((a for a in config.attacks if a.steps == 1), config.attacks[0])

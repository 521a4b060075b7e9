"""A preset's model quality over seeds: the Trainer's training and the evaluator's
attacks and gate, without TFX.

For every seed this trains the preset's TrainerConfig the way
components/trainer/training.train_and_export does (seed, deterministic mode,
held-out split, tf.data input, compile_model, make_callbacks with the robust
selection, fit with the eval split as validation, selection.json), minus the
Transform files and the SavedModel export; then evaluates the trained classifier
with the preset's EvalConfig through the RobustnessEvaluator's own functions
(evaluation.evaluate_white_box with an attacks.Attacker on the classifier's logits,
ordering/masking warnings, sanity_checks) and judges it with
metrics.blessing_checks and the preset's thresholds (no baseline, as for a first
model: the max-drop check does not apply).

  MNIST_DIR=/path/to/mnist python bench/quality.py --preset robust --seeds 0,1,2 \
      [--eval-images N] [--epochs N] [--sweep] [--no-sanity] [--base] [--set KEY=JSON] \
      [--out runs/quality] [--resume] [--reuse-eval-from OUT]

It prints the CPU model and date, a per-epoch line while training, one line per
finished seed, then the per-seed table (accuracy in %, 95% Wilson interval, n in
the header) and, last, one JSON object with everything. Each seed's evaluator
report (metrics.json, with per-example results) and the Trainer's selection.json,
checkpoints and TensorBoard logs are kept under --out/<preset>/seed-<N>.

--resume reuses what an interrupted run of the same settings left in --out: a seed's
whole result (quality.json), or its finished training (train.json and the selected
weights; with train.deterministic the same seed would give the same weights anyway),
so a killed run loses at most the stage it was in.

--reuse-eval-from OUT re-trains but reuses the evaluation of an earlier run's seed
when the new weights hash to the same sha256 and the eval settings are the same: how
a change that should only cost or save time (e.g. the selection's start epoch) is
re-timed without re-attacking the same model for ~10 minutes a seed.

--eval-images caps every attack's sample (clean accuracy stays on the whole test
split); below the preset's min_eval_examples the gate would refuse, so it is an error.
The epsilon sweep (the robustness curve's figures) feeds no gate and costs ~100
APGD iterations per image and epsilon, so it runs only with --sweep.
"""
import argparse
import dataclasses
import datetime
import json
import os
import sys
import time
from typing import Dict, List, Optional, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from pipeline import progress  # pylint: disable=g-import-not-at-top
# The environment the pipeline's own processes train and attack in (local runner,
# Kubeflow image): oneDNN kernels on. Set before TensorFlow is imported; without it
# the Trainer's epochs here ran ~13% slower than in `make run`.
progress.quiet_environment()

import numpy as np  # pylint: disable=g-import-not-at-top

from bench.train_step import cpu_info, load_normalized, parse_override  # pylint: disable=g-import-not-at-top
from components.config import ConfigError, EvalConfig, TrainerConfig  # pylint: disable=g-import-not-at-top
from pipeline.config import PRESETS, PipelineConfig, apply_preset  # pylint: disable=g-import-not-at-top


# --------------------------------------------------------------------- config

def parse_seeds(values: Sequence[str]) -> List[int]:
  """'0,1,2' or '0 1 2' (or both mixed) -> [0, 1, 2]."""
  seeds = [int(s) for v in values for s in v.split(',') if s.strip()]
  if not seeds or len(set(seeds)) != len(seeds):
    raise argparse.ArgumentTypeError(f'--seeds {values}: need distinct integers')
  return seeds


def limit_eval(config: EvalConfig, images: Optional[int], sweep: bool) -> EvalConfig:
  """The preset's EvalConfig with every attack sample capped at ``images`` (its own
  sample_size or the default, whichever is smaller) and, without ``sweep``, no
  epsilon sweep. Clean accuracy is always on all eval images."""
  changes = {}
  if images is not None:
    changes['attacks'] = tuple(
        dataclasses.replace(a, sample_size=min(
            a.sample_size if a.sample_size is not None else config.sample_size, images))
        for a in config.attacks)
    changes.update(sample_size=min(config.sample_size, images),
                   sweep_sample_size=min(config.sweep_sample_size, images),
                   sweep_apgd_sample_size=min(config.sweep_apgd_sample_size, images))
  if not sweep:
    changes['epsilon_sweep'] = ()
  return dataclasses.replace(config, **changes).validate()


def build_config(preset: str, epochs: Optional[int], overrides: Dict) -> PipelineConfig:
  config = apply_preset(PipelineConfig(), preset)
  if epochs is not None:
    overrides = dict(overrides, **{'train.epochs': epochs})
  return config.replace(**overrides) if overrides else config


def add_checkpoint_arguments(parser: argparse.ArgumentParser) -> None:
  """--weights, --preset and --data-dir: one of this script's checkpoints and the
  IDX test data, for the benchmarks that attack it (square_loop, library_reference)."""
  parser.add_argument('--weights', required=True,
                      help="TF checkpoint prefix of a classifier (quality.py's "
                           "seed-N/model/classifier)")
  parser.add_argument('--preset', choices=sorted(PRESETS), default='robust',
                      help='whose ModelConfig the weights belong to')
  parser.add_argument('--data-dir', default=os.environ.get('MNIST_DIR'))


def check_checkpoint_arguments(parser: argparse.ArgumentParser, args) -> None:
  if not args.data_dir:
    parser.error('set MNIST_DIR or pass --data-dir (directory of the four IDX files)')
  if not os.path.exists(args.weights + '.index'):
    parser.error(f'--weights {args.weights}: no {args.weights}.index')


def load_classifier(preset: str, weights: str):
  """The preset's CNN with a checkpoint's weights (a classifier prefix)."""
  from components.trainer.model import build_cnn  # pylint: disable=g-import-not-at-top
  classifier = build_cnn(build_config(preset, None, {}).model)
  classifier.load_weights(weights).expect_partial()
  return classifier


# ------------------------------------------------------------------- training

def epoch_printer(label: str):
  """One flushed line per epoch (elapsed minutes and the epoch's logs, including the
  robust selection's held-out figures): the progress of a long run in its log."""
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  start = []

  def on_epoch_end(epoch, logs=None):
    shown = {k: round(float(v), 4) for k, v in (logs or {}).items()}
    print(f'  {label} epoch {epoch + 1}: {(time.perf_counter() - start[0]) / 60:.1f} min, '
          f'{json.dumps(shown)}', flush=True)
  return keras.callbacks.LambdaCallback(
      on_train_begin=lambda logs=None: start.append(time.perf_counter()),
      on_epoch_end=on_epoch_end)


def train_like_trainer(config: TrainerConfig, mode: str, train_split, eval_split,
                       model_run_dir: str, label: str):
  """training.train_and_export on in-memory arrays, without the export: the same
  steps in the same order. Returns (AdversarialModel, History, selection or None)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  from components.trainer import data, training  # pylint: disable=g-import-not-at-top
  from components.trainer.strategy import make_strategy  # pylint: disable=g-import-not-at-top
  config.validate()
  train_cfg = config.train
  path = os.path.join(model_run_dir, training.SELECTION_FILE)
  if os.path.exists(path):
    os.remove(path)   # a selection.json left by an earlier run must not be read back
  keras.utils.set_random_seed(train_cfg.seed)
  if train_cfg.deterministic:
    tf.config.experimental.enable_op_determinism()
  strategy = make_strategy(None)
  batch_size = data.global_batch_size(train_cfg.batch_size, strategy.num_replicas_in_sync)
  train_x, train_y = train_split
  holdout = None
  if train_cfg.robust_eval_examples > 0:
    (train_x, train_y), holdout = data.split_holdout(
        train_x, train_y, train_cfg.robust_eval_examples, train_cfg.seed)
  train_ds = data.training_dataset(train_x, train_y, batch_size=batch_size,
                                   seed=train_cfg.seed,
                                   shuffle_buffer=train_cfg.shuffle_buffer)
  eval_ds = data.evaluation_dataset(*eval_split, batch_size=train_cfg.eval_batch_size)
  with training.precision_policy(train_cfg.precision):
    with strategy.scope():
      model = training.compile_model(
          config, mode, data.steps_per_epoch(len(train_y), batch_size))
    callbacks = training.make_callbacks(config, model_run_dir, holdout)
    callbacks.append(epoch_printer(label))
    history = model.fit(train_ds, epochs=train_cfg.epochs, validation_data=eval_ds,
                        callbacks=callbacks, verbose=0)
    training._write_selection(callbacks, holdout, model_run_dir)  # pylint: disable=protected-access
  selection = None
  if os.path.exists(path):
    with open(path) as f:
      selection = json.load(f)
  return model, history, selection


TRAIN_RECORD = 'train.json'
CLASSIFIER_WEIGHTS = 'classifier'   # TF checkpoint prefix of the selected weights


def train_or_resume(config: TrainerConfig, mode: str, train_split, eval_split,
                    model_run_dir: str, label: str, resume: bool):
  """(classifier, record): trains (train_like_trainer) and saves the selected
  classifier weights and a record (config, seconds, history, selection) in
  model_run_dir; with ``resume``, loads them instead when the record's config is
  this one."""
  record_path = os.path.join(model_run_dir, TRAIN_RECORD)
  weights = os.path.join(model_run_dir, CLASSIFIER_WEIGHTS)
  if resume and os.path.exists(record_path):
    with open(record_path) as f:
      record = json.load(f)
    if record.get('config') == json.loads(config.to_json()) and record.get('mode') == mode:
      from components.trainer.model import build_cnn  # pylint: disable=g-import-not-at-top
      classifier = build_cnn(config.model)
      classifier.load_weights(weights).expect_partial()
      print(f'  {label}: training reused from {model_run_dir} (trained '
            f'{record["finished"]}, {record["seconds"] / 60:.1f} min)', flush=True)
      return classifier, record
  start = time.perf_counter()
  model, history, selection = train_like_trainer(config, mode, train_split, eval_split,
                                                 model_run_dir, label)
  seconds = time.perf_counter() - start
  model.base.save_weights(weights)
  record = {'config': json.loads(config.to_json()), 'mode': mode, 'seconds': seconds,
            'weights_sha256': weights_digest(model.base),
            'finished': datetime.datetime.now(datetime.timezone.utc).isoformat(),
            'epochs_run': len(history.history.get('loss', [])),
            'history': {k: [round(float(v), 5) for v in vals]
                        for k, vals in history.history.items()},
            'selection': selection}
  with open(record_path, 'w') as f:
    json.dump(record, f, indent=2)
  return model.base, record


def weights_digest(classifier) -> str:
  """sha256 of the classifier's weights (shapes and float bytes, in layer order):
  equal digests mean the evaluation's inputs are bit for bit the same model."""
  import hashlib  # pylint: disable=g-import-not-at-top
  h = hashlib.sha256()
  for w in classifier.get_weights():
    h.update(repr(w.shape).encode())
    h.update(np.ascontiguousarray(w).tobytes())
  return h.hexdigest()


def earlier_evaluation(earlier_run_dir: str, config: TrainerConfig, eval_key: Dict,
                       digest: str) -> Optional[Dict]:
  """The finished result (quality.json) of an earlier run of this seed whose
  evaluation settings are these and whose selected weights are bit-identical to the
  ones just trained, or None. The evaluation is a function of (weights, test data,
  EvalConfig with its seeds), so its figures hold for this model as they are; only
  the training was redone (e.g. to time it after a change that keeps the weights)."""
  done = os.path.join(earlier_run_dir, 'quality.json')
  weights = os.path.join(earlier_run_dir, 'model', CLASSIFIER_WEIGHTS)
  if not (os.path.exists(done) and os.path.exists(weights + '.index')):
    return None
  with open(done) as f:
    result = json.load(f)
  if {k: result['key'][k] for k in eval_key} != eval_key:
    print(f'  {earlier_run_dir}: evaluation settings differ; evaluating again', flush=True)
    return None
  from components.trainer.model import build_cnn  # pylint: disable=g-import-not-at-top
  classifier = build_cnn(config.model)
  classifier.load_weights(weights).expect_partial()
  earlier = weights_digest(classifier)
  if earlier != digest:
    print(f'  {earlier_run_dir}: other weights (sha256 {earlier[:12]} vs {digest[:12]}); '
          'evaluating again', flush=True)
    return None
  return result


# ----------------------------------------------------------------- evaluation

def evaluator_pieces():
  from components.robustness_evaluator import attacks, evaluation, metrics  # pylint: disable=g-import-not-at-top
  from components.robustness_evaluator.executor import JIT_COMPILE  # pylint: disable=g-import-not-at-top
  return attacks, evaluation, metrics, JIT_COMPILE


def make_attacker(classifier, config: EvalConfig, name: str):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  attacks, evaluation, _, jit = evaluator_pieces()
  # What the exported 'normalized_logits' signature computes (export.py).
  logits_fn = lambda v: tf.cast(classifier(v, training=False), tf.float32)
  attacker = attacks.Attacker(logits_fn, batch_size=config.batch_size, seed=config.seed,
                              jit_compile=jit, name=name)
  loaded = evaluation.LoadedModel(role=name, uri=f'bench:{name}', artifact_id=0,
                                  logits_fn=logits_fn, saved_model=None)
  return attacker, loaded


def evaluate(classifier, config: EvalConfig, x, y, name: str, sanity: bool,
             base_run=None) -> Dict:
  """The evaluator's white-box run, warnings, sanity checks and blessing checks."""
  _, evaluation, metrics, _ = evaluator_pieces()
  attacker, loaded = make_attacker(classifier, config, name)
  run = evaluation.evaluate_white_box(loaded, attacker, x, y, config)
  warnings = evaluation.ordering_warnings('candidate', run, config)
  sanity_report = {}
  if sanity:
    start = time.perf_counter()
    sanity_report, sanity_warnings = evaluation.sanity_checks(attacker, x, y, config,
                                                               run.masks)
    sanity_report['seconds'] = time.perf_counter() - start
    warnings += sanity_warnings
  transfer = None
  if base_run is not None:
    num_classes = len(run.report['clean']['per_class'])
    transfer = evaluation.evaluate_transfer(base_run, {'candidate': attacker}, y,
                                            num_classes)
  checks = metrics.blessing_checks(run.headline(), config.thresholds)
  return {'run': run, 'warnings': warnings, 'sanity': sanity_report,
          'transfer': transfer, 'checks': checks, 'blessed': metrics.is_blessed(checks),
          'failed': metrics.failed(checks)}


def wilson(accuracy: float, n: int) -> List[float]:
  _, _, metrics, _ = evaluator_pieces()
  return list(metrics.wilson_interval(int(round(accuracy * n)), n))


def headline(config: EvalConfig, evaluated: Dict) -> Dict[str, Dict]:
  """Ordered figures: clean, each attack (an AutoAttack suite preceded by its
  APGD-CE stage, robust_accuracy_after['apgd-ce']), transfer from base if any."""
  report = evaluated['run'].report
  out = {'clean': _figure(report['clean'], 'all test images')}
  for attack in config.attacks:
    entry = report['attacks'][attack.name]
    eps = f'eps={attack.epsilon:g}'
    if attack.method == 'autoattack' and 'apgd-ce' in attack.suite:
      acc, n = entry['robust_accuracy_after']['apgd-ce'], entry['num_examples']
      out[f'{attack.name}/apgd-ce'] = {
          'accuracy': acc, 'num_examples': n, 'ci95': wilson(acc, n),
          'what': f'APGD-CE stage of {attack.name}, {eps}, {attack.steps} steps'}
    what = {'pgd': (f'FGSM {eps}' if attack.steps == 1 else
                    f'PGD-{attack.steps} {eps}, step {attack.effective_step_size:g}, '
                    f'{"random start" if attack.random_start else "no random start"}'),
            'autoattack': f'worst case of {"+".join(attack.suite)}, {eps}, '
                          f'{attack.steps} steps, {attack.targets} targets' + (
                              f', {attack.queries} queries' if 'square' in attack.suite
                              else '')
            }.get(attack.method, f'{attack.method} {eps}')
    out[attack.name] = _figure(entry, what)
  for name, crafted in (evaluated['transfer'] or {}).items():
    out[f'{name}/transfer-from-base'] = _figure(crafted['candidate'],
                                                f'{name} crafted on the base model')
  return out


def _figure(entry: Dict, what: str) -> Dict:
  return {'accuracy': entry['accuracy'], 'num_examples': entry['num_examples'],
          'ci95': list(entry['ci95']), 'what': what}


# ---------------------------------------------------------------------- seeds

def run_seed(config: PipelineConfig, eval_config: EvalConfig, seed: int, train_split,
             test, out_dir: str, sanity: bool, with_base: bool, resume: bool,
             reuse_eval_from: Optional[str] = None) -> Dict:
  trainer_config = config.trainer_config().replace(**{'train.seed': seed})
  run_dir = os.path.join(out_dir, f'seed-{seed}')
  os.makedirs(run_dir, exist_ok=True)
  key = {'trainer_config': json.loads(trainer_config.to_json()),
         'eval_config': json.loads(json.dumps(dataclasses.asdict(eval_config))),
         'sanity': sanity, 'base': with_base}
  done = os.path.join(run_dir, 'quality.json')
  if resume and os.path.exists(done):
    with open(done) as f:
      result = json.load(f)
    if result.get('key') == key:
      print(f'seed {seed}: result reused from {done}', flush=True)
      return result
  x, y = test
  base_run, base_record = None, None
  if with_base:
    base, base_record = train_or_resume(trainer_config, 'base', train_split, test,
                                        os.path.join(run_dir, 'base'),
                                        f'seed {seed} base', resume)
    _, evaluation, _, _ = evaluator_pieces()
    attacker, loaded = make_attacker(base, eval_config, 'base')
    base_run = evaluation.evaluate_white_box(loaded, attacker, x, y, eval_config)
  classifier, record = train_or_resume(trainer_config, 'adversarial', train_split, test,
                                       os.path.join(run_dir, 'model'), f'seed {seed}',
                                       resume)
  selection = record['selection']
  # Hashed once: at training (train.json) or, for a record from before the hash, here.
  digest = record.get('weights_sha256') or weights_digest(classifier)
  if reuse_eval_from:
    earlier = earlier_evaluation(os.path.join(reuse_eval_from, f'seed-{seed}'),
                                 trainer_config, {k: key[k] for k in ('eval_config',
                                                                      'sanity')}, digest)
    if earlier is not None:
      print(f'  seed {seed}: weights sha256 {digest[:12]} are those of '
            f'{earlier["run_dir"]}; its evaluation is reused', flush=True)
      result = dict(earlier, key=key, train_minutes=round(record['seconds'] / 60, 2),
                    trained=record['finished'], epochs_run=record['epochs_run'],
                    selection=selection, history=record['history'], run_dir=run_dir,
                    weights_sha256=digest, eval_reused_from=earlier['run_dir'])
      with open(done, 'w') as f:
        json.dump(result, f, indent=2)
      return result
  start = time.perf_counter()
  evaluated = evaluate(classifier, eval_config, x, y, 'candidate', sanity, base_run)
  eval_seconds = time.perf_counter() - start
  report = evaluated['run'].report
  with open(os.path.join(run_dir, 'metrics.json'), 'w') as f:
    json.dump({'models': {'candidate': report}, 'checks': evaluated['checks'],
               'blessed': evaluated['blessed'], 'warnings': evaluated['warnings'],
               'sanity': evaluated['sanity'],
               'transfer_from_base': evaluated['transfer']}, f, indent=2, sort_keys=True)
  result = {
      'seed': seed, 'key': key,
      'figures': headline(eval_config, evaluated),
      'blessed': evaluated['blessed'], 'failed_checks': evaluated['failed'],
      'checks': evaluated['checks'],
      'train_minutes': round(record['seconds'] / 60, 2),
      'trained': record['finished'],
      'eval_minutes': round(eval_seconds / 60, 2),
      'epochs_run': record['epochs_run'],
      'selection': selection,
      'history': record['history'],
      'attack_seconds': {k: round(v['seconds'], 1) for k, v in report['attacks'].items()},
      'member_seconds': {k: {m: round(s, 1) for m, s in v.get('member_seconds', {}).items()}
                         for k, v in report['attacks'].items() if 'member_seconds' in v},
      'flipped_by_member': {k: v['flipped_by_member'] for k, v in report['attacks'].items()
                            if 'flipped_by_member' in v},
      'warnings': evaluated['warnings'], 'sanity': evaluated['sanity'],
      'run_dir': run_dir, 'weights_sha256': digest}
  if with_base:
    result['base'] = {'train_minutes': round(base_record['seconds'] / 60, 2),
                      'figures': {'clean': _figure(base_run.report['clean'], 'base model'),
                                  **{k: _figure(v, f'base model, {k}')
                                     for k, v in base_run.report['attacks'].items()}}}
  with open(done, 'w') as f:
    json.dump(result, f, indent=2)   # not sorted: the figures keep the table's order
  return result


# ---------------------------------------------------------------------- table

def _cell(fig: Dict) -> str:
  lo, hi = fig['ci95']
  return f'{100 * fig["accuracy"]:.2f} ({100 * lo:.2f}-{100 * hi:.2f})'


def table(results: List[Dict]) -> str:
  names = list(results[0]['figures'])
  header = ['seed'] + [f'{n} n={results[0]["figures"][n]["num_examples"]}'
                       for n in names] + ['train min', 'epoch', 'blessed']
  rows = []
  for r in results:
    sel = r['selection']
    epoch = (f'{sel["chosen_epoch"]}/{r["epochs_run"]}' if sel
             else f'{r["epochs_run"]}/{r["epochs_run"]}')
    rows.append([str(r['seed'])] + [_cell(r['figures'][n]) for n in names] +
                [f'{r["train_minutes"]:.1f}', epoch, 'yes' if r['blessed'] else 'NO'])
  widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
  line = lambda cells: ' | '.join(c.ljust(w) for c, w in zip(cells, widths))
  out = [line(header), '-+-'.join('-' * w for w in widths)] + [line(r) for r in rows]
  for r in results:
    if r['failed_checks']:
      out.append(f'seed {r["seed"]} fails: ' + '; '.join(
          _failure(c) for c in r['checks'] if not c['passed']))
  out.append('accuracy in %, (95% Wilson interval); epoch = selected/run (selection.json)')
  return '\n'.join(out)


def _failure(check: Dict) -> str:
  measure = check.get('measure', 'value')
  text = (f'{check["name"]}: {measure} {check["value"]:.4f} not {check["comparison"]} '
          f'{check["threshold"]:.4f}')
  if measure != 'accuracy' and 'accuracy' in check:
    text += f' (accuracy {check["accuracy"]:.4f}, n={check["num_examples"]})'
  return text


def spread(results: List[Dict]) -> Dict:
  out = {}
  for name in results[0]['figures']:
    values = [r['figures'][name]['accuracy'] for r in results]
    out[name] = {'mean': float(np.mean(values)), 'min': min(values), 'max': max(values)}
  minutes = [r['train_minutes'] for r in results]
  out['train_minutes'] = {'mean': float(np.mean(minutes)), 'min': min(minutes),
                          'max': max(minutes)}
  out['blessed'] = sum(r['blessed'] for r in results)
  return out


# ----------------------------------------------------------------------- main

def main(argv=None) -> Dict:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--preset', choices=sorted(PRESETS), default='robust')
  parser.add_argument('--seeds', nargs='+', default=['0,1,2'],
                      help='comma- or space-separated, e.g. 0,1,2')
  parser.add_argument('--eval-images', type=int, default=None,
                      help='cap on every attack sample (clean stays on all images)')
  parser.add_argument('--epochs', type=int, default=None, help='train.epochs override')
  parser.add_argument('--sweep', action='store_true',
                      help="also run the preset's epsilon sweep (no gate reads it)")
  parser.add_argument('--no-sanity', dest='sanity', action='store_false',
                      help="skip the evaluator's APGD masking sanity checks")
  parser.add_argument('--base', action='store_true',
                      help='also train the base model and report transfer-from-base')
  parser.add_argument('--resume', action='store_true',
                      help='reuse finished seeds / trainings of the same settings in --out')
  parser.add_argument('--reuse-eval-from', metavar='OUT',
                      help="an earlier run's --out: a seed whose newly trained weights "
                           "are bit-identical to that run's (sha256) and whose eval "
                           "settings are the same reuses its evaluation (e.g. to re-time "
                           "training after a change that keeps the weights)")
  parser.add_argument('--data-dir', default=os.environ.get('MNIST_DIR'))
  parser.add_argument('--out', default=os.path.join(REPO, 'runs', 'quality'))
  parser.add_argument('--set', dest='overrides', action='append', default=[],
                      type=parse_override, metavar='KEY=JSON',
                      help='PipelineConfig override after the preset, e.g. '
                           'train.selection_min_clean_accuracy=0.99')
  args = parser.parse_args(argv)
  if not args.data_dir:
    parser.error('set MNIST_DIR or pass --data-dir (directory of the four IDX files)')
  if args.reuse_eval_from and args.base:
    parser.error('--reuse-eval-from with --base: the reused evaluation has no '
                 'transfer-from-base figures; drop one of them')
  if args.reuse_eval_from and not os.path.isdir(os.path.join(args.reuse_eval_from,
                                                             args.preset)):
    parser.error(f'--reuse-eval-from {args.reuse_eval_from}: no {args.preset}/ '
                 'directory of an earlier run there')
  try:
    seeds = parse_seeds(args.seeds)
  except argparse.ArgumentTypeError as e:
    parser.error(str(e))
  try:
    config = build_config(args.preset, args.epochs, dict(args.overrides))
    eval_config = limit_eval(config.eval, args.eval_images, args.sweep)
  except ConfigError as e:
    parser.error(str(e))

  info = cpu_info()
  started = datetime.datetime.now(datetime.timezone.utc)
  train_split = load_normalized(args.data_dir, 'train')
  test = load_normalized(args.data_dir, 'eval')
  out_dir = os.path.join(args.out, args.preset)
  t = config.train
  print(f'quality: preset {args.preset}, seeds {seeds}, {started:%Y-%m-%d %H:%M} UTC, '
        f'CPU {info["cpu_model"]} ({info["cores"]} cores), load average '
        f'{os.getloadavg()[0]:.1f}, oneDNN '
        f'{os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default")}', flush=True)
  print(f'  data: {len(train_split[1])} training images ({t.robust_eval_examples} held '
        f'out for selection), {len(test[1])} test images', flush=True)
  print(f'  train: {t.epochs} epochs, batch {t.batch_size}, Adam {t.learning_rate:g} '
        f'{t.lr_schedule}, patience '
        f'{t.early_stopping_patience}, selection min clean '
        f'{t.selection_min_clean_accuracy}, deterministic {t.deterministic}; adv '
        f'{config.adv}', flush=True)
  print(f'  eval: ' + '; '.join(
      f'{a.name} ({a.method}, eps {a.epsilon:g}, n '
      f'{a.sample_size if a.sample_size is not None else eval_config.sample_size})'
      for a in eval_config.attacks) + f'; sweep {list(eval_config.epsilon_sweep)}',
        flush=True)
  print(f'  gate: {json.dumps(dataclasses.asdict(eval_config.thresholds))}', flush=True)

  results = []
  for seed in seeds:
    result = run_seed(config, eval_config, seed, train_split, test, out_dir, args.sanity,
                      args.base, args.resume,
                      args.reuse_eval_from and os.path.join(args.reuse_eval_from,
                                                            args.preset))
    results.append(result)
    print(f'seed {seed}: ' + json.dumps(
        {k: result[k] for k in ('blessed', 'failed_checks', 'train_minutes',
                                'eval_minutes', 'epochs_run')} |
        {'chosen_epoch': (result['selection'] or {}).get('chosen_epoch'),
         'weights_sha256': result['weights_sha256'][:12],
         'eval_reused_from': result.get('eval_reused_from'),
         'figures': {k: round(v['accuracy'], 4) for k, v in result['figures'].items()},
         'warnings': len(result['warnings'])}), flush=True)

  print()
  print(f'{args.preset} preset, {info["cpu_model"]} ({info["cores"]} cores), '
        f'{started:%Y-%m-%d}', flush=True)
  print(table(results), flush=True)
  summary = {'preset': args.preset, 'seeds': seeds, 'date': started.isoformat(),
             'cpu': info, 'eval_images': args.eval_images, 'sweep': args.sweep,
             'trainer_config': json.loads(config.trainer_config().to_json()),
             'eval_config': json.loads(json.dumps(dataclasses.asdict(eval_config))),
             'results': [{k: v for k, v in r.items() if k != 'key'} for r in results],
             'spread': spread(results)}
  print(json.dumps(summary), flush=True)
  return summary


if __name__ == '__main__':
  main()

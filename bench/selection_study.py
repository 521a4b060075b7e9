"""Does the Trainer's held-out selection attack rank epochs the way the gate does?

The robust presets pick the epoch with the best held-out robust accuracy (among those
clearing the clean bound) under a cheap selection attack, PGD-10 or APGD-CE-10
(train.robust_eval_method). The gate judges the chosen epoch by AutoAttack on the
test images. This study takes the per-epoch checkpoints an earlier
``bench/quality.py`` run kept, measures every epoch both ways and reports, per seed,
the epoch each selection method chooses, the gate-side figure of that choice and of
the best epoch, and the rank correlation between held-out and gate-side figures.

  MNIST_DIR=/path/to/mnist python bench/selection_study.py \
      --run runs/q1128/eps03-beta2 --preset robust-eps0.3 --seeds 0,1,2 \
      [--epochs 8-14] [--test-images 1000] [--suite apgd-ce,apgd-t] \
      [--gate-epochs qualifying|chosen] [--verify pgd|apgd-ce]

The gate side is the preset's AutoAttack at its epsilon on the first --test-images
test images; by default without Square (--suite), which adds ~6 minutes a checkpoint
and broke 5-10 of 1,000 images on the chosen epochs: a ranking study over ~20
checkpoints affords the gradient stages only, and says so in its output. The held-out
side is the Trainer's own HeldoutAccuracy on the Trainer's own held-out split (same
seed, same split), for each method, so the PGD-10 figures must reproduce the run's
selection.json: the script checks that. --gate-epochs chosen measures the gate side
only on the epochs the methods choose: what switching the method changes, at a
fraction of the cost (no rank correlation then). --verify METHOD then runs the
preset's whole gate (every attack of its EvalConfig, its thresholds) on the epoch
METHOD chooses for each seed: what the run would have shipped under that method,
since the selection method changes no weight (components/trainer/determinism_test.py).
Each checkpoint's figures are written to
--run/<preset>/seed-N/selection_study.json as they finish; a rerun reuses them.
"""
import argparse
import dataclasses
import datetime
import json
import os
import sys
import time
from typing import Dict, List, Sequence, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from pipeline import progress  # pylint: disable=g-import-not-at-top
progress.quiet_environment()

import numpy as np  # pylint: disable=g-import-not-at-top

from bench.quality import build_config, make_attacker, parse_seeds, wilson  # pylint: disable=g-import-not-at-top
from bench.train_step import cpu_info, load_normalized  # pylint: disable=g-import-not-at-top
from pipeline.config import PRESETS  # pylint: disable=g-import-not-at-top

METHODS = ('pgd', 'apgd-ce')
STUDY_FILE = 'selection_study.json'


def parse_epochs(text: str) -> List[int]:
  """'8-14' or '8,10,12' -> sorted distinct epochs (1-based)."""
  if '-' in text:
    first, last = (int(v) for v in text.split('-', 1))
    epochs = list(range(first, last + 1))
  else:
    epochs = sorted({int(v) for v in text.split(',') if v.strip()})
  if not epochs or epochs[0] < 1:
    raise argparse.ArgumentTypeError(f'--epochs {text}: need epochs >= 1')
  return epochs


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
  """Spearman's rank correlation with average ranks for ties (nan if undefined)."""
  def ranks(v):
    v = np.asarray(v, float)
    order = np.argsort(v, kind='stable')
    r = np.empty(len(v))
    r[order] = np.arange(len(v), dtype=float)
    for value in np.unique(v):
      tied = v == value
      r[tied] = r[tied].mean()
    return r
  if len(a) < 3:
    return float('nan')
  ra, rb = ranks(a), ranks(b)
  if ra.std() == 0 or rb.std() == 0:
    return float('nan')
  return float(np.corrcoef(ra, rb)[0, 1])


def concordance(a: Sequence[float], b: Sequence[float]) -> Dict[str, int]:
  """Pairs (i, j) ordered the same way by a and b (concordant), the opposite way
  (discordant), or tied in either: Kendall's counts, which pool across seeds."""
  counts = {'concordant': 0, 'discordant': 0, 'tied': 0}
  for i in range(len(a)):
    for j in range(i + 1, len(a)):
      sign = np.sign(a[i] - a[j]) * np.sign(b[i] - b[j])
      counts['concordant' if sign > 0 else 'discordant' if sign < 0 else 'tied'] += 1
  return counts


def checkpoint_classifier(config, path: str):
  """The classifier of one per-epoch checkpoint (ModelCheckpoint saves the whole
  adversarial wrapper's weights; the classifier is its ``base``)."""
  from components.trainer import training  # pylint: disable=g-import-not-at-top
  model = training.compile_model(config, 'adversarial', steps_per_epoch=1)
  model.load_weights(path).expect_partial()
  return model.base


def heldout_figures(classifier, config, holdout, method: str) -> Dict:
  """The Trainer's selection metric (callbacks.HeldoutAccuracy) under ``method``."""
  from components.trainer import callbacks, data  # pylint: disable=g-import-not-at-top
  train = config.train
  attack = callbacks.robust_eval_attack(config.adv, train.robust_eval_pgd_steps, method)
  metric = callbacks.HeldoutAccuracy(
      data.evaluation_dataset(*holdout, batch_size=train.eval_batch_size), attack,
      config.adv, seed=train.seed)
  start = time.perf_counter()
  robust, clean = metric(classifier)
  return {'robust': robust, 'clean': clean, 'seconds': time.perf_counter() - start}


def gate_figures(classifier, eval_config, attack, x, y) -> Dict:
  """The gate's suite (attack) on (x, y): worst case and each stage, per image."""
  from components.robustness_evaluator import autoattack  # pylint: disable=g-import-not-at-top
  attacker, _ = make_attacker(classifier, eval_config, 'candidate')
  start = time.perf_counter()
  outcome = autoattack.run_attack(attacker, x, y, attack)
  robust = autoattack.robust_mask(outcome)
  return {'robust': float(robust.mean()), 'n': len(y),
          'after': outcome.details['robust_accuracy_after'],
          'member_seconds': outcome.details['member_seconds'],
          'robust_images': np.flatnonzero(robust).tolist(),
          'seconds': time.perf_counter() - start}


def choice(rows: Dict[int, Dict], epochs: List[int], method: str,
           min_clean: float) -> Tuple[int, bool]:
  """(epoch, qualified): what the Trainer's selection (callbacks.select_epoch) picks
  from these epochs' held-out figures under ``method``."""
  from components.trainer.callbacks import select_epoch  # pylint: disable=g-import-not-at-top
  index, qualified = select_epoch(
      [(rows[e][method]['robust'], rows[e][method]['clean']) for e in epochs], min_clean)
  return epochs[index], qualified


def study_seed(config, eval_config, attack, seed: int, epochs: List[int], train_split,
               test, run_dir: str, gate_epochs: str) -> Dict:
  from components.trainer import data  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  config = config.replace(**{'train.seed': seed})
  train = config.train
  if train.deterministic:   # as the Trainer measured it
    tf.config.experimental.enable_op_determinism()
  _, holdout = data.split_holdout(*train_split, train.robust_eval_examples, train.seed)
  with open(os.path.join(run_dir, 'model', 'selection.json')) as f:
    recorded = {e['epoch']: e for e in json.load(f)['epochs']}
  path = os.path.join(run_dir, STUDY_FILE)
  # Through JSON, as it is stored (tuples become lists), so a rerun's key compares equal.
  key = json.loads(json.dumps({'trainer_config': json.loads(config.to_json()),
                               'attack': dataclasses.asdict(attack)}))
  done = {}
  if os.path.exists(path):
    with open(path) as f:
      previous = json.load(f)
    if previous.get('key') == key:
      done = {int(k): v for k, v in previous['epochs'].items()}
  x, y = test[0][:attack.sample_size], test[1][:attack.sample_size]

  def save():
    with open(path, 'w') as f:
      json.dump({'key': key, 'epochs': {str(k): v for k, v in done.items()}}, f)

  def load(epoch):
    ckpt = os.path.join(run_dir, 'model', 'checkpoints', f'epoch-{epoch:03d}')
    if not os.path.exists(ckpt + '.index'):
      raise SystemExit(f'error: {ckpt}.index: no checkpoint for epoch {epoch}')
    return checkpoint_classifier(config, ckpt)

  for epoch in epochs:   # the held-out side: 6-10 s a method and checkpoint
    if epoch in done:
      continue
    classifier = load(epoch)
    row = {method: heldout_figures(classifier, config, holdout, method)
           for method in METHODS}
    if epoch in recorded and abs(recorded[epoch]['robust_accuracy']
                                 - row['pgd']['robust']) > 1e-9:
      raise SystemExit(
          f'error: seed {seed} epoch {epoch}: held-out PGD figure '
          f'{row["pgd"]["robust"]:.4f} differs from selection.json\'s '
          f'{recorded[epoch]["robust_accuracy"]:.4f}: not the Trainer\'s split or attack')
    row['qualifies'] = row['pgd']['clean'] >= train.selection_min_clean_accuracy
    row['gate'] = None
    done[epoch] = row
    print(f'  seed {seed} epoch {epoch}: held-out clean {row["pgd"]["clean"]:.4f}, '
          f'PGD {row["pgd"]["robust"]:.4f}, APGD-CE {row["apgd-ce"]["robust"]:.4f}'
          + ('' if row['qualifies'] else '; under the clean bound'), flush=True)
    save()
  # The gate side: every epoch that competes (the clean bound), or only the epochs
  # some method chooses (what switching methods changes), ~4 minutes each.
  if gate_epochs == 'chosen':
    wanted = {choice(done, epochs, m, train.selection_min_clean_accuracy)[0]
              for m in METHODS}
  else:
    wanted = {e for e in epochs if done[e]['qualifies']}
  for epoch in sorted(wanted):
    if done[epoch]['gate'] is not None:
      continue
    done[epoch]['gate'] = gate_figures(load(epoch), eval_config, attack, x, y)
    print(f'  seed {seed} epoch {epoch}: gate side {done[epoch]["gate"]["robust"]:.4f} '
          f'(n {len(y)}, {done[epoch]["gate"]["seconds"]:.0f} s)', flush=True)
    save()
  return summarize_seed(seed, {e: done[e] for e in epochs},
                        train.selection_min_clean_accuracy)


def summarize_seed(seed: int, rows: Dict[int, Dict], min_clean: float) -> Dict:
  """Per method: the chosen epoch, its gate-side figure, the regret against the best
  qualifying epoch (paired: images robust at the best but not at the chosen, and the
  reverse) and the rank agreement (Spearman, Kendall's pair counts) over the epochs
  with gate-side figures."""
  epochs = sorted(rows)
  gated = [e for e in epochs if rows[e]['gate'] is not None]
  best = max(gated, key=lambda e: rows[e]['gate']['robust']) if gated else None
  out = {'seed': seed, 'best_epoch': best, 'methods': {}}
  for method in METHODS:
    chosen, qualified = choice(rows, epochs, method, min_clean)
    held = [rows[e][method]['robust'] for e in gated]
    gate = [rows[e]['gate']['robust'] for e in gated]
    entry = {'chosen_epoch': chosen, 'qualified': qualified,
             'spearman': spearman(held, gate), 'pairs': concordance(held, gate)}
    if rows[chosen]['gate'] is not None and best is not None:
      at_chosen = set(rows[chosen]['gate']['robust_images'])
      at_best = set(rows[best]['gate']['robust_images'])
      entry.update(gate=rows[chosen]['gate']['robust'],
                   regret=rows[best]['gate']['robust'] - rows[chosen]['gate']['robust'],
                   only_at_best=len(at_best - at_chosen),
                   only_at_chosen=len(at_chosen - at_best))
    out['methods'][method] = entry
  out['rows'] = {e: {'clean': rows[e]['pgd']['clean'], 'qualifies': rows[e]['qualifies'],
                     **{m: rows[e][m]['robust'] for m in METHODS},
                     'gate': rows[e]['gate'] and rows[e]['gate']['robust']}
                 for e in epochs}
  return out


def verify(config, seed: int, epoch: int, run_dir: str, test) -> Dict:
  """The preset's whole gate (bench/quality.py's evaluate: every attack, thresholds)
  on one checkpoint. When it holds the weights the run selected, quality.json's
  result is that evaluation already (weights compared by sha256)."""
  from bench.quality import evaluate, headline, limit_eval, weights_digest  # pylint: disable=g-import-not-at-top
  trainer = config.trainer_config().replace(**{'train.seed': seed})
  classifier = checkpoint_classifier(
      trainer, os.path.join(run_dir, 'model', 'checkpoints', f'epoch-{epoch:03d}'))
  digest = weights_digest(classifier)
  done = os.path.join(run_dir, 'quality.json')
  if os.path.exists(done):
    with open(done) as f:
      earlier = json.load(f)
    if earlier.get('weights_sha256') == digest:
      return {'epoch': epoch, 'reused': done, 'blessed': earlier['blessed'],
              'failed_checks': earlier['failed_checks'],
              'figures': {k: v['accuracy'] for k, v in earlier['figures'].items()}}
  eval_config = limit_eval(config.eval, None, sweep=False)
  start = time.perf_counter()
  evaluated = evaluate(classifier, eval_config, *test, 'candidate', sanity=False)
  return {'epoch': epoch, 'weights_sha256': digest, 'blessed': evaluated['blessed'],
          'failed_checks': evaluated['failed'],
          'figures': {k: v['accuracy'] for k, v in headline(eval_config, evaluated).items()},
          'warnings': evaluated['warnings'], 'seconds': time.perf_counter() - start}


def table(summaries: List[Dict], gate_name: str) -> str:
  lines = []
  for s in summaries:
    lines.append(f'seed {s["seed"]}   epoch | held-out clean | PGD-10 | APGD-CE-10 | '
                 f'{gate_name}')
    for e, r in s['rows'].items():
      marks = ''.join(m for m, method in (('P', 'pgd'), ('A', 'apgd-ce'))
                      if s['methods'][method]['chosen_epoch'] == e)
      marks += '*' if s['best_epoch'] == e else ''
      gate = (f'{100 * r["gate"]:.1f}' if r['gate'] is not None else
              'not measured' if r['qualifies'] else 'under the clean bound')
      lines.append(f'          {e:5d} | {100 * r["clean"]:14.2f} | {100 * r["pgd"]:6.2f} | '
                   f'{100 * r["apgd-ce"]:10.2f} | {gate} {marks}')
  lines.append('P: chosen by PGD-10, A: chosen by APGD-CE-10, *: best gate-side figure')
  return '\n'.join(lines)


def main(argv=None) -> Dict:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--run', required=True, help='--out of the bench/quality.py run')
  parser.add_argument('--preset', choices=sorted(PRESETS), default='robust-eps0.3')
  parser.add_argument('--seeds', nargs='+', default=['0,1,2'])
  parser.add_argument('--epochs', type=parse_epochs, default=None,
                      help="e.g. 8-14 (default: from the preset's selection start)")
  parser.add_argument('--test-images', type=int, default=1000)
  parser.add_argument('--suite', default='apgd-ce,apgd-t',
                      help="the gate's AutoAttack members to run, in order")
  parser.add_argument('--gate-epochs', choices=('qualifying', 'chosen'),
                      default='qualifying',
                      help='gate side on every epoch clearing the clean bound, or only '
                           'on the epochs a selection method chooses')
  parser.add_argument('--verify', choices=METHODS, default=None,
                      help="then run the preset's whole gate on the epoch this method "
                           'chooses, per seed (~10 minutes a seed not already evaluated)')
  parser.add_argument('--data-dir', default=os.environ.get('MNIST_DIR'))
  args = parser.parse_args(argv)
  if not args.data_dir:
    parser.error('set MNIST_DIR or pass --data-dir (directory of the four IDX files)')
  try:
    seeds = parse_seeds(args.seeds)
  except argparse.ArgumentTypeError as e:
    parser.error(str(e))
  config = build_config(args.preset, None, {})
  run_root = os.path.join(args.run, args.preset)
  for seed in seeds:
    if not os.path.exists(os.path.join(run_root, f'seed-{seed}', 'model',
                                       'selection.json')):
      parser.error(f'--run {args.run}: no {args.preset}/seed-{seed}/model/selection.json')
  gated = config.eval.thresholds.min_attack_accuracy
  gate = [a for a in config.eval.attacks if a.method == 'autoattack' and a.name in gated]
  if not gate:
    parser.error(f'preset {args.preset} gates on no AutoAttack suite')
  suite = tuple(s for s in args.suite.split(',') if s)
  attack = dataclasses.replace(gate[0], suite=suite, sample_size=args.test_images)
  trainer = config.trainer_config()
  epochs = args.epochs or list(range(trainer.train.selection_start_epoch,
                                     trainer.train.epochs + 1))
  info = cpu_info()
  started = datetime.datetime.now(datetime.timezone.utc)
  gate_name = f'{"+".join(suite)} eps {attack.epsilon:g} (n {args.test_images})'
  print(f'selection study: {args.preset}, seeds {seeds}, epochs {epochs[0]}-{epochs[-1]}, '
        f'{started:%Y-%m-%d %H:%M} UTC, CPU {info["cpu_model"]} ({info["cores"]} cores); '
        f'gate side {gate_name}', flush=True)
  train_split = load_normalized(args.data_dir, 'train')
  test = load_normalized(args.data_dir, 'eval')
  summaries = [study_seed(trainer, config.eval, attack, seed, epochs, train_split, test,
                          os.path.join(run_root, f'seed-{seed}'), args.gate_epochs)
               for seed in seeds]
  print()
  print(table(summaries, gate_name))
  for method in METHODS:
    chosen = [s['methods'][method] for s in summaries]
    gates = [c.get('gate') for c in chosen]
    print(f'{method}: chosen epochs {[c["chosen_epoch"] for c in chosen]}, gate side '
          f'{[None if g is None else round(100 * g, 1) for g in gates]}, regret '
          f'{[round(100 * c.get("regret", float("nan")), 1) for c in chosen]} points, '
          f'Spearman {[round(c["spearman"], 2) for c in chosen]}, epoch pairs ordered as '
          f'the gate orders them / the other way / tied: ' + '/'.join(
              str(sum(c['pairs'][k] for c in chosen))
              for k in ('concordant', 'discordant', 'tied')))
  for s in summaries:
    for method in METHODS:
      g = s['methods'][method].get('gate')
      if g is not None:
        s['methods'][method]['ci95'] = wilson(g, args.test_images)
  for s in summaries if args.verify else ():
    chosen = s['methods'][args.verify]['chosen_epoch']
    s['verified'] = verify(config, s['seed'], chosen, os.path.join(run_root, f'seed-{s["seed"]}'),
                           test)
    v = s['verified']
    print(f'verify {args.verify}: seed {s["seed"]} epoch {chosen}: blessed {v["blessed"]}'
          + (f' (failed: {v["failed_checks"]})' if not v['blessed'] else '')
          + (' [quality.json: same weights]' if 'reused' in v else '') + ', '
          + ', '.join(f'{k} {100 * a:.2f}' for k, a in v['figures'].items()), flush=True)
  summary = {'preset': args.preset, 'run': args.run, 'date': started.isoformat(),
             'cpu': info, 'gate_side': gate_name, 'epochs': epochs, 'seeds': summaries}
  print(json.dumps(summary), flush=True)
  return summary


if __name__ == '__main__':
  main()

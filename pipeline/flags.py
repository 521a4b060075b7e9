"""Command-line flags shared by the local and Kubeflow runners.

Each flag overrides one field of pipeline/config.py; a flag left unset keeps the
config's (or the preset's) value.
"""
import argparse
import os
from typing import Any, Dict, List, Optional

from pipeline import config as config_lib

# flag dest -> dotted config field
_FIELDS = {
    'pipeline_name': 'pipeline_name',
    'pipeline_root': 'pipeline_root',
    'metadata_path': 'metadata_path',
    'serving_dir': 'serving_dir',
    'span_pattern': 'span_pattern',
    'epochs': 'train.epochs',
    'batch_size': 'train.batch_size',
    'learning_rate': 'train.learning_rate',
    'seed': 'train.seed',
    'precision': 'train.precision',
    'jit_compile': 'train.jit_compile',
    'multiplier': 'adv.multiplier',
    'adv_step_size': 'adv.adv_step_size',
    'adv_grad_norm': 'adv.adv_grad_norm',
    'pgd_iterations': 'adv.pgd_iterations',
    'pgd_epsilon': 'adv.pgd_epsilon',
    'random_init': 'adv.random_init',
    'adv_loss': 'adv.loss',
    'trades_beta': 'adv.trades_beta',
    'eval_sample_size': 'eval.sample_size',
    'min_clean_accuracy': 'eval.thresholds.min_clean_accuracy',
    'max_drop': 'eval.thresholds.max_drop',
}
_NULLABLE = ('pgd_epsilon', 'max_drop')


def _bool(s: str) -> bool:
  if s.lower() in ('1', 'true', 'yes', 'on'):
    return True
  if s.lower() in ('0', 'false', 'no', 'off'):
    return False
  raise argparse.ArgumentTypeError(f'{s!r} is not a boolean (true/false)')


def _optional_float(s: str) -> Optional[float]:
  return None if s.lower() in ('none', '') else float(s)


def add_config_flags(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
  d = config_lib.PipelineConfig()
  g = p.add_argument_group('pipeline')
  g.add_argument('--preset', choices=sorted(config_lib.PRESETS), default=None,
                 help='named bundle of settings applied before the other flags '
                      f'(default {d.preset})')
  g.add_argument('--data-dir', default=None,
                 help='directory with the four MNIST IDX files (default: $MNIST_DIR, '
                      'else the download cache)')
  g.add_argument('--span-pattern', default=None,
                 help="sub-folder pattern of --data-dir holding one span each, e.g. "
                      "'span-{SPAN}'; the latest span is ingested")
  g.add_argument('--pipeline-name', default=None, help=f'default {d.pipeline_name}')
  g.add_argument('--pipeline-root', default=None, help=f'default {d.pipeline_root}')
  g.add_argument('--metadata-path', default=None,
                 help='SQLite ml-metadata file (default <pipeline-root>/metadata.sqlite)')
  g.add_argument('--serving-dir', default=None, help=f'default {d.serving_dir}')
  g.add_argument('--beam-workers', type=int, default=None,
                 help='Beam DirectRunner worker processes (default 1: in memory)')
  g.add_argument('--no-base-model', dest='train_base_model', action='store_false',
                 default=None, help='skip the non-adversarial base model')
  g.add_argument('--no-cache', dest='enable_cache', action='store_false', default=None,
                 help='re-run every component even if its inputs are unchanged')

  g = p.add_argument_group('training')
  g.add_argument('--epochs', type=int, help=f'default {d.train.epochs}')
  g.add_argument('--batch-size', type=int, help=f'per replica, default {d.train.batch_size}')
  g.add_argument('--learning-rate', type=float, help=f'default {d.train.learning_rate}')
  g.add_argument('--seed', type=int, help=f'default {d.train.seed}')
  g.add_argument('--precision', choices=config_lib.PRECISIONS,
                 help=f'Keras dtype policy, default {d.train.precision}')
  g.add_argument('--jit-compile', type=_bool, help=f'XLA, default {d.train.jit_compile}')

  g = p.add_argument_group('adversarial regularization (NSL names)')
  g.add_argument('--multiplier', type=float, help=f'default {d.adv.multiplier}')
  g.add_argument('--adv-step-size', type=float, help=f'default {d.adv.adv_step_size}')
  g.add_argument('--adv-grad-norm', choices=config_lib.GRAD_NORMS,
                 help=f'default {d.adv.adv_grad_norm}')
  g.add_argument('--pgd-iterations', type=int, help=f'default {d.adv.pgd_iterations}')
  # Flags that take 'none' leave no attribute when unset (default=SUPPRESS).
  g.add_argument('--pgd-epsilon', type=_optional_float, default=argparse.SUPPRESS,
                 help='default none')
  g.add_argument('--random-init', type=_bool, help=f'default {d.adv.random_init}')
  g.add_argument('--adv-loss', choices=config_lib.ADV_LOSSES, help=f'default {d.adv.loss}')
  g.add_argument('--trades-beta', type=float, help=f'default {d.adv.trades_beta}')

  g = p.add_argument_group('robustness gate')
  g.add_argument('--eval-sample-size', type=int,
                 help=f'examples per attack that sets none (PGD), default {d.eval.sample_size}; '
                      'FGSM runs on the whole test split')
  g.add_argument('--min-clean-accuracy', type=float,
                 help=f'default {d.eval.thresholds.min_clean_accuracy}')
  g.add_argument('--min-attack-accuracy', action='append', default=None,
                 metavar='ATTACK=ACC',
                 help='minimum accuracy under an attack, repeatable (default ' +
                 ', '.join(f'{k}={v}' for k, v in
                           d.eval.thresholds.min_attack_accuracy.items()) + ')')
  g.add_argument('--max-drop', type=_optional_float, default=argparse.SUPPRESS,
                 help=f'largest allowed drop vs the last blessed model, or none '
                      f'(default {d.eval.thresholds.max_drop})')
  return p


def _attack_thresholds(items: List[str], current: Dict[str, float]) -> Dict[str, float]:
  out = dict(current)
  for item in items:
    name, sep, value = item.partition('=')
    if not sep:
      raise config_lib.ConfigError(
          f'--min-attack-accuracy {item!r}: expected ATTACK=ACCURACY, e.g. pgd40=0.5')
    try:
      out[name] = float(value)
    except ValueError:
      raise config_lib.ConfigError(
          f'--min-attack-accuracy {item!r}: {value!r} is not a number') from None
  return out


def config_from_args(args: argparse.Namespace,
                     base: Optional[config_lib.PipelineConfig] = None
                     ) -> config_lib.PipelineConfig:
  cfg = base or config_lib.PipelineConfig()
  if args.preset:
    cfg = config_lib.apply_preset(cfg, args.preset)
  changes: Dict[str, Any] = {}
  for dest, field in _FIELDS.items():
    value = getattr(args, dest, None)
    if value is not None or (dest in _NULLABLE and hasattr(args, dest)):
      changes[field] = value
  for dest in ('train_base_model', 'enable_cache'):
    if getattr(args, dest, None) is not None:
      changes[dest] = getattr(args, dest)
  if getattr(args, 'beam_workers', None) is not None:
    if args.beam_workers < 1:
      raise config_lib.ConfigError(f'--beam-workers={args.beam_workers}: must be >= 1')
    mode = 'in_memory' if args.beam_workers == 1 else 'multi_processing'
    changes['beam_args'] = (f'--direct_running_mode={mode}',
                            f'--direct_num_workers={args.beam_workers}')
  if getattr(args, 'min_attack_accuracy', None):
    changes['eval.thresholds.min_attack_accuracy'] = _attack_thresholds(
        args.min_attack_accuracy, cfg.eval.thresholds.min_attack_accuracy)
  return cfg.replace(**changes)


def data_dir_from_args(args: argparse.Namespace) -> Optional[str]:
  return args.data_dir or os.environ.get('MNIST_DIR') or None

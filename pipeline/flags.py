"""Command-line flags shared by the local and Kubeflow runners.

Each flag overrides one field of pipeline/config.py; a flag left unset keeps the
config's (or the preset's) value.
"""
import argparse
import os
from typing import Any, Dict, List, NamedTuple, Optional

from components import config as components_config
from components.strict_example_validator import checks_config
from pipeline import config as config_lib

def _bool(s: str) -> bool:
  if s.lower() in ('1', 'true', 'yes', 'on'):
    return True
  if s.lower() in ('0', 'false', 'no', 'off'):
    return False
  raise argparse.ArgumentTypeError(f'{s!r} is not a boolean (true/false)')


def _optional_float(s: str) -> Optional[float]:
  """A number, or 'none' for no value."""
  if s.lower() in ('none', ''):
    return None
  try:
    return float(s)
  except ValueError:
    raise argparse.ArgumentTypeError(f'{s!r} is not a number or none') from None


class Flag(NamedTuple):
  """One command-line flag that sets one config field (dotted name)."""
  group: str
  name: str
  field: str
  kwargs: Dict[str, Any]
  help: str = ''

  @property
  def dest(self) -> str:
    return self.name.lstrip('-').replace('-', '_')


_PIPELINE, _DATA, _TRAIN, _ADV, _GATE = (
    'pipeline', 'data checks', 'training', 'adversarial regularization (NSL names)',
    'robustness gate')
# Every flag that maps onto a config field, declared once; its help shows the
# default read from PipelineConfig itself.
FLAGS = (
    Flag(_PIPELINE, '--pipeline-name', 'pipeline_name', {}),
    Flag(_PIPELINE, '--pipeline-root', 'pipeline_root', {}),
    Flag(_PIPELINE, '--metadata-path', 'metadata_path', {},
         'SQLite ml-metadata file (None: <pipeline-root>/metadata.sqlite)'),
    Flag(_PIPELINE, '--serving-dir', 'serving_dir', {}),
    Flag(_PIPELINE, '--span-pattern', 'span_pattern', {},
         "sub-folder pattern of --data-dir holding one span each, e.g. 'span-{SPAN}'; "
         'the latest span is ingested'),
    Flag(_PIPELINE, '--source', 'data_source', {'choices': config_lib.DATA_SOURCES},
         'idx: --data-dir of IDX files; tfds: a prepared tensorflow-datasets mnist '
         '(None: idx when a data dir is given, else tfds)'),
    Flag(_PIPELINE, '--tfds-data-dir', 'tfds_data_dir', {},
         'tfds data dir (None: $TFDS_DATA_DIR, else tfds\'s default, as tfds.load)'),
    Flag(_PIPELINE, '--tfds-version', 'tfds_version', {}),
    Flag(_TRAIN, '--epochs', 'train.epochs', {'type': int}),
    Flag(_TRAIN, '--batch-size', 'train.batch_size', {'type': int}, 'per replica'),
    Flag(_TRAIN, '--learning-rate', 'train.learning_rate', {'type': float}),
    Flag(_TRAIN, '--lr-schedule', 'train.lr_schedule',
         {'choices': components_config.LR_SCHEDULES},
         'cosine: decays to 0 over all epochs'),
    Flag(_TRAIN, '--seed', 'train.seed', {'type': int}),
    Flag(_TRAIN, '--precision', 'train.precision',
         {'choices': components_config.PRECISIONS}, 'Keras dtype policy'),
    Flag(_TRAIN, '--jit-compile', 'train.jit_compile', {'type': _bool}, 'XLA'),
    Flag(_TRAIN, '--steps-per-execution', 'train.steps_per_execution', {'type': int},
         'batch updates per compiled call (same weights, fewer host round trips)'),
    Flag(_TRAIN, '--deterministic', 'train.deterministic', {'type': _bool},
         'deterministic kernels: same seed, same weights'),
    Flag(_TRAIN, '--selection-min-clean-accuracy', 'train.selection_min_clean_accuracy',
         {'type': _optional_float},
         'robust model selection only among epochs with this held-out clean accuracy'),
    Flag(_TRAIN, '--selection-start-epoch', 'train.selection_start_epoch', {'type': int},
         'first epoch the held-out robust selection measures (and may choose)'),
    Flag(_TRAIN, '--selection-attack', 'train.robust_eval_method',
         {'choices': components_config.ROBUST_EVAL_METHODS},
         "the held-out selection's attack (apgd-ce: AutoAttack's first stage)"),
    Flag(_ADV, '--multiplier', 'adv.multiplier', {'type': float}),
    Flag(_ADV, '--adv-step-size', 'adv.adv_step_size', {'type': float}),
    Flag(_ADV, '--adv-grad-norm', 'adv.adv_grad_norm',
         {'choices': components_config.GRAD_NORMS}),
    Flag(_ADV, '--pgd-iterations', 'adv.pgd_iterations', {'type': int}),
    Flag(_ADV, '--pgd-epsilon', 'adv.pgd_epsilon', {'type': _optional_float},
         'a number or none'),
    Flag(_ADV, '--random-init', 'adv.random_init', {'type': _bool}),
    Flag(_ADV, '--adv-loss', 'adv.loss', {'choices': components_config.ADV_LOSSES}),
    Flag(_ADV, '--trades-beta', 'adv.trades_beta', {'type': float}),
    Flag(_GATE, '--eval-sample-size', 'eval.sample_size', {'type': int},
         'examples per attack that sets none; FGSM runs on the whole test split'),
    Flag(_GATE, '--min-clean-accuracy', 'eval.thresholds.min_clean_accuracy',
         {'type': float}),
    Flag(_GATE, '--max-drop', 'eval.thresholds.max_drop', {'type': _optional_float},
         'largest allowed drop vs the last blessed model (paired, same images), or '
         'none'),
    *(Flag(_DATA, flag, f'data_checks.{field}',
           {'type': _bool} if field == 'allow_drift' else {'type': _optional_float},
           'relaxes a data check of the validator; none disables it'
           if field != 'allow_drift' else 'report drift as a warning, not a failure')
      for field, flag in checks_config.FLAGS.items()),
    Flag(_GATE, '--min-eval-examples', 'eval.thresholds.min_eval_examples',
         {'type': int}, 'fewest images any gate figure may rest on'),
    Flag(_GATE, '--gate-confidence', 'eval.thresholds.gate_confidence', {'type': _bool},
         "compare the 95%% interval's lower bound, not the point estimate"),
)


def _field(config, dotted: str):
  for part in dotted.split('.'):
    config = getattr(config, part)
  return config


def add_config_flags(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
  d = config_lib.PipelineConfig()
  groups = {name: p.add_argument_group(name)
            for name in (_PIPELINE, _DATA, _TRAIN, _ADV, _GATE)}
  g = groups[_PIPELINE]
  g.add_argument('--preset', choices=sorted(config_lib.PRESETS), default=None,
                 help='named bundle of settings applied before the other flags '
                      f'(default {d.preset})')
  g.add_argument('--data-dir', default=None,
                 help='directory with the four MNIST IDX files (default: $MNIST_DIR; '
                      'with neither, the tfds source is used)')
  g.add_argument('--beam-workers', type=int, default=None,
                 help='Beam DirectRunner worker processes (default 1: in memory)')
  g.add_argument('--no-base-model', dest='train_base_model', action='store_false',
                 default=None, help='skip the non-adversarial base model')
  g.add_argument('--no-cache', dest='enable_cache', action='store_false', default=None,
                 help='re-run every component even if its inputs are unchanged')
  for flag in FLAGS:
    default = f'default {_field(d, flag.field)}'
    # default=SUPPRESS: an unset flag leaves no attribute, so 'none' is told apart
    # from "not given".
    groups[flag.group].add_argument(
        flag.name, default=argparse.SUPPRESS,
        help=f'{flag.help}; {default}' if flag.help else default, **flag.kwargs)
  groups[_GATE].add_argument(
      '--fab-t', action='store_true', default=None,
      help="add FAB-T to every AutoAttack suite, after APGD-T: AutoAttack's full "
           "standard version (about 1.5x APGD-T's time; the robust presets have it)")
  groups[_GATE].add_argument(
      '--min-attack-accuracy', action='append', default=None, metavar='ATTACK=ACC',
      help='minimum accuracy under an attack, repeatable (default ' +
      ', '.join(f'{k}={v}' for k, v in d.eval.thresholds.min_attack_accuracy.items()) +
      ')')
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
  changes: Dict[str, Any] = {flag.field: getattr(args, flag.dest)
                             for flag in FLAGS if hasattr(args, flag.dest)}
  for dest in ('train_base_model', 'enable_cache'):
    if getattr(args, dest, None) is not None:
      changes[dest] = getattr(args, dest)
  if getattr(args, 'beam_workers', None) is not None:
    if args.beam_workers < 1:
      raise config_lib.ConfigError(f'--beam-workers={args.beam_workers}: must be >= 1')
    mode = 'in_memory' if args.beam_workers == 1 else 'multi_processing'
    changes['beam_args'] = (f'--direct_running_mode={mode}',
                            f'--direct_num_workers={args.beam_workers}')
  if getattr(args, 'fab_t', None):
    changes['eval.attacks'] = tuple(components_config.with_fab(a)
                                    for a in cfg.eval.attacks)
  if getattr(args, 'min_attack_accuracy', None):
    changes['eval.thresholds.min_attack_accuracy'] = _attack_thresholds(
        args.min_attack_accuracy, cfg.eval.thresholds.min_attack_accuracy)
  try:
    return cfg.replace(**changes)
  except ValueError as e:  # the data checks' own validation
    if isinstance(e, config_lib.ConfigError):
      raise
    raise config_lib.ConfigError(str(e)) from e


def data_dir_from_args(args: argparse.Namespace) -> Optional[str]:
  return args.data_dir or os.environ.get('MNIST_DIR') or None

"""The pipeline's whole configuration: the components' sections plus the runners'
own settings (paths, data source, caching, presets).

Components never import this module. The pipeline hands each component its own
section (``trainer_config``, ``eval``), so a component's cache key holds every
field it reads and nothing else.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Dict, Optional, Tuple

from components.strict_example_validator.checks_config import DataChecksConfig
from components.config import (AdvConfig, AttackConfig, ConfigError, EvalConfig,
                               ModelConfig, Thresholds, TrainConfig, TrainerConfig,
                               default_attacks, from_dict, replace_dotted,
                               standard_autoattack)


DATA_SOURCES = ('idx', 'tfds')


def _check(cond: bool, msg: str) -> None:
  if not cond:
    raise ConfigError(msg)


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  pipeline_name: str = 'mnist_adv'
  pipeline_root: str = 'runs/pipeline'
  metadata_path: Optional[str] = None          # default: <pipeline_root>/metadata.sqlite
  serving_dir: str = 'serving/mnist_adv'
  data_dir: Optional[str] = None               # MNIST IDX files (source 'idx')
  # 'idx' (a directory of the four IDX files, with spans) or 'tfds' (a prepared
  # tensorflow-datasets mnist); None: idx when a data dir is given, else tfds.
  data_source: Optional[str] = None
  tfds_data_dir: Optional[str] = None          # None: $TFDS_DATA_DIR, else tfds's
  tfds_version: str = '3.0.1'
  # Sub-folder pattern of data_dir holding one span each, e.g. 'span-{SPAN}'. None
  # reads the IDX files at the top of data_dir as span 0.
  span_pattern: Optional[str] = None
  # In-process DirectRunner: at MNIST scale on 2 cores, starting worker processes
  # costs more than it saves (data half: 30 s in memory vs 194 s with 2 processes).
  beam_args: Tuple[str, ...] = ('--direct_running_mode=in_memory',
                                '--direct_num_workers=1')
  enable_cache: bool = True
  train_base_model: bool = True
  preset: str = 'tutorial'
  adv: AdvConfig = dataclasses.field(default_factory=AdvConfig)
  model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
  train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
  eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
  # The validator's semantic data checks (leakage, balance, blank, inverted, labels,
  # drift against the previous span).
  data_checks: DataChecksConfig = dataclasses.field(default_factory=DataChecksConfig)

  def validate(self) -> 'PipelineConfig':
    self.trainer_config().validate()
    self.eval.validate()
    _check(bool(self.pipeline_name), 'pipeline_name must be non-empty')
    _check(self.data_source in (None,) + DATA_SOURCES,
           f'data_source={self.data_source!r}: must be one of {DATA_SOURCES}')
    return self

  @property
  def metadata(self) -> str:
    return self.metadata_path or f'{self.pipeline_root.rstrip("/")}/metadata.sqlite'

  def to_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), sort_keys=True)

  @classmethod
  def from_dict(cls, d: Dict[str, Any]) -> 'PipelineConfig':
    return from_dict(cls, d).validate()

  @classmethod
  def from_json(cls, s: str) -> 'PipelineConfig':
    return cls.from_dict(json.loads(s))

  def replace(self, **changes) -> 'PipelineConfig':
    """dataclasses.replace that also accepts dotted names: replace(**{'adv.multiplier': 0})."""
    return replace_dotted(self, changes).validate()

  def trainer_config(self) -> TrainerConfig:
    """The Trainer's section: only the fields that shape training."""
    return TrainerConfig(adv=self.adv, model=self.model, train=self.train)


# Named bundles of overrides. 'tutorial' is the reference tutorial; 'robust' is the
# opt-in preset for white-box PGD robustness (see README).
PRESETS: Dict[str, Dict[str, Any]] = {
    'tutorial': {},
    # PGD-7 neighbors from a random start (Madry-style), trained slightly beyond the
    # evaluated radius (0.25 vs 0.2) for margin, with the clean loss kept at equal
    # weight to hold clean accuracy; model selection on held-out PGD accuracy guards
    # against robust overfitting. The gate demands white-box PGD robustness, which
    # the tutorial's FGSM-regularized model does not have.
    'robust': {
        'adv.pgd_iterations': 7,
        'adv.pgd_epsilon': 0.25,
        'adv.adv_step_size': 0.09,      # ~2.5 * eps / steps
        'adv.random_init': True,
        'adv.multiplier': 1.0,
        'adv.loss': 'clean_plus_adv',
        'train.epochs': 12,
        # Cosine decay to 0 over the 12 epochs, all of them run (no early stopping):
        # the low-rate last epochs are where clean and robust accuracy both gain (one
        # seed at a constant rate ended at 98.6% clean, short of the gate).
        'train.lr_schedule': 'cosine',
        'train.early_stopping_patience': 0,
        # 2,000 held-out images: one standard error of a ~92% figure is 0.6 points,
        # so the selection is not decided by noise (1,000 gave 0.8).
        'train.robust_eval_examples': 2000,
        'train.robust_eval_pgd_steps': 10,
        # Gate-aware selection: only epochs whose held-out clean accuracy reaches
        # 0.98 compete on robustness. Held-out training images run 0.1-0.4 points
        # below the test split here (seeds 0-2: 98.35/98.15/98.5% held out against
        # 98.67/98.52/98.64% test at the chosen epochs), so 0.98 held out is the
        # gate's ~98.45% test point; 0.987 was never reached on three seeds (the
        # Trainer then falls back to the most robust epoch and says so). On those
        # seeds both thresholds choose the same epochs.
        'train.selection_min_clean_accuracy': 0.98,
        # Only the second half competes: the chosen epochs were 9-12 over six runs,
        # and skipping the held-out attack on epochs 1-6 saves ~1 minute a seed
        # without changing the training (same seed, same weights).
        'train.selection_start_epoch': 7,
        # Same seed, same weights. Measured free here: the PGD-7 step even ran 25%
        # faster with it (bench/README.md, 2026-11-25 night).
        'train.deterministic': True,
        'eval.attacks': default_attacks()[:2] + (
            # AutoAttack's full standard version, FAB-T included: it broke no image
            # the other members would have left here, but the gate then rests on the
            # standard itself (+~75 s on 1,000 images; README, "FAB-T").
            standard_autoattack(0.2, fab=True),
            standard_autoattack(0.3, name='autoattack_eps0.3', sample_size=500,
                                fab=True),),
        # On the lower bound of the 95% interval: 0.982 on 10,000 images is a point
        # estimate of ~98.45%, 0.88 on 1,000 one of ~90%.
        'eval.thresholds': Thresholds(
            min_clean_accuracy=0.982,
            min_attack_accuracy={'fgsm': 0.90, 'pgd40': 0.90, 'autoattack': 0.88},
            gate_confidence=True),
    },
    # The literature's MNIST threat model (eps 0.3): TRADES with PGD-10 neighbors
    # trained at eps 0.3, a wider CNN, 14 epochs on a cosine (bench/README.md,
    # 2026-11-26). 20 epochs took 37.6 minutes on a slow morning (1.2-2.5 min an
    # epoch), over the 30-minute budget, so the preset keeps 14.
    'robust-eps0.3': {
        'adv.pgd_iterations': 10,
        'adv.pgd_epsilon': 0.3,
        'adv.adv_step_size': 0.075,     # 2.5 * eps / steps
        'adv.random_init': True,
        'adv.loss': 'trades',
        # beta 2, not TRADES' 6: on seed 0 (one run each, 14 epochs) beta 6 gave 97.98%
        # clean / AutoAttack 88.9%, beta 3 98.42% / 89.3%, beta 2 98.55% / 89.0% (22.2
        # min). Only beta 2 clears both the 98.5% clean and the 88.5% AutoAttack goal.
        'adv.trades_beta': 2.0,
        'model.conv_filters': (32, 64, 128),
        'model.dense_units': 128,
        'train.epochs': 14,
        'train.lr_schedule': 'cosine',
        'train.early_stopping_patience': 0,
        'train.robust_eval_examples': 2000,
        'train.robust_eval_pgd_steps': 10,
        'train.selection_min_clean_accuracy': 0.98,
        'train.selection_start_epoch': 8,   # the second half, as in 'robust'
        'train.deterministic': True,
        'eval.attacks': default_attacks()[:1] + (
            AttackConfig(name='pgd40', epsilon=0.3, steps=40, step_size=0.01,
                         random_start=True),
            standard_autoattack(0.3, fab=True),),
        'eval.thresholds': Thresholds(
            min_clean_accuracy=0.982,
            min_attack_accuracy={'pgd40': 0.885, 'autoattack': 0.865},
            gate_confidence=True),
    },
}


def apply_preset(config: PipelineConfig, name: str) -> PipelineConfig:
  _check(name in PRESETS, f'preset={name!r}: must be one of {sorted(PRESETS)}')
  return config.replace(preset=name, **PRESETS[name])

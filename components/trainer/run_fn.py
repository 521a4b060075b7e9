"""TFX Trainer entry point: ``run_fn='components.trainer.run_fn.run_fn'``.

custom_config carries {'config': TrainerConfig JSON (components/config.py),
'mode': 'adversarial' | 'base'}.
"""
from absl import logging
from tfx.components.trainer.fn_args_utils import FnArgs

from components.trainer.adv_model import MODES
from components.trainer.training import train_and_export
from components.config import TrainerConfig

CONFIG_KEY = 'config'
MODE_KEY = 'mode'


def run_fn(fn_args: FnArgs) -> None:
  custom = fn_args.custom_config or {}
  if CONFIG_KEY not in custom:
    raise ValueError(f"Trainer custom_config lacks {CONFIG_KEY!r} (the TrainerConfig "
                     f'JSON); got keys {sorted(custom)}')
  config = TrainerConfig.from_json(custom[CONFIG_KEY])
  mode = custom.get(MODE_KEY, 'adversarial')
  if mode not in MODES:
    raise ValueError(f"Trainer custom_config['mode']={mode!r}: must be one of {MODES}")
  if fn_args.train_steps:
    logging.info('Trainer: train_args.num_steps=%s ignored; training runs '
                 'train.epochs=%d full epochs', fn_args.train_steps, config.train.epochs)
  train_and_export(
      config, mode,
      train_files=fn_args.train_files, eval_files=fn_args.eval_files,
      transform_dir=fn_args.transform_graph_path or fn_args.transform_output,
      serving_model_dir=fn_args.serving_model_dir,
      model_run_dir=fn_args.model_run_dir)

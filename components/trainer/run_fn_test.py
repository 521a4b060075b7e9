"""End-to-end tests of the TFX Trainer entry point with real FnArgs."""
import os

import numpy as np
import pytest
import tensorflow as tf
from tfx.components.trainer.fn_args_utils import FnArgs

from components import serving_contract as contract
from components.adversarial import losses
from components.trainer import callbacks
from components.trainer import testing_utils
from components.trainer import training
from components.trainer.run_fn import run_fn
from components.config import ConfigError, ModelConfig, TrainerConfig


def _fn_args(tmp_path, config: TrainerConfig, mode='adversarial') -> FnArgs:
  fixture = testing_utils.shared_transform_output()
  return FnArgs(
      train_files=[fixture.train_pattern], eval_files=[fixture.eval_pattern],
      transform_graph_path=fixture.transform_dir, transform_output=fixture.transform_dir,
      serving_model_dir=str(tmp_path / 'serving'), model_run_dir=str(tmp_path / 'run'),
      custom_config={'config': config.to_json(), 'mode': mode})


def _config(**changes) -> TrainerConfig:
  return TrainerConfig(model=ModelConfig(conv_filters=(4, 8), dense_units=16)).replace(**{
      'train.jit_compile': False, 'train.batch_size': 16, **changes})


def test_run_fn_trains_selects_on_robustness_checkpoints_and_exports(tmp_path):
  config = _config(**{'train.epochs': 2, 'train.robust_eval_examples': 16,
                      'train.robust_eval_pgd_steps': 2})
  args = _fn_args(tmp_path, config)
  run_fn(args)

  loaded = tf.saved_model.load(args.serving_model_dir)
  fixture = testing_utils.shared_transform_output()
  probs = loaded.signatures[contract.SERVING_IMAGES](
      images=tf.constant(fixture.eval_images[:4]))[contract.PROBABILITIES]
  np.testing.assert_allclose(np.sum(probs, axis=1), 1.0, atol=1e-5)

  checkpoints = os.path.join(args.model_run_dir, training.CHECKPOINT_SUBDIR)
  assert {'epoch-001.index', 'epoch-002.index'} <= set(os.listdir(checkpoints))
  events = tf.io.gfile.glob(os.path.join(args.model_run_dir, '*', 'events.out.tfevents.*'))
  subdirs = {os.path.basename(os.path.dirname(e)) for e in events}
  assert {'train', 'validation', training.ROBUST_LOG_SUBDIR} <= subdirs
  robust_values = []
  for e in tf.io.gfile.glob(os.path.join(args.model_run_dir, training.ROBUST_LOG_SUBDIR,
                                         'events.out.tfevents.*')):
    for event in tf.compat.v1.train.summary_iterator(e):
      for value in event.summary.value:
        if value.tag == callbacks.ROBUST_ACCURACY:
          robust_values.append(float(tf.make_ndarray(value.tensor)))
  assert len(robust_values) == 2 and all(0.0 <= v <= 1.0 for v in robust_values)


def test_diverging_loss_raises_and_exports_nothing(tmp_path, monkeypatch):
  real_cross_entropy = losses.cross_entropy
  # A loss that turns NaN, as a diverging run would.
  monkeypatch.setattr(losses, 'cross_entropy',
                      lambda labels, logits: real_cross_entropy(labels, logits) * np.nan)
  args = _fn_args(tmp_path, _config())
  with pytest.raises(callbacks.NanLossError, match='loss is nan'):
    run_fn(args)
  assert not os.path.exists(args.serving_model_dir)


def test_bad_custom_config_is_reported(tmp_path):
  args = _fn_args(tmp_path, _config())
  with pytest.raises(ValueError, match="custom_config\\['mode'\\]='robust'"):
    run_fn(FnArgs(**{**args.__dict__, 'custom_config': {**args.custom_config,
                                                        'mode': 'robust'}}))
  with pytest.raises(ValueError, match="lacks 'config'"):
    run_fn(FnArgs(**{**args.__dict__, 'custom_config': {'mode': 'base'}}))
  bad = args.custom_config['config'].replace('"multiplier": 0.2', '"multiplier": -1')
  with pytest.raises(ConfigError, match='multiplier=-1'):
    run_fn(FnArgs(**{**args.__dict__, 'custom_config': {'config': bad}}))

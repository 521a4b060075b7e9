"""One training run: strategy, data, model, callbacks, fit, export.

Kept apart from run_fn so tests and bench/ drive the same code without TFX FnArgs.
"""
import contextlib
import json
import os
from typing import Optional, Sequence, Tuple

from absl import logging
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

from components.trainer import callbacks as callbacks_lib
from components.trainer import data
from components.trainer import export
from components.trainer.adv_model import AdversarialModel
from components.trainer.model import build_cnn
from components.trainer.strategy import make_strategy
from components.transform import transformed_io
from components.config import PRECISIONS, TrainConfig, TrainerConfig

CHECKPOINT_SUBDIR = 'checkpoints'
ROBUST_LOG_SUBDIR = 'robust_selection'
SELECTION_FILE = 'selection.json'


@contextlib.contextmanager
def precision_policy(policy: str):
  """Sets the Keras global dtype policy (TrainConfig.precision) for the block; layers
  built inside keep it. Restores the previous one, so one run cannot leak into the
  next. compile() wraps the optimizer for loss scaling under 'mixed_float16' only:
  bfloat16 has float32's exponent range, so its gradients do not underflow."""
  if policy not in PRECISIONS:
    raise ValueError(f'precision={policy!r}: must be one of {PRECISIONS}')
  previous = keras.mixed_precision.global_policy()
  keras.mixed_precision.set_global_policy(policy)
  try:
    yield
  finally:
    keras.mixed_precision.set_global_policy(previous)


def learning_rate(train: TrainConfig, steps_per_epoch: Optional[int]):
  """Adam's rate: the constant, or a per-step cosine decay to 0 over
  train.epochs * steps_per_epoch steps. The schedule is a function of the optimizer's
  step count, which checkpoints keep, so a resumed run continues the same curve."""
  if train.lr_schedule == 'constant':
    return train.learning_rate
  if not steps_per_epoch or steps_per_epoch < 1:
    raise ValueError(f'lr_schedule={train.lr_schedule!r} needs the steps per epoch, '
                     f'got {steps_per_epoch!r}')
  return keras.optimizers.schedules.CosineDecay(
      train.learning_rate, decay_steps=train.epochs * steps_per_epoch, alpha=0.0)


def compile_model(config: TrainerConfig, mode: str,
                  steps_per_epoch: Optional[int] = None) -> AdversarialModel:
  """The seeded classifier in its adversarial wrapper, compiled. Call it inside the
  strategy scope (and precision policy) the model will train under. steps_per_epoch
  (batches per epoch) is needed by the cosine schedule only."""
  keras.utils.set_random_seed(config.train.seed)
  model = AdversarialModel(build_cnn(config.model), config.adv, mode=mode,
                           seed=config.train.seed)
  model.compile(
      optimizer=keras.optimizers.Adam(learning_rate(config.train, steps_per_epoch)),
      jit_compile=config.train.jit_compile and _xla_supported(),
      steps_per_execution=config.train.steps_per_execution)
  return model


def _xla_supported() -> bool:
  """False for MirroredStrategy over CPU devices: an XLA cluster cannot read the
  other replicas' variables there (TF known issue 'tf.Variable on a different
  device'), so the step would fail; it runs uncompiled instead."""
  strategy = tf.distribute.get_strategy()
  if strategy.num_replicas_in_sync == 1:
    return True
  devices = strategy.extended.worker_devices
  if not all('GPU' in d.upper() for d in devices):
    logging.warning('jit_compile disabled: MirroredStrategy over %s cannot run XLA',
                    devices)
    return False
  return True


def make_callbacks(config: TrainerConfig, model_run_dir: str,
                   holdout: Optional[Tuple[np.ndarray, np.ndarray]]) -> list:
  """NaN guard, robust model selection (when a holdout is given), per-epoch
  checkpoints under model_run_dir/checkpoints and TensorBoard logs in model_run_dir.
  Order matters: the selection adds robust_accuracy to the logs TensorBoard writes."""
  result = [callbacks_lib.StopOnNanLoss()]
  if holdout is not None:
    attack = callbacks_lib.robust_eval_attack(config.adv, config.train.robust_eval_pgd_steps,
                                              config.train.robust_eval_method)
    metric = callbacks_lib.HeldoutAccuracy(
        data.evaluation_dataset(*holdout, batch_size=config.train.eval_batch_size),
        attack, config.adv, seed=config.train.seed)
    result.append(callbacks_lib.RobustModelSelection(
        metric, patience=config.train.early_stopping_patience,
        log_dir=os.path.join(model_run_dir, ROBUST_LOG_SUBDIR),
        min_clean=config.train.selection_min_clean_accuracy,
        start_epoch=config.train.selection_start_epoch))
  result.append(keras.callbacks.ModelCheckpoint(
      os.path.join(model_run_dir, CHECKPOINT_SUBDIR, 'epoch-{epoch:03d}'),
      save_weights_only=True))
  result.append(keras.callbacks.TensorBoard(log_dir=model_run_dir, update_freq='epoch',
                                            write_graph=False, profile_batch=0))
  return result


def _write_selection(callbacks, holdout, model_run_dir: str) -> None:
  """The model run's record of the robust selection: per-epoch held-out figures,
  the chosen epoch, whether it cleared the clean bound, and the standard error."""
  selection = next((c for c in callbacks
                    if isinstance(c, callbacks_lib.RobustModelSelection)), None)
  if selection is None or selection.best_epoch is None:
    return
  n = len(holdout[1])
  robust = selection.best_value
  record = {'holdout_examples': n,
            'epochs': [{'epoch': selection.first_epoch + i + 1, 'robust_accuracy': r,
                        'clean_accuracy': c}
                       for i, (r, c) in enumerate(selection.figures)],
            'first_selection_epoch': selection.first_epoch + 1,
            'chosen_epoch': selection.best_epoch + 1,
            'min_clean_accuracy': selection.min_clean,
            'qualified': selection.qualified,
            'robust_accuracy_standard_error': (robust * (1 - robust) / n) ** 0.5}
  tf.io.gfile.makedirs(model_run_dir)
  with tf.io.gfile.GFile(os.path.join(model_run_dir, SELECTION_FILE), 'w') as f:
    f.write(json.dumps(record, indent=2))
  logging.info('Trainer: model selection %s', json.dumps(record))


def train_and_export(config: TrainerConfig, mode: str, *,
                     train_files: Sequence[str], eval_files: Sequence[str],
                     transform_dir: str, serving_model_dir: str, model_run_dir: str,
                     devices: Optional[Sequence[str]] = None,
                     verbose: int = 2) -> keras.callbacks.History:
  """Trains on the transformed examples and exports the SavedModel.

  Raises NanLossError (and exports nothing) if the loss diverges.
  devices forces a MirroredStrategy device list (tests); None picks automatically.
  """
  config.validate()
  train_cfg = config.train
  # Before any dataset exists: tf.data derives its shuffle seeds from the global one.
  keras.utils.set_random_seed(train_cfg.seed)
  if train_cfg.deterministic:
    # Same seed, same weights: deterministic kernels (and tf.data order). Process
    # wide and irreversible, which is why it is opt-in outside the presets.
    tf.config.experimental.enable_op_determinism()
  strategy = make_strategy(devices)
  replicas = strategy.num_replicas_in_sync
  batch_size = data.global_batch_size(train_cfg.batch_size, replicas)
  logging.info('Trainer: mode=%s, %d replica(s), global batch %d (= %d per replica), '
               'adv=%s', mode, replicas, batch_size, train_cfg.batch_size, config.adv)

  transform_output = tft.TFTransformOutput(transform_dir)
  spec = transform_output.transformed_feature_spec()
  train_x, train_y = transformed_io.read_transformed(train_files, spec)
  eval_x, eval_y = transformed_io.read_transformed(eval_files, spec)
  holdout = None
  if train_cfg.robust_eval_examples > 0:
    (train_x, train_y), holdout = data.split_holdout(
        train_x, train_y, train_cfg.robust_eval_examples, train_cfg.seed)
  logging.info('Trainer: %d training, %d validation, %d held-out examples',
               len(train_y), len(eval_y), 0 if holdout is None else len(holdout[1]))
  train_ds = data.training_dataset(train_x, train_y, batch_size=batch_size,
                                   seed=train_cfg.seed,
                                   shuffle_buffer=train_cfg.shuffle_buffer)
  eval_ds = data.evaluation_dataset(eval_x, eval_y, batch_size=config.train.eval_batch_size)

  with precision_policy(train_cfg.precision):
    with strategy.scope():
      model = compile_model(config, mode, data.steps_per_epoch(len(train_y), batch_size))
    callbacks = make_callbacks(config, model_run_dir, holdout)
    history = model.fit(train_ds, epochs=train_cfg.epochs, validation_data=eval_ds,
                        callbacks=callbacks, verbose=verbose)
    _write_selection(callbacks, holdout, model_run_dir)
    export.export_serving_model(model.base, transform_output, serving_model_dir)
  logging.info('Trainer: exported %s', serving_model_dir)
  return history

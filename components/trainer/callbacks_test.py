"""Tests of the NaN guard and of robust model selection with a stubbed metric."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from components.trainer import callbacks
from components.config import AdvConfig


def _tiny_model():
  keras.utils.set_random_seed(0)
  model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
  # Eager: a few dozen tiny steps, so tracing would cost more than it saves.
  model.compile(optimizer=keras.optimizers.SGD(0.1),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                run_eagerly=True)
  return model


def _data():
  x = np.random.default_rng(0).normal(size=(32, 3)).astype(np.float32)
  return x, (x[:, 0] > 0).astype(np.int64)


class _RecordWeights(keras.callbacks.Callback):
  def on_train_begin(self, logs=None):
    self.per_epoch = []

  def on_epoch_end(self, epoch, logs=None):
    self.per_epoch.append(self.model.get_weights())


@pytest.mark.parametrize('patience,epochs_run', [(2, 4), (0, 6)])
def test_selection_restores_the_best_epoch_and_stops_after_patience(
    patience, epochs_run, tmp_path):
  sequence = iter([0.10, 0.50, 0.30, 0.20, 0.45, 0.40])
  selection = callbacks.RobustModelSelection(lambda model: next(sequence),
                                             patience=patience, log_dir=str(tmp_path))
  recorder = _RecordWeights()
  model = _tiny_model()
  history = model.fit(*_data(), epochs=6, batch_size=8, verbose=0,
                      callbacks=[recorder, selection])
  assert len(history.history['loss']) == epochs_run
  assert selection.best_epoch == 1 and selection.best_value == 0.5
  assert history.history[callbacks.ROBUST_ACCURACY] == pytest.approx(
      [0.10, 0.50, 0.30, 0.20, 0.45, 0.40][:epochs_run])
  for restored, best in zip(model.get_weights(), recorder.per_epoch[1]):
    np.testing.assert_array_equal(restored, best)
  # The last epoch's weights differ, so the restore did something.
  assert any(not np.array_equal(a, b)
             for a, b in zip(recorder.per_epoch[-1], recorder.per_epoch[1]))
  assert list(tmp_path.glob('events.out.tfevents.*'))


def test_nan_loss_raises():
  guard = callbacks.StopOnNanLoss()
  guard.on_epoch_end(0, {'loss': 0.3})
  with pytest.raises(callbacks.NanLossError, match='epoch 3: training loss is nan'):
    guard.on_epoch_end(2, {'loss': float('nan')})
  with pytest.raises(callbacks.NanLossError):
    guard.on_epoch_end(0, {'loss': float('inf')})


def test_robust_eval_attack_uses_the_training_epsilon_and_a_random_start():
  attack = callbacks.robust_eval_attack(AdvConfig(pgd_epsilon=0.3, random_init=True), 10)
  assert attack.epsilon == 0.3 and attack.steps == 10 and attack.random_start
  assert attack.effective_step_size == pytest.approx(0.03)


def test_robust_eval_attack_can_be_apgd_ce():
  attack = callbacks.robust_eval_attack(AdvConfig(pgd_epsilon=0.3), 10, 'apgd-ce')
  assert attack.method == 'apgd-ce' and attack.epsilon == 0.3 and attack.steps == 10


@pytest.mark.parametrize('method', ['pgd', 'apgd-ce'])
def test_heldout_accuracy_is_one_for_a_robust_constant_model_and_drops_for_a_fragile_one(
    method):
  x = tf.fill([8, 4], 0.5)
  y = tf.zeros([8], tf.int64)
  ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
  adv = AdvConfig(pgd_epsilon=0.2, random_init=True)
  metric = callbacks.HeldoutAccuracy(ds, callbacks.robust_eval_attack(adv, 3, method), adv,
                                     seed=0)
  constant = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, kernel_initializer='zeros',
                               bias_initializer=keras.initializers.Constant([1.0, 0.0]))])
  assert metric(constant) == (1.0, 1.0)
  # Class 0 wins only while the first pixel stays at or below ~0.5: any attack
  # that ends with a positive change of that pixel flips it.
  fragile = keras.Sequential([keras.Input((4,)), keras.layers.Dense(
      2, kernel_initializer=keras.initializers.Constant([[0.0, 20.0]] + [[0.0, 0.0]] * 3),
      bias_initializer=keras.initializers.Constant([0.0, -10.001]))])
  assert float(tf.reduce_mean(tf.cast(tf.argmax(fragile(x), -1) == 0, tf.float32))) == 1.0
  assert metric(fragile) == (0.0, 1.0)   # (robust, clean)


def test_heldout_apgd_ce_counts_a_misclassified_example_as_not_robust_and_is_seeded():
  """Robust means correct clean *and* under attack; at a tiny epsilon APGD cannot flip
  anything, so robust accuracy is the clean accuracy; the same seed gives the same
  figures."""
  x = tf.constant([[0.2, 0.5], [0.8, 0.5], [0.6, 0.5], [0.3, 0.5]])
  y = tf.constant([0, 1, 0, 0], tf.int64)   # the third is misclassified clean
  model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(
      2, kernel_initializer=keras.initializers.Constant([[-10.0, 10.0], [0.0, 0.0]]),
      bias_initializer=keras.initializers.Constant([5.0, -5.0]))])
  ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(2)
  tiny = AdvConfig(pgd_epsilon=1e-4, random_init=True)
  metric = callbacks.HeldoutAccuracy(ds, callbacks.robust_eval_attack(tiny, 5, 'apgd-ce'),
                                     tiny, seed=3)
  assert metric(model) == (0.75, 0.75)
  # The boundary is the first pixel at 0.5; the correct examples lie 0.3, 0.3 and 0.2
  # from it, so at eps 0.35 APGD flips them all.
  wide = AdvConfig(pgd_epsilon=0.35, random_init=True)
  metric = callbacks.HeldoutAccuracy(ds, callbacks.robust_eval_attack(wide, 5, 'apgd-ce'),
                                     wide, seed=3)
  first = metric(model)
  assert first == (0.0, 0.75) and metric(model) == first


@pytest.mark.parametrize('history,min_clean,expected', [
    # Ties on robust accuracy go to the higher clean accuracy (issue: 0.929 x 3).
    ([(0.929, 0.9817), (0.929, 0.9856), (0.929, 0.9828)], None, (1, True)),
    # An epoch under the clean bound is never chosen over one above it.
    ([(0.95, 0.980), (0.93, 0.987), (0.94, 0.984)], 0.985, (1, True)),
    # None qualifies: the most robust is kept, and that is reported.
    ([(0.95, 0.980), (0.93, 0.981)], 0.985, (0, False)),
    ([], 0.985, (None, False)),
])
def test_gate_aware_selection(history, min_clean, expected):
  assert callbacks.select_epoch(history, min_clean) == expected


def test_selection_restores_the_qualifying_epoch_and_says_when_none_qualifies():
  model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
  figures = iter([(0.95, 0.980), (0.93, 0.987), (0.96, 0.981)])
  sel = callbacks.RobustModelSelection(lambda m: next(figures), min_clean=0.985)
  sel.set_model(model)
  sel.on_train_begin()
  for epoch in range(3):
    model.set_weights([np.full((1, 1), epoch, np.float32), np.zeros(1, np.float32)])
    sel.on_epoch_end(epoch, {})
  sel.on_train_end()
  assert sel.best_epoch == 1 and sel.qualified
  assert model.get_weights()[0][0, 0] == 1.0
  never = callbacks.RobustModelSelection(lambda m: (0.9, 0.5), min_clean=0.985)
  never.set_model(model)
  never.on_train_begin()
  never.on_epoch_end(0, {})
  assert not never.qualified


def test_selection_measures_and_chooses_only_from_its_start_epoch():
  model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
  calls = []
  figures = iter([(0.93, 0.99), (0.92, 0.99)])

  def metric(m):
    calls.append(float(m.get_weights()[0][0, 0]))
    return next(figures)

  sel = callbacks.RobustModelSelection(metric, start_epoch=3)
  sel.set_model(model)
  sel.set_params({'epochs': 4})
  sel.on_train_begin()
  for epoch in range(4):
    model.set_weights([np.full((1, 1), epoch, np.float32), np.zeros(1, np.float32)])
    logs = {}
    sel.on_epoch_end(epoch, logs)
    assert (callbacks.ROBUST_ACCURACY in logs) == (epoch >= 2)
  sel.on_train_end()
  assert calls == [2.0, 3.0]            # epochs 1-2 are never attacked
  assert sel.first_epoch == 2 and sel.best_epoch == 2
  assert model.get_weights()[0][0, 0] == 2.0


def test_a_run_shorter_than_the_start_epoch_measures_its_last_epoch():
  model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
  sel = callbacks.RobustModelSelection(lambda m: (0.9, 0.99), start_epoch=7)
  sel.set_model(model)
  sel.set_params({'epochs': 2})
  sel.on_train_begin()
  for epoch in range(2):
    sel.on_epoch_end(epoch, {})
  assert sel.figures == [(0.9, 0.99)] and sel.best_epoch == 1
  with pytest.raises(ValueError, match='start_epoch'):
    callbacks.RobustModelSelection(lambda m: 0.9, start_epoch=0)

"""Tests of the adversarial train_step: its gradient, its modes, and that it learns."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from components.adversarial import losses
from components.trainer import data
from components.trainer import testing_utils
from components.trainer.adv_model import AdversarialModel
from components.trainer.model import build_cnn
from components.trainer.training import compile_model, precision_policy
from components.config import AdvConfig, ConfigError, ModelConfig, TrainerConfig

SMALL_MODEL = ModelConfig(conv_filters=(8, 16), dense_units=32)


def _config(**changes) -> TrainerConfig:
  # XLA compilation takes seconds per model; one test below covers the jit path.
  return TrainerConfig(model=SMALL_MODEL).replace(**{'train.jit_compile': False,
                                                      **changes})


def _arrays(count=128, seed=0):
  images, labels = testing_utils.generated_images(count, seed)
  return images.reshape(count, -1).astype(np.float32) / 255.0, labels


def _fit(config, mode, epochs=1, count=128):
  x, y = _arrays(count)
  model = compile_model(config, mode)
  ds = data.training_dataset(x, y, batch_size=config.train.batch_size,
                             seed=config.train.seed, shuffle_buffer=count)
  history = model.fit(ds, epochs=epochs, verbose=0)
  return model, history.history


def test_adversarial_gradient_is_labeled_plus_multiplier_times_neighbor_gradient():
  """One SGD step (lr 1) must move the weights by exactly -(g_clean + m * g_adv),
  with the FGSM neighbor built from the labeled-loss input gradient."""
  cfg = AdvConfig(multiplier=0.3, adv_step_size=0.1)
  keras.utils.set_random_seed(0)
  model = AdversarialModel(build_cnn(SMALL_MODEL), cfg)
  model.compile(optimizer=keras.optimizers.SGD(1.0))
  x, y = _arrays(16)
  x, y = tf.constant(x), tf.constant(y)
  before = [v.numpy() for v in model.trainable_variables]

  with tf.GradientTape(persistent=True) as tape:
    tape.watch(x)
    clean = tf.reduce_mean(losses.cross_entropy(y, model(x)))
  x_adv = tf.clip_by_value(x + 0.1 * tf.sign(tape.gradient(clean, x)), 0.0, 1.0)
  with tf.GradientTape() as adv_tape:
    total = clean + 0.3 * tf.reduce_mean(losses.cross_entropy(y, model(x_adv)))
  expected = [g1 + g2 for g1, g2 in zip(
      tape.gradient(clean, model.trainable_variables),
      adv_tape.gradient(total, model.trainable_variables))]

  logs = model.train_step((x, y))
  for b, v, g in zip(before, model.trainable_variables, expected):
    np.testing.assert_allclose(b - v.numpy(), g, rtol=1e-4, atol=1e-6)
  assert float(logs['loss']) == pytest.approx(float(total), rel=1e-5)


def test_multiplier_zero_trains_exactly_like_base_mode():
  base, base_logs = _fit(_config(), 'base', count=96)
  adv, adv_logs = _fit(_config(**{'adv.multiplier': 0.0}), 'adversarial', count=96)
  for a, b in zip(base.base.get_weights(), adv.base.get_weights()):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  assert adv_logs['labeled_loss'] == pytest.approx(base_logs['labeled_loss'], rel=1e-5)
  assert adv_logs['scaled_adversarial_loss'] == [0.0]


def test_short_training_lowers_labeled_and_adversarial_loss():
  _, logs = _fit(_config(), 'adversarial', epochs=4, count=256)
  assert set(logs) == {'loss', 'labeled_loss', 'scaled_adversarial_loss', 'accuracy'}
  assert logs['labeled_loss'][-1] < 0.5 * logs['labeled_loss'][0]
  assert logs['scaled_adversarial_loss'][-1] < 0.85 * logs['scaled_adversarial_loss'][0]
  # The per-epoch means add up: loss = labeled + scaled adversarial.
  np.testing.assert_allclose(logs['loss'],
                             np.add(logs['labeled_loss'], logs['scaled_adversarial_loss']),
                             rtol=1e-4)


def test_xla_compiled_step_matches_the_uncompiled_step():
  eager, eager_logs = _fit(_config(), 'adversarial', count=64)
  jit, jit_logs = _fit(_config(**{'train.jit_compile': True}), 'adversarial', count=64)
  assert jit.jit_compile and not eager.jit_compile
  assert jit_logs['loss'][0] == pytest.approx(eager_logs['loss'][0], rel=1e-3)


def test_base_mode_logs_no_adversarial_loss():
  _, logs = _fit(_config(), 'base', count=64)
  assert set(logs) == {'loss', 'labeled_loss', 'accuracy'}


@pytest.mark.parametrize('changes', [
    {'adv.pgd_iterations': 3, 'adv.pgd_epsilon': 0.1, 'adv.adv_step_size': 0.05},
    # Fast adversarial training (Wong et al.): random start + one 1.25*eps step.
    {'adv.pgd_epsilon': 0.1, 'adv.random_init': True, 'adv.adv_step_size': 0.125},
    # Madry: the adversarial loss alone, so loss == scaled_adversarial_loss.
    {'adv.loss': 'adv_only', 'adv.pgd_iterations': 2, 'adv.pgd_epsilon': 0.1},
    {'adv.loss': 'trades', 'adv.random_init': True, 'adv.pgd_epsilon': 0.1,
     'adv.pgd_iterations': 2, 'adv.adv_step_size': 0.05},
    {'adv.adv_grad_norm': 'l2', 'adv.adv_step_size': 1.0},
])
def test_every_mode_trains_with_finite_losses(changes):
  _, logs = _fit(_config(**changes), 'adversarial', count=64)
  assert all(np.isfinite(v[0]) for v in logs.values())
  assert logs['scaled_adversarial_loss'][0] > 0
  if changes.get('adv.loss') == 'adv_only':
    assert logs['loss'] == pytest.approx(logs['scaled_adversarial_loss'], rel=1e-5)


def test_fast_adversarial_training_lands_on_the_epsilon_ball_from_a_random_start():
  """random_init + one 1.25*eps step + projection: from a uniform start s in
  [-eps, eps] a pixel ends at clip(s +- 1.25 eps, -eps, eps), so |delta| >= eps/4
  everywhere, and it lands on the boundary iff the step overshoots it (P = 5/8).
  (A linear classifier, so no pixel has a zero gradient.)"""
  eps = 0.1
  cfg = AdvConfig(pgd_epsilon=eps, random_init=True, adv_step_size=1.25 * eps)
  keras.utils.set_random_seed(0)
  linear = keras.Sequential([keras.Input((784,)), keras.layers.Dense(10)])
  model = AdversarialModel(linear, cfg)
  model.compile(optimizer=keras.optimizers.SGD(0.0))
  x = tf.fill([4, 784], 0.5)   # mid-range: clipping to [0, 1] plays no part
  y = tf.constant([0, 1, 2, 3], tf.int64)
  x_adv = model._neighbor(x, y, model(x), first_grad=None)  # pylint: disable=protected-access
  delta = np.abs((x_adv - x).numpy())
  assert delta.max() <= eps + 1e-6
  assert delta.min() >= 0.25 * eps - 1e-6
  assert 0.57 < np.mean(np.isclose(delta, eps, atol=1e-6)) < 0.68


def test_trades_without_random_start_is_rejected():
  with pytest.raises(ConfigError, match='random_init'):
    AdversarialModel(build_cnn(SMALL_MODEL), AdvConfig(loss='trades'))


def test_unknown_mode_is_rejected():
  with pytest.raises(ValueError, match="'robust'"):
    AdversarialModel(build_cnn(SMALL_MODEL), AdvConfig(), mode='robust')


def test_mixed_precision_training_step_runs_with_loss_scaling():
  cfg = _config(**{'train.precision': 'mixed_float16'})
  with precision_policy(cfg.train.precision):
    model, logs = _fit(cfg, 'adversarial', count=64)
  assert isinstance(model.optimizer, keras.mixed_precision.LossScaleOptimizer)
  assert np.isfinite(logs['loss'][0])


def test_bfloat16_training_learns_without_loss_scaling():
  cfg = _config(**{'train.precision': 'mixed_bfloat16'})
  with precision_policy(cfg.train.precision):
    model, logs = _fit(cfg, 'adversarial', epochs=4, count=256)
  assert not isinstance(model.optimizer, keras.mixed_precision.LossScaleOptimizer)
  assert model.base.get_layer('conv2').compute_dtype == 'bfloat16'
  # The float32 test's bars (test_short_training_lowers_labeled_and_adversarial_loss).
  assert logs['labeled_loss'][-1] < 0.5 * logs['labeled_loss'][0]
  assert logs['scaled_adversarial_loss'][-1] < 0.85 * logs['scaled_adversarial_loss'][0]
  assert keras.mixed_precision.global_policy().name == 'float32'


def test_unknown_precision_is_rejected():
  with pytest.raises(ValueError, match="precision='float8'"):
    with precision_policy('float8'):
      pass

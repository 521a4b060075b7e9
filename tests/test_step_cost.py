"""The graph MAC counter of bench/, and what it proves about the Trainer's step:
an FGSM step holds exactly one labeled backward pass (the input gradient comes with
the weight gradient), so it costs twice a base step plus the first layer's input
gradient, and nothing more."""
import pytest
import tensorflow as tf

from bench import step_cost
from components.trainer.training import compile_model
from components.config import TrainerConfig


def _layer_macs(config: TrainerConfig):
  """Forward multiply-adds per example of each weighted layer, from the shapes."""
  side, k = config.model.image_size, config.model.kernel_size
  macs, channels = [], 1
  for i, filters in enumerate(config.model.conv_filters):
    if i > 0:
      side //= config.model.pool_size
    side -= k - 1
    macs.append(side * side * filters * k * k * channels)
    channels = filters
  flat = side * side * channels
  macs.append(flat * config.model.dense_units)
  macs.append(config.model.dense_units * config.model.num_classes)
  return macs


def _step_macs(config, mode, batch=4):
  model = compile_model(config.replace(**{'train.jit_compile': False}), mode)
  return step_cost.train_step_macs(model, batch, config.model.image_size ** 2,
                                   config.adv.pgd_iterations) / batch


def test_matmul_and_conv_counts():
  graph = tf.Graph()
  with graph.as_default():
    a = tf.zeros([3, 5])
    tf.matmul(a, tf.zeros([4, 5]), transpose_b=True, name='mm')      # 3*5*4 = 60
    img = tf.zeros([2, 6, 6, 3])
    tf.nn.conv2d(img, tf.zeros([3, 3, 3, 8]), 1, 'VALID', name='conv')  # 2*4*4*8*27
  # Nothing depends on these ops: a graph with no outputs runs none of them.
  assert step_cost.graph_macs(graph) == 0
  fn = tf.function(lambda a, img: (
      tf.matmul(a, tf.zeros([4, 5]), transpose_b=True),
      tf.nn.conv2d(img, tf.zeros([3, 3, 3, 8]), 1, 'VALID')))
  concrete = fn.get_concrete_function(tf.TensorSpec([3, 5]), tf.TensorSpec([2, 6, 6, 3]))
  assert step_cost.graph_macs(concrete.graph) == 60 + 2 * 4 * 4 * 8 * 27


def test_dynamic_shapes_are_refused():
  fn = tf.function(lambda a: tf.matmul(a, tf.zeros([5, 2])))
  concrete = fn.get_concrete_function(tf.TensorSpec([None, 5]))
  with pytest.raises(ValueError, match='not static'):
    step_cost.graph_macs(concrete.graph)


def test_fgsm_step_is_two_base_steps_plus_one_input_gradient():
  config = TrainerConfig()
  layers = _layer_macs(config)
  total, first = sum(layers), layers[0]
  # Base: forward, weight gradients, and data gradients of every layer but the first.
  assert _step_macs(config, 'base') == 3 * total - first
  # FGSM: the labeled pass also yields the input gradient (+first), then one
  # forward/backward on the neighbors. A second labeled backward would add ~2*total.
  assert _step_macs(config, 'adversarial') == 6 * total - first


def test_pgd_loop_counts_every_iteration():
  config = TrainerConfig().replace(**{
      'adv.pgd_iterations': 3, 'adv.pgd_epsilon': 0.2, 'adv.adv_step_size': 0.1,
      'adv.random_init': True})
  total, first = sum(_layer_macs(config)), _layer_macs(config)[0]
  # Random start: no reuse of the labeled gradient, so three attack gradients
  # (forward + data gradients down to the pixels, 2 * total each).
  assert _step_macs(config, 'adversarial') == 2 * (3 * total - first) + 3 * 2 * total

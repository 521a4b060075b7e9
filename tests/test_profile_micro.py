"""bench/profile_step.py --micro: the kernel sums behind the zero-overhead bounds that
bench/README quotes for issue #16, and the tap-matmul weight gradient it times."""
import numpy as np
import pytest
import tensorflow as tf

from bench import profile_step


def test_filter_grad_taps_equals_the_stock_weight_gradient():
  rng = np.random.default_rng(0)
  x = tf.constant(rng.standard_normal((3, 9, 8, 5)).astype(np.float32))
  dy = tf.constant(rng.standard_normal((3, 7, 6, 4)).astype(np.float32))
  stock = tf.compat.v1.nn.conv2d_backprop_filter(x, [3, 3, 5, 4], dy, [1, 1, 1, 1], 'VALID')
  np.testing.assert_allclose(profile_step.filter_grad_taps(x, dy).numpy(), stock.numpy(),
                             rtol=1e-5, atol=1e-4)


def test_micro_bounds_are_the_sums_of_their_kernels():
  m = profile_step.micro_kernels(rounds=1)
  ms = {r['kernel']: r['cpu_ms'] for r in m['rows']}
  in_base = [r['kernel'] for r in m['rows'] if r['in_base_step']]
  # Base: each forward, each weight gradient, conv2's and conv3's input gradients, and
  # each pool with its gradient counted once.
  assert 'conv1 Conv2DBackpropInput' not in in_base
  pools = sum(ms[f'{p} MaxPool + MaxPoolGrad'] for p in ('pool1', 'pool2'))
  convs = sum(v for k, v in ms.items() if k in in_base and 'MaxPool' not in k)
  assert m['base_step_kernels_cpu_ms'] == pytest.approx(convs + pools, abs=0.01)
  # The project's FGSM step: two base passes and the col2im input gradient.
  assert m['fgsm_step_kernels_cpu_ms'] == pytest.approx(
      2 * m['base_step_kernels_cpu_ms'] + ms['conv1 input grad, col2im (project)'], abs=0.01)
  # NSL's: two base passes and a separate input-gradient pass through the network.
  pool_grads = sum(ms[f'{p} MaxPool + MaxPoolGrad'] - ms[f'{p} MaxPool']
                   for p in ('pool1', 'pool2'))
  input_grads = sum(ms[f'conv{i} Conv2DBackpropInput'] for i in (1, 2, 3))
  assert m['nsl_fgsm_step_kernels_cpu_ms'] == pytest.approx(
      2 * m['base_step_kernels_cpu_ms'] + input_grads + pool_grads, abs=0.01)
  assert m['fgsm_over_nsl_kernel_bound'] == pytest.approx(
      m['fgsm_step_kernels_cpu_ms'] / m['nsl_fgsm_step_kernels_cpu_ms'], abs=2e-3)
  assert 0 < m['base_step_kernels_fraction_of_matmul'] < 1.5
  assert m['base_floor_examples_per_s_2_cores'] == pytest.approx(
      64 / (m['base_step_kernels_cpu_ms'] / 1000), rel=0.01)

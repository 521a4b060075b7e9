"""Multiply-adds of one compiled training step, counted from its TF graph.

Why: on a CPU the step is compute-bound, so the adversarial/base time ratio cannot
fall below the ratio of the multiply-adds the two steps' graphs contain. Counting
them from the traced graph (rather than from a formula) also catches a step that
does more work than intended, e.g. a second labeled backward pass.

Counted: Conv2D, Conv2DBackpropInput, Conv2DBackpropFilter, MatMul and BatchMatMulV2,
including the bodies of while loops (PGD steps), times their trip count. Only live
ops count: those the step's outputs or its stateful ops (the weight updates) depend
on, since TF prunes the rest before running (e.g. a custom gradient's input-gradient
branch when nothing asks for the input gradient). Elementwise
ops, pooling and the optimizer update are not counted: they are a few percent of the
work here.
"""
from typing import Callable, Dict, Optional

import numpy as np
import tensorflow as tf

CONV_OPS = ('Conv2D', 'Conv2DBackpropInput', 'Conv2DBackpropFilter')
MATMUL_OPS = ('MatMul', 'BatchMatMulV2', 'BatchMatMul')
WHILE_OPS = ('While', 'StatelessWhile')


def _static_shape(tensor: tf.Tensor, op) -> list:
  shape = tensor.shape
  if shape.rank is None or None in shape.as_list():
    raise ValueError(f'{op.type} op {op.name!r}: shape {shape} is not static; '
                     'trace the step with fully defined input shapes')
  return shape.as_list()


def _conv_macs(op, shape=_static_shape) -> int:
  """N*Ho*Wo*Co*kh*kw*Ci for the forward op and both of its gradients alike.
  shape(tensor, op): the static dims to count with (bench/attack_cost.py reads an
  unknown batch dimension as one image)."""
  if op.type == 'Conv2D':
    out, kernel = shape(op.outputs[0], op), shape(op.inputs[1], op)
  elif op.type == 'Conv2DBackpropInput':  # (input_sizes, filter, out_backprop)
    out, kernel = shape(op.inputs[2], op), shape(op.inputs[1], op)
  else:  # Conv2DBackpropFilter: (input, filter_sizes, out_backprop)
    out, kernel = shape(op.inputs[2], op), shape(op.outputs[0], op)
  if op.get_attr('data_format') != b'NHWC':
    raise ValueError(f'{op.name}: only NHWC convolutions are counted')
  kh, kw, ci, _ = kernel
  return int(np.prod(out)) * kh * kw * ci


def _matmul_macs(op, shape=_static_shape) -> int:
  a, b = shape(op.inputs[0], op), shape(op.inputs[1], op)
  if op.type == 'MatMul':
    transpose_a, transpose_b = op.get_attr('transpose_a'), op.get_attr('transpose_b')
  else:
    transpose_a, transpose_b = op.get_attr('adj_x'), op.get_attr('adj_y')
  m, k = (a[-1], a[-2]) if transpose_a else (a[-2], a[-1])
  n = b[-2] if transpose_b else b[-1]
  batch = int(np.prod(a[:-2])) if len(a) > 2 else 1
  return batch * m * k * n


def _live_ops(graph: tf.Graph) -> list:
  """Ops that the graph's outputs or its stateful ops depend on, in graph order."""
  roots = [t.op for t in getattr(graph, 'outputs', [])] + [
      op for op in graph.get_operations() if op._is_stateful]  # pylint: disable=protected-access
  live, stack = set(), list(roots)
  while stack:
    op = stack.pop()
    if op.name in live:
      continue
    live.add(op.name)
    stack.extend(t.op for t in op.inputs)
    stack.extend(op.control_inputs)
  return [op for op in graph.get_operations() if op.name in live]


def graph_macs(graph: tf.Graph, while_trips: Optional[Callable[[object], int]] = None,
               _seen: Optional[Dict[str, int]] = None) -> int:
  """Multiply-adds of the ops of ``graph`` and of the while loops nested in it.

  while_trips(op) gives a loop's trip count (the graph does not hold it when the
  bound is a tensor); None counts each loop body once.
  """
  total = 0
  for op in _live_ops(graph):
    if op.type in CONV_OPS:
      total += _conv_macs(op)
    elif op.type in MATMUL_OPS:
      total += _matmul_macs(op)
    elif op.type in WHILE_OPS:
      body = graph._get_function(op.get_attr('body').name)  # pylint: disable=protected-access
      trips = while_trips(op) if while_trips else 1
      total += trips * graph_macs(body.graph, while_trips)
    elif op.type in ('StatefulPartitionedCall', 'PartitionedCall'):
      fn = graph._get_function(op.get_attr('f').name)  # pylint: disable=protected-access
      total += graph_macs(fn.graph, while_trips)
  return total


def train_step_macs(model: tf.keras.Model, batch_size: int, feature_dim: int,
                    pgd_iterations: int = 1) -> int:
  """Multiply-adds of ``model.train_step`` on one batch of [batch_size, feature_dim].

  The PGD loop runs pgd_iterations - 1 times after its first step (see
  perturbation.adversarial_neighbor); a step without a loop ignores the value.
  """
  step = tf.function(model.train_step, autograph=False)
  concrete = step.get_concrete_function(
      (tf.TensorSpec([batch_size, feature_dim], tf.float32),
       tf.TensorSpec([batch_size], tf.int64)))
  return graph_macs(concrete.graph, lambda op: pgd_iterations - 1)

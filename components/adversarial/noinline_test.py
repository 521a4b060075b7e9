"""noinline: the wrapped function stays a call in the caller's graph (so TF optimizes
its body on its own, acyclic graph) and computes what the inlined code computes."""
import numpy as np
import tensorflow as tf

from components.adversarial import apgd
from components.adversarial import noinline
from components.adversarial import testing


def _called_functions(graph_def):
  """Names of the functions the graph calls through (Stateful)PartitionedCall ops."""
  ops = list(graph_def.node)
  for f in graph_def.library.function:
    ops += list(f.node_def)
  return {op.attr['f'].func.name for op in ops
          if op.op in ('PartitionedCall', 'StatefulPartitionedCall')}


def test_a_wrapped_gradient_stays_a_call_inside_a_while_loop_and_matches_inlined():
  _, logits_fn = testing.small_cnn(seed=2, pooled=True)
  x = tf.constant(np.random.default_rng(0).uniform(size=(6, testing.SIDE ** 2)),
                  tf.float32)

  def gradient(v):
    with tf.GradientTape() as tape:
      tape.watch(v)
      total = tf.reduce_sum(logits_fn(v)[:, 0])
    return tape.gradient(total, v)

  def loop(grad_fn):
    return tf.while_loop(lambda i, v: i < 3,
                         lambda i, v: (i + 1, v + 0.01 * tf.sign(grad_fn(v))),
                         (0, x))[1]

  wrapped = tf.function(lambda: loop(noinline.noinline(gradient))).get_concrete_function()
  library = {f.signature.name: f for f in wrapped.graph.as_graph_def().library.function}
  called = _called_functions(wrapped.graph.as_graph_def())
  kept_apart = [name for name in called if library[name].attr['_noinline'].b]
  assert kept_apart, f'no call to a _noinline function among {sorted(called)}'
  np.testing.assert_array_equal(wrapped(), tf.function(lambda: loop(gradient))())


def test_apgd_evaluates_its_gradient_in_a_noinline_call():
  _, logits_fn = testing.small_cnn(seed=3, pooled=True)
  x = tf.constant(np.random.default_rng(1).uniform(size=(4, testing.SIDE ** 2)),
                  tf.float32)
  y = tf.argmax(logits_fn(x), axis=1)
  fn = tf.function(lambda a, b: apgd.apgd(logits_fn, a, b, epsilon=0.1, steps=5,
                                          seed=tf.constant([1, 2])).x_adv,
                   autograph=False).get_concrete_function(x, y)
  graph_def = fn.graph.as_graph_def()
  library = {f.signature.name: f for f in graph_def.library.function}
  assert any(library[name].attr['_noinline'].b for name in _called_functions(graph_def))

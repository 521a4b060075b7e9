"""Attack-loop bodies as graph functions of their own, so oneDNN pairs their pools.

TF 2.16's oneDNN graph pass gives MaxPoolGrad the oneDNN kernel only if the MaxPool
feeding it was rewritten first (the gradient needs the forward's workspace), and it
visits nodes in reverse post-order, as if that were a topological order. A lowered
tf.while_loop is a cycle, so whether the forward pool comes first depends on where the
depth-first search enters the loop, which changes from process to process. In 12 of
33 profiling processes pool1's gradient ran on Eigen and APGD-T's iterations took ~40%
longer (bench/README.md, 2026-11-26 night), and one Evaluator suite drew it too
(2026-11-27).

A function called from the loop body and kept out of line (``_noinline``) is
optimized on its own, acyclic graph, where that order is topological: the forward
pool is always rewritten before its gradient. The results are the same: the same ops
run on the same kernels as in a good draw.
"""
from typing import Callable

import tensorflow as tf


def noinline(fn: Callable) -> Callable:
  """fn as a tf.function the caller's graph calls instead of inlining it."""
  return tf.function(fn, autograph=False, experimental_attributes={'_noinline': True})

"""Where a train step's time goes: TF profiler trace of fit, parsed op by op.

For each step (project base and adversarial, and the prototype with --variants
proto), builds the model and input exactly as bench/train_step.py does, warms up
(tracing, kernel setup), then traces ``fit`` over --steps steps with
tf.profiler.experimental and parses the trace's XSpace (the .xplane.pb, read with
TF's own xplane_pb2: no TensorBoard plugin needed).

Method: every TF op executed on the host leaves an event "name:Type" on the thread
that ran it (the two tf_Compute inter-op threads here). An op's cost per step is
the MEDIAN of its durations over the traced steps times its count per step (robust
to preemption by other processes on shared cores; the mean is also given). Ops are
summed into categories: conv forward, Conv2DBackpropInput, the first layer's col2im
input gradient, Conv2DBackpropFilter, pooling, pooling grad, matmuls, bias/ReLU grads,
loss, Adam, metric updates, casts/small ops. Also reported:
* executor overhead: time inside ExecutorState::Process not in any traced op
  (scheduling, and ops too cheap to be traced: reshapes, identities...);
* input pipeline: IteratorGetNext's wait on the consumer side (on the critical path)
  and the tf.data threads' own work (off it, when prefetched);
* host: per-step wall time (Keras' 'train' trace event) outside the step function
  (KernelAndDeviceFunc::Run): Python, callbacks, the host sync of the step's outputs.
Op durations are thread wall times; shares are of the summed op time, and
"parallelism" is that sum over the step function's wall time (2 threads max here).

  MNIST_DIR=... python bench/profile_step.py [--mode fgsm] [--steps 50] \
      [--variants project,proto] [--env onednn]

The last line printed is one JSON object.
"""
import argparse
import collections
import glob
import json
import os
import re
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # pylint: disable=g-import-not-at-top

from bench import train_step  # pylint: disable=g-import-not-at-top

CONTROL_FLOW = {'While', 'StatelessWhile', 'If', 'StatelessIf', 'PartitionedCall',
                'StatefulPartitionedCall', 'Case'}
CATEGORIES = ('conv forward', 'Conv2DBackpropInput', 'conv1 input grad (col2im)',
              'Conv2DBackpropFilter', 'pooling', 'pooling grad', 'matmul (dense)',
              'bias/ReLU grads', 'loss (softmax CE)', 'Adam update', 'metric updates',
              'casts/small ops')
_OP_EVENT = re.compile(r'^(?P<name>[^:]+):(?P<type>[A-Za-z0-9_]+)$')
_METRIC_TYPES = {'AssignAddVariableOp', 'ArgMax', 'Equal', 'DivNoNan', 'Sum', 'Size'}


_LOOP_PREFIX = re.compile(r'^(while/body/_\d+/)?(while/)?')


def category(name: str, op_type: str) -> str:
  # Under steps_per_execution the step runs in a while loop: drop its name prefix.
  name = _LOOP_PREFIX.sub('', name)
  t = op_type
  if 'BackpropFilter' in t:
    return 'Conv2DBackpropFilter'
  if 'BackpropInput' in t:
    return 'Conv2DBackpropInput'
  if 'Conv2D' in t or 'Conv' in t:
    return 'conv forward'
  if 'MaxPoolGrad' in t or 'AvgPoolGrad' in t:
    return 'pooling grad'
  if 'Pool' in t:
    return 'pooling'
  if '/' not in name and t in ('MatMul', 'Pad', 'AddN', 'Slice', 'StridedSlice',
                               'Reshape', 'Transpose'):
    # input_conv.py's custom gradient: its ops carry no name scope.
    return 'conv1 input grad (col2im)'
  if 'MatMul' in t:
    return 'matmul (dense)'
  if t in ('BiasAddGrad', 'ReluGrad'):
    return 'bias/ReLU grads'
  if 'SoftmaxCrossEntropy' in t:
    return 'loss (softmax CE)'
  if name.startswith(('Adam/', 'adam/')) or '/Adam/' in name or t.startswith(
      ('ResourceApply', 'ApplyAdam')):
    return 'Adam update'
  if '/' not in name and t in _METRIC_TYPES:
    return 'metric updates'
  return 'casts/small ops'


def parse_xspace(path: str, steps: int) -> dict:
  """Per-step costs by op and category from one .xplane.pb (see module doc)."""
  from tensorflow.tsl.profiler.protobuf import xplane_pb2  # pylint: disable=g-import-not-at-top
  space = xplane_pb2.XSpace()
  with open(path, 'rb') as f:
    space.ParseFromString(f.read())
  plane = next(p for p in space.planes if p.name == '/host:CPU')
  meta = plane.event_metadata
  op_durations = collections.defaultdict(list)   # (name, type) -> [ps]
  process_ps = executor_ops_ps = 0
  get_next_ps, tf_data_ps = [], 0
  step_wall, fn_wall = [], []
  for line in plane.lines:
    lname = line.name
    events = sorted(line.events, key=lambda e: e.offset_ps)
    if lname == 'python':
      runs = []
      for e in events:
        n = meta[e.metadata_id].name
        if n == 'train':
          step_wall.append(e.duration_ps)
          runs.append((e.offset_ps, e.offset_ps + e.duration_ps, []))
        elif n == 'KernelAndDeviceFunc::Run':
          for lo, hi, inside in runs[-1:]:
            if lo <= e.offset_ps < hi:
              inside.append(e.duration_ps)
      # The step function is the longest function run inside each 'train' event.
      fn_wall += [max(inside) for _, _, inside in runs if inside]
      continue
    if lname.startswith('tf_data_iterator_get_next'):
      get_next_ps += [e.duration_ps for e in events
                      if meta[e.metadata_id].name == 'IteratorGetNextOp::DoCompute']
      continue
    if lname.startswith(('tf_data', 'tf_data_private')):
      # Top-level busy time of the tf.data threads (nested events are inside it).
      end = -1
      for e in events:
        if e.offset_ps >= end:
          tf_data_ps += e.duration_ps
          end = e.offset_ps + e.duration_ps
      continue
    # Compute threads: top-level Process intervals and the ops inside them.
    end = -1
    for e in events:
      n = meta[e.metadata_id].name
      if n == 'ExecutorState::Process' and e.offset_ps >= end:
        process_ps += e.duration_ps
        end = e.offset_ps + e.duration_ps
      m = _OP_EVENT.match(n)
      if m and m.group('type') not in CONTROL_FLOW:
        op_durations[(m.group('name'), m.group('type'))].append(e.duration_ps)
        executor_ops_ps += e.duration_ps
  # Keep the traced steps only (fit's 'train' events); drop the first (iterator start).
  per_op = {}
  for (name, op_type), durs in op_durations.items():
    count = len(durs) / steps
    per_op[f'{name}:{op_type}'] = {
        'type': op_type, 'category': category(name, op_type), 'per_step': count,
        'median_ms': float(np.median(durs)) * count / 1e9,
        'min_single_ms': float(np.min(durs)) / 1e9,
        'mean_ms': float(np.sum(durs)) / steps / 1e9}
  cats = {c: {'median_ms': 0.0, 'mean_ms': 0.0} for c in CATEGORIES}
  for op in per_op.values():
    cats[op['category']]['median_ms'] += op['median_ms']
    cats[op['category']]['mean_ms'] += op['mean_ms']
  ms = lambda ps: ps / steps / 1e9
  step_ms = float(np.median(step_wall)) / 1e9 if step_wall else float('nan')
  fn_ms = float(np.median(fn_wall)) / 1e9 if fn_wall else float('nan')
  ops_median = sum(c['median_ms'] for c in cats.values())
  extra = {
      'executor overhead': {'median_ms': max(0.0, ms(process_ps - executor_ops_ps)),
                            'mean_ms': max(0.0, ms(process_ps - executor_ops_ps))},
      'input: IteratorGetNext wait': {
          'median_ms': float(np.median(get_next_ps)) / 1e9 if get_next_ps else 0.0,
          'mean_ms': float(np.sum(get_next_ps)) / steps / 1e9},
      'host: outside the step function': {'median_ms': max(0.0, step_ms - fn_ms),
                                          'mean_ms': max(0.0, step_ms - fn_ms)},
  }
  return {'step_wall_ms_median': step_ms, 'step_fn_ms_median': fn_ms,
          'op_time_ms_per_step_median': ops_median,
          'op_time_ms_per_step_mean': sum(c['mean_ms'] for c in cats.values()),
          'parallelism': ops_median / fn_ms if fn_ms else float('nan'),
          'tf_data_threads_ms_per_step': ms(tf_data_ps),
          'categories': cats, 'other': extra, 'ops': per_op,
          'steps_seen': len(step_wall)}


# FLOPs of each convolution of the reference CNN at batch 32 (forward, and each of its
# two gradients alike): 2 * N * Ho * Wo * Co * kh * kw * Ci.
CONV_FLOPS = {'conv1': 2 * 32 * 26 * 26 * 32 * 9 * 1, 'conv2': 2 * 32 * 11 * 11 * 64 * 9 * 32,
              'conv3': 2 * 32 * 3 * 3 * 64 * 9 * 64}


def conv_efficiency(ops: dict, matmul_best: float) -> list:
  """Per convolution kernel: GFLOP/s of its fastest occurrence in the trace and that
  as a fraction of the fastest single 512^2 matmul call (of 64) measured just before."""
  rows = {}
  for opname, v in ops.items():
    if v['category'] not in ('conv forward', 'Conv2DBackpropInput', 'Conv2DBackpropFilter'):
      continue
    layer = next((l for l in CONV_FLOPS if f'/{l}/' in opname), 'conv1')
    key = (layer, v['category'])
    gflops = CONV_FLOPS[layer] / (v['min_single_ms'] / 1000) / 1e9
    if key not in rows or gflops > rows[key][0]:
      rows[key] = (gflops, v['min_single_ms'], v['type'])
  return [{'layer': l, 'kernel': c, 'type': t, 'min_ms': round(ms, 3),
           'gflops': round(g, 1), 'fraction_of_matmul': round(g / matmul_best, 3)}
          for (l, c), (g, ms, t) in sorted(rows.items())]


def profile(contender, steps: int, logdir: str) -> dict:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  ds = contender.dataset.take(steps)
  contender.model.fit(ds, epochs=1, verbose=0)   # same iterator setup, untraced
  tf.profiler.experimental.start(logdir, options=tf.profiler.experimental.ProfilerOptions(
      host_tracer_level=2, python_tracer_level=0, device_tracer_level=0))
  start = time.perf_counter()
  contender.model.fit(ds, epochs=1, verbose=0)
  wall = time.perf_counter() - start
  tf.profiler.experimental.stop()
  paths = sorted(glob.glob(os.path.join(logdir, '**', '*.xplane.pb'), recursive=True),
                 key=os.path.getmtime)
  result = parse_xspace(paths[-1], steps)
  spe = getattr(contender.model, '_steps_per_execution', None)
  spe = int(spe.numpy()) if spe is not None else 1
  if spe > 1:   # one 'train' event and one function run per spe steps
    result['step_wall_ms_median'] /= spe
    result['step_fn_ms_median'] /= spe
    result['parallelism'] *= spe
    result['other']['host: outside the step function'] = {
        k: v / spe for k, v in result['other']['host: outside the step function'].items()}
  result['steps_per_execution'] = spe
  result['fit_ms_per_step'] = 1000 * wall / steps
  result['xplane'] = paths[-1]
  return result


# --- --micro: each kernel of the step alone, at the step's shapes ------------------

def filter_grad_taps(x, dy):
  """A VALID stride-1 convolution's weight gradient as one [C_in, N*H*W] x
  [N*H*W, C_out] matmul per kernel tap: the alternative to the stock kernel kept
  measurable on every CPU (AVX2 + oneDNN: -22% for conv2; AVX-512 + oneDNN: -2% to
  +7%, so the step keeps the stock one)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  kh = x.shape[1] - dy.shape[1] + 1
  kw = x.shape[2] - dy.shape[2] + 1
  h, w, c_in, c_out = dy.shape[1], dy.shape[2], x.shape[3], dy.shape[3]
  d = tf.reshape(dy, [-1, c_out])
  taps = [tf.matmul(tf.reshape(x[:, i:i + h, j:j + w, :], [-1, c_in]), d, transpose_a=True)
          for i in range(kh) for j in range(kw)]
  return tf.reshape(tf.stack(taps), [kh, kw, c_in, c_out])


def micro_kernels(rounds: int) -> dict:
  """CPU-seconds per call of every kernel of the base step, at batch 32, interleaved
  over ``rounds`` rounds (minimum kept), against a 1024^2 matmul timed the same way.

  Process CPU time, not wall time: on shared cores another process's load stretches
  wall time but hardly the CPU time a kernel needs, and with the worker threads set
  to 1 (--micro-threads) there is no spinning to count. The ratio to the matmul is
  the kernel's efficiency; the sum over the step's kernels is what the step would
  cost with no executor, Python, input or small-op overhead at all.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  t = lambda *shape: tf.constant(rng.standard_normal(shape).astype(np.float32))
  conv_shapes = {'conv1': ((32, 28, 28, 1), (3, 3, 1, 32)),
                 'conv2': ((32, 13, 13, 32), (3, 3, 32, 64)),
                 'conv3': ((32, 5, 5, 64), (3, 3, 64, 64))}
  cases = {}   # name -> (fn, args, flops, in base step?)
  for layer, (xs, ks) in conv_shapes.items():
    x, k = t(*xs), t(*ks)
    y = t(xs[0], xs[1] - 2, xs[2] - 2, ks[3])
    flops = CONV_FLOPS[layer]
    cases[f'{layer} forward (+bias+relu)'] = (
        tf.function(lambda x, k: tf.nn.relu(tf.nn.bias_add(
            tf.nn.conv2d(x, k, 1, 'VALID'), tf.zeros([k.shape[3]])))), (x, k), flops, True)
    cases[f'{layer} Conv2DBackpropFilter'] = (
        tf.function(lambda x, dy, ks=ks: tf.compat.v1.nn.conv2d_backprop_filter(
            x, ks, dy, [1, 1, 1, 1], 'VALID')), (x, y), flops, True)
    cases[f'{layer} Conv2DBackpropInput'] = (
        tf.function(lambda k, dy, xs=xs: tf.compat.v1.nn.conv2d_backprop_input(
            xs, k, dy, [1, 1, 1, 1], 'VALID')), (k, y), flops, layer != 'conv1')
  from components.trainer import input_conv  # pylint: disable=g-import-not-at-top
  x1, k1 = t(32, 28, 28, 1), t(3, 3, 1, 32)
  cases['conv1 input grad, col2im (project)'] = (
      tf.function(input_conv.col2im_input_gradient), (t(32, 26, 26, 32), k1),
      CONV_FLOPS['conv1'], False)
  cases['conv2 filter grad, 9 tap matmuls'] = (
      tf.function(filter_grad_taps), (t(32, 13, 13, 32), t(32, 11, 11, 64)),
      CONV_FLOPS['conv2'], False)
  for name, shape in (('pool1', (32, 26, 26, 32)), ('pool2', (32, 11, 11, 64))):
    p = t(*shape)

    def pool_grad(v):
      with tf.GradientTape() as tape:
        tape.watch(v)
        out = tf.nn.max_pool2d(v, 2, 2, 'VALID')
      return tape.gradient(out, v)
    cases[f'{name} MaxPool'] = (tf.function(lambda v: tf.nn.max_pool2d(v, 2, 2, 'VALID')),
                                (p,), 0, True)
    cases[f'{name} MaxPool + MaxPoolGrad'] = (tf.function(pool_grad), (p,), 0, True)
  a = t(1024, 1024)
  cases['matmul 1024^2 (reference)'] = (tf.function(lambda m: tf.matmul(m, m)), (a,),
                                        2 * 1024 ** 3, False)
  best = {name: float('inf') for name in cases}
  for name, (fn, args, _, _) in cases.items():
    fn(*args).numpy()
  for _ in range(rounds):
    for name, (fn, args, _, _) in cases.items():
      calls = 2 if name.startswith('matmul') else 10
      cpu = time.process_time()
      for _ in range(calls):
        out = fn(*args)
      out.numpy()
      best[name] = min(best[name], (time.process_time() - cpu) / calls)
  mm = cases['matmul 1024^2 (reference)'][2] / best['matmul 1024^2 (reference)'] / 1e9
  rows = []
  for name, (_, _, flops, in_base) in cases.items():
    gflops = flops / best[name] / 1e9 if flops else None
    rows.append({'kernel': name, 'cpu_ms': round(best[name] * 1000, 3),
                 'gflop_per_cpu_s': round(gflops, 1) if gflops else None,
                 'fraction_of_matmul': round(gflops / mm, 3) if gflops else None,
                 'in_base_step': in_base})
  # The base step's kernels: each forward, each weight gradient, the input gradients of
  # conv2 and conv3, both pools and their gradients (MaxPool + MaxPoolGrad counted once).
  step = sum(best[n] for n, c in cases.items() if c[3] and 'MaxPool + ' not in n
             and not n.endswith('MaxPool'))
  step += sum(best[n] for n in cases if 'MaxPool + ' in n)
  conv_flops = 3 * sum(CONV_FLOPS.values()) - CONV_FLOPS['conv1']
  # The same sums for the FGSM steps, so the ratio targets have a zero-overhead bound
  # printed next to the measured ratios. The project's step is two base passes plus
  # conv1's input gradient (bench/step_cost.py: 6S - L1); NSL's adds a separate
  # input-gradient pass through the clean network (conv3, conv2 and the stock conv1
  # input gradients, both MaxPoolGrads), because its outer tape cannot reuse the inner
  # one's backward pass. Both counted with this TF's kernels (NSL runs on TF 2.15's).
  pool_grads = sum(best[f'{p} MaxPool + MaxPoolGrad'] - best[f'{p} MaxPool']
                   for p in ('pool1', 'pool2'))
  fgsm = 2 * step + best['conv1 input grad, col2im (project)']
  nsl = 2 * step + pool_grads + sum(best[f'{layer} Conv2DBackpropInput']
                                    for layer in ('conv1', 'conv2', 'conv3'))
  return {'rows': rows, 'matmul_gflop_per_cpu_s': round(mm, 1),
          'base_step_kernels_cpu_ms': round(step * 1000, 3),
          'base_step_kernels_fraction_of_matmul': round(
              conv_flops / step / 1e9 / mm, 3),
          'fgsm_step_kernels_cpu_ms': round(fgsm * 1000, 3),
          'nsl_fgsm_step_kernels_cpu_ms': round(nsl * 1000, 3),
          'fgsm_over_nsl_kernel_bound': round(fgsm / nsl, 3),
          # Wall-time floors with both cores busy on kernels alone and perfectly shared.
          'base_floor_examples_per_s_2_cores': round(2 * 32 / step),
          'fgsm_floor_examples_per_s_2_cores': round(2 * 32 / fgsm)}


def print_report(name: str, r: dict, top: int) -> list:
  print(f'\n{name}: fit {r["fit_ms_per_step"]:.2f} ms/step under the profiler; step '
        f'(Keras "train" event) {r["step_wall_ms_median"]:.2f} ms median, step function '
        f'{r["step_fn_ms_median"]:.2f} ms; op time {r["op_time_ms_per_step_median"]:.2f} '
        f'ms/step (median-based; mean {r["op_time_ms_per_step_mean"]:.2f}) on 2 threads '
        f'= parallelism {r["parallelism"]:.2f}; tf.data threads '
        f'{r["tf_data_threads_ms_per_step"]:.2f} ms/step (off the critical path)')
  total = r['op_time_ms_per_step_median']
  rows = [(c, v['median_ms'], v['mean_ms']) for c, v in r['categories'].items()]
  rows += [(c, v['median_ms'], v['mean_ms']) for c, v in r['other'].items()]
  rows.sort(key=lambda t: -t[1])
  print(f'  {"category":36s} {"ms/step":>8s} {"share":>6s} {"mean":>8s}')
  for c, med, mean in rows:
    share = f'{100 * med / total:5.1f}%' if c in r['categories'] else '     -'
    print(f'  {c:36s} {med:8.3f} {share} {mean:8.3f}')
  mm = r['matmul_gflops_before']['best']
  r['conv_efficiency'] = conv_efficiency(r['ops'], mm)
  print(f'  convolution kernels, fastest occurrence vs the fastest 512^2 matmul call '
        f'({mm:.0f} GFLOP/s):')
  for row in r['conv_efficiency']:
    print(f'    {row["layer"]} {row["kernel"]:22s} {row["min_ms"]:7.3f} ms = '
          f'{row["gflops"]:6.1f} GFLOP/s = {100 * row["fraction_of_matmul"]:4.0f}%  '
          f'({row["type"]})')
  ops = sorted(r['ops'].items(), key=lambda kv: -kv[1]['median_ms'])[:top]
  print(f'  top {top} ops:')
  for opname, v in ops:
    print(f'    {v["median_ms"]:7.3f} ms  x{v["per_step"]:.0f}  {opname[:110]}')
  return rows[:5]


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--mode', choices=sorted(train_step.MODES), default='fgsm')
  parser.add_argument('--steps', type=int, default=64,
                      help='steps traced (a multiple of the proto\'s steps_per_execution)')
  parser.add_argument('--warmup-steps', type=int, default=64)
  parser.add_argument('--proto', default='', help='proto knobs, as bench/train_step.py')
  parser.add_argument('--variants', default='project')
  parser.add_argument('--env', default='default',
                      help='one +-joined environment, tokens: ' +
                      ', '.join(train_step.ENV_TOKENS))
  parser.add_argument('--top', type=int, default=12)
  parser.add_argument('--logdir', default=None, help='keep the traces here')
  parser.add_argument('--data-dir', default=os.environ.get('MNIST_DIR'))
  parser.add_argument('--micro', type=int, default=0, metavar='ROUNDS',
                      help='instead of tracing: time each kernel of the step alone at '
                           'its shapes, in CPU-seconds, ROUNDS rounds (see micro_kernels)')
  parser.add_argument('--micro-threads', type=int, default=1)
  args = parser.parse_args(argv)
  if not args.data_dir and not args.micro:
    parser.error('set MNIST_DIR or pass --data-dir')
  for token in args.env.split('+'):
    os.environ.update(train_step.ENV_TOKENS[token])
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if os.environ.get('BENCH_INTER_OP_THREADS'):
    tf.config.threading.set_inter_op_parallelism_threads(
        int(os.environ['BENCH_INTER_OP_THREADS']))
  if os.environ.get('BENCH_INTRA_OP_THREADS'):
    tf.config.threading.set_intra_op_parallelism_threads(
        int(os.environ['BENCH_INTRA_OP_THREADS']))
  if args.micro:
    tf.config.threading.set_inter_op_parallelism_threads(args.micro_threads)
    tf.config.threading.set_intra_op_parallelism_threads(args.micro_threads)
  info = train_step.cpu_info()
  print(train_step.cpu_line(info), flush=True)
  print(f'TF {tf.__version__}, env {args.env}, oneDNN '
        f'{os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default")}', flush=True)
  if args.micro:
    m = micro_kernels(args.micro)
    print(f'kernels alone, {args.micro_threads} thread(s), fastest of {args.micro} rounds, '
          f'process CPU time; matmul 1024^2: {m["matmul_gflop_per_cpu_s"]} GFLOP per '
          f'CPU-second')
    for row in m['rows']:
      rate = (f'{row["gflop_per_cpu_s"]:6.1f} GFLOP/CPU-s = '
              f'{100 * row["fraction_of_matmul"]:4.0f}% of matmul'
              if row['gflop_per_cpu_s'] else '')
      print(f'  {row["kernel"]:36s} {row["cpu_ms"]:7.3f} CPU-ms  {rate}')
    print(f'base step, kernels only: {m["base_step_kernels_cpu_ms"]:.2f} CPU-ms = '
          f'{100 * m["base_step_kernels_fraction_of_matmul"]:.0f}% of the matmul rate '
          '(the ceiling with zero overhead)')
    print(f'FGSM step, kernels only: project {m["fgsm_step_kernels_cpu_ms"]:.2f} against '
          f'NSL\'s rule as NSL runs it {m["nsl_fgsm_step_kernels_cpu_ms"]:.2f} CPU-ms = '
          f'{m["fgsm_over_nsl_kernel_bound"]:.2f}x (the ratio with zero overhead on both '
          'sides)')
    print(f'floors on 2 cores, kernels only and perfectly shared: base '
          f'{m["base_floor_examples_per_s_2_cores"]:,} ex/s, FGSM '
          f'{m["fgsm_floor_examples_per_s_2_cores"]:,} ex/s (compare train_step.py\'s '
          'epoch ex/s)')
    out = {'date': time.strftime('%Y-%m-%d %H:%M'), 'env': args.env, 'cpu': info,
           'tf_version': tf.__version__, 'method': 'micro: kernels alone, process CPU time',
           'threads': args.micro_threads, 'micro': m, 'load_average': os.getloadavg()}
    print(json.dumps(out), flush=True)
    return out
  x, y = train_step.load_normalized(args.data_dir, 'train')
  logdir = args.logdir or tempfile.mkdtemp(prefix='profile_step_')
  results, tops = {}, {}
  try:
    for variant in args.variants.split(','):
      for mode in ('base', 'adversarial'):
        overrides = {} if mode == 'base' else dict(train_step.MODES[args.mode] or {})
        spec = {'name': f'{variant}-{"adv" if mode != "base" else "base"}',
                'kind': variant, 'mode': mode, 'overrides': overrides,
                'proto': train_step.parse_proto(args.proto)}
        contender = train_step.build_contender(spec, x, y)
        contender.warm_up(args.warmup_steps)
        mm = train_step.matmul_rates(size=512, repeats=64)
        r = profile(contender, args.steps, os.path.join(logdir, spec['name']))
        r['matmul_gflops_before'] = mm
        results[spec['name']] = r
        tops[spec['name']] = print_report(spec['name'], r, args.top)
  finally:
    if not args.logdir:
      shutil.rmtree(logdir, ignore_errors=True)
  summary = {name: {'fit_ms_per_step': round(r['fit_ms_per_step'], 3),
                    'step_fn_ms_median': round(r['step_fn_ms_median'], 3),
                    'parallelism': round(r['parallelism'], 2),
                    'categories_ms': {c: round(v['median_ms'], 3)
                                      for c, v in r['categories'].items()},
                    'other_ms': {c: round(v['median_ms'], 3) for c, v in r['other'].items()},
                    'top5': [[c, round(m, 3)] for c, m, _ in tops[name]],
                    'conv_efficiency': r['conv_efficiency'],
                    'matmul_gflops': {k: round(v, 1) for k, v in
                                      r['matmul_gflops_before'].items()}}
             for name, r in results.items()}
  out = {'date': time.strftime('%Y-%m-%d %H:%M'), 'mode': args.mode, 'env': args.env,
         'cpu': info, 'tf_version': tf.__version__, 'steps': args.steps,
         'method': 'tf.profiler xplane host trace, per-op median duration x count',
         'results': summary, 'load_average': os.getloadavg()}
  print(json.dumps(out), flush=True)
  return out


if __name__ == '__main__':
  main()

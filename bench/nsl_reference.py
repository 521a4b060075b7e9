"""The reference library's training speed: NSL 1.4.0 on TF 2.15, same data and CNN.

Runs INSIDE bench/.nsl-venv (bench/nsl_venv.sh builds it); bench/train_step.py
--reference nsl runs it as a subprocess in the same invocation as the project's own
step, so the two are timed on the same machine under the same load.

What is timed, each on the first 22,699 MNIST training images of MNIST_DIR (read
with components/mnist_example_gen/idx.py, imported by path: it has no TF imports),
pixels / 255 as float32 [N, 784], batch 32, the tutorial's CNN (conv 32/64/64 3x3
ReLU, 2x2 max-pooling between, dense 64 ReLU, dense 10 logits; from_logits CE), Adam
1e-3, in the tutorial's input style (from_tensor_slices -> shuffle -> batch ->
prefetch):

* adv:  nsl.keras.AdversarialRegularization(base, label_keys=['label'],
        adv_config=nsl.configs.make_adv_reg_config(multiplier=0.2, adv_step_size=0.2,
        adv_grad_norm='infinity')).fit(...), i.e. the NSL tutorial;
        --pgd-iterations 7 --pgd-epsilon 0.25 --adv-step-size 0.09 [--random-init]
        gives the robust preset's PGD-7 neighbors instead;
* base: the same base CNN with plain Keras compile/fit (no NSL).

Every run fits for --epochs epochs; the first is a warm-up (tracing, oneDNN primitive
creation) reported apart, and examples/s is examples / median of the other epochs
(min also given). The last line printed is one JSON object.

  bench/.nsl-venv/bin/python bench/nsl_reference.py --data-dir DIR [--modes adv,base]
"""
import argparse
import importlib.util
import json
import os
import platform
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
IDX_PATH = os.path.join(os.path.dirname(HERE), 'components', 'mnist_example_gen', 'idx.py')
BATCH_SIZE = 32


def cpu_model() -> str:
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or 'unknown'


def load_idx_module():
  spec = importlib.util.spec_from_file_location('mnist_idx', IDX_PATH)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load_data(data_dir: str, examples=None):
  import numpy as np  # pylint: disable=g-import-not-at-top
  images, labels = load_idx_module().load_split(data_dir, 'train')
  x = images.reshape(len(images), -1).astype(np.float32) / 255.0
  y = labels.astype(np.int64)
  if examples:
    x, y = x[:examples], y[:examples]
  return x, y


def build_cnn(keras, tf):
  """The tutorial's CNN with stock Keras layers, on flat normalized pixels.

  The one definition both references use: NSL here (tf.keras of TF 2.15) and the
  plain Keras `fit` in train_step.py (tf_keras of the project's TF).
  """
  inputs = keras.Input(shape=(784,), dtype=tf.float32, name='image')
  x = keras.layers.Reshape((28, 28, 1))(inputs)
  x = keras.layers.Conv2D(32, 3, activation='relu')(x)
  x = keras.layers.MaxPooling2D(2)(x)
  x = keras.layers.Conv2D(64, 3, activation='relu')(x)
  x = keras.layers.MaxPooling2D(2)(x)
  x = keras.layers.Conv2D(64, 3, activation='relu')(x)
  x = keras.layers.Flatten()(x)
  x = keras.layers.Dense(64, activation='relu')(x)
  logits = keras.layers.Dense(10)(x)
  return keras.Model(inputs, logits, name='cnn')


def epoch_timer(tf):
  class EpochTimer(tf.keras.callbacks.Callback):
    def __init__(self):
      super().__init__()
      self.seconds, self.logs = [], []

    def on_epoch_begin(self, epoch, logs=None):
      self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
      self.seconds.append(time.perf_counter() - self._start)
      self.logs.append({k: round(float(v), 4) for k, v in (logs or {}).items()})
  return EpochTimer()


def summarize(seconds, n_examples):
  import numpy as np  # pylint: disable=g-import-not-at-top
  timed = seconds[1:] if len(seconds) > 1 else seconds
  median = float(np.median(timed))
  return {'warmup_seconds': round(seconds[0], 3),
          'epoch_seconds': [round(s, 3) for s in timed],
          'median_epoch_seconds': round(median, 3),
          'min_epoch_seconds': round(float(min(timed)), 3),
          'examples_per_s': round(n_examples / median, 1),
          'max_examples_per_s': round(n_examples / float(min(timed)), 1)}


def build(mode: str, args, x, y):
  """(model, dataset) of one mode, compiled."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.keras.utils.set_random_seed(args.seed)
  base = build_cnn(tf.keras, tf)
  ce = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
  n = len(y)
  if mode == 'base':
    model = base
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3), loss=ce, metrics=['acc'])
    ds = tf.data.Dataset.from_tensor_slices((x, y))
  else:
    import neural_structured_learning as nsl  # pylint: disable=g-import-not-at-top
    kwargs = dict(multiplier=args.multiplier, adv_step_size=args.adv_step_size,
                  adv_grad_norm='infinity')
    if args.pgd_iterations > 1 or args.pgd_epsilon is not None:
      kwargs.update(pgd_iterations=args.pgd_iterations, pgd_epsilon=args.pgd_epsilon,
                    clip_value_min=0.0, clip_value_max=1.0)
    if args.random_init:
      kwargs['random_init'] = True
    adv_config = nsl.configs.make_adv_reg_config(**kwargs)
    model = nsl.keras.AdversarialRegularization(base, label_keys=['label'],
                                                adv_config=adv_config)
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3), loss=ce, metrics=['acc'])
    ds = tf.data.Dataset.from_tensor_slices({'image': x, 'label': y})
  # NSL 1.4's random start draws tf.random.uniform(t.shape), which fails on the
  # dynamic batch dimension: with --random-init the batches have a static 32 (the last
  # partial batch, < 32 examples, is dropped).
  ds = (ds.shuffle(n, seed=args.seed, reshuffle_each_iteration=True)
        .batch(BATCH_SIZE, drop_remainder=bool(args.random_init and mode == 'adv'))
        .prefetch(tf.data.AUTOTUNE))
  return model, ds


def run(mode: str, args, x, y) -> dict:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  model, ds = build(mode, args, x, y)
  n = len(y)
  timer = epoch_timer(tf)
  model.fit(ds, epochs=args.epochs, verbose=0, callbacks=[timer])
  result = summarize(timer.seconds, n)
  result['last_logs'] = timer.logs[-1]
  print(f'nsl_reference {mode:4s}: epochs (s) warm-up {result["warmup_seconds"]}, '
        f'timed {result["epoch_seconds"]} -> {result["examples_per_s"]} examples/s '
        f'(median); last epoch {result["last_logs"]}', file=sys.stderr, flush=True)
  return result


# --- worker mode: driven by bench/train_step.py (same protocol as its workers) ---

PROTOCOL = '@@ '   # worker -> coordinator lines start with this; the rest is logging


def _reply(obj) -> None:
  sys.stdout.write(PROTOCOL + json.dumps(obj) + '\n')
  sys.stdout.flush()


def serve(ready: dict, handlers: dict) -> None:
  """The worker side of the benchmarks' protocol, for both venvs' workers: one JSON
  command per stdin line, one PROTOCOL-prefixed JSON reply per command. Every worker
  also answers 'matmul' (the same-run reference rate) and 'quit'."""
  handlers = dict(handlers)
  handlers.setdefault('matmul', lambda msg: matmul_rates(repeats=msg.get('repeats', 4)))
  _reply(ready)
  for line in sys.stdin:
    msg = json.loads(line)
    cmd = msg['cmd']
    if cmd == 'quit':
      break
    try:
      handler = handlers.get(cmd)
      _reply(handler(msg) if handler else {'error': f'unknown command {cmd!r}'})
    except Exception as e:  # pylint: disable=broad-except
      import traceback  # pylint: disable=g-import-not-at-top
      traceback.print_exc(file=sys.stderr)
      _reply({'error': f'{type(e).__name__}: {e}'})


def step_macs(model, mode: str, args, feature_dim: int) -> float:
  """Multiply-adds per example of model.train_step, counted by bench/step_cost.py."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location('step_cost', os.path.join(HERE, 'step_cost.py'))
  step_cost = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(step_cost)
  x_spec = tf.TensorSpec([BATCH_SIZE, feature_dim], tf.float32)
  y_spec = tf.TensorSpec([BATCH_SIZE], tf.int64)
  data = {'image': x_spec, 'label': y_spec} if mode == 'adv' else (x_spec, y_spec)
  concrete = tf.function(model.train_step).get_concrete_function(data)
  return step_cost.graph_macs(concrete.graph, lambda op: args.pgd_iterations - 1) / BATCH_SIZE


def matmul_rates(size: int = 1024, repeats: int = 8) -> dict:
  """GFLOP/s of single size^2 float32 matmuls: of the fastest call ('best', what the
  kernels reach when nothing else runs), of the median call, and per process
  CPU-second over all calls. Shared by every benchmark, in either venv."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  global _MATMUL
  if '_MATMUL' not in globals() or _MATMUL[0] != size:
    a = tf.random.uniform([size, size])
    fn = tf.function(lambda m: tf.matmul(m, m))
    fn(a).numpy()
    _MATMUL = (size, a, fn)
  _, a, fn = _MATMUL
  flops = 2 * size ** 3
  times = []
  cpu = time.process_time()
  for _ in range(repeats):
    start = time.perf_counter()
    fn(a).numpy()
    times.append(time.perf_counter() - start)
  cpu = time.process_time() - cpu
  return {'wall': flops / float(np.median(times)) / 1e9, 'best': flops / min(times) / 1e9,
          'cpu': flops * repeats / max(cpu, 1e-9) / 1e9}


def worker(args, x, y) -> None:
  """Serves JSON commands from stdin: setup, chunk, epoch, macs, matmul, quit."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  state = {}

  def setup(msg):
    spec = msg['spec']
    model, ds = build(spec['mode'], args, x, y)
    start = time.perf_counter()
    model.fit(ds.take(msg['warmup_steps']), epochs=1, verbose=0)
    warm = time.perf_counter() - start
    state[spec['name']] = {'model': model, 'ds': ds, 'mode': spec['mode'],
                           'iterator': iter(ds.repeat()),
                           'fn': model.make_train_function()}
    return {'name': spec['name'], 'warmup_seconds': warm}

  def chunk(msg):
    s = state[msg['name']]
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(msg['steps']):
      logs = s['fn'](s['iterator'])
    float(next(iter(logs.values())))
    return {'wall': time.perf_counter() - start, 'cpu': time.process_time() - cpu,
            'steps': msg['steps']}

  def epoch(msg):
    s = state[msg['name']]
    start, cpu = time.perf_counter(), time.process_time()
    history = s['model'].fit(s['ds'], epochs=1, verbose=0)
    return {'wall': time.perf_counter() - start, 'cpu': time.process_time() - cpu,
            'logs': {k: round(float(v[-1]), 4) for k, v in history.history.items()}}

  def macs(msg):
    s = state[msg['name']]
    return {'macs_per_example': step_macs(s['model'], s['mode'], args, x.shape[1])}

  serve({'ready': True, 'tf_version': tf.__version__, 'examples': int(len(y)),
         'onednn': os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'default')},
        {'setup': setup, 'chunk': chunk, 'epoch': epoch, 'macs': macs})


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--data-dir', default=os.environ.get('MNIST_DIR'))
  parser.add_argument('--modes', default='adv,base',
                      help='comma-separated, run in this order: adv (NSL), base (Keras fit)')
  parser.add_argument('--epochs', type=int, default=3,
                      help='epochs per run; the first is a warm-up, reported apart')
  parser.add_argument('--examples', type=int, default=None)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--multiplier', type=float, default=0.2)
  parser.add_argument('--adv-step-size', type=float, default=0.2)
  parser.add_argument('--pgd-iterations', type=int, default=1)
  parser.add_argument('--pgd-epsilon', type=float, default=None)
  parser.add_argument('--random-init', action='store_true',
                      help='random start in the epsilon ball (the robust preset has it)')
  parser.add_argument('--worker', action='store_true',
                      help='serve bench/train_step.py\'s JSON commands on stdin')
  args = parser.parse_args(argv)
  if not args.data_dir:
    parser.error('set MNIST_DIR or pass --data-dir')
  modes = [m for m in args.modes.split(',') if m]
  for m in modes:
    if m not in ('adv', 'base'):
      parser.error(f'--modes: unknown mode {m!r}')
  if args.random_init and args.pgd_epsilon is None:
    parser.error('--random-init needs --pgd-epsilon')

  x, y = load_data(args.data_dir, args.examples)
  if args.worker:
    worker(args, x, y)
    return {}
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import neural_structured_learning as nsl  # pylint: disable=g-import-not-at-top
  result = {'library': 'neural-structured-learning', 'nsl_version': nsl.__version__,
            'tf_version': tf.__version__, 'python': platform.python_version(),
            'cpu_model': cpu_model(), 'examples': int(len(y)), 'batch_size': BATCH_SIZE,
            'epochs': args.epochs,
            'adv_config': {'multiplier': args.multiplier,
                           'adv_step_size': args.adv_step_size,
                           'adv_grad_norm': 'infinity',
                           'pgd_iterations': args.pgd_iterations,
                           'pgd_epsilon': args.pgd_epsilon,
                           'random_init': args.random_init},
            'onednn': os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'default'),
            'modes': {}}
  for mode in modes:
    result['modes'][mode] = run(mode, args, x, y)
  print(json.dumps(result), flush=True)
  return result


if __name__ == '__main__':
  main()

"""Benchmark of the Trainer's step against NSL and plain Keras, in the same invocation.

Contenders, each trained with batch 32 on the training split of MNIST_DIR:

* project-base / project-adv: the pipeline's model (components.trainer.training.
  compile_model) and in-memory tf.data input (components.trainer.data), base mode and
  the chosen adversarial mode;
* nsl-adv / nsl-base (--reference nsl): neural-structured-learning 1.4.0
  AdversarialRegularization.fit on TF 2.15, and the same CNN's plain Keras fit there,
  run by bench/nsl_reference.py inside bench/.nsl-venv (built by bench/nsl_venv.sh
  if missing);
* keras-base (--reference keras): the same CNN, plain tf_keras compile/fit with a
  from_tensor_slices -> shuffle -> batch -> prefetch input, in the project's TF;
* proto-base / proto-adv (--variants proto): the prototype step of this file
  (ProtoModel; see its docstring), the candidate fixes for components/trainer.

Every contender lives in a worker process (one per TF environment: the project's,
the NSL venv's, and one per --env profile such as 'onednn'), built and warmed up
once, and the coordinator interleaves them: each round runs, in rotating order, a
chunk of --chunk-steps steps of every contender (the fit loop's own train_function on
a persistent iterator) and, unless --no-epochs, one full fit epoch of each, plus a
2048x2048 float32 matmul in each worker. The cores here are shared, so only figures
from one invocation are compared, and each is given as median and best (min time)
over rounds; ratios are taken between the same statistic of both sides.

  MNIST_DIR=/path/to/mnist python bench/train_step.py [--mode fgsm] \
      [--reference all|nsl|keras|none] [--variants project,proto] [--env default,onednn] \
      [--rounds 3] [--chunk-steps 100] [--examples N]

It prints the CPU model, whether it has AVX-512 / AVX512_BF16 / AMX, the matmul's
GFLOP/s per worker, each contender's examples/s, multiply-adds per example (counted in
the traced step, bench/step_cost.py), arithmetic rate and its fraction of the matmul
rate measured in the same worker, then the project/NSL and project/Keras ratios. The
last line printed is one JSON object.
"""
import argparse
import json
import os
import random
import subprocess
import sys
import time
from typing import Dict, List, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import numpy as np  # pylint: disable=g-import-not-at-top
# The references' module is stdlib-only at import, so both venvs share these.
from bench.nsl_reference import PROTOCOL, build_cnn, matmul_rates, serve  # pylint: disable=g-import-not-at-top

BATCH_SIZE = 32
HERE = os.path.dirname(os.path.abspath(__file__))

# Adversarial scenarios, as overrides of the pipeline config.
MODES: Dict[str, Optional[Dict[str, object]]] = {
    'fgsm': {},   # the tutorial: one 0.2 L-inf step, multiplier 0.2
    'base': None,
    'pgd7': {'adv.pgd_iterations': 7, 'adv.pgd_epsilon': 0.2,
             'adv.adv_step_size': 0.05, 'adv.random_init': True},
    # The 'robust' preset's neighbors (pipeline/config.py PRESETS['robust']).
    'robust': {'adv.pgd_iterations': 7, 'adv.pgd_epsilon': 0.25,
               'adv.adv_step_size': 0.09, 'adv.random_init': True, 'adv.multiplier': 1.0},
    # Fast adversarial training: random start, one 1.25*eps step, projected.
    'fast': {'adv.pgd_epsilon': 0.2, 'adv.adv_step_size': 0.25, 'adv.random_init': True},
    'madry7': {'adv.loss': 'adv_only', 'adv.pgd_iterations': 7, 'adv.pgd_epsilon': 0.2,
               'adv.adv_step_size': 0.05, 'adv.random_init': True},
    'trades': {'adv.loss': 'trades', 'adv.pgd_iterations': 7, 'adv.pgd_epsilon': 0.2,
               'adv.adv_step_size': 0.05, 'adv.random_init': True},
}

# Worker environments: '+'-joined tokens, e.g. 'onednn+inter1'.
ENV_TOKENS = {
    'default': {},
    'onednn': {'TF_ENABLE_ONEDNN_OPTS': '1'},
    'nodnn': {'TF_ENABLE_ONEDNN_OPTS': '0'},
    'inter1': {'BENCH_INTER_OP_THREADS': '1'},
    'inter2': {'BENCH_INTER_OP_THREADS': '2'},
    'intra1': {'BENCH_INTRA_OP_THREADS': '1'},
    'intra2': {'BENCH_INTRA_OP_THREADS': '2'},
    'omp1': {'OMP_NUM_THREADS': '1'},
    'omp2': {'OMP_NUM_THREADS': '2'},
    'spin0': {'KMP_BLOCKTIME': '0'},
    'xla': {'BENCH_JIT_COMPILE': '1'},
    # train.precision='mixed_bfloat16' for the project's contenders (Keras' stays float32).
    'bf16': {'BENCH_PRECISION': 'mixed_bfloat16'},
    # The robust presets' train.deterministic: tf.config.experimental.enable_op_determinism().
    'determ': {'BENCH_DETERMINISTIC': '1'},
}


# --- machine ------------------------------------------------------------------

def cpu_info() -> dict:
  model, flags = 'unknown', set()
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name') and model == 'unknown':
          model = line.split(':', 1)[1].strip()
        elif line.startswith('flags') and not flags:
          flags = set(line.split(':', 1)[1].split())
  except OSError:
    pass
  return {'cpu_model': model, 'cores': os.cpu_count(),
          'avx2': 'avx2' in flags, 'fma': 'fma' in flags,
          'avx512f': 'avx512f' in flags, 'avx512_vnni': 'avx512_vnni' in flags,
          'avx512_bf16': 'avx512_bf16' in flags,
          'amx': any(f.startswith('amx') for f in flags)}


def cpu_line(info: dict) -> str:
  yes = lambda b: 'yes' if b else 'no'
  return (f'CPU: {info["cpu_model"]}, {info["cores"]} cores; AVX2 {yes(info["avx2"])}, '
          f'AVX-512 {yes(info["avx512f"])}, AVX512_BF16 {yes(info["avx512_bf16"])}, '
          f'AMX {yes(info["amx"])}')


def matmul_gflops(size: int = 1024, repeats: int = 20) -> float:
  """Float32 rate of a large matmul here (fastest of single calls)."""
  return matmul_rates(size, repeats)['best']


# --- data and the project's training (also used by bench/quality.py) -----------

def parse_override(text: str):
  key, sep, value = text.partition('=')
  if not sep:
    raise argparse.ArgumentTypeError(f'--set {text!r}: expected key=value')
  return key, json.loads(value)


def load_normalized(data_dir: str, split: str):
  """One IDX split as the Transform outputs it: float32 [N, 784] in [0, 1], int64 labels."""
  from components.mnist_example_gen import idx  # pylint: disable=g-import-not-at-top
  images, labels = idx.load_split(data_dir, split)
  return (images.reshape(len(images), -1).astype(np.float32) / 255.0,
          labels.astype(np.int64))


def _config_class():
  try:
    from pipeline.config import PipelineConfig  # pylint: disable=g-import-not-at-top
    return PipelineConfig
  except ImportError:
    from components.config import TrainerConfig  # pylint: disable=g-import-not-at-top
    return TrainerConfig


def make_config(overrides: dict):
  return _config_class()().replace(**overrides)


def train(config, mode: str, images, labels, callbacks=()):
  """The Trainer's model, data and precision policy, fit for config.train.epochs."""
  from components.trainer import data, training  # pylint: disable=g-import-not-at-top
  ds = data.training_dataset(images, labels, batch_size=config.train.batch_size,
                             seed=config.train.seed, shuffle_buffer=config.train.shuffle_buffer)
  with training.precision_policy(config.train.precision):
    model = training.compile_model(config, mode)
    model.fit(ds, epochs=config.train.epochs, verbose=0, callbacks=list(callbacks))
  return model


# --- contenders (built inside a worker) -----------------------------------------

class Contender:
  """A model, its training dataset and a persistent iterator for timed chunks."""

  def __init__(self, name: str, model, dataset, macs_fn, pgd_iterations: int = 1):
    self.name, self.model, self.dataset = name, model, dataset
    self._macs_fn, self._pgd = macs_fn, pgd_iterations
    self._iterator = None

  def warm_up(self, steps: int) -> float:
    start = time.perf_counter()
    self.model.fit(self.dataset.take(steps), epochs=1, verbose=0)
    self._iterator = iter(self.dataset.repeat())
    self._train_fn = self.model.make_train_function()
    return time.perf_counter() - start

  def chunk(self, steps: int) -> dict:
    """``steps`` steps through fit's own train_function; per-call wall times too (a
    call runs steps_per_execution steps), whose minimum is the least-disturbed one."""
    per_call = max(1, int(getattr(self.model, '_steps_per_execution', None).numpy())
                   if getattr(self.model, '_steps_per_execution', None) is not None else 1)
    calls = max(1, steps // per_call)
    times = []
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
      t = time.perf_counter()
      logs = self._train_fn(self._iterator)
      float(next(iter(logs.values())))   # the host waits for the step's outputs
      times.append((time.perf_counter() - t) / per_call)
    return {'wall': time.perf_counter() - start, 'cpu': time.process_time() - cpu,
            'steps': calls * per_call, 'step_min': min(times),
            'step_p10': float(np.percentile(times, 10))}

  def epoch(self) -> dict:
    start, cpu = time.perf_counter(), time.process_time()
    history = self.model.fit(self.dataset, epochs=1, verbose=0)
    return {'wall': time.perf_counter() - start, 'cpu': time.process_time() - cpu,
            'logs': {k: round(float(v[-1]), 4) for k, v in history.history.items()}}

  def macs_per_example(self) -> float:
    return float(self._macs_fn(self.model)) / BATCH_SIZE


def build_contender(spec: dict, x, y) -> Contender:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  from bench import step_cost  # pylint: disable=g-import-not-at-top
  kind, mode = spec['kind'], spec['mode']
  overrides = dict(spec.get('overrides') or {})
  overrides['train.batch_size'] = BATCH_SIZE
  if os.environ.get('BENCH_JIT_COMPILE'):
    overrides['train.jit_compile'] = True
  if os.environ.get('BENCH_PRECISION') and kind != 'keras':
    overrides['train.precision'] = os.environ['BENCH_PRECISION']
  config = make_config(overrides)
  pgd = config.adv.pgd_iterations
  if kind == 'keras':
    keras.utils.set_random_seed(config.train.seed)
    model = build_cnn(keras, tf)
    model.compile(optimizer=keras.optimizers.Adam(config.train.learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=['acc'])
    ds = (tf.data.Dataset.from_tensor_slices((x, y))
          .shuffle(len(y), seed=config.train.seed, reshuffle_each_iteration=True)
          .batch(BATCH_SIZE).prefetch(tf.data.AUTOTUNE))
    macs = lambda m: step_cost.train_step_macs(m, BATCH_SIZE, x.shape[1])
    return Contender(spec['name'], model, ds, macs)
  from components.trainer import data, training  # pylint: disable=g-import-not-at-top
  if kind == 'project':
    keras.mixed_precision.set_global_policy(config.train.precision)
    model = training.compile_model(config, mode)
    ds = data.training_dataset(x, y, batch_size=BATCH_SIZE, seed=config.train.seed,
                               shuffle_buffer=config.train.shuffle_buffer)
  elif kind == 'proto':
    model = build_proto(config, mode, spec.get('proto') or {})
    ds = proto_dataset(x, y, config.train.seed)
  else:
    raise ValueError(f'unknown contender kind {kind!r}')
  macs = lambda m: step_cost.train_step_macs(m, BATCH_SIZE, x.shape[1], pgd)
  return Contender(spec['name'], model, ds, macs, pgd)


# --- the prototype step ----------------------------------------------------------

# The candidate fixes, each a knob of build_proto (--proto KEY=VALUE,...):
#   spe:     Keras steps_per_execution: this many batch-32 steps per call of the
#            compiled train function (one Python dispatch, one host sync, one
#            metrics readback per call instead of per step). Same updates.
#   adam:    'fused': tf_keras.optimizers.legacy.Adam, one ResourceApplyAdam kernel per
#            variable (same formula and defaults) instead of ~10 small ops each;
#            'keras': the optimizer the project uses.
#   xla:     1 compiles the step with XLA (jit_compile).
# The environment levers (oneDNN, threads) are worker --env tokens, not proto knobs.
PROTO_DEFAULTS = {'spe': 32, 'adam': 'fused', 'xla': 0}


def parse_proto(text: str) -> dict:
  opts = dict(PROTO_DEFAULTS)
  for item in filter(None, text.split(',')):
    key, _, value = item.partition('=')
    if key not in PROTO_DEFAULTS:
      raise ValueError(f'--proto: unknown knob {key!r} (known: {sorted(PROTO_DEFAULTS)})')
    opts[key] = type(PROTO_DEFAULTS[key])(value)
  return opts


def proto_dataset(x, y, seed: int):
  """The project's input pipeline (in-memory gather per batch, prefetched)."""
  from components.trainer import data  # pylint: disable=g-import-not-at-top
  return data.training_dataset(x, y, batch_size=BATCH_SIZE, seed=seed, shuffle_buffer=60000)


def build_proto(config, mode: str, options: dict):
  """The project's AdversarialModel (same step, same NSL rule, same seeded weights),
  compiled with the prototype's knobs."""
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  from components.trainer.adv_model import AdversarialModel  # pylint: disable=g-import-not-at-top
  from components.trainer.model import build_cnn  # pylint: disable=g-import-not-at-top
  opts = dict(PROTO_DEFAULTS, **options)
  if os.environ.get('BENCH_JIT_COMPILE'):   # the worker's 'xla' env token
    opts['xla'] = 1
  keras.utils.set_random_seed(config.train.seed)
  model = AdversarialModel(build_cnn(config.model), config.adv, mode=mode,
                           seed=config.train.seed)
  lr = config.train.learning_rate
  optimizer = (keras.optimizers.legacy.Adam(lr) if opts['adam'] == 'fused'
               else keras.optimizers.Adam(lr))
  model.compile(optimizer=optimizer, steps_per_execution=int(opts['spe']),
                jit_compile=bool(opts['xla']))
  return model


def check_equivalence(data_dir: str, mode: str, proto: dict, steps: int) -> dict:
  """Trains project and prototype from the same seed on the same first steps*32
  examples in order; returns the largest weight and loss differences."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from components.trainer import training  # pylint: disable=g-import-not-at-top
  x, y = load_normalized(data_dir, 'train')
  x, y = x[:steps * BATCH_SIZE], y[:steps * BATCH_SIZE]
  overrides = dict(MODES.get(mode) or {}, **{'train.batch_size': BATCH_SIZE})
  config = make_config(overrides)
  kmode = 'base' if MODES.get(mode) is None else 'adversarial'
  models = {'project': training.compile_model(config, kmode),
            'proto': build_proto(config, kmode, proto)}
  logs = {}
  for name, model in models.items():
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH_SIZE)
    history = model.fit(ds, epochs=1, verbose=0, shuffle=False)
    logs[name] = {k: float(v[-1]) for k, v in history.history.items()}
  wa = [w.numpy() for w in models['project'].base.weights]
  wb = [w.numpy() for w in models['proto'].base.weights]
  weight_diff = max(float(np.max(np.abs(a - b))) for a, b in zip(wa, wb))
  weight_scale = max(float(np.max(np.abs(a))) for a in wa)
  loss_diff = max(abs(logs['project'][k] - logs['proto'][k]) for k in logs['project'])
  return {'mode': mode, 'steps': steps, 'max_abs_weight_diff': weight_diff,
          'max_abs_weight': weight_scale, 'max_abs_logged_loss_diff': loss_diff,
          'logs': logs, 'proto': proto}


# --- worker process ------------------------------------------------------------

def worker_main(data_dir: str, examples: Optional[int]) -> None:
  """Serves JSON commands from stdin: setup, warmup, chunk, epoch, macs, matmul."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  inter = os.environ.get('BENCH_INTER_OP_THREADS')
  intra = os.environ.get('BENCH_INTRA_OP_THREADS')
  if os.environ.get('BENCH_DETERMINISTIC'):
    tf.config.experimental.enable_op_determinism()
  if inter:
    tf.config.threading.set_inter_op_parallelism_threads(int(inter))
  if intra:
    tf.config.threading.set_intra_op_parallelism_threads(int(intra))
  x, y = load_normalized(data_dir, 'train')
  if examples:
    x, y = x[:examples], y[:examples]
  contenders: Dict[str, Contender] = {}

  def setup(msg):
    c = build_contender(msg['spec'], x, y)
    contenders[c.name] = c
    return {'name': c.name, 'warmup_seconds': c.warm_up(msg['warmup_steps'])}

  serve({'ready': True, 'tf_version': tf.__version__, 'examples': int(len(y)),
         'onednn': os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'default')},
        {'setup': setup,
         'chunk': lambda msg: contenders[msg['name']].chunk(msg['steps']),
         'epoch': lambda msg: contenders[msg['name']].epoch(),
         'macs': lambda msg: {'macs_per_example':
                              contenders[msg['name']].macs_per_example()}})


class Worker:
  """A worker process and its contenders, driven over stdin/stdout."""

  def __init__(self, label: str, argv: List[str], env: Dict[str, str]):
    self.label = label
    full_env = dict(os.environ)
    full_env.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
    full_env.setdefault('PYTHONWARNINGS', 'ignore')
    full_env.update(env)
    self.env = env
    self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 env=full_env, text=True, bufsize=1)
    self.info = self._read()
    self.names: List[str] = []

  def _read(self) -> dict:
    for line in self.proc.stdout:
      if line.startswith(PROTOCOL):
        reply = json.loads(line[len(PROTOCOL):])
        if 'error' in reply:
          raise RuntimeError(f'worker {self.label}: {reply["error"]}')
        return reply
      sys.stderr.write(f'[{self.label}] {line}')
    raise RuntimeError(f'worker {self.label} exited (code {self.proc.wait()})')

  def ask(self, **msg) -> dict:
    self.proc.stdin.write(json.dumps(msg) + '\n')
    self.proc.stdin.flush()
    return self._read()

  def close(self) -> None:
    try:
      self.proc.stdin.write(json.dumps({'cmd': 'quit'}) + '\n')
      self.proc.stdin.close()
    except (BrokenPipeError, OSError):
      pass
    try:
      self.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
      self.proc.kill()


def nsl_python() -> str:
  """bench/.nsl-venv's python, building the venv first if it is missing."""
  py = os.path.join(HERE, '.nsl-venv', 'bin', 'python')
  stamp = os.path.join(HERE, '.nsl-venv', '.installed')
  if not (os.path.exists(py) and os.path.exists(stamp)):
    print('building bench/.nsl-venv (bench/nsl_venv.sh) ...', flush=True)
    out = subprocess.run(['bash', os.path.join(HERE, 'nsl_venv.sh')], check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    py = out.strip().splitlines()[-1]
  return py


def nsl_args(adv) -> List[str]:
  args = ['--multiplier', str(adv.multiplier), '--adv-step-size', str(adv.adv_step_size),
          '--pgd-iterations', str(adv.pgd_iterations)]
  if adv.pgd_epsilon is not None:
    args += ['--pgd-epsilon', str(adv.pgd_epsilon)]
  if adv.random_init:
    args.append('--random-init')
  return args


# --- statistics and report ------------------------------------------------------

def _stats(values: List[float]) -> dict:
  return {'median': float(np.median(values)), 'min': float(np.min(values)),
          'max': float(np.max(values)), 'n': len(values)}


def summarize(name: str, rec: dict, examples: int) -> dict:
  out = {'worker': rec['worker'], 'warmup_seconds': round(rec['warmup'], 2)}
  if rec['chunks']:
    per_step = [c['wall'] / c['steps'] for c in rec['chunks']]
    cpu_step = [c['cpu'] / c['steps'] for c in rec['chunks']]
    s = _stats(per_step)
    # Best: the least-disturbed chunk (all contenders' chunks are equally long).
    out['chunk_ms_per_step'] = {k: round(v * 1000, 3) if k != 'n' else v
                                for k, v in s.items()}
    out['chunk_cpu_ms_per_step'] = round(float(np.median(cpu_step)) * 1000, 3)
    out['chunk_ms_per_step_by_round'] = [round(1000 * v, 2) for v in per_step]
    out['chunk_examples_per_s'] = {'median': round(BATCH_SIZE / s['median'], 1),
                                   'best': round(BATCH_SIZE / s['min'], 1)}
  if rec['epochs']:
    walls = [e['wall'] for e in rec['epochs']]
    s = _stats(walls)
    out['epoch_seconds'] = [round(w, 3) for w in walls]
    out['epoch_examples_per_s'] = {'median': round(examples / s['median'], 1),
                                   'best': round(examples / s['min'], 1)}
    out['epoch_cpu_seconds'] = round(float(np.median([e['cpu'] for e in rec['epochs']])), 3)
    out['last_logs'] = rec['epochs'][-1]['logs']
  macs = rec.get('macs')
  if macs:
    out['macs_per_example'] = macs
    mm = rec['matmul']
    for stat, key in (('median', 'median'), ('best', 'best')):
      rate = out.get('chunk_examples_per_s', out.get('epoch_examples_per_s'))[stat]
      gflops = 2 * macs * rate / 1e9
      out[f'gflops_{stat}'] = round(gflops, 1)
      ref = mm['median'] if stat == 'median' else mm['max']
      out[f'fraction_of_matmul_{stat}'] = round(gflops / ref, 3)
    # Per CPU-second: robust to other processes' load (but counts spin-waiting).
    if rec['chunks']:
      cpu_rate = BATCH_SIZE / (out['chunk_cpu_ms_per_step'] / 1000)
      out['gflop_per_cpu_second'] = round(2 * macs * cpu_rate / 1e9, 1)
      out['fraction_of_matmul_per_cpu_second'] = round(
          out['gflop_per_cpu_second'] / mm['cpu_median'], 3)
  return out


def ratio_table(results: dict, pairs, records_chunks=None) -> dict:
  """time(a) / time(b) for each statistic both have: < 1 means a is faster."""
  table = {}
  records_chunks = records_chunks or {}
  for a, b in pairs:
    if a not in results or b not in results:
      continue
    ra, rb = results[a], results[b]
    row = {}
    for key in ('epoch_examples_per_s', 'chunk_examples_per_s'):
      if key in ra and key in rb:
        for stat in ('median', 'best'):
          row[f'{key.split("_")[0]}_{stat}'] = round(rb[key][stat] / ra[key][stat], 3)
    # CPU-seconds (all threads of the worker): far less sensitive to other processes'
    # load than wall time, though they also count threads spinning while waiting.
    if 'chunk_cpu_ms_per_step' in ra and 'chunk_cpu_ms_per_step' in rb:
      row['chunk_cpu'] = round(ra['chunk_cpu_ms_per_step'] / rb['chunk_cpu_ms_per_step'], 3)
    if 'epoch_cpu_seconds' in ra and 'epoch_cpu_seconds' in rb:
      row['epoch_cpu'] = round(ra['epoch_cpu_seconds'] / rb['epoch_cpu_seconds'], 3)
    ca, cb = records_chunks.get(a), records_chunks.get(b)
    if ca and cb:
      paired = [(x['wall'] / x['steps']) / (z['wall'] / z['steps']) for x, z in zip(ca, cb)]
      row['chunk_paired_median'] = round(float(np.median(paired)), 3)
    table[f'{a}/{b}'] = row
  return table


def coordinator(args) -> dict:
  info = cpu_info()
  print(cpu_line(info), flush=True)
  mode_overrides = MODES[args.mode]
  overrides = dict(args.overrides)
  adv_overrides = dict(overrides, **(mode_overrides or {}))
  adv_config = make_config(dict(adv_overrides, **{'train.batch_size': BATCH_SIZE})).adv

  specs: Dict[str, List[dict]] = {}   # worker label -> contender specs
  worker_argv: Dict[str, List[str]] = {}
  worker_env: Dict[str, Dict[str, str]] = {}
  project_argv = [sys.executable, os.path.abspath(__file__), '--worker',
                  '--data-dir', args.data_dir] + (
                      ['--examples', str(args.examples)] if args.examples else [])
  for profile in args.env:
    env = {}
    for token in profile.split('+'):
      env.update(ENV_TOKENS[token])
    label = f'tf216:{profile}'
    worker_argv[label], worker_env[label] = project_argv, env
    specs[label] = []
    for variant in args.variants:
      specs[label].append({'name': f'{variant}-base@{profile}', 'kind': variant,
                           'mode': 'base', 'overrides': overrides, 'proto': args.proto})
      if mode_overrides is not None:
        specs[label].append({'name': f'{variant}-adv@{profile}', 'kind': variant,
                             'mode': 'adversarial', 'overrides': adv_overrides,
                             'proto': args.proto})
  refs = {'all': ('nsl', 'keras'), 'nsl': ('nsl',), 'keras': ('keras',),
          'none': ()}[args.reference]
  if 'keras' in refs:
    label = 'tf216:default'
    if label not in specs:
      worker_argv[label], worker_env[label], specs[label] = project_argv, {}, []
    specs[label].append({'name': 'keras-base', 'kind': 'keras', 'mode': 'base',
                         'overrides': overrides})
  if 'nsl' in refs:
    nsl_modes = ['base']
    if mode_overrides is not None:
      if adv_config.loss == 'clean_plus_adv':
        nsl_modes.insert(0, 'adv')
      else:
        print(f'note: NSL has no {adv_config.loss!r} loss; nsl-adv is skipped', flush=True)
    label = 'tf215:nsl'
    worker_argv[label] = [nsl_python(), os.path.join(HERE, 'nsl_reference.py'), '--worker',
                          '--data-dir', args.data_dir] + nsl_args(adv_config) + (
                              ['--examples', str(args.examples)] if args.examples else [])
    worker_env[label] = {}
    specs[label] = [{'name': f'nsl-{m}', 'kind': 'nsl', 'mode': m} for m in nsl_modes]

  workers: Dict[str, Worker] = {}
  records: Dict[str, dict] = {}
  matmul: Dict[str, List[dict]] = {}
  try:
    for label in specs:
      workers[label] = Worker(label, worker_argv[label], worker_env[label])
      w = workers[label]
      print(f'worker {label}: TF {w.info["tf_version"]}, env {worker_env[label] or "{}"}, '
            f'{w.info["examples"]} examples', flush=True)
      matmul[label] = []
      for spec in specs[label]:
        reply = w.ask(cmd='setup', spec=spec, warmup_steps=args.warmup_steps)
        w.names.append(spec['name'])
        records[spec['name']] = {'worker': label, 'warmup': reply['warmup_seconds'],
                                 'chunks': [], 'epochs': []}
        print(f'  {spec["name"]}: warm-up ({args.warmup_steps} steps, tracing) '
              f'{reply["warmup_seconds"]:.1f} s', flush=True)
    examples = next(iter(workers.values())).info['examples']
    order = [(label, name) for label in specs for name in workers[label].names]
    rng = random.Random(0)
    for r in range(args.rounds):
      rng.shuffle(order)
      for label in rng.sample(list(workers), len(workers)):
        matmul[label].append(workers[label].ask(cmd='matmul'))
      for label, name in order:
        if args.chunk_steps:
          records[name]['chunks'].append(
              workers[label].ask(cmd='chunk', name=name, steps=args.chunk_steps))
      if r < args.epoch_rounds:
        for label, name in order:
          records[name]['epochs'].append(workers[label].ask(cmd='epoch', name=name))
      line = ', '.join(
          f'{name} {1000 * records[name]["chunks"][-1]["wall"] / args.chunk_steps:.1f} ms'
          for _, name in order if records[name]['chunks'])
      print(f'round {r + 1}/{args.rounds}: chunk ms/step: {line}', flush=True)
      if r < args.epoch_rounds:
        line = ', '.join(f'{name} {records[name]["epochs"][-1]["wall"]:.1f} s'
                         for _, name in order)
        print(f'round {r + 1}/{args.rounds}: epoch: {line}', flush=True)
    for label, name in order:
      records[name]['macs'] = workers[label].ask(cmd='macs', name=name)['macs_per_example']
  finally:
    for w in workers.values():
      w.close()

  mm_summary = {}
  for label, rates in matmul.items():
    walls = [m['wall'] for m in rates]
    mm_summary[label] = {'median': round(float(np.median(walls)), 1),
                         'max': round(float(np.max([m['best'] for m in rates])), 1),
                         'cpu_median': round(float(np.median([m['cpu'] for m in rates])), 1)}
    print(f'matmul 1024^2 float32 in {label}: {mm_summary[label]["median"]} GFLOP/s '
          f'median call, {mm_summary[label]["max"]} fastest call, '
          f'{mm_summary[label]["cpu_median"]} per CPU-second', flush=True)
  results = {}
  for name, rec in records.items():
    rec['matmul'] = mm_summary[rec['worker']]
    results[name] = summarize(name, rec, examples)
    r = results[name]
    text = f'{name:24s}'
    if 'epoch_examples_per_s' in r:
      text += (f' epoch {r["epoch_examples_per_s"]["median"]:7.0f} ex/s median '
               f'({r["epoch_examples_per_s"]["best"]:.0f} best);')
    if 'chunk_examples_per_s' in r:
      text += (f' steps {r["chunk_ms_per_step"]["median"]:.2f} ms median '
               f'({r["chunk_ms_per_step"]["min"]:.2f} best, '
               f'{r["chunk_cpu_ms_per_step"]:.2f} CPU-ms);')
    if 'macs_per_example' in r:
      text += (f' {r["macs_per_example"] / 1e6:.2f} M MACs/ex = {r["gflops_best"]:.0f} '
               f'GFLOP/s best = {100 * r["fraction_of_matmul_best"]:.0f}% of matmul best '
               f'({100 * r["fraction_of_matmul_median"]:.0f}% median-to-median')
      if 'fraction_of_matmul_per_cpu_second' in r:
        text += f', {100 * r["fraction_of_matmul_per_cpu_second"]:.0f}% per CPU-second'
      text += ')'
    print(text, flush=True)

  pairs = []
  project_names = [n for n in results if n.startswith(('project', 'proto'))]
  for n in project_names:
    if '-adv@' in n:
      pairs.append((n, 'nsl-adv'))
    else:
      pairs += [(n, 'keras-base'), (n, 'nsl-base')]
  for n in project_names:
    if n.startswith('proto'):
      pairs.append((n, 'project' + n[len('proto'):]))
    if not n.endswith('@default'):
      pairs.append((n, n.split('@')[0] + '@default'))
  pairs.append(('keras-base', 'nsl-base'))
  ratios = ratio_table(results, pairs, {n: r['chunks'] for n, r in records.items()})
  print('time ratios (< 1: the first is faster), per statistic:', flush=True)
  for key, row in ratios.items():
    if row:
      print(f'  {key:44s} ' + ', '.join(f'{k} {v}' for k, v in row.items()), flush=True)
  return {'date': time.strftime('%Y-%m-%d %H:%M'), 'mode': args.mode, 'cpu': info,
          'examples': examples, 'batch_size': BATCH_SIZE, 'rounds': args.rounds,
          'chunk_steps': args.chunk_steps, 'epoch_rounds': args.epoch_rounds,
          'matmul_gflops': mm_summary, 'contenders': results, 'time_ratios': ratios,
          'load_average': os.getloadavg()}


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--mode', choices=sorted(MODES), default='fgsm')
  parser.add_argument('--reference', choices=('all', 'nsl', 'keras', 'none'), default='all',
                      help='references timed in the same run: NSL 1.4/TF 2.15 (nsl), plain '
                           'tf_keras fit (keras), both (all, the default) or none')
  parser.add_argument('--variants', default='project',
                      help='comma-separated project steps: project (components/trainer) '
                           'and/or proto (this file\'s prototype)')
  parser.add_argument('--env', default='default',
                      help='comma-separated worker environments for the project steps, '
                           'each of +-joined tokens: ' + ', '.join(ENV_TOKENS))
  parser.add_argument('--rounds', type=int, default=16,
                      help='rounds of one chunk per contender (paired comparisons)')
  parser.add_argument('--chunk-steps', type=int, default=32,
                      help='steps per timed chunk (0: none)')
  parser.add_argument('--epoch-rounds', type=int, default=2,
                      help='the first N rounds also time one full fit epoch of each')
  parser.add_argument('--warmup-steps', type=int, default=50)
  parser.add_argument('--examples', type=int, default=None,
                      help='use only the first N training examples')
  parser.add_argument('--data-dir', default=os.environ.get('MNIST_DIR'))
  parser.add_argument('--set', dest='overrides', action='append', default=[],
                      type=parse_override, metavar='KEY=JSON',
                      help='config override, e.g. --set train.jit_compile=true')
  parser.add_argument('--proto', default='',
                      help='knobs of the proto variant, KEY=VALUE,... (defaults: ' +
                      ','.join(f'{k}={v}' for k, v in PROTO_DEFAULTS.items()) + ')')
  parser.add_argument('--check', type=int, default=0, metavar='STEPS',
                      help='only check that proto trains like project: same seed, same '
                           'first STEPS batches in order, in this process\'s environment')
  parser.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if not args.data_dir:
    parser.error('set MNIST_DIR or pass --data-dir (directory of the four IDX files)')
  if args.worker:
    worker_main(args.data_dir, args.examples)
    return {}
  try:
    args.proto = parse_proto(args.proto)
  except ValueError as e:
    parser.error(str(e))
  if args.check:
    result = check_equivalence(args.data_dir, args.mode, args.proto, args.check)
    print(json.dumps(result), flush=True)
    return result
  args.variants = [v for v in args.variants.split(',') if v]
  args.env = [e for e in args.env.split(',') if e]
  for v in args.variants:
    if v not in ('project', 'proto'):
      parser.error(f'--variants: unknown variant {v!r}')
  for e in args.env:
    for token in e.split('+'):
      if token not in ENV_TOKENS:
        parser.error(f'--env: unknown token {token!r} (known: {", ".join(ENV_TOKENS)})')
  if not args.chunk_steps and not args.epoch_rounds:
    parser.error('nothing to time: --chunk-steps 0 and --epoch-rounds 0')
  result = coordinator(args)
  print(json.dumps(result), flush=True)
  return result


if __name__ == '__main__':
  main()

"""train.deterministic: the same seed gives bit-identical weights, another seed does not.

tf.config.experimental.enable_op_determinism() is process wide and cannot be undone,
so every training runs in its own Python process (cwd = repo root), through the
Trainer's own train_and_export on a real tf.Transform output, and writes every
variable of its last checkpoint (model weights and Adam slots) to an .npz here.
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from components.config import ModelConfig, TrainerConfig
from components.trainer import testing_utils

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# One training in a fresh process: train_and_export, then the checkpoint's variables.
_TRAIN = textwrap.dedent('''
    import json, sys
    import numpy as np
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config
    from components.config import TrainerConfig
    from components.trainer import training
    args = json.loads(sys.argv[1])
    config = TrainerConfig.from_json(args['config'])
    training.train_and_export(
        config, 'adversarial', train_files=[args['train']], eval_files=[args['eval']],
        transform_dir=args['transform_dir'], serving_model_dir=args['serving'],
        model_run_dir=args['run'], verbose=0)
    ckpt = tf.train.latest_checkpoint(args['run'] + '/checkpoints') or (
        args['run'] + '/checkpoints/epoch-%03d' % config.train.epochs)
    reader = tf.train.load_checkpoint(ckpt)
    arrays = {name: reader.get_tensor(name)
              for name in sorted(reader.get_variable_to_shape_map())
              if name != '_CHECKPOINTABLE_OBJECT_GRAPH'}
    np.savez(args['out'], **arrays)
    print(json.dumps({'determinism': tf_config.is_op_determinism_enabled(),
                      'variables': len(arrays)}))
''')


def _config(seed: int) -> TrainerConfig:
  return TrainerConfig(model=ModelConfig(conv_filters=(4, 8), dense_units=16)).replace(**{
      # Two epochs: the held-out attack after the first runs before the second trains.
      'train.epochs': 2, 'train.batch_size': 32, 'train.seed': seed,
      'train.deterministic': True, 'train.jit_compile': False,
      # The robust presets' cosine schedule; 4 steps per call over 5 batches per
      # epoch (one full call, one partial).
      'train.lr_schedule': 'cosine', 'train.steps_per_execution': 4,
      # The robust selection's held-out PGD pass (random starts) runs too.
      'train.robust_eval_examples': 40, 'train.robust_eval_pgd_steps': 2,
      'train.eval_batch_size': 20})


def _train(fixture, tmp_path, name: str, seed: int, **overrides) -> dict:
  out = tmp_path / f'{name}.npz'
  args = {'config': _config(seed).replace(**overrides).to_json(), 'train': fixture.train_pattern,
          'eval': fixture.eval_pattern, 'transform_dir': fixture.transform_dir,
          'serving': str(tmp_path / name / 'serving'), 'run': str(tmp_path / name / 'run'),
          'out': str(out)}
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL='2')
  proc = subprocess.run([sys.executable, '-c', _TRAIN, json.dumps(args)], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, f'{name}: training failed:\n{proc.stderr[-4000:]}'
  report = json.loads(proc.stdout.strip().splitlines()[-1])
  assert report['determinism'], f'{name}: train_and_export left op determinism off'
  with np.load(out) as npz:
    weights = {k: npz[k] for k in npz.files}
  selection = json.loads((tmp_path / name / 'run' / 'selection.json').read_text())
  return {'weights': weights, 'selection': selection}


# Three TF processes and a Beam Transform: ~2 CPU minutes.
pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def fixture(tmp_path_factory):
  # ~200 generated images: 200 to train on (40 of them held out), 40 to validate.
  return testing_utils.build_transform_output(
      str(tmp_path_factory.mktemp('tft')), train_count=200, eval_count=40, seed=0)


def test_same_seed_same_weights_other_seed_other_weights(fixture, tmp_path):
  first = _train(fixture, tmp_path, 'seed0_a', seed=0)
  # The same seed again, one update per call and APGD-CE as the selection attack:
  # neither steps_per_execution nor the selection method changes a bit of training
  # (the held-out attack draws from its own stateless seeds), so a study of the
  # selection method on one run's checkpoints holds for a run under the other.
  again = _train(fixture, tmp_path, 'seed0_b', seed=0,
                 **{'train.steps_per_execution': 1, 'train.robust_eval_method': 'apgd-ce'})
  other = _train(fixture, tmp_path, 'seed1', seed=1)

  a, b, c = first['weights'], again['weights'], other['weights']
  assert any(k.startswith('base/') for k in a), sorted(a)
  assert any(k.startswith('optimizer/_variables/') for k in a), sorted(a)  # Adam
  assert sorted(a) == sorted(b) == sorted(c)
  for name in a:
    assert a[name].dtype == b[name].dtype and a[name].shape == b[name].shape, name
    # Bit-identical, not merely close.
    assert a[name].tobytes() == b[name].tobytes(), f'{name} differs with the same seed'
  # The same weights, so the same clean figures; the robust ones are another attack's.
  clean = lambda run: [e['clean_accuracy'] for e in run['selection']['epochs']]
  assert len(clean(first)) == 2 and clean(first) == clean(again)

  trainable = [k for k in a if k.startswith('base/')]
  assert trainable
  differing = [k for k in trainable if not np.array_equal(a[k], c[k])]
  assert differing == trainable, (
      f'seed 1 left {sorted(set(trainable) - set(differing))} equal to seed 0')

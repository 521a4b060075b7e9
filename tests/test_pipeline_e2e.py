"""The whole pipeline on LocalDagRunner with generated data.

One pipeline root is shared by the tests of this module, in order, as a scheduled
retraining would see it: span 1 is trained, blessed and pushed; an unchanged re-run
is served from the cache; an impossible gate pushes nothing; span 2 retrains and is
compared with the latest blessed model.
"""
import os

import numpy as np
import pytest
import tensorflow as tf

from components.mnist_example_gen import idx
from components.mnist_example_gen import testing
from components.config import AttackConfig
from pipeline import config as config_lib
from pipeline import local_runner
from pipeline import metadata_queries as mq
from pipeline import pipeline as pipeline_lib
from pipeline import progress
from pipeline import report as report_lib

pytestmark = pytest.mark.slow

N_TRAIN, N_EVAL, AMBIGUOUS = 300, 100, 10
# The default attacks with a short AutoAttack (FAB-T included, as in the robust
# presets), so the suite runs end to end in seconds.
SMALL_ATTACKS = config_lib.default_attacks()[:2] + (
    AttackConfig(name='autoattack', method='autoattack', epsilon=0.2, steps=5,
                 targets=1, suite=('apgd-ce', 'apgd-t', 'fab-t'), sample_size=40),)


def small_config(root: str, **changes) -> config_lib.PipelineConfig:
  """The default pipeline, shrunk to seconds: tiny CNN, one epoch, small samples."""
  cfg = config_lib.PipelineConfig(
      pipeline_root=os.path.join(root, 'pipeline'),
      serving_dir=os.path.join(root, 'serving'),
      span_pattern='span-{SPAN}')
  return cfg.replace(**{
      'model.conv_filters': (8, 16), 'model.dense_units': 16,
      'train.epochs': 2, 'train.batch_size': 16,
      'eval.sample_size': 40, 'eval.sweep_sample_size': 20, 'eval.batch_size': 100,
      'eval.epsilon_sweep': (0.1, 0.3),
      'eval.thresholds.min_clean_accuracy': 0.5,
      'eval.thresholds.min_attack_accuracy': {'fgsm': 0.0, 'pgd40': 0.0},
      'eval.thresholds.max_drop': 0.5,
      'eval.thresholds.min_eval_examples': 10,
      'eval.attacks': SMALL_ATTACKS,
      **changes})


def run(cfg, data_dir):
  timer = progress.ComponentTimer(stream=open(os.devnull, 'w'))
  return local_runner.run(cfg, data_dir, timer=timer)


def versions(serving_dir):
  if not os.path.isdir(serving_dir):
    return []
  return sorted(d for d in os.listdir(serving_dir) if d.isdigit())


@pytest.fixture(scope='module')
def root(tmp_path_factory):
  return str(tmp_path_factory.mktemp('e2e'))


@pytest.fixture(scope='module')
def data_dir(root):
  d = os.path.join(root, 'data')
  testing.write_fake_mnist(d, N_TRAIN, N_EVAL, seed=0, span=1, ambiguous_eval=AMBIGUOUS)
  return d


@pytest.fixture(scope='module')
def first_report(root, data_dir):
  return run(small_config(root), data_dir)


def test_first_run_trains_evaluates_and_pushes(root, first_report):
  r = first_report
  assert r['data']['span'] == 1
  assert set(r['models']) == {'adversarial', 'base'}
  assert set(r['table']['rows']) == {'base', 'adversarial'}
  cols = r['table']['columns']
  assert cols[0] == 'clean' and 'fgsm transfer-from-base' in cols
  assert 'fgsm white-box' in cols and 'pgd40 white-box' in cols
  for row in r['table']['rows'].values():
    assert 0.5 < row['clean'] <= 1 - (AMBIGUOUS - 1) / N_EVAL + 1e-9
  assert r['blessed'] is True
  assert r['checks'] and all(c['passed'] for c in r['checks'])
  assert all(os.path.isfile(p) for p in r['plots'])
  assert {c['node'] for c in r['components']} >= {
      'MnistExampleGen', 'Transform', 'Trainer', 'BaseTrainer', 'RobustnessEvaluator',
      'Pusher'}
  # report.json at the run's path and at the stable 'latest' path.
  cfg = small_config(root)
  assert os.path.isfile(report_lib.report_path(cfg.pipeline_root, r['run_id']))
  latest = report_lib._read_json(report_lib.report_path(cfg.pipeline_root))
  assert latest['run_id'] == r['run_id']

  push = r['push']
  assert push['pushed'] and versions(cfg.serving_dir) == [push['version']]
  assert push['path'] == os.path.join(cfg.serving_dir, push['version'])


def test_pushed_model_loads_and_predicts(root, data_dir, first_report):
  loaded = tf.saved_model.load(first_report['push']['path'])
  images, labels = idx.load_split(os.path.join(data_dir, 'span-1'), 'eval')
  probs = loaded.signatures['serving_images'](images=tf.constant(images[:50]))
  probs = next(iter(probs.values())).numpy()
  assert probs.shape == (50, 10)
  np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
  assert (probs.argmax(axis=1) == labels[:50]).mean() > 0.5


def test_unchanged_rerun_is_cached(root, data_dir, first_report):
  serving_dir = small_config(root).serving_dir
  # The first re-run sees a blessed baseline for the first time (the candidate
  # itself), so only the evaluator and pusher run again, and push nothing new.
  r = run(small_config(root), data_dir)
  states = {c['node']: c['state'] for c in r['components']}
  for node in ('MnistExampleGen', 'Transform', 'Trainer', 'BaseTrainer'):
    assert states[node] == 'CACHED', (node, states)
  assert versions(serving_dir) == [first_report['push']['version']]
  assert r['push']['pushed'] is False and 'already serving' in r['push']['reason']
  # From then on, nothing at all runs again.
  r = run(small_config(root), data_dir)
  resolvers = (pipeline_lib.RESOLVER, pipeline_lib.PREVIOUS_STATISTICS)
  states = {c['node']: c['state'] for c in r['components']
            if c['node'] not in resolvers}  # resolvers always resolve
  assert set(states.values()) == {'CACHED'}, states
  assert versions(serving_dir) == [first_report['push']['version']]


def test_impossible_gate_pushes_nothing(root, data_dir, first_report):
  # AMBIGUOUS identical eval images with different labels cap clean accuracy at 0.91.
  r = run(small_config(root, **{'eval.thresholds.min_clean_accuracy': 0.95}), data_dir)
  assert r['blessed'] is False
  failed = [c for c in r['checks'] if not c['passed']]
  assert failed and 'clean' in failed[0]['name']
  assert not r['push']['pushed'] and 'not blessed' in r['push']['reason']
  assert versions(small_config(root).serving_dir) == [first_report['push']['version']]


def test_new_span_retrains_against_latest_blessed(root, data_dir, first_report):
  testing.write_fake_mnist(data_dir, N_TRAIN, N_EVAL, seed=7, span=2,
                           ambiguous_eval=AMBIGUOUS)
  r = run(small_config(root), data_dir)
  assert r['data']['span'] == 2
  states = {c['node']: c['state'] for c in r['components']}
  assert states['Trainer'] == 'COMPLETE'
  # The baseline is the model blessed in span 1, and the drop check was applied.
  assert r['baseline_model'] == first_report['models']['adversarial']['uri']
  assert any('baseline' in c['name'] or 'drop' in c['name'] for c in r['checks'])
  cfg = small_config(root)
  if r['blessed']:
    assert r['push']['pushed']
    assert versions(cfg.serving_dir) == sorted([first_report['push']['version'],
                                                r['push']['version']])
  else:
    assert versions(cfg.serving_dir) == [first_report['push']['version']]

  store = mq.open_store(cfg.metadata)
  spans = sorted(mq.prop(a, 'span') for a in store.get_artifacts_by_type('Examples')
                 if mq.prop(a, 'span') is not None and 'MnistExampleGen' in a.uri)
  assert spans == [1, 2]

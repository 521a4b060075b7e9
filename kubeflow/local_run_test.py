"""The compiled package, executed step by step on this machine as KFP v2 would run it.

Every step runs its container command and args from the spec as a subprocess (this
venv's python standing in for the image's), with the ExecutorInput the KFP v2
launcher builds, a minio:// pipeline root backed by a directory, and a pod directory
per step (kubeflow/testing_launcher.py). Run 1 ingests, trains one epoch, evaluates and
pushes. Run 2 re-runs the baseline resolver, which now finds run 1's pushed model,
and ExampleGen pinned to the older span by run parameter. No cluster is involved.
(Each step is a fresh interpreter importing TF and TFX, as in a pod; that import,
~10-25 s per step on 2 shared cores, dominates the runtime.)
"""
import json
import os

import pytest

from components import config as components_config
from components.mnist_example_gen import testing
from kubeflow import baseline_resolver
from kubeflow import compile as compile_lib
from kubeflow import deploy_config
from kubeflow import run_parameters
from kubeflow import testing_launcher
from pipeline import config as config_lib
from pipeline import pipeline as pipeline_lib

# Every test here reads the two compiled-pipeline runs of the `runs` fixture (minutes).
pytestmark = pytest.mark.slow

ROOT = 'minio://mlpipeline/v2/artifacts'
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_TRAIN, N_EVAL = 160, 60
QUIET = {'TF_CPP_MIN_LOG_LEVEL': '3', 'PYTHONWARNINGS': 'ignore',
         'GRPC_VERBOSITY': 'ERROR'}


def tiny_config(serving_dir: str) -> config_lib.PipelineConfig:
  """One epoch of a tiny CNN; a gate every model passes, so the chain must push."""
  return config_lib.PipelineConfig(
      serving_dir=serving_dir, span_pattern='span-{SPAN}', train_base_model=False,
  ).replace(**{
      'model.conv_filters': (8, 16), 'model.dense_units': 16,
      'train.epochs': 1, 'train.batch_size': 16, 'train.jit_compile': False,
      'eval.sample_size': 20, 'eval.sweep_sample_size': 10, 'eval.batch_size': 100,
      'eval.epsilon_sweep': (0.1,),
      'eval.thresholds.min_clean_accuracy': 0.0,
      'eval.thresholds.min_attack_accuracy': {'fgsm': 0.0, 'pgd40': 0.0},
      'eval.thresholds.max_drop': None, 'eval.thresholds.min_eval_examples': 10,
      # FGSM and PGD only: this test is about the KFP plumbing, not AutoAttack's cost.
      'eval.attacks': components_config.default_attacks()[:2]})


class Runs:
  pass


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  r = Runs()
  root = tmp_path_factory.mktemp('kfp-local')
  r.data = str(root / 'data')
  testing.write_fake_mnist(r.data, N_TRAIN, N_EVAL, seed=0, span=0)
  testing.write_fake_mnist(r.data, N_TRAIN, N_EVAL, seed=1, span=1)
  r.serving = str(root / 'serving')
  compiled = compile_lib.compile_pipeline(tiny_config(r.serving), deploy_config.DeployConfig(
      image='registry.example.com/mnist-adv:test', pipeline_root=ROOT,
      # The compiled default is overridden by the run parameter below.
      data_dir='/data/not-mounted-here',
      # The repository stands in for the image's /opt/app.
      schema_path=os.path.join(REPO, 'pipeline', 'schema', 'schema.pbtxt')))
  r.package = compile_lib.write_package(compiled, str(root / 'pipeline.yaml'))
  r.spec = testing_launcher.load_package(r.package)
  work = str(root / 'kfp')
  r.first = testing_launcher.LocalLauncher(r.spec, work, run_id='run-1', env=QUIET)
  r.first.run({run_parameters.DATA_DIR: r.data})
  r.second = testing_launcher.LocalLauncher(r.spec, work, run_id='run-2', env=QUIET)
  r.second.run({run_parameters.DATA_DIR: r.data,
                run_parameters.RANGE_CONFIG: run_parameters.span_range_config(0)},
               only=[pipeline_lib.RESOLVER, pipeline_lib.EXAMPLE_GEN])
  return r


def _store(launcher, uri):
  return launcher.store_path(uri)


def _versions(serving):
  return sorted(d for d in os.listdir(serving) if d.isdigit())


def test_every_step_ran_and_a_model_was_pushed(runs):
  assert set(runs.first.outputs) == set(runs.spec['root']['dag']['tasks'])
  pushed = runs.first.outputs[pipeline_lib.PUSHER]['pushed_model']['metadata']
  assert pushed['pushed'] == 1
  assert _versions(runs.serving) == [pushed['pushed_version']]
  assert os.path.isfile(os.path.join(pushed['pushed_destination'], 'saved_model.pb'))
  blessing = runs.first.outputs[pipeline_lib.EVALUATOR]['blessing']['metadata']
  assert blessing['blessed'] == 1


def test_artifacts_live_in_the_object_store_under_the_pipeline_root(runs):
  prefix = f'{ROOT}/mnist-adv/run-1/'
  for task, outputs in runs.first.outputs.items():
    for key, artifact in outputs.items():
      assert artifact['uri'] == f'{prefix}{task}/{key}', (task, key)
  model = runs.first.outputs[pipeline_lib.TRAINER]['model']
  assert os.path.isfile(os.path.join(_store(runs.first, model['uri']), 'Format-Serving',
                                     'saved_model.pb'))


def test_inputs_arrived_untyped_and_the_entrypoint_typed_them(runs):
  sent = runs.first.executor_inputs[pipeline_lib.TRAINER]['inputs']['artifacts']
  assert {a['artifacts'][0]['type']['instanceSchema'] for a in sent.values()} == {''}
  assert 'examples' in sent and 'transform_graph' in sent


def test_run_parameter_data_dir_and_latest_span_were_used(runs):
  params = runs.first.executor_inputs[pipeline_lib.EXAMPLE_GEN]['inputs']['parameterValues']
  assert params['input_base'] == runs.data and params['range_config'] == ''
  examples = runs.first.outputs[pipeline_lib.EXAMPLE_GEN]['examples']['metadata']
  assert examples.get('span', examples.get('custom:span')) == 1
  assert json.loads(examples['split_names']) == ['train', 'eval']


def test_span_run_parameter_pins_an_older_span(runs):
  examples = runs.second.outputs[pipeline_lib.EXAMPLE_GEN]['examples']['metadata']
  assert examples.get('span', examples.get('custom:span')) == 0


def _report(launcher):
  evaluation = launcher.outputs[pipeline_lib.EVALUATOR]['evaluation']['uri']
  with open(os.path.join(_store(launcher, evaluation), 'metrics.json')) as f:
    return json.load(f)


def test_first_run_has_no_baseline(runs):
  model = runs.first.outputs[pipeline_lib.RESOLVER]['model']
  assert baseline_resolver.is_unresolved(_store(runs.first, model['uri']))
  assert set(_report(runs.first)['models']) == {'candidate'}


def test_second_run_baseline_is_the_model_pushed_by_the_first(runs):
  model = runs.second.outputs[pipeline_lib.RESOLVER]['model']
  pushed = runs.first.outputs[pipeline_lib.PUSHER]['pushed_model']['metadata']
  assert model['metadata'][baseline_resolver.SOURCE_PROPERTY] == pushed['pushed_destination']
  stored = _store(runs.second, model['uri'])
  assert not baseline_resolver.is_unresolved(stored)
  # In the Model layout the evaluator reads (path_utils.serving_model_path).
  with open(os.path.join(stored, 'Format-Serving', 'saved_model.pb'), 'rb') as copied, \
       open(os.path.join(pushed['pushed_destination'], 'saved_model.pb'), 'rb') as served:
    assert copied.read() == served.read()

"""kubeflow.compile: the package is the local pipeline, placed and sized for a cluster."""
import json
import os

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from components import config as components_config
from kubeflow import compile as compile_lib
from kubeflow import deploy_config
from kubeflow import run_parameters
from kubeflow import spec_rewrite
from pipeline import config as config_lib
from pipeline import pipeline as pipeline_lib

IMAGE = 'registry.example.com/mnist-adv:1.0'
GPU_IMAGE = 'registry.example.com/mnist-adv-gpu:1.0'
ROOT = 'gs://ml-bucket/pipelines'
DATA = 'gs://ml-bucket/mnist'
SERVING = '/mnt/models/mnist_adv'
BEAM = ('--runner=PortableRunner', '--job_endpoint=flink-jobserver:8099')
TRAINERS = {pipeline_lib.TRAINER, pipeline_lib.BASE_TRAINER}


def _deploy(**changes):
  fields = dict(image=IMAGE, gpu_image=GPU_IMAGE, pipeline_root=ROOT, data_dir=DATA,
                gpus=2, trainer_cpu=6.0, trainer_memory_gb=24.0, cpu=1.5, memory_gb=6.0,
                beam_args=BEAM, gpu_node_selector=(('cloud.google.com/gke-accelerator',
                                                    'nvidia-tesla-t4'),),
                node_selector=(('pool', 'cpu'),), pvc_mounts=(('models', '/mnt/models'),))
  fields.update(changes)
  return deploy_config.DeployConfig(**fields)


@pytest.fixture(scope='module')
def compiled(tmp_path_factory):
  config = config_lib.PipelineConfig(serving_dir=SERVING)
  c = compile_lib.compile_pipeline(config, _deploy())
  path = str(tmp_path_factory.mktemp('pkg') / 'pipeline.yaml')
  compile_lib.write_package(c, path)
  return c, path


def _tasks(c):
  return spec_rewrite.tasks(c.pipeline_spec)


def _container(c, task):
  return spec_rewrite.executor_of(c.pipeline_spec, task)['container']


def test_every_component_is_a_task(compiled):
  c, _ = compiled
  assert set(_tasks(c)) == {n.id for n in c.tfx_pipeline.components}
  assert len(_tasks(c)) == 11


def test_dag_edges_equal_the_local_pipeline(compiled):
  c, _ = compiled
  local = {(up.id, n.id) for n in c.tfx_pipeline.components for up in n.upstream_nodes}
  local |= {(n.id, down.id) for n in c.tfx_pipeline.components for down in n.downstream_nodes}
  spec = set()
  for name, task in _tasks(c).items():
    spec |= {(dep, name) for dep in task.get('dependentTasks', [])}
    for source in task.get('inputs', {}).get('artifacts', {}).values():
      spec.add((source['taskOutputArtifact']['producerTask'], name))
  assert spec == local
  # The explicit validation-before-transform edge survives compilation.
  assert (pipeline_lib.VALIDATOR, pipeline_lib.TRANSFORM) in spec


def test_gpus_are_requested_by_the_trainers_only(compiled):
  c, _ = compiled
  for name in _tasks(c):
    resources = _container(c, name)['resources']
    if name in TRAINERS:
      assert resources['accelerator'] == {'type': 'nvidia.com/gpu', 'count': '2'}
      assert (resources['cpuLimit'], resources['memoryLimit']) == (6.0, 24.0)
    else:
      assert 'accelerator' not in resources, name
      assert (resources['cpuLimit'], resources['memoryLimit']) == (1.5, 6.0), name


def test_images_and_command(compiled):
  c, _ = compiled
  for name in _tasks(c):
    container = _container(c, name)
    assert container['image'] == (GPU_IMAGE if name in TRAINERS else IMAGE), name
    assert container['command'] == list(deploy_config.ENTRYPOINT_COMMAND)
    assert container['args'].count('{{$}}') == 1
    outputs = json.loads(container['args'][container['args'].index(
        spec_rewrite.OUTPUTS_SPEC_FLAG) + 1])
    component = c.pipeline_spec['components'][_tasks(c)[name]['componentRef']['name']]
    assert outputs['artifacts'] == component['outputDefinitions']['artifacts']
    assert 'lifecycle' not in container  # nothing open-source KFP would skip


def test_data_location_and_span_are_run_parameters(compiled):
  c, _ = compiled
  params = c.pipeline_spec['root']['inputDefinitions']['parameters']
  assert params[run_parameters.DATA_DIR]['defaultValue'] == DATA
  assert params[run_parameters.RANGE_CONFIG]['defaultValue'] == run_parameters.LATEST_SPAN
  example_gen = _tasks(c)[pipeline_lib.EXAMPLE_GEN]['inputs']['parameters']
  assert example_gen['input_base'] == {'componentInputParameter': run_parameters.DATA_DIR}
  assert example_gen['range_config'] == {
      'componentInputParameter': run_parameters.RANGE_CONFIG}


def test_step_parameters(compiled):
  c, _ = compiled
  tasks = _tasks(c)
  schema = tasks['ImportSchemaGen']['inputs']['parameters']['schema_file']
  assert schema['runtimeValue']['constant'] == deploy_config.IMAGE_SCHEMA_PATH
  push = json.loads(tasks[pipeline_lib.PUSHER]['inputs']['parameters']['push_destination']
                    ['runtimeValue']['constant'])
  assert push['filesystem']['base_directory'] == SERVING
  resolver = tasks[pipeline_lib.RESOLVER]['inputs']['parameters']
  assert resolver[spec_rewrite.SERVING_DIR_PARAM]['runtimeValue']['constant'] == SERVING
  custom = json.loads(tasks[pipeline_lib.TRAINER]['inputs']['parameters']['custom_config']
                      ['runtimeValue']['constant'])
  assert components_config.TrainerConfig.from_json(custom['config']).train.epochs == 5
  for beam_step in (pipeline_lib.EXAMPLE_GEN, 'StatisticsGen', pipeline_lib.TRANSFORM):
    assert _container(c, beam_step)['args'][-len(BEAM):] == list(BEAM), beam_step
  assert c.pipeline_spec['defaultPipelineRoot'] == ROOT
  assert c.pipeline_spec['pipelineInfo']['name'] == 'mnist-adv'


def test_resolver_is_a_container_step_that_is_never_cached(compiled):
  c, _ = compiled
  assert spec_rewrite.resolver_tasks(c.pipeline_spec) == []
  args = _container(c, pipeline_lib.RESOLVER)['args']
  assert args[args.index('--executor_class_path') + 1] == spec_rewrite.RESOLVER_EXECUTOR_CLASS
  evaluator = _tasks(c)[pipeline_lib.EVALUATOR]
  assert evaluator['inputs']['artifacts']['baseline_model']['taskOutputArtifact'] == {
      'producerTask': pipeline_lib.RESOLVER, 'outputArtifactKey': 'model'}
  # The container resolver has no ModelBlessing to give (optional evaluator input).
  assert 'baseline_blessing' not in evaluator['inputs']['artifacts']
  caching = {t: task['cachingOptions'].get('enableCache', False)
             for t, task in _tasks(c).items()}
  assert not caching.pop(pipeline_lib.RESOLVER)
  assert not caching.pop(pipeline_lib.EXAMPLE_GEN)  # a new span must be ingested
  assert all(caching.values())


def test_placement_goes_to_the_kubernetes_platform_spec(compiled):
  c, _ = compiled
  executors = c.platform_spec['platforms']['kubernetes']['deploymentSpec']['executors']
  assert set(executors) == {spec_rewrite.executor_label_of(c.pipeline_spec, t)
                            for t in _tasks(c)}
  for task in _tasks(c):
    cfg = executors[spec_rewrite.executor_label_of(c.pipeline_spec, task)]
    assert cfg['pvcMount'] == [{'constant': 'models', 'mountPath': '/mnt/models'}]
    if task in TRAINERS:
      assert cfg['nodeSelector'] == {
          'labels': {'cloud.google.com/gke-accelerator': 'nvidia-tesla-t4'}}
      assert cfg['tolerations'] == [{'key': 'nvidia.com/gpu', 'operator': 'Exists',
                                     'effect': 'NoSchedule'}]
    else:
      assert cfg['nodeSelector'] == {'labels': {'pool': 'cpu'}}
      assert 'tolerations' not in cfg


def test_package_parses_as_kfp_pipeline_and_platform_spec(compiled):
  c, path = compiled
  with open(path) as f:
    text = f.read()
  assert '&id' not in text and '*id' not in text  # no YAML aliases
  docs = list(yaml.safe_load_all(text))
  assert len(docs) == 2
  spec = json_format.ParseDict(docs[0], pipeline_spec_pb2.PipelineSpec())
  platform = json_format.ParseDict(docs[1], pipeline_spec_pb2.PlatformSpec())
  assert docs[0] == c.pipeline_spec
  assert spec.schema_version == '2.1.0'
  assert set(spec.root.dag.tasks) == set(_tasks(c))
  assert 'kubernetes' in platform.platforms


def test_cpu_training_and_no_placement_write_a_single_document(tmp_path):
  config = config_lib.PipelineConfig(serving_dir=SERVING, train_base_model=False)
  c = compile_lib.compile_pipeline(config, deploy_config.DeployConfig(
      image=IMAGE, pipeline_root='minio://mlpipeline/v2/artifacts', data_dir=DATA, gpus=0))
  assert pipeline_lib.BASE_TRAINER not in _tasks(c)
  for name in _tasks(c):
    assert 'accelerator' not in _container(c, name)['resources']
    assert _container(c, name)['image'] == IMAGE
  assert c.platform_spec is None
  path = compile_lib.write_package(c, str(tmp_path / 'p.yaml'))
  with open(path) as f:
    assert len(list(yaml.safe_load_all(f))) == 1


# ------------------------------------------------------------------ bad input

GOOD = ['--image', IMAGE, '--pipeline-root', ROOT, '--data-dir', DATA,
        '--serving-dir', SERVING]


def _without(flag):
  i = GOOD.index(flag)
  return GOOD[:i] + GOOD[i + 2:]


def _with(flag, value):
  args = list(GOOD)
  if flag in args:
    args[args.index(flag) + 1] = value
  else:
    args += [flag, value]
  return args


@pytest.mark.parametrize('args, message', [
    (_without('--image'), '--image is required'),
    (_with('--image', 'Registry/Bad Image'), 'not a valid image reference'),
    (_without('--pipeline-root'), '--pipeline-root is required'),
    (_with('--pipeline-root', 'runs/pipeline'), 'is a local path'),
    (_with('--pipeline-root', '/abs/runs'), 'is a local path'),
    (_with('--pipeline-root', 'hdfs://nn/root'), 'not supported'),
    (_with('--gpus', '-1'), '--gpus=-1: must be an integer >= 0'),
    (_with('--serving-dir', 'serving/mnist_adv'), 'relative path'),
    (_with('--data-dir', 's3://bucket/mnist'), 'cannot open s3://'),
    (_with('--trainer-memory', 'lots'), '--trainer-memory'),
    (_with('--gpu-toleration', 'nvidia.com/gpu:Sometimes'), 'KEY[=VALUE][:EFFECT]'),
    (_with('--pipeline-name', 'MNIST adv!'), 'KFP pipeline name'),
    (_with('--epochs', '0'), 'epochs=0'),
    (_with('--pipeline-root', 'minio://mlpipeline/v2') + ['--beam-arg=--runner=FlinkRunner'],
     'Beam workers open it themselves'),
    (_with('--beam-arg', 'runner=DirectRunner'), 'Beam options look like --name=value'),
])
def test_bad_input_fails_before_anything_is_written(tmp_path, capsys, args, message):
  out = tmp_path / 'p.yaml'
  assert compile_lib.main(['--output', str(out)] + args) == 2
  assert message in capsys.readouterr().err
  assert not out.exists()


def test_json_output_is_refused(compiled, tmp_path):
  c, _ = compiled
  with pytest.raises(compile_lib.CompileError, match='.yaml'):
    compile_lib.write_package(c, str(tmp_path / 'p.json'))
  assert not os.path.exists(tmp_path / 'p.json')


def test_tfds_source_reads_a_tfds_data_dir_on_an_object_store(tmp_path):
  """--source tfds: the data-location run parameter is the tfds data dir (gs://...),
  and ExampleGen reads the prepared version's record files under it."""
  config = config_lib.PipelineConfig(serving_dir=SERVING, data_source='tfds',
                                     tfds_version='3.0.1')
  c = compile_lib.compile_pipeline(config, _deploy(data_dir='gs://bucket/tfds'))
  path = str(tmp_path / 'pipeline.yaml')
  compile_lib.write_package(c, path)
  text = open(path).read()
  assert 'gs://bucket/tfds' in text
  assert 'mnist/3.0.1/mnist-train.tfrecord*' in text
  assert 'mnist/3.0.1/mnist-test.tfrecord*' in text
  assert len(_tasks(c)) == 11

"""The entry point's repairs of the launcher's ExecutorInput, and the baseline resolver."""
import json
import os
from unittest import mock

import pytest
from google.protobuf import json_format
from tfx.types import standard_artifacts
from tfx.utils import path_utils

from kubeflow import baseline_resolver
from kubeflow import entrypoint
from kubeflow import executor_input as fixes
from kubeflow import remote_beam
from kubeflow import uris

EXAMPLES_SCHEMA = 'title: tfx.Examples\ntype: object\n'
MODEL_SCHEMA = 'title: tfx.Model\ntype: object\n'


def _executor_input(inputs=None, outputs=None, output_file='/gcs/b/executor_output.json'):
  return json_format.ParseDict({
      'inputs': {'artifacts': {k: {'artifacts': v} for k, v in (inputs or {}).items()}},
      'outputs': {'artifacts': {k: {'artifacts': v} for k, v in (outputs or {}).items()},
                  'outputFile': output_file}}, fixes.ExecutorInput())


def _inputs_spec(**schemas):
  return json_format.ParseDict(
      {'artifacts': {k: {'artifactType': {'instanceSchema': s}} for k, s in schemas.items()}},
      fixes.InputsSpec())


@pytest.mark.parametrize('sent_type', [{}, {'instanceSchema': ''},
                                       {'schemaTitle': 'system.Artifact'}])
def test_untyped_inputs_get_the_declared_type(sent_type):
  ei = _executor_input(inputs={'examples': [{'uri': 'gs://b/e', 'type': sent_type}]})
  assert fixes.fill_input_types(ei, _inputs_spec(examples=EXAMPLES_SCHEMA)) == ['examples']
  assert ei.inputs.artifacts['examples'].artifacts[0].type.instance_schema == EXAMPLES_SCHEMA


def test_typed_inputs_are_left_alone():
  ei = _executor_input(inputs={'examples': [{'uri': 'gs://b/e',
                                             'type': {'instanceSchema': MODEL_SCHEMA}}]})
  assert fixes.fill_input_types(ei, _inputs_spec(examples=EXAMPLES_SCHEMA)) == []
  assert ei.inputs.artifacts['examples'].artifacts[0].type.instance_schema == MODEL_SCHEMA


def test_untyped_input_without_a_spec_is_a_clear_error():
  ei = _executor_input(inputs={'model': [{'uri': 'gs://b/m'}]})
  with pytest.raises(fixes.ExecutorInputError, match="'model'.*without a type"):
    fixes.fill_input_types(ei, None)


def test_untyped_outputs_get_the_declared_type_or_a_clear_error():
  ei = _executor_input(outputs={'model': [{'uri': 'gs://b/m'}]})
  with pytest.raises(fixes.ExecutorInputError, match="output artifact 'model'"):
    fixes.fill_output_types(ei, None)
  spec = json_format.ParseDict(
      {'artifacts': {'model': {'artifactType': {'instanceSchema': MODEL_SCHEMA}}}},
      fixes.OutputsSpec())
  assert fixes.fill_output_types(ei, spec) == ['model']
  assert ei.outputs.artifacts['model'].artifacts[0].type.instance_schema == MODEL_SCHEMA


def test_uris_map_to_the_launcher_mirror_and_back():
  assert uris.to_local('gs://b/k/x') == '/gcs/b/k/x'
  assert uris.to_local('minio://mlpipeline/v2/a', '/pod') == '/pod/minio/mlpipeline/v2/a'
  assert uris.to_local('s3://b/k', '/pod/') == '/pod/s3/b/k'
  for uri in ('gs://b/k', 's3://b/k/l', 'minio://b/k'):
    assert uris.to_remote(uris.to_local(uri, '/r'), '/r') == uri
  with pytest.raises(uris.UriError, match='hdfs'):
    uris.to_local('hdfs://nn/x')


def test_localize_points_the_executor_at_local_copies_and_restores_outputs():
  ei = _executor_input(
      inputs={'examples': [{'uri': 'minio://mlpipeline/r/ExampleGen/examples'}]},
      outputs={'statistics': [{'uri': 's3://bkt/r/StatisticsGen/statistics',
                               'type': {'instanceSchema': MODEL_SCHEMA}}],
               'local': [{'uri': '/mnt/x', 'type': {'instanceSchema': MODEL_SCHEMA}}]})
  remote_by_local = fixes.localize(ei, '/pod')
  assert ei.inputs.artifacts['examples'].artifacts[0].uri == \
      '/pod/minio/mlpipeline/r/ExampleGen/examples'
  local_stats = ei.outputs.artifacts['statistics'].artifacts[0].uri
  assert local_stats == '/pod/s3/bkt/r/StatisticsGen/statistics'
  assert ei.outputs.artifacts['local'].artifacts[0].uri == '/mnt/x'
  out = json_format.ParseDict({'artifacts': {
      'statistics': {'artifacts': [{'uri': local_stats, 'metadata': {'span': 1}}]},
      'local': {'artifacts': [{'uri': '/mnt/x'}]}}}, fixes.ExecutorOutput())
  fixes.restore_output_uris(out, remote_by_local)
  assert out.artifacts['statistics'].artifacts[0].uri == 's3://bkt/r/StatisticsGen/statistics'
  assert out.artifacts['local'].artifacts[0].uri == '/mnt/x'


def test_driver_metadata_is_attached_to_the_outputs():
  ei = _executor_input(outputs={'examples': [{'uri': '/x', 'metadata': {'a': 1}}]})
  driver = json_format.ParseDict({'artifacts': {'examples': {'artifacts': [
      {'uri': '/x', 'metadata': {'span': 3, 'input_fingerprint': 'f'}}]}}},
                                 fixes.ExecutorOutput())
  fixes.merge_driver_outputs(ei, driver)
  assert dict(ei.outputs.artifacts['examples'].artifacts[0].metadata) == {
      'a': 1, 'span': 3, 'input_fingerprint': 'f'}


def test_beam_args_pass_through_like_tfx_entrypoint():
  args, beam = entrypoint.parse_args([
      '--executor_class_path', 'a.B', '--json_serialized_invocation_args', '{}',
      '--runner=PortableRunner', '--job_endpoint=host:8099'])
  assert args.executor_class_path == 'a.B' and args.json_serialized_inputs_spec_args is None
  assert beam == ['--runner=PortableRunner', '--job_endpoint=host:8099']
  args, beam = entrypoint.parse_args([
      '--executor_class_path', 'a.B', '--json_serialized_invocation_args', '{}',
      '--json_serialized_outputs_spec_args', '{"artifacts": {}}', '--runner=DirectRunner'])
  assert args.json_serialized_outputs_spec_args == '{"artifacts": {}}'
  assert beam == ['--runner=DirectRunner']


# ------------------------------------------------------------------ baseline resolver


def _pushed(serving, version, complete=True):
  d = os.path.join(serving, str(version))
  os.makedirs(os.path.join(d, 'variables'))
  with open(os.path.join(d, 'variables', 'variables.index'), 'w') as f:
    f.write(str(version))
  if complete:
    with open(os.path.join(d, 'saved_model.pb'), 'w') as f:
      f.write(f'model {version}')
  return d


def test_latest_version_is_the_newest_complete_numbered_folder(tmp_path):
  serving = str(tmp_path / 'serving')
  assert baseline_resolver.latest_version_dir(serving) is None
  _pushed(serving, 1700)
  newest = _pushed(serving, 1800)
  _pushed(serving, 1900, complete=False)  # still being written
  _pushed(serving, '.push-staging-abc')   # the atomic Pusher's staging folder
  os.makedirs(os.path.join(serving, '2000x'))
  assert baseline_resolver.latest_version_dir(serving) == newest


def _resolve(tmp_path, serving):
  model = standard_artifacts.Model()
  model.uri = str(tmp_path / 'resolver' / 'model')
  baseline_resolver.Executor().Do({}, {'model': [model]},
                                  {baseline_resolver.SERVING_DIR_KEY: serving})
  return model


def test_resolver_copies_the_latest_pushed_model_in_model_layout(tmp_path):
  serving = str(tmp_path / 'serving')
  source = _pushed(serving, 42)
  model = _resolve(tmp_path, serving)
  served = path_utils.serving_model_path(model.uri)
  with open(os.path.join(served, 'saved_model.pb')) as f:
    assert f.read() == 'model 42'
  assert os.path.exists(os.path.join(served, 'variables', 'variables.index'))
  assert model.get_string_custom_property(baseline_resolver.SOURCE_PROPERTY) == source
  assert not baseline_resolver.is_unresolved(model.uri)


def test_nothing_pushed_yet_means_no_baseline_input(tmp_path):
  model = _resolve(tmp_path, str(tmp_path / 'empty-serving'))
  with open(os.path.join(model.uri, baseline_resolver.MARKER_FILE)) as f:
    assert json.load(f) == {'found': False, 'source': None}
  assert baseline_resolver.is_unresolved(model.uri)
  ei = _executor_input(inputs={'baseline_model': [{'uri': model.uri}],
                               'model': [{'uri': str(tmp_path / 'candidate')}]})
  assert fixes.drop_unresolved(ei) == ['baseline_model']
  assert len(ei.inputs.artifacts['baseline_model'].artifacts) == 0
  assert len(ei.inputs.artifacts['model'].artifacts) == 1


# ------------------------------------------------------------------ remote Beam runners


@pytest.mark.parametrize('beam_args, remote', [
    ([], False), (['--direct_running_mode=in_memory'], False),
    (['--runner=DirectRunner'], False), (['--runner', 'PrismRunner'], False),
    (['--runner=PortableRunner', '--job_endpoint=flink:8099'], True),
    (['--runner', 'DataflowRunner'], True), (['--runner=FlinkRunner'], True),
])
def test_remote_runner_detection(beam_args, remote):
  assert remote_beam.is_remote(beam_args) is remote


def test_remote_workers_need_gs_artifacts():
  remote_beam.check_uris(['gs://b/a', 'gs://b/c'])
  with pytest.raises(remote_beam.RemoteBeamError, match='gs:// pipeline root'):
    remote_beam.check_uris(['gs://b/a', 'minio://mlpipeline/x'])


def test_remote_outputs_get_empty_local_mirrors_for_the_launcher(tmp_path):
  made = remote_beam.make_local_mirrors(['gs://b/run/Transform/transform_graph'],
                                        str(tmp_path))
  assert made == [str(tmp_path / 'gcs/b/run/Transform/transform_graph')]
  assert os.path.isdir(made[0]) and not os.listdir(made[0])


class _Blob:

  def __init__(self, name, size, deleted=None):
    self.name, self.size, self._deleted = name, size, deleted

  def delete(self):
    self._deleted.append(self.name)


class _FakeGcs:
  """The two google.cloud.storage calls delete_directory_markers makes."""

  def __init__(self, objects):
    self.objects, self.deleted = objects, []

  def list_blobs(self, bucket, prefix):
    return [_Blob(n, s) for n, s in self.objects if n.startswith(prefix)]

  def bucket(self, name):
    return mock.Mock(blob=lambda n: _Blob(n, 0, self.deleted))


def test_gcs_directory_markers_under_the_outputs_are_deleted():
  gcs = _FakeGcs([('run/ExampleGen/examples/', 0),
                  ('run/ExampleGen/examples/Split-train/', 0),
                  ('run/ExampleGen/examples/Split-train/data-0.gz', 120),
                  ('run/ExampleGen/examples/Split-eval/data-0.gz', 40),
                  ('run/Other/out/', 0)])
  deleted = remote_beam.delete_directory_markers(['gs://b/run/ExampleGen/examples'], gcs)
  assert gcs.deleted == ['run/ExampleGen/examples/', 'run/ExampleGen/examples/Split-train/']
  assert deleted == ['gs://b/run/ExampleGen/examples/',
                     'gs://b/run/ExampleGen/examples/Split-train/']

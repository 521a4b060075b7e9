"""kubeflow.submit against a mocked kfp.Client: calls, request bodies, validation.

No cluster is involved anywhere: the kfp client is either a Mock (which calls are
made with which arguments) or the real kfp 2.5 Client with its REST API objects
mocked (which request bodies it would send).
"""
import json
from unittest import mock

import kfp
import kfp_server_api
import pytest
import yaml

from kubeflow import cron
from kubeflow import run_parameters
from kubeflow import submit

SPEC = {'pipelineInfo': {'name': 'mnist-adv'}, 'schemaVersion': '2.1.0',
        'sdkVersion': 'tfx-1.16.0', 'components': {},
        'root': {'dag': {'tasks': {}}, 'inputDefinitions': {'parameters': {
            'data_dir': {'parameterType': 'STRING', 'defaultValue': 'gs://b/mnist'},
            'range_config': {'parameterType': 'STRING', 'defaultValue': ''}}}},
        'deploymentSpec': {'executors': {}}}


@pytest.fixture
def package(tmp_path):
  path = tmp_path / 'pipeline.yaml'
  path.write_text(yaml.safe_dump(SPEC))
  return str(path)


def _client(pipeline_id='pid-1', versions=('vid-new',)):
  client = mock.Mock()
  client.get_pipeline_id.return_value = pipeline_id
  client.list_pipeline_versions.return_value = mock.Mock(pipeline_versions=[
      mock.Mock(pipeline_version_id=v) for v in versions])
  client.create_experiment.return_value = mock.Mock(experiment_id='eid-1')
  return client


def _main(argv, client):
  factory = mock.Mock(return_value=client)
  code = submit.main(argv, client_factory=factory)
  return code, factory


def test_upload_new_pipeline(package):
  client = _client(pipeline_id=None)
  code, factory = _main(['--host', 'http://kfp:8888', 'upload', '--package', package,
                         '--pipeline-name', 'mnist-adv'], client)
  assert code == 0
  factory.assert_called_once_with('http://kfp:8888', None)
  client.upload_pipeline.assert_called_once_with(
      pipeline_package_path=package, pipeline_name='mnist-adv', description=None,
      namespace=None)
  client.upload_pipeline_version.assert_not_called()


def test_upload_existing_pipeline_adds_a_content_named_version(package):
  client = _client()
  assert _main(['upload', '--package', package, '--pipeline-name', 'mnist-adv'], client)[0] == 0
  kwargs = client.upload_pipeline_version.call_args.kwargs
  assert kwargs['pipeline_id'] == 'pid-1'
  assert kwargs['pipeline_version_name'] == submit.default_version_name(package, 'mnist-adv')
  assert kwargs['pipeline_version_name'].startswith('mnist-adv-')
  client.upload_pipeline.assert_not_called()


def test_run_of_an_uploaded_pipeline_passes_data_parameters():
  client = _client()
  code, _ = _main(['--namespace', 'team-a', 'run', '--pipeline-name', 'mnist-adv',
                   '--data-dir', 'gs://b/mnist-2025-06', '--span', '7', '--no-cache'], client)
  assert code == 0
  client.create_experiment.assert_called_once_with(name='mnist-adv', namespace='team-a')
  kwargs = client.run_pipeline.call_args.kwargs
  assert kwargs['params'] == {
      run_parameters.DATA_DIR: 'gs://b/mnist-2025-06',
      run_parameters.RANGE_CONFIG: run_parameters.span_range_config(7)}
  assert json.loads(kwargs['params'][run_parameters.RANGE_CONFIG]) == {
      'staticRange': {'startSpanNumber': 7, 'endSpanNumber': 7}}
  assert (kwargs['pipeline_id'], kwargs['version_id'], kwargs['experiment_id']) == (
      'pid-1', 'vid-new', 'eid-1')
  assert kwargs['enable_caching'] is False


def test_run_without_overrides_keeps_compiled_defaults_and_caching(package):
  client = _client()
  assert _main(['run', '--package', package], client)[0] == 0
  kwargs = client.create_run_from_pipeline_package.call_args.kwargs
  assert kwargs['arguments'] == {} and kwargs['enable_caching'] is None
  assert kwargs['pipeline_file'] == package and kwargs['experiment_name'] == 'mnist-adv'


def test_named_version_is_looked_up_by_display_name():
  client = _client(versions=('vid-old',))
  assert _main(['run', '--pipeline-name', 'mnist-adv', '--version', 'v1'], client)[0] == 0
  flt = json.loads(client.list_pipeline_versions.call_args.kwargs['filter'])
  assert flt['predicates'] == [{'operation': 'EQUALS', 'key': 'display_name',
                                'stringValue': 'v1'}]
  assert client.run_pipeline.call_args.kwargs['version_id'] == 'vid-old'


def test_schedule_runs_one_at_a_time_without_catch_up():
  client = _client()
  code, _ = _main(['schedule', '--pipeline-name', 'mnist-adv', '--name', 'nightly',
                   '--cron', '0  0 3 * *  *', '--data-dir', 'gs://b/incoming'], client)
  assert code == 0
  kwargs = client.create_recurring_run.call_args.kwargs
  assert kwargs['cron_expression'] == '0 0 3 * * *'
  assert kwargs['max_concurrency'] == 1 and kwargs['no_catchup'] is True
  assert kwargs['enabled'] is True and kwargs['job_name'] == 'nightly'
  assert kwargs['params'] == {run_parameters.DATA_DIR: 'gs://b/incoming'}
  assert (kwargs['pipeline_id'], kwargs['version_id']) == ('pid-1', 'vid-new')


def _real_client():
  """kfp 2.5's Client with its REST API objects mocked: nothing leaves the process."""
  client = kfp.Client.__new__(kfp.Client)
  client._recurring_run_api = mock.Mock()  # pylint: disable=protected-access
  client._experiment_api = mock.Mock()  # pylint: disable=protected-access
  client._pipelines_api = mock.Mock()  # pylint: disable=protected-access
  client._context_setting = {'namespace': ''}  # pylint: disable=protected-access
  client._experiment_api.create_experiment.return_value = mock.Mock(experiment_id='eid-9')  # pylint: disable=protected-access
  client.get_experiment = mock.Mock(side_effect=ValueError('No experiment is found with name'))
  client._get_url_prefix = mock.Mock(return_value='http://kfp')  # pylint: disable=protected-access
  return client


def test_schedule_request_body_from_a_package(package):
  client = _real_client()
  assert _main(['schedule', '--package', package, '--name', 'weekly', '--span', '3',
                '--cron', '0 30 2 ? * MON', '--disabled',
                '--pipeline-root', 'minio://mlpipeline/v2/artifacts'], client)[0] == 0
  body = client._recurring_run_api.create_recurring_run.call_args.kwargs['body']  # pylint: disable=protected-access
  assert isinstance(body, kfp_server_api.V2beta1RecurringRun)
  assert body.trigger.cron_schedule.cron == '0 30 2 ? * MON'
  assert body.trigger.periodic_schedule is None
  assert body.max_concurrency == 1 and body.no_catchup is True
  assert body.mode == kfp_server_api.RecurringRunMode.DISABLE
  assert body.experiment_id == 'eid-9' and body.display_name == 'weekly'
  assert body.runtime_config.parameters == {
      run_parameters.RANGE_CONFIG: run_parameters.span_range_config(3)}
  assert body.runtime_config.pipeline_root == 'minio://mlpipeline/v2/artifacts'
  assert body.pipeline_spec['pipelineInfo']['name'] == 'mnist-adv'


def test_list_enable_disable_schedules():
  client = _client()
  client.list_recurring_runs.return_value = mock.Mock(recurring_runs=[mock.Mock(
      recurring_run_id='rr-1', display_name='nightly', mode='ENABLE', status='ENABLED',
      trigger=mock.Mock(cron_schedule=mock.Mock(cron='0 0 3 * * *')))])
  assert _main(['schedules'], client)[0] == 0
  assert submit.cmd_schedules(client, submit.parse_args(['schedules'])) == [
      {'id': 'rr-1', 'name': 'nightly', 'mode': 'ENABLE', 'status': 'ENABLED',
       'cron': '0 0 3 * * *'}]
  assert _main(['disable', 'rr-1'], client)[0] == 0
  client.disable_recurring_run.assert_called_once_with(recurring_run_id='rr-1')
  assert _main(['enable', 'rr-1'], client)[0] == 0
  client.enable_recurring_run.assert_called_once_with(recurring_run_id='rr-1')


def test_missing_pipeline_is_reported():
  client = _client(pipeline_id=None)
  assert _main(['run', '--pipeline-name', 'nope'], client)[0] == 2
  client.run_pipeline.assert_not_called()


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize('argv, message', [
    (['schedule', '--pipeline-name', 'p', '--name', 'n', '--cron', '0 3 * * *'],
     "KFP wants 6 with seconds first, e.g. '0 0 3 * * *'"),
    (['schedule', '--pipeline-name', 'p', '--name', 'n', '--cron', '0 0 25 * * *'],
     'hour value'),
    (['schedule', '--pipeline-name', 'p', '--name', 'n', '--cron', 'every day'],
     'expected 6 space-separated fields'),
    (['run', '--pipeline-name', 'p', '--data-dir', 'data/mnist'], 'relative path'),
    (['run', '--pipeline-name', 'p', '--span', '-2'], '--span=-2'),
    (['run', '--pipeline-name', 'p', '--pipeline-root', '/srv/root'], 'is a local path'),
    (['run', '--package', 'missing.yaml'], 'no such file'),
    (['run', '--package', 'pipeline.json'], 'expected the .yaml'),
])
def test_bad_input_fails_before_a_client_exists(capsys, argv, message):
  client = _client()
  code, factory = _main(argv, client)
  assert code == 2
  assert message in capsys.readouterr().err
  factory.assert_not_called()


@pytest.mark.parametrize('expr', ['0 0 3 * * *', '*/30 * * * * *', '0 0 9 ? * 2-6',
                                  '0 15 10 ? * MON-FRI', '0 0 0 1,15 JAN-DEC/2 ?',
                                  '0 0 */6 * * *'])
def test_valid_cron(expr):
  assert cron.validate(expr) == expr


@pytest.mark.parametrize('expr, message', [
    ('0 0 3 * * * *', 'expected 6'), ('60 0 3 * * *', 'second value'),
    ('0 0 3 0 * *', 'day-of-month value'), ('0 0 3 * 13 *', 'month value'),
    ('0 0 3 * * 7', 'day-of-week value'), ('0 0 ? * * *', "'?' is only allowed"),
    ('0 0 5-2 * * *', 'backwards'), ('0 */0 * * * *', 'step'),
    ('0 0 3 * * FUNDAY', 'day-of-week value'), ('0 0 3 L * *', 'day-of-month'),
])
def test_invalid_cron(expr, message):
  with pytest.raises(cron.CronError, match=message.replace('?', r'\?').replace('*', r'\*')):
    cron.validate(expr)

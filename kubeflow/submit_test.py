"""kubeflow.submit, and the kfp 2.5 CLI that kubeflow/README.md shows next to it.

No cluster is involved anywhere: the kfp client is either a Mock (which calls are
made with which arguments) or the real kfp 2.5 Client with its REST API objects
mocked (which request bodies it would send). The `kfp` commands of the README run
through the installed kfp CLI with that client.
"""
import datetime
import json
import os
import re
import shlex
from unittest import mock

import kfp
import kfp_server_api
import pytest
import yaml
from click import testing as click_testing
from kfp.cli import cli as kfp_cli

from kubeflow import cron
from kubeflow import run_parameters
from kubeflow import submit

README = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'README.md')
SPEC = {'pipelineInfo': {'name': 'mnist-adv'}, 'schemaVersion': '2.1.0',
        'sdkVersion': 'tfx-1.16.0', 'components': {},
        'root': {'dag': {'tasks': {
            name: {'taskInfo': {'name': name}, 'componentRef': {'name': f'comp-{name}'},
                   'cachingOptions': {'enableCache': True}}
            for name in ('Trainer', 'Pusher')}},
                 'inputDefinitions': {'parameters': {
                     'data_dir': {'parameterType': 'STRING', 'defaultValue': 'gs://b/mnist'},
                     'range_config': {'parameterType': 'STRING', 'defaultValue': ''}}}},
        'deploymentSpec': {'executors': {}}}
NOW = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)


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


def _real_client(*_args, **_kwargs):
  """kfp 2.5's Client with its REST API objects mocked: nothing leaves the process."""
  # pylint: disable=protected-access
  client = kfp.Client.__new__(kfp.Client)
  client._context_setting = {'namespace': ''}
  client._get_url_prefix = mock.Mock(return_value='http://kfp')
  client.get_experiment = mock.Mock(side_effect=ValueError('No experiment is found with name'))
  for api in ('_experiment_api', '_pipelines_api', '_upload_api', '_run_api',
              '_recurring_run_api'):
    setattr(client, api, mock.Mock())
  pipeline = kfp_server_api.V2beta1Pipeline(pipeline_id='pid-1', display_name='mnist-adv',
                                            created_at=NOW)
  version = kfp_server_api.V2beta1PipelineVersion(
      pipeline_id='pid-1', pipeline_version_id='vid-1', display_name='mnist-adv-2',
      created_at=NOW)
  run = kfp_server_api.V2beta1Run(run_id='rid-1', display_name='manual', created_at=NOW,
                                  state='PENDING', storage_state='AVAILABLE')
  recurring = kfp_server_api.V2beta1RecurringRun(
      recurring_run_id='rr-1', display_name='nightly', created_at=NOW,
      experiment_id='eid-9', status='ENABLED')
  client._experiment_api.create_experiment.return_value = kfp_server_api.V2beta1Experiment(
      experiment_id='eid-9', display_name='mnist-adv')
  client._pipelines_api.list_pipelines.return_value = (
      kfp_server_api.V2beta1ListPipelinesResponse(pipelines=[pipeline]))
  client._pipelines_api.list_pipeline_versions.return_value = (
      kfp_server_api.V2beta1ListPipelineVersionsResponse(pipeline_versions=[version]))
  client._upload_api.upload_pipeline.return_value = pipeline
  client._upload_api.upload_pipeline_version.return_value = version
  client._run_api.create_run.return_value = run
  client._run_api.get_run.return_value = run
  client._recurring_run_api.create_recurring_run.return_value = recurring
  client._recurring_run_api.get_recurring_run.return_value = recurring
  client._recurring_run_api.list_recurring_runs.return_value = (
      kfp_server_api.V2beta1ListRecurringRunsResponse(recurring_runs=[recurring]))
  return client


def _caching(body):
  """{task: cache enabled} of an inline pipeline spec in a request body."""
  return {name: task.get('cachingOptions', {}).get('enableCache', False)
          for name, task in body.pipeline_spec['root']['dag']['tasks'].items()}


# ------------------------------------------------------------------ kubeflow.submit


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
                   '--data-dir', 'gs://b/mnist-2025-06', '--span', '7'], client)
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
  assert kwargs['enable_caching'] is None


def test_run_without_overrides_keeps_compiled_defaults_and_caching(package):
  client = _client()
  assert _main(['run', '--package', package], client)[0] == 0
  kwargs = client.run_pipeline.call_args.kwargs
  assert kwargs['params'] == {} and kwargs['enable_caching'] is None
  assert kwargs['pipeline_package_path'] == package and 'pipeline_id' not in kwargs
  client.create_experiment.assert_called_once_with(name='mnist-adv', namespace=None)


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


def test_schedule_request_body_from_a_package_without_cache(package):
  client = _real_client()
  assert _main(['schedule', '--package', package, '--name', 'weekly', '--span', '3',
                '--cron', '0 30 2 ? * MON', '--disabled', '--no-cache',
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
  assert _caching(body) == {'Trainer': False, 'Pusher': False}


def test_missing_pipeline_is_reported():
  client = _client(pipeline_id=None)
  assert _main(['run', '--pipeline-name', 'nope'], client)[0] == 2
  client.run_pipeline.assert_not_called()
  client.create_experiment.assert_not_called()


@pytest.mark.parametrize('argv, message', [
    (['schedule', '--pipeline-name', 'p', '--name', 'n', '--cron', '0 3 * * *'],
     "KFP wants 6 with seconds first, e.g. '0 0 3 * * *'"),
    (['schedule', '--pipeline-name', 'p', '--name', 'n', '--cron', '0 0 25 * * *'],
     'hour value'),
    (['schedule', '--pipeline-name', 'p', '--name', 'n', '--cron', 'every day'],
     'expected 6 space-separated fields'),
    (['schedule', '--pipeline-name', 'p', '--name', ' ', '--cron', '0 0 3 * * *'],
     '--name must be non-empty'),
    (['run', '--pipeline-name', 'p', '--data-dir', 'data/mnist'], 'relative path'),
    (['run', '--pipeline-name', 'p', '--span', '-2'], '--span=-2'),
    (['run', '--pipeline-name', 'p', '--pipeline-root', '/srv/root'], 'is a local path'),
    (['run', '--pipeline-name', 'p', '--no-cache'], '--no-cache needs --package'),
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


# ------------------------------------------------------------------ the kfp CLI


def _kfp(argv):
  """`kfp ARGV` through the installed kfp CLI, talking to a REST-mocked client."""
  client = _real_client()
  with mock.patch.object(kfp.client, 'Client', return_value=client):
    result = click_testing.CliRunner().invoke(kfp_cli.cli, argv, obj={})
  return result, client


def _readme_kfp_commands():
  text = open(README, encoding='utf-8').read()
  commands = []
  for block in re.findall(r'```sh\n(.*?)```', text, re.S):
    for line in block.replace('\\\n', ' ').splitlines():
      words = shlex.split(line, comments=True)
      if words[:1] == ['kfp']:
        commands.append(words[1:])
  return commands


def test_readme_kfp_commands_work_with_the_installed_kfp(tmp_path, monkeypatch):
  (tmp_path / 'kubeflow' / 'build').mkdir(parents=True)
  (tmp_path / 'kubeflow' / 'build' / 'pipeline.yaml').write_text(yaml.safe_dump(SPEC))
  monkeypatch.chdir(tmp_path)
  clients = {}
  for argv in _readme_kfp_commands():
    result, client = _kfp(argv)
    assert result.exit_code == 0, (argv, result.output, result.exception)
    clients.setdefault(' '.join(argv[:2]), []).append(client)
  assert set(clients) >= {'pipeline create', 'pipeline create-version', 'pipeline list',
                          'pipeline list-versions', 'run create', 'recurring-run create',
                          'recurring-run list', 'recurring-run enable',
                          'recurring-run disable'}
  # pylint: disable=protected-access
  body = clients['recurring-run create'][0]._recurring_run_api.create_recurring_run.call_args.kwargs['body']
  assert cron.validate(body.trigger.cron_schedule.cron) == '0 0 3 * * *'
  assert body.max_concurrency == 1 and body.no_catchup is True
  assert body.mode == kfp_server_api.RecurringRunMode.ENABLE
  assert (body.pipeline_version_reference.pipeline_id,
          body.pipeline_version_reference.pipeline_version_id) == ('PIPELINE_ID', 'VERSION_ID')
  run_params = [c._run_api.create_run.call_args.kwargs['body'].runtime_config.parameters
                for c in clients['run create']]
  assert {run_parameters.RANGE_CONFIG: run_parameters.span_range_config(3)} in run_params
  assert {run_parameters.DATA_DIR: 'gs://my-bucket/mnist-2025-06'} in run_params


def test_what_the_kfp_cli_lacks(package):
  """The kfp 2.5 gaps kubeflow.submit fills (README table). When a kfp upgrade closes
  one, this fails: then shrink kubeflow/submit.py and the README accordingly."""
  # Schedules: --disable-caching is accepted, called unsupported and ignored; without
  # --enabled the schedule is created paused.
  result, client = _kfp(['recurring-run', 'create', '--experiment-name', 'e', '--job-name',
                         'n', '--cron-expression', '0 0 3 * * *', '--disable-caching',
                         '--pipeline-package-path', package])
  assert result.exit_code == 0 and 'not yet supported' in result.output
  body = client._recurring_run_api.create_recurring_run.call_args.kwargs['body']  # pylint: disable=protected-access
  assert _caching(body) == {'Trainer': True, 'Pusher': True}
  assert body.mode == kfp_server_api.RecurringRunMode.DISABLE
  # Runs have no caching option at all.
  result, _ = _kfp(['run', 'create', '-e', 'e', '-f', package, '--disable-caching'])
  assert result.exit_code == 2 and 'No such option' in result.output
  # The client, too, drops enable_caching for an uploaded version: nothing carries it.
  client = _real_client()
  client.run_pipeline(experiment_id='e', job_name='j', pipeline_id='p', version_id='v',
                      enable_caching=False)
  body = client._run_api.create_run.call_args.kwargs['body']  # pylint: disable=protected-access
  assert body.pipeline_spec is None and body.pipeline_version_reference.pipeline_id == 'p'
  # An uploaded pipeline is run by version ID only, never "the newest".
  result, _ = _kfp(['run', 'create', '-e', 'e', '--pipeline-name', 'mnist-adv'])
  assert 'both `pipeline_id` and `version_id` are required' in str(result.exception)
  # create-version by pipeline name fails.
  result, _ = _kfp(['pipeline', 'create-version', '--pipeline-name', 'mnist-adv', '-v', 'v2',
                    package])
  assert 'Either pipeline_id or pipeline_name is required' in str(result.exception)
  # No cron check: a 5-field crontab line is sent as it is.
  result, client = _kfp(['recurring-run', 'create', '--experiment-name', 'e', '--job-name',
                         'n', '--cron-expression', '0 3 * * *', '--pipeline-package-path',
                         package])
  body = client._recurring_run_api.create_recurring_run.call_args.kwargs['body']  # pylint: disable=protected-access
  assert result.exit_code == 0 and body.trigger.cron_schedule.cron == '0 3 * * *'

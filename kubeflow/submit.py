"""Uploads, runs and schedules the compiled pipeline on a KFP v2 cluster (kfp 2.5 client).

    python -m kubeflow.submit upload   --package kubeflow/build/pipeline.yaml --pipeline-name mnist-adv
    python -m kubeflow.submit run      --pipeline-name mnist-adv [--data-dir D] [--span N]
    python -m kubeflow.submit schedule --pipeline-name mnist-adv --cron '0 0 3 * * *' --name nightly
    python -m kubeflow.submit schedules | enable ID | disable ID

Connection and credentials come from the kfp client's own configuration: --host or
$KF_PIPELINES_ENDPOINT, the kube config / in-cluster service account, and the
$KF_PIPELINES_* OAuth variables. Nothing secret is taken on the command line or
written anywhere. Every argument is validated before a client is created.
"""
import argparse
import hashlib
import json
import os
import sys
from typing import Any, Callable, Dict, List, Optional

from kubeflow import cron
from kubeflow import run_parameters
from kubeflow import uris

DEFAULT_EXPERIMENT = 'mnist-adv'


class SubmitError(ValueError):
  """An argument is invalid or the cluster state does not allow the request."""


def kfp_client(host: Optional[str], namespace: Optional[str]):
  """kfp.Client with the standard configuration (env vars, kube config)."""
  import kfp  # pylint: disable=g-import-not-at-top
  kwargs: Dict[str, Any] = {}
  if host:
    kwargs['host'] = host
  if namespace:
    kwargs['namespace'] = namespace
  return kfp.Client(**kwargs)


# ------------------------------------------------------------------ validation


def check_package(path: str) -> str:
  if not path.endswith(('.yaml', '.yml')):
    raise SubmitError(f'--package {path!r}: expected the .yaml written by kubeflow.compile')
  if not os.path.isfile(path):
    raise SubmitError(f'--package {path!r}: no such file (run `make kubeflow-compile`)')
  return path


def default_version_name(package: str, pipeline_name: str) -> str:
  """Content-addressed, so re-uploading an unchanged package is recognizable."""
  with open(package, 'rb') as f:
    digest = hashlib.sha256(f.read()).hexdigest()[:12]
  return f'{pipeline_name}-{digest}'


def run_arguments(args: argparse.Namespace) -> Dict[str, str]:
  try:
    return run_parameters.run_arguments(args.data_dir, args.span)
  except (run_parameters.ParameterError, uris.UriError) as e:
    raise SubmitError(str(e)) from e


def check_pipeline_root(root: Optional[str]) -> Optional[str]:
  if root is None:
    return None
  try:
    return uris.check_pipeline_root(root)
  except uris.UriError as e:
    raise SubmitError(str(e)) from e


def caching(args: argparse.Namespace) -> Optional[bool]:
  # Only turning caching off is offered: turning it on for every task would also cache
  # ExampleGen and the baseline resolver, whose inputs do not show new data.
  return False if args.no_cache else None


# ------------------------------------------------------------------ lookups


def pipeline_id(client, name: str) -> str:
  found = client.get_pipeline_id(name)
  if not found:
    raise SubmitError(f'no pipeline named {name!r} on the cluster; upload it first '
                      '(python -m kubeflow.submit upload ...)')
  return found


def version_id(client, pid: str, name: str, version: Optional[str]) -> str:
  """The named version, else the newest one."""
  if version:
    flt = json.dumps({'predicates': [{'operation': 'EQUALS', 'key': 'display_name',
                                      'stringValue': version}]})
    found = client.list_pipeline_versions(pipeline_id=pid, filter=flt).pipeline_versions
    if not found:
      raise SubmitError(f'pipeline {name!r} has no version {version!r}')
  else:
    found = client.list_pipeline_versions(pipeline_id=pid, page_size=1,
                                          sort_by='created_at desc').pipeline_versions
    if not found:
      raise SubmitError(f'pipeline {name!r} has no versions')
  return found[0].pipeline_version_id


def experiment_id(client, name: str, namespace: Optional[str]) -> str:
  return client.create_experiment(name=name, namespace=namespace).experiment_id


# ------------------------------------------------------------------ commands


def cmd_upload(client, args: argparse.Namespace) -> Any:
  existing = client.get_pipeline_id(args.pipeline_name)
  if existing is None:
    return client.upload_pipeline(pipeline_package_path=args.package,
                                  pipeline_name=args.pipeline_name,
                                  description=args.description, namespace=args.namespace)
  return client.upload_pipeline_version(
      pipeline_package_path=args.package,
      pipeline_version_name=args.version or default_version_name(args.package,
                                                                 args.pipeline_name),
      pipeline_id=existing, description=args.description)


def cmd_run(client, args: argparse.Namespace) -> Any:
  params = run_arguments(args)
  if args.package:
    return client.create_run_from_pipeline_package(
        pipeline_file=args.package, arguments=params, run_name=args.run_name,
        experiment_name=args.experiment, namespace=args.namespace,
        pipeline_root=args.pipeline_root, enable_caching=caching(args),
        service_account=args.service_account)
  pid = pipeline_id(client, args.pipeline_name)
  return client.run_pipeline(
      experiment_id=experiment_id(client, args.experiment, args.namespace),
      job_name=args.run_name or f'{args.pipeline_name} run', params=params,
      pipeline_id=pid, version_id=version_id(client, pid, args.pipeline_name, args.version),
      pipeline_root=args.pipeline_root, enable_caching=caching(args),
      service_account=args.service_account)


def cmd_schedule(client, args: argparse.Namespace) -> Any:
  """Recurring run: one run at a time, no backfill of missed slots."""
  params = run_arguments(args)
  source: Dict[str, Any] = {}
  if args.package:
    source['pipeline_package_path'] = args.package
  else:
    pid = pipeline_id(client, args.pipeline_name)
    source.update(pipeline_id=pid,
                  version_id=version_id(client, pid, args.pipeline_name, args.version))
  return client.create_recurring_run(
      experiment_id=experiment_id(client, args.experiment, args.namespace),
      job_name=args.name, description=args.description, start_time=args.start_time,
      end_time=args.end_time, cron_expression=args.cron, max_concurrency=1,
      no_catchup=True, params=params, enabled=not args.disabled,
      pipeline_root=args.pipeline_root, enable_caching=caching(args),
      service_account=args.service_account, **source)


def cmd_schedules(client, args: argparse.Namespace) -> List[Dict[str, Any]]:
  eid = None
  if args.experiment:
    eid = experiment_id(client, args.experiment, args.namespace)
  response = client.list_recurring_runs(page_size=100, experiment_id=eid,
                                        namespace=None if eid else args.namespace)
  rows = []
  for r in response.recurring_runs or []:
    schedule = getattr(getattr(r.trigger, 'cron_schedule', None), 'cron', None)
    rows.append({'id': r.recurring_run_id, 'name': r.display_name, 'mode': r.mode,
                 'status': r.status, 'cron': schedule})
  return rows


def cmd_enable(client, args: argparse.Namespace) -> Any:
  return client.enable_recurring_run(recurring_run_id=args.recurring_run_id)


def cmd_disable(client, args: argparse.Namespace) -> Any:
  return client.disable_recurring_run(recurring_run_id=args.recurring_run_id)


COMMANDS: Dict[str, Callable] = {
    'upload': cmd_upload, 'run': cmd_run, 'schedule': cmd_schedule,
    'schedules': cmd_schedules, 'enable': cmd_enable, 'disable': cmd_disable,
}


# ------------------------------------------------------------------ CLI


def _source_flags(p: argparse.ArgumentParser) -> None:
  g = p.add_mutually_exclusive_group(required=True)
  g.add_argument('--pipeline-name', help='an uploaded pipeline (see `upload`)')
  g.add_argument('--package', help='a compiled .yaml, submitted inline')
  p.add_argument('--version', help='pipeline version name (default: the newest)')


def _run_flags(p: argparse.ArgumentParser) -> None:
  p.add_argument('--experiment', default=DEFAULT_EXPERIMENT,
                 help=f'experiment, created if missing (default {DEFAULT_EXPERIMENT})')
  p.add_argument('--data-dir', help=f'run parameter {run_parameters.DATA_DIR} '
                                    '(default: the compiled default)')
  p.add_argument('--span', type=int,
                 help='ingest this span instead of the latest (run parameter '
                      f'{run_parameters.RANGE_CONFIG})')
  p.add_argument('--pipeline-root', help='override the compiled pipeline root')
  p.add_argument('--no-cache', action='store_true', help='re-run every step')
  p.add_argument('--service-account', help='Kubernetes service account of the pods')


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(prog='python -m kubeflow.submit',
                              description=__doc__.split('\n\n')[0])
  p.add_argument('--host', default=None,
                 help='KFP API endpoint (default: $KF_PIPELINES_ENDPOINT, else the '
                      'kube config / in-cluster service)')
  p.add_argument('--namespace', default=None,
                 help='Kubernetes namespace (multi-user deployments)')
  sub = p.add_subparsers(dest='command', required=True)

  s = sub.add_parser('upload', help='upload the package as a pipeline, or as a new version')
  s.add_argument('--package', required=True)
  s.add_argument('--pipeline-name', required=True)
  s.add_argument('--version', help='version name (default: pipeline name + package hash)')
  s.add_argument('--description', default=None)

  s = sub.add_parser('run', help='start one run')
  _source_flags(s)
  _run_flags(s)
  s.add_argument('--run-name', default=None)

  s = sub.add_parser('schedule', help='create a recurring run (scheduled retraining)')
  _source_flags(s)
  _run_flags(s)
  s.add_argument('--name', required=True, help='recurring run name')
  s.add_argument('--cron', required=True,
                 help="6 fields, seconds first: '0 0 3 * * *' is 03:00 daily")
  s.add_argument('--start-time', help='RFC 3339, e.g. 2025-01-01T00:00:00Z')
  s.add_argument('--end-time', help='RFC 3339')
  s.add_argument('--description', default=None)
  s.add_argument('--disabled', action='store_true', help='create it paused')

  s = sub.add_parser('schedules', help='list recurring runs')
  s.add_argument('--experiment', default=None, help='only this experiment')
  for name in ('enable', 'disable'):
    s = sub.add_parser(name, help=f'{name} a recurring run')
    s.add_argument('recurring_run_id')
  return p.parse_args(argv)


def validate(args: argparse.Namespace) -> argparse.Namespace:
  """Every check that needs no cluster; raises SubmitError."""
  if getattr(args, 'package', None):
    check_package(args.package)
  if args.command in ('run', 'schedule'):
    run_arguments(args)
    args.pipeline_root = check_pipeline_root(args.pipeline_root)
  if args.command == 'schedule':
    try:
      args.cron = cron.validate(args.cron)
    except cron.CronError as e:
      raise SubmitError(str(e)) from e
    if not args.name.strip():
      raise SubmitError('--name must be non-empty')
  if args.command == 'upload' and not args.pipeline_name.strip():
    raise SubmitError('--pipeline-name must be non-empty')
  return args


def main(argv: Optional[List[str]] = None,
         client_factory: Callable[[Optional[str], Optional[str]], Any] = kfp_client) -> int:
  args = parse_args(argv)
  try:
    validate(args)
    client = client_factory(args.host, args.namespace)
    result = COMMANDS[args.command](client, args)
  except SubmitError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  if isinstance(result, list):
    for row in result:
      print(json.dumps(row, default=str))
  else:
    summary = {k: getattr(result, k) for k in (
        'pipeline_id', 'pipeline_version_id', 'run_id', 'recurring_run_id', 'display_name')
               if getattr(result, k, None)}
    print(json.dumps(summary or {'ok': True}, default=str))
  return 0


if __name__ == '__main__':
  sys.exit(main())

"""Upload / run / schedule where kfp 2.5's own `kfp` CLI falls short for this pipeline.

Everything else is the `kfp` CLI (kubeflow/README.md: the commands, and what they
lack). Each command here is validation plus one kfp.Client call; what it adds: a
version named after the package hash; runs and schedules of a pipeline by name (its
newest version, or --version NAME), where the CLI wants IDs; --data-dir / --span as
the compiled run parameters; a checked 6-field cron, one run at a time, no catch-up,
enabled (the CLI creates schedules paused); --no-cache (with --package),
--pipeline-root, --service-account.

    python -m kubeflow.submit upload   --package kubeflow/build/pipeline.yaml --pipeline-name mnist-adv
    python -m kubeflow.submit run      --pipeline-name mnist-adv [--data-dir D] [--span N]
    python -m kubeflow.submit schedule --pipeline-name mnist-adv --name nightly --cron '0 0 3 * * *'

Connection and credentials come from the kfp client's own configuration: --host or
$KF_PIPELINES_ENDPOINT, the kube config / in-cluster service account, the
$KF_PIPELINES_* OAuth variables. Every argument is validated before a client exists.
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
  return kfp.Client(**{k: v for k, v in (('host', host), ('namespace', namespace)) if v})


def default_version_name(package: str, pipeline_name: str) -> str:
  """Content-addressed, so re-uploading an unchanged package is recognizable."""
  with open(package, 'rb') as f:
    return f'{pipeline_name}-{hashlib.sha256(f.read()).hexdigest()[:12]}'


def validate(args: argparse.Namespace) -> argparse.Namespace:
  """Every check that needs no cluster; raises SubmitError. Sets args.params."""
  package = args.package
  if package and not package.endswith(('.yaml', '.yml')):
    raise SubmitError(f'--package {package!r}: expected the .yaml written by kubeflow.compile')
  if package and not os.path.isfile(package):
    raise SubmitError(f'--package {package!r}: no such file (run `make kubeflow-compile`)')
  for flag in ('pipeline_name', 'name'):
    if getattr(args, flag, None) is not None and not getattr(args, flag).strip():
      raise SubmitError(f'--{flag.replace("_", "-")} must be non-empty')
  if args.command == 'upload':
    return args
  if args.no_cache and not package:
    # kfp 2.5's client applies enable_caching only to a spec submitted inline; for an
    # uploaded version it is dropped without a word.
    raise SubmitError('--no-cache needs --package: kfp 2.5 cannot turn caching off for an '
                      'uploaded version (or upload a package compiled with --no-cache)')
  try:
    args.params = run_parameters.run_arguments(args.data_dir, args.span)
    if args.pipeline_root is not None:
      args.pipeline_root = uris.check_pipeline_root(args.pipeline_root)
    if args.command == 'schedule':
      args.cron = cron.validate(args.cron)
  except (run_parameters.ParameterError, uris.UriError, cron.CronError) as e:
    raise SubmitError(str(e)) from e
  return args


def _source(client, args: argparse.Namespace) -> Dict[str, str]:
  """The package inline, or a version of the uploaded pipeline (default: the newest)."""
  if args.package:
    return {'pipeline_package_path': args.package}
  pid = client.get_pipeline_id(args.pipeline_name)
  if not pid:
    raise SubmitError(f'no pipeline named {args.pipeline_name!r} on the cluster; upload it '
                      'first (python -m kubeflow.submit upload ...)')
  if args.version:
    flt = json.dumps({'predicates': [{'operation': 'EQUALS', 'key': 'display_name',
                                      'stringValue': args.version}]})
    found = client.list_pipeline_versions(pipeline_id=pid, filter=flt).pipeline_versions
  else:
    found = client.list_pipeline_versions(pipeline_id=pid, page_size=1,
                                          sort_by='created_at desc').pipeline_versions
  if not found:
    raise SubmitError(f'pipeline {args.pipeline_name!r} has no '
                      + (f'version {args.version!r}' if args.version else 'versions'))
  return {'pipeline_id': pid, 'version_id': found[0].pipeline_version_id}


def _run_kwargs(client, args: argparse.Namespace) -> Dict[str, Any]:
  source = _source(client, args)  # before the experiment: a typo creates nothing
  experiment = client.create_experiment(name=args.experiment, namespace=args.namespace)
  return dict(experiment_id=experiment.experiment_id, params=args.params,
              pipeline_root=args.pipeline_root, service_account=args.service_account,
              enable_caching=False if args.no_cache else None, **source)


def upload(client, args: argparse.Namespace) -> Any:
  existing = client.get_pipeline_id(args.pipeline_name)
  if existing is None:
    return client.upload_pipeline(pipeline_package_path=args.package,
                                  pipeline_name=args.pipeline_name,
                                  description=args.description, namespace=args.namespace)
  return client.upload_pipeline_version(
      pipeline_package_path=args.package, pipeline_id=existing, description=args.description,
      pipeline_version_name=args.version or default_version_name(args.package,
                                                                 args.pipeline_name))


def run(client, args: argparse.Namespace) -> Any:
  name = args.run_name or f'{args.pipeline_name or os.path.basename(args.package)} run'
  return client.run_pipeline(job_name=name, **_run_kwargs(client, args))


def schedule(client, args: argparse.Namespace) -> Any:
  """Recurring run: one run at a time, no backfill of missed slots."""
  return client.create_recurring_run(
      job_name=args.name, description=args.description, start_time=args.start_time,
      end_time=args.end_time, cron_expression=args.cron, max_concurrency=1,
      no_catchup=True, enabled=not args.disabled, **_run_kwargs(client, args))


COMMANDS: Dict[str, Callable] = {'upload': upload, 'run': run, 'schedule': schedule}


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(prog='python -m kubeflow.submit',
                              description=__doc__.split('\n\n')[0])
  p.add_argument('--host', help='KFP API endpoint (default: $KF_PIPELINES_ENDPOINT, else '
                                'the kube config / in-cluster service)')
  p.add_argument('--namespace', help='Kubernetes namespace (multi-user deployments)')
  sub = p.add_subparsers(dest='command', required=True)

  s = sub.add_parser('upload', help='create the pipeline, or add a version to it')
  s.add_argument('--package', required=True)
  s.add_argument('--pipeline-name', required=True)
  s.add_argument('--version', help='version name (default: pipeline name + package hash)')
  s.add_argument('--description')

  for command, text in (('run', 'start one run'),
                        ('schedule', 'create a recurring run (scheduled retraining)')):
    s = sub.add_parser(command, help=text)
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument('--pipeline-name', help='an uploaded pipeline (see `upload`)')
    g.add_argument('--package', help='a compiled .yaml, submitted inline')
    s.add_argument('--version', help='version name of --pipeline-name (default: the newest)')
    s.add_argument('--experiment', default=DEFAULT_EXPERIMENT,
                   help=f'experiment, created if missing (default {DEFAULT_EXPERIMENT})')
    s.add_argument('--data-dir', help=f'run parameter {run_parameters.DATA_DIR} '
                                      '(default: the compiled default)')
    s.add_argument('--span', type=int, help='ingest this span instead of the latest (run '
                                            f'parameter {run_parameters.RANGE_CONFIG})')
    s.add_argument('--no-cache', action='store_true',
                   help='re-run every step (with --package only)')
    s.add_argument('--pipeline-root', help='override the compiled pipeline root')
    s.add_argument('--service-account', help='Kubernetes service account of the pods')
    if command == 'run':
      s.add_argument('--run-name')
    else:
      s.add_argument('--name', required=True, help='recurring run name')
      s.add_argument('--cron', required=True,
                     help="6 fields, seconds first: '0 0 3 * * *' is 03:00 daily")
      s.add_argument('--start-time', help='RFC 3339, e.g. 2025-01-01T00:00:00Z')
      s.add_argument('--end-time', help='RFC 3339')
      s.add_argument('--description')
      s.add_argument('--disabled', action='store_true', help='create it paused')
  return p.parse_args(argv)


def main(argv: Optional[List[str]] = None,
         client_factory: Callable[[Optional[str], Optional[str]], Any] = kfp_client) -> int:
  args = parse_args(argv)
  try:
    validate(args)
    result = COMMANDS[args.command](client_factory(args.host, args.namespace), args)
  except SubmitError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  summary = {k: getattr(result, k) for k in (
      'pipeline_id', 'pipeline_version_id', 'run_id', 'recurring_run_id', 'display_name')
             if getattr(result, k, None)}
  print(json.dumps(summary or {'ok': True}, default=str))
  return 0


if __name__ == '__main__':
  sys.exit(main())

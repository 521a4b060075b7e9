"""kubeflow/Dockerfile, parsed (Docker is not available here): pinned bases, the lock,
the code, a non-root user, and the paths the compiled spec relies on."""
import json
import os
import re

import pytest

from kubeflow import deploy_config

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def _instructions():
  """(INSTRUCTION, argument text) pairs with continuation lines joined."""
  with open(os.path.join(HERE, 'Dockerfile')) as f:
    text = re.sub(r'\\\n', ' ', f.read())
  out = []
  for line in text.splitlines():
    line = line.strip()
    if line and not line.startswith('#'):
      word, _, rest = line.partition(' ')
      out.append((word.upper(), rest.strip()))
  return out


def _stages():
  """{stage name: [(instruction, args)]}, in order, plus global ARG defaults."""
  args, stages, current = {}, {}, None
  for word, rest in _instructions():
    if word == 'FROM':
      parts = rest.split()
      current = parts[2] if len(parts) > 2 and parts[1].upper() == 'AS' else f'#{len(stages)}'
      stages[current] = [(word, rest)]
    elif current is None and word == 'ARG':
      name, _, default = rest.partition('=')
      args[name] = default
    else:
      stages[current].append((word, rest))
  return args, stages


def _base(rest, args):
  image = rest.split()[0]
  return re.sub(r'\$\{(\w+)\}', lambda m: args[m.group(1)], image)


def _lineage(stage, stages):
  """The stage and the local stages it is built FROM, last first."""
  chain = [stage]
  while True:
    parent = stages[chain[-1]][0][1].split()[0]
    if parent not in stages:
      return chain
    chain.append(parent)


def test_every_base_image_is_pinned_by_tag():
  args, stages = _stages()
  for name, instructions in stages.items():
    image = _base(instructions[0][1], args)
    if image in stages:
      continue
    assert deploy_config.image_is_pinned(image), (name, image)
  assert _base(stages['app'][0][1], args) == 'tensorflow/tensorflow:2.16.2-gpu'


def test_default_target_is_the_kfp_image_with_the_entrypoint_wrapper():
  _, stages = _stages()
  last = list(stages)[-1]
  chain = _lineage(last, stages)
  assert chain[-1] == 'app'
  entrypoints = [rest for s in chain for word, rest in stages[s] if word == 'ENTRYPOINT']
  assert entrypoints and json.loads(entrypoints[0]) == list(deploy_config.ENTRYPOINT_COMMAND)


def _app():
  return _stages()[1]['app']


def test_python_3_10_for_tfx():
  runs = ' '.join(rest for word, rest in _app() if word == 'RUN')
  assert 'python3.10 -m venv /opt/venv' in runs
  assert 'sys.version_info[:2] == (3, 10)' in runs
  env = ' '.join(rest for word, rest in _app() if word == 'ENV')
  assert 'PATH=/opt/venv/bin:$PATH' in env


def test_installs_the_same_lock_then_the_project_without_dependencies():
  app = _app()
  copies = [rest for word, rest in app if word == 'COPY']
  runs = [rest for word, rest in app if word == 'RUN']
  assert 'requirements.lock ./' in copies
  sync = next(i for i, r in enumerate(runs) if 'pip sync' in r)
  assert 'requirements.lock' in runs[sync]
  install = next(i for i, r in enumerate(runs) if '--no-deps' in r)
  assert install > sync and runs[install].split('--no-build-isolation')[-1].split()[0] == '.'
  # Bytecode built into the image (the image sets PYTHONDONTWRITEBYTECODE=1).
  assert all('--compile-bytecode' in r for r in runs if 'uv pip' in r), runs
  assert os.path.isfile(os.path.join(REPO, 'requirements.lock'))


def test_copies_the_code_where_the_spec_expects_it():
  app = _app()
  workdir = [rest for word, rest in app if word == 'WORKDIR'][-1]
  assert workdir == deploy_config.IMAGE_APP_DIR
  copies = {rest.split()[0]: rest.split()[1] for word, rest in app if word == 'COPY'
            and not rest.startswith('--')}
  for package in ('pipeline', 'components', 'kubeflow'):
    assert copies[package] == f'./{package}'
  assert deploy_config.IMAGE_SCHEMA_PATH == os.path.join(
      workdir, os.path.relpath(os.path.join(REPO, 'pipeline', 'schema', 'schema.pbtxt'), REPO))
  assert os.path.isfile(os.path.join(REPO, 'pipeline', 'schema', 'schema.pbtxt'))


def test_runs_as_a_numeric_non_root_user_that_can_write_the_launcher_mirror():
  app = _app()
  users = [rest for word, rest in app if word == 'USER']
  assert users and users[-1].isdigit() and int(users[-1]) != 0
  runs = ' '.join(rest for word, rest in app if word == 'RUN')
  assert f'--uid {users[-1]}' in runs
  assert 'mkdir -p /gcs /minio /s3' in runs and 'chown app /gcs /minio /s3' in runs
  # Nothing after USER switches back to root.
  assert [w for w, _ in app][-1] in ('ENTRYPOINT', 'CMD', 'USER', 'ENV')


@pytest.mark.parametrize('needed', ['requirements.lock', 'setup.py', 'pipeline/**',
                                    'components/**', 'kubeflow/**'])
def test_build_context_ignore_file_keeps_what_the_build_copies(needed):
  with open(os.path.join(HERE, 'Dockerfile.dockerignore')) as f:
    lines = [l.strip() for l in f if l.strip() and not l.startswith('#')]
  assert lines[0] == '**' and f'!{needed}' in lines

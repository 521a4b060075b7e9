"""`make run`'s bad input ends before any heavy import: an `error:` line naming the
path or flag, exit code 2, nothing run. Checked in a fresh process, as a user sees it."""
import os
import subprocess
import sys

import pytest

from components.mnist_example_gen import testing

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args, cwd):
  env = dict(os.environ, MNIST_DIR='')
  return subprocess.run([sys.executable, '-m', 'pipeline.local_runner', *args],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def data_dir(tmp_path):
  return testing.write_fake_mnist(str(tmp_path / 'data'), 20, 10)


def _expect_error(result, *needles):
  assert result.returncode == 2, result.stderr
  lines = [l for l in result.stderr.splitlines() if l.startswith('error:')]
  assert lines, result.stderr
  for needle in needles:
    assert needle in lines[-1]
  assert 'Traceback' not in result.stderr


def test_unwritable_serving_dir_is_refused_before_any_work(tmp_path, data_dir):
  blocker = tmp_path / 'a-file'
  blocker.write_text('')
  result = _run('--data-dir', data_dir, '--pipeline-root', str(tmp_path / 'root'),
                '--serving-dir', str(blocker / 'serving'), cwd=tmp_path)
  _expect_error(result, '--serving-dir', str(blocker))
  assert not (tmp_path / 'root').exists()      # nothing ran


@pytest.mark.parametrize('make_path,message', [
    (lambda t: str(t / 'missing'), 'does not exist'),
    (lambda t: (t / 'f').write_text('') and str(t / 'f') or str(t / 'f'), 'is a file'),
])
def test_bad_data_path_is_named(tmp_path, make_path, message):
  path = make_path(tmp_path)
  result = _run('--data-dir', path, '--pipeline-root', str(tmp_path / 'root'),
                cwd=tmp_path)
  _expect_error(result, path, message)


def test_config_the_trainer_would_reject_is_refused_up_front(tmp_path, data_dir):
  result = _run('--data-dir', data_dir, '--adv-loss', 'trades',
                '--pipeline-root', str(tmp_path / 'root'), cwd=tmp_path)
  _expect_error(result, 'random_init')


def test_unwritable_pipeline_root_is_named(tmp_path, data_dir):
  blocker = tmp_path / 'a-file'
  blocker.write_text('')
  result = _run('--data-dir', data_dir, '--pipeline-root', str(blocker / 'root'),
                cwd=tmp_path)
  _expect_error(result, '--pipeline-root')

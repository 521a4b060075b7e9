"""Kill the pipeline in the middle of the Trainer, run it again: it completes, and the
killed execution's partial outputs are never used as finished artifacts."""
import glob
import os
import signal
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from components.mnist_example_gen import testing
from pipeline import metadata_queries as mq
from tests import test_pipeline_e2e as e2e

pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHILD = """
import sys
from tests.test_crash_resume import config
from pipeline import local_runner, progress
progress.quiet_environment()
report = local_runner.run(config(sys.argv[1]), sys.argv[2], timer=progress.install())
print('PUSHED' if report['push']['pushed'] else 'NOT PUSHED', flush=True)
"""


def config(root):
  # Far more epochs than the test waits for: it kills right after the first one.
  return e2e.small_config(root, **{'train.epochs': 120, 'train_base_model': False})


def _start(root, data_dir):
  return subprocess.Popen(
      [sys.executable, '-c', CHILD, root, data_dir], cwd=REPO, text=True,
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
      env=dict(os.environ, PYTHONPATH=REPO))


def test_kill_during_trainer_then_resume(tmp_path):
  root, data_dir = str(tmp_path), str(tmp_path / 'data')
  testing.write_fake_mnist(data_dir, 300, 100, span=1)

  child = _start(root, data_dir)
  seen = []
  deadline = time.monotonic() + 600
  for line in child.stdout:
    seen.append(line)
    if 'Trainer running' in line:
      break
    assert time.monotonic() < deadline, ''.join(seen[-20:])
  else:
    raise AssertionError('pipeline ended before the Trainer started:\n' + ''.join(seen[-30:]))
  # Kill once the first epoch's checkpoint exists: mid-training, with outputs half made.
  checkpoints = os.path.join(config(root).pipeline_root, 'Trainer', 'model_run', '*',
                             'checkpoints', 'epoch-001*')
  while not glob.glob(checkpoints):
    assert child.poll() is None, 'pipeline ended before the first checkpoint'
    assert time.monotonic() < deadline
    time.sleep(0.2)
  assert child.poll() is None, 'Trainer finished before it could be killed'
  os.killpg(child.pid, signal.SIGKILL)
  child.wait()

  cfg = config(root)
  store = mq.open_store(cfg.metadata)
  [killed] = mq.executions_by_node(store)['Trainer']
  assert killed.last_known_state not in mq.DONE
  assert not mq.artifacts(store, killed.id)   # nothing LIVE from the killed run

  resumed = _start(root, data_dir)
  out, _ = resumed.communicate(timeout=900)
  assert resumed.returncode == 0, out[-3000:]
  assert 'PUSHED' in out

  store = mq.open_store(cfg.metadata)
  trainers = mq.executions_by_node(store)['Trainer']
  assert len(trainers) == 2 and trainers[-1].last_known_state == mq.Execution.COMPLETE
  [model] = [a for a in mq.artifacts(store, trainers[-1].id)
             if mq.type_name(store, a) == 'Model']
  # The evaluator and the pusher consumed the resumed model, not the killed one.
  [pusher] = mq.done(mq.executions_by_node(store)['Pusher'])
  used = {a.id for a in mq.artifacts(store, pusher.id, outputs=False, live_only=False)}
  assert model.id in used
  killed_outputs = mq.artifacts(store, killed.id, live_only=False)
  assert not used & {a.id for a in killed_outputs}
  [version] = e2e.versions(cfg.serving_dir)
  tf.saved_model.load(os.path.join(cfg.serving_dir, version))

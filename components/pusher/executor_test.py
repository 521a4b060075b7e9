"""Atomic Pusher: a reader of the serving dir never sees a partial version folder."""
import os
import signal
import time
from unittest import mock

import pytest
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts
from tfx.utils import path_utils
from tfx.utils import proto_utils

from components.pusher import executor as executor_lib
from components.pusher import serving_dir as serving_dir_lib

MODEL_FILES = {
    'saved_model.pb': b'graph',
    'fingerprint.pb': b'fp',
    'variables/variables.index': b'index',
    'variables/variables.data-00000-of-00001': b'x' * 1000,
    'assets/vocab.txt': b'a\nb\n',
}


def _artifacts(tmp_path, blessed: int):
  model = standard_artifacts.Model()
  model.uri = str(tmp_path / 'model')
  model_dir = path_utils.serving_model_path(model.uri)
  for rel, data in MODEL_FILES.items():
    path = os.path.join(model_dir, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
      f.write(data)
  blessing = standard_artifacts.ModelBlessing()
  blessing.uri = str(tmp_path / 'blessing')
  blessing.set_int_custom_property('blessed', blessed)
  pushed = standard_artifacts.PushedModel()
  pushed.uri = str(tmp_path / 'pushed')
  os.makedirs(pushed.uri)
  return ({'model': [model], 'model_blessing': [blessing]}, {'pushed_model': [pushed]})


def _exec_properties(serving_dir: str):
  dest = pusher_pb2.PushDestination(
      filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=serving_dir))
  return {'push_destination': proto_utils.proto_to_json(dest)}


def _tree(root: str):
  out = {}
  for dirpath, _, files in os.walk(root):
    for name in files:
      path = os.path.join(dirpath, name)
      with open(path, 'rb') as f:
        out[os.path.relpath(path, root)] = f.read()
  return out


def _numbered(serving_dir: str):
  if not os.path.isdir(serving_dir):
    return []
  return [d for d in os.listdir(serving_dir) if d.isdigit()]


def test_blessed_model_is_published_complete_under_a_numbered_version(tmp_path):
  serving_dir = str(tmp_path / 'serving')
  inputs, outputs = _artifacts(tmp_path, blessed=1)
  seen_by_reader = []
  real_copy = fileio.copy

  def copy_and_look(src, dst, overwrite=False):
    real_copy(src, dst, overwrite=overwrite)
    seen_by_reader.append(_numbered(serving_dir))   # what TF Serving would list

  with mock.patch.object(fileio, 'copy', side_effect=copy_and_look):
    executor_lib.Executor().Do(inputs, outputs, _exec_properties(serving_dir))

  assert seen_by_reader and all(not seen for seen in seen_by_reader)
  versions = _numbered(serving_dir)
  assert len(versions) == 1
  assert os.listdir(serving_dir) == versions  # no staging folder left behind
  assert _tree(os.path.join(serving_dir, versions[0])) == MODEL_FILES
  pushed = outputs['pushed_model'][0]
  assert pushed.get_int_custom_property('pushed') == 1
  assert pushed.get_string_custom_property('pushed_version') == versions[0]
  assert pushed.get_string_custom_property('pushed_destination') == os.path.join(
      serving_dir, versions[0])
  assert _tree(pushed.uri) == MODEL_FILES  # the stock archive copy still happens


def test_publish_is_a_rename_of_the_complete_staged_folder(tmp_path):
  serving_dir = str(tmp_path / 'serving')
  inputs, outputs = _artifacts(tmp_path, blessed=1)
  renames = []
  real_rename = fileio.rename

  def record_rename(src, dst, overwrite=False):
    renames.append((src, dst, _tree(src), os.path.exists(dst)))
    real_rename(src, dst, overwrite=overwrite)

  with mock.patch.object(fileio, 'rename', side_effect=record_rename):
    executor_lib.Executor().Do(inputs, outputs, _exec_properties(serving_dir))

  (src, dst, staged, dst_existed), = renames
  assert os.path.dirname(os.path.dirname(src)) == serving_dir  # same filesystem
  assert os.path.basename(os.path.dirname(src)).startswith(
      executor_lib.STAGING_PREFIX)
  assert dst == os.path.join(serving_dir, _numbered(serving_dir)[0])
  assert staged == MODEL_FILES and not dst_existed


def test_copy_failing_midway_leaves_no_version_and_no_staging(tmp_path):
  serving_dir = str(tmp_path / 'serving')
  os.makedirs(os.path.join(serving_dir, '100'))   # an older, complete version
  inputs, outputs = _artifacts(tmp_path, blessed=1)
  real_copy = fileio.copy
  calls = []

  def copy_then_fail(src, dst, overwrite=False):
    calls.append(dst)
    if len(calls) == 3:
      raise OSError('disk full')
    real_copy(src, dst, overwrite=overwrite)

  with mock.patch.object(fileio, 'copy', side_effect=copy_then_fail):
    with pytest.raises(OSError, match='disk full'):
      executor_lib.Executor().Do(inputs, outputs, _exec_properties(serving_dir))
  assert os.listdir(serving_dir) == ['100']
  assert outputs['pushed_model'][0].get_int_custom_property('pushed') != 1


def test_unblessed_model_leaves_the_serving_dir_untouched(tmp_path):
  serving_dir = str(tmp_path / 'serving')
  os.makedirs(os.path.join(serving_dir, '100'))
  inputs, outputs = _artifacts(tmp_path, blessed=0)
  executor_lib.Executor().Do(inputs, outputs, _exec_properties(serving_dir))
  assert os.listdir(serving_dir) == ['100']
  assert os.listdir(os.path.join(serving_dir, '100')) == []
  assert outputs['pushed_model'][0].get_int_custom_property('pushed') == 0


def test_existing_version_is_not_overwritten(tmp_path):
  serving_dir = str(tmp_path / 'serving')
  os.makedirs(os.path.join(serving_dir, '1234'))
  inputs, outputs = _artifacts(tmp_path, blessed=1)
  with mock.patch('time.time', return_value=1234.5):
    executor_lib.Executor().Do(inputs, outputs, _exec_properties(serving_dir))
  assert os.listdir(serving_dir) == ['1234']
  assert os.listdir(os.path.join(serving_dir, '1234')) == []
  pushed = outputs['pushed_model'][0]
  assert pushed.get_string_custom_property('pushed_destination') == os.path.join(
      serving_dir, '1234')


def test_same_model_is_not_pushed_twice(tmp_path):
  serving_dir = str(tmp_path / 'serving')
  inputs, outputs = _artifacts(tmp_path / 'first', blessed=1)
  executor_lib.Executor().Do(inputs, outputs, _exec_properties(serving_dir))
  [version] = _numbered(serving_dir)

  # A re-run (new blessing and output, same model files) adds no version.
  again_inputs, again_outputs = _artifacts(tmp_path / 'again', blessed=1)
  executor_lib.Executor().Do(again_inputs, again_outputs, _exec_properties(serving_dir))
  assert _numbered(serving_dir) == [version]
  pushed = again_outputs['pushed_model'][0]
  assert pushed.get_int_custom_property('pushed') == 0
  assert pushed.get_string_custom_property(executor_lib.ALREADY_SERVING_KEY) == version


def _big_model(tmp_path, files: int):
  """Artifacts of a model with many variable shards: a copy that takes a while."""
  inputs, outputs = _artifacts(tmp_path, blessed=1)
  model_dir = path_utils.serving_model_path(inputs['model'][0].uri)
  for i in range(files):
    with open(os.path.join(model_dir, 'variables', f'shard-{i:03d}'), 'wb') as f:
      f.write(bytes([i]) * 4096)
  return inputs, outputs, _tree(model_dir)


def _staging_dirs(serving_dir):
  return [d for d in os.listdir(serving_dir) if d.startswith(executor_lib.STAGING_PREFIX)]


def test_push_killed_mid_copy_is_cleaned_up_by_the_next_push(tmp_path):
  serving_dir = str(tmp_path / 'serving')
  inputs, outputs, want = _big_model(tmp_path / 'killed', files=40)
  pid = os.fork()   # the pushing process; TFX is already imported, so it starts at once
  if pid == 0:
    try:
      real_copy = fileio.copy
      copied = []

      def slow_copy(src, dst, overwrite=False):
        real_copy(src, dst, overwrite=overwrite)
        copied.append(dst)
        if executor_lib.STAGING_PREFIX in dst and len(copied) >= 5:
          time.sleep(60)   # mid-copy: far longer than the test waits

      with mock.patch.object(fileio, 'copy', side_effect=slow_copy):
        executor_lib.Executor().Do(inputs, outputs, _exec_properties(serving_dir))
    finally:
      os._exit(0)   # never return into pytest in the child
  deadline = time.monotonic() + 60
  while not (os.path.isdir(serving_dir) and _staging_dirs(serving_dir) and
             len(_tree(serving_dir)) >= 5):
    assert time.monotonic() < deadline, 'the push never started copying'
    time.sleep(0.05)
  os.kill(pid, signal.SIGKILL)
  os.waitpid(pid, 0)

  [stale] = _staging_dirs(serving_dir)
  assert f'-{pid}-' in stale
  assert 0 < len(_tree(os.path.join(serving_dir, stale))) < len(want)   # half copied
  assert not _numbered(serving_dir)

  again_inputs, again_outputs, _ = _big_model(tmp_path / 'again', files=40)
  executor_lib.Executor().Do(again_inputs, again_outputs, _exec_properties(serving_dir))
  [version] = _numbered(serving_dir)
  assert os.listdir(serving_dir) == [version]   # the stale staging folder is gone
  assert _tree(os.path.join(serving_dir, version)) == want
  assert again_outputs['pushed_model'][0].get_int_custom_property('pushed') == 1


def test_live_and_foreign_staging_folders_are_left_alone(tmp_path):
  serving_dir = str(tmp_path / 'serving')
  live = os.path.join(serving_dir, serving_dir_lib.staging_name())   # this process
  foreign = os.path.join(serving_dir, '.push-staging-other-pod-7-' + 'a' * 32)
  for d in (live, foreign):
    os.makedirs(os.path.join(d, '1'))
  inputs, outputs = _artifacts(tmp_path, blessed=1)
  executor_lib.Executor().Do(inputs, outputs, _exec_properties(serving_dir))
  assert sorted(os.listdir(serving_dir)) == sorted(
      [os.path.basename(live), os.path.basename(foreign)] + _numbered(serving_dir))

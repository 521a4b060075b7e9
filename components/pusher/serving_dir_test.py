"""The serving-dir scan, the stale staging rule and the up-front writability check."""
import os
import shutil
import subprocess
import sys
import time

import pytest

from components.pusher import serving_dir as sd

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _version(serving, name, complete=True):
  d = os.path.join(serving, str(name))
  os.makedirs(d)
  if complete:
    open(os.path.join(d, sd.SAVED_MODEL_FILE), 'w').close()
  return d


def test_versions_are_complete_numbered_folders_newest_first(tmp_path):
  serving = str(tmp_path / 'serving')
  assert sd.versions(serving) == [] and sd.latest_version_dir(serving) is None
  for v in (9, 1700, 1800):
    _version(serving, v)
  _version(serving, 1900, complete=False)
  _version(serving, '.push-staging-h-1-abc')
  _version(serving, '2000x')
  assert sd.versions(serving) == ['1800', '1700', '9']
  assert sd.versions(serving, complete_only=False) == ['1900', '1800', '1700', '9']
  assert sd.latest_version_dir(serving) == os.path.join(serving, '1800')


def _dead_pid():
  child = subprocess.Popen(['true'])
  child.wait()
  return child.pid


def _staging(serving, name, age_s=0.0):
  d = os.path.join(serving, name)
  os.makedirs(os.path.join(d, '123', 'variables'))
  open(os.path.join(d, '123', 'variables', 'x'), 'w').close()
  when = time.time() - age_s
  for root, dirs, files in os.walk(d):
    for n in dirs + files:
      os.utime(os.path.join(root, n), (when, when))
  os.utime(d, (when, when))
  return name


def test_stale_staging_rule(tmp_path):
  serving = str(tmp_path)
  host = sd._hostname()  # pylint: disable=protected-access
  hour = sd.STALE_AFTER_S
  dead = _staging(serving, f'{sd.STAGING_PREFIX}{host}-{_dead_pid()}-{"a" * 32}')
  live = _staging(serving, sd.staging_name())
  # This process's pid, but the folder predates the process: the pid was reused.
  reused = _staging(serving, f'{sd.STAGING_PREFIX}{host}-{os.getpid()}-{"b" * 32}',
                    age_s=10 * 24 * hour)
  foreign_busy = _staging(serving, f'{sd.STAGING_PREFIX}pod-x-1-{"c" * 32}', age_s=60)
  foreign_old = _staging(serving, f'{sd.STAGING_PREFIX}pod-x-1-{"d" * 32}', age_s=2 * hour)
  legacy_old = _staging(serving, f'{sd.STAGING_PREFIX}{"e" * 32}', age_s=2 * hour)
  old_version = _staging(serving, '1600000000', age_s=10 * 24 * hour)
  other_hidden = _staging(serving, '.not-ours', age_s=10 * 24 * hour)

  reasons = {n: sd.stale_reason(serving, n) for n in os.listdir(serving)}
  assert 'no longer running' in reasons[dead]
  assert 'was reused' in reasons[reused]
  assert 'host pod-x' in reasons[foreign_old] and 'unknown host' in reasons[legacy_old]
  for kept in (live, foreign_busy, old_version, other_hidden):
    assert reasons[kept] is None, kept

  removed = sd.remove_stale_staging(serving)
  assert sorted(os.path.basename(p) for p in removed) == sorted(
      [dead, reused, foreign_old, legacy_old])
  assert sorted(os.listdir(serving)) == sorted([live, foreign_busy, old_version,
                                                other_hidden])


def test_check_writable_accepts_existing_and_creatable_dirs(tmp_path):
  sd.check_writable(str(tmp_path))
  sd.check_writable(str(tmp_path / 'new' / 'serving'))
  assert os.listdir(tmp_path) == []   # probes removed, nothing created


@pytest.mark.parametrize('uri', ['gs://bucket/models/mnist', 's3://my-bucket/serving',
                                 'hdfs://namenode/serving'])
def test_check_writable_object_store_form(uri):
  sd.check_writable(uri)


@pytest.mark.parametrize('uri, match', [
    ('gs:///models', "'' is not a valid gs bucket"),
    ('s3://Bad_Bucket/x', "'Bad_Bucket' is not a valid s3 bucket"),
    ('gs:/bucket/x', 'not a valid URI'),
])
def test_check_writable_bad_uri(uri, match):
  with pytest.raises(sd.ServingDirError, match=f'--serving-dir {uri}: {match}'):
    sd.check_writable(uri)


def test_check_writable_path_under_a_regular_file(tmp_path):
  # Unwritable even for root: the parent is a file (ENOTDIR).
  blocker = tmp_path / 'models.tar'
  blocker.write_bytes(b'')
  target = str(blocker / 'serving')
  with pytest.raises(sd.ServingDirError, match=f'--serving-dir {target}: cannot be '
                     f'created, {blocker} is a file'):
    sd.check_writable(target)
  with pytest.raises(sd.ServingDirError, match=f'--serving-dir {blocker}: is a file'):
    sd.check_writable(str(blocker))


def test_check_writable_immutable_dir_fails_fast(tmp_path):
  """chattr +i denies writes to root too, so this is the kernel's own refusal."""
  serving = tmp_path / 'serving'
  serving.mkdir()
  chattr = shutil.which('chattr')
  if not chattr or subprocess.run([chattr, '+i', str(serving)],
                                  capture_output=True).returncode != 0:
    pytest.skip('chattr +i is not available on this filesystem')
  try:
    start = time.monotonic()
    with pytest.raises(sd.ServingDirError,
                       match=f'--serving-dir {serving}: not writable: Operation not permitted'):
      sd.check_writable(str(serving))
    with pytest.raises(sd.ServingDirError, match=f'--serving-dir {serving}/v1: not '
                       f'writable \\(it does not exist and cannot be created in {serving}\\)'):
      sd.check_writable(str(serving / 'v1'))
    assert time.monotonic() - start < 5
  finally:
    subprocess.run([chattr, '-i', str(serving)], check=True)


def test_module_imports_no_tensorflow(tmp_path):
  code = ('import sys; from components.pusher import serving_dir as sd; '
          'sd.check_writable(sys.argv[1]); '
          'print(sorted(m for m in sys.modules if m.split(".")[0] in '
          '("tensorflow", "tfx")))')
  out = subprocess.run([sys.executable, '-c', code, str(tmp_path)], capture_output=True,
                       text=True, check=True, cwd=REPO)
  assert out.stdout.strip() == '[]'

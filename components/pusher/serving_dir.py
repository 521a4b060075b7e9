"""The serving directory as TF Serving sees it, in one light module.

TF Serving loads the all-digit folders of its base directory as model versions.
The Pusher (de-duplication, stale staging cleanup) and kubeflow's baseline resolver
(newest pushed model) read that directory through ``versions`` here, so both agree
on what a version is. Nothing heavy is imported at module level: the runner calls
``check_writable`` before it imports TFX, and tfx's fileio (which imports
TensorFlow) is only imported by the functions that list or stat the directory.

Staging folders. The atomic Pusher copies into ``.push-staging-<host>-<pid>-<hex>``
inside the serving dir and renames the finished version out of it. A push killed
hard (``kill -9``, OOM, a preempted node) leaves that folder behind; the next push
removes it with ``remove_stale_staging`` under this rule:

* only hidden ``.push-staging-*`` folders are candidates, never a numbered
  version (a version name is all digits, a staging name starts with a dot);
* a folder named after this host is stale when its pid is not running (or is a
  zombie), or when the running pid started after the folder was last written
  (the pid was reused by another process);
* a folder of another host (another machine or Kubernetes pod sharing the
  directory) or of the older ``.push-staging-<hex>`` form cannot be checked for a
  live owner: it is stale once nothing in it has changed for
  ``STALE_AFTER_S`` (a push of this project's models takes seconds; a live push
  keeps writing).
"""
import os
import re
import socket
import tempfile
import time
import uuid
from typing import List, Optional

STAGING_PREFIX = '.push-staging-'
SAVED_MODEL_FILE = 'saved_model.pb'
# Foreign staging folders untouched for this long are treated as abandoned.
STALE_AFTER_S = 3600.0
# Clock granularity between /proc start times (1/100 s, boot time in s) and mtimes.
_CLOCK_SLACK_S = 2.0
OBJECT_STORE_SCHEMES = ('gs', 's3')
_URI = re.compile(r'^([a-z][a-z0-9+.-]*)://([^/]*)(/.*)?$')
_BUCKET = re.compile(r'^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$')


class ServingDirError(ValueError):
  """The serving directory cannot receive pushes; the message names the flag."""


def _fileio():
  from tfx.dsl.io import fileio  # pylint: disable=g-import-not-at-top
  return fileio


def versions(serving_dir: str, complete_only: bool = True) -> List[str]:
  """Version folder names of serving_dir, newest (highest) first.

  complete_only keeps folders holding saved_model.pb: a version copied in place by
  a non-atomic pusher can exist before its graph does.
  """
  fileio = _fileio()
  if not fileio.isdir(serving_dir):
    return []
  names = [n.rstrip('/') for n in fileio.listdir(serving_dir)]
  found = [n for n in names if n.isdigit() and (
      not complete_only or
      fileio.exists(os.path.join(serving_dir, n, SAVED_MODEL_FILE)))]
  return sorted(found, key=int, reverse=True)


def latest_version_dir(serving_dir: str) -> Optional[str]:
  """The newest complete version folder, or None."""
  found = versions(serving_dir)
  return os.path.join(serving_dir, found[0]) if found else None


def check_writable(serving_dir: str) -> None:
  """Raises ServingDirError unless a push could write into serving_dir.

  Local paths: creates and removes a probe file in the directory (or, when it does
  not exist yet, in its nearest existing parent, where the Pusher will create it).
  Object-store URIs (gs://, s3://) are only checked for form: probing them needs
  credentials and TensorFlow's filesystems, which the runner has not loaded yet.
  """
  flag = '--serving-dir'
  if not serving_dir:
    raise ServingDirError(f'{flag} is empty; give the directory TF Serving reads '
                          'models from')
  uri = _URI.match(serving_dir)
  if uri:
    scheme, bucket = uri.group(1), uri.group(2)
    if scheme in OBJECT_STORE_SCHEMES and not _BUCKET.match(bucket):
      raise ServingDirError(f'{flag} {serving_dir}: {bucket!r} is not a valid '
                            f'{scheme} bucket name (expected {scheme}://BUCKET/PATH)')
    if not bucket:
      raise ServingDirError(f'{flag} {serving_dir}: no host or bucket after '
                            f'{scheme}://')
    return
  if '://' in serving_dir or re.match(r'^[A-Za-z][A-Za-z0-9+.-]+:', serving_dir):
    raise ServingDirError(f'{flag} {serving_dir}: not a valid URI (expected '
                          'SCHEME://BUCKET/PATH, e.g. gs://bucket/serving)')
  path = os.path.abspath(serving_dir)
  if os.path.exists(path) and not os.path.isdir(path):
    raise ServingDirError(f'{flag} {path}: is a file, not a directory')
  probe_dir = path
  while not os.path.exists(probe_dir):
    probe_dir = os.path.dirname(probe_dir)
  if not os.path.isdir(probe_dir):
    raise ServingDirError(f'{flag} {path}: cannot be created, {probe_dir} is a file')
  try:
    fd, probe = tempfile.mkstemp(dir=probe_dir, prefix='.write-probe-')
    os.close(fd)
    os.remove(probe)
  except OSError as e:
    where = ('' if probe_dir == path else
             f' (it does not exist and cannot be created in {probe_dir})')
    raise ServingDirError(f'{flag} {path}: not writable{where}: {e.strerror}') from e


def staging_name() -> str:
  """A fresh staging folder name recording which process owns it."""
  return f'{STAGING_PREFIX}{_hostname()}-{os.getpid()}-{uuid.uuid4().hex}'


def _hostname() -> str:
  return re.sub(r'[^A-Za-z0-9._-]', '_', socket.gethostname()) or 'localhost'


def _owner(name: str):
  """(host, pid) from a staging folder name, or None for the older uuid-only form."""
  parts = name[len(STAGING_PREFIX):].rsplit('-', 2)
  if len(parts) == 3 and parts[1].isdigit():
    return parts[0], int(parts[1])
  return None


def _process_start(pid: int) -> Optional[float]:
  """Start time (epoch s) of a running, non-zombie pid; None if it is not running.

  Without /proc (not Linux), any pid that signal 0 reaches counts as running and
  started at 0, so its folder is kept.
  """
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return None
  except PermissionError:
    pass  # exists, owned by another user
  try:
    with open(f'/proc/{pid}/stat') as f:
      fields = f.read().rsplit(')', 1)[1].split()
    with open('/proc/stat') as f:
      boot = next(int(line.split()[1]) for line in f if line.startswith('btime'))
  except (OSError, StopIteration, IndexError, ValueError):
    return 0.0
  if fields[0] in ('Z', 'X'):   # killed, not reaped yet
    return None
  return boot + int(fields[19]) / os.sysconf('SC_CLK_TCK')


def _mtime(stat) -> float:
  if hasattr(stat, 'st_mtime'):
    return stat.st_mtime
  return stat.mtime_nsec / 1e9


def _last_write(path: str) -> float:
  """Newest mtime of path and everything under it.

  Object stores have no directory entries to stat, so a failed stat is skipped; a
  tree without a single stat-able entry raises (and is then left alone).
  """
  fileio = _fileio()
  times = []
  for entry in [path] + [os.path.join(root, n) for root, dirs, files in fileio.walk(path)
                         for n in list(dirs) + list(files)]:
    try:
      times.append(_mtime(fileio.stat(entry)))
    except Exception:  # pylint: disable=broad-except  # no dir entry, or vanished
      continue
  if not times:
    raise FileNotFoundError(f'{path}: nothing to stat')
  return max(times)


def stale_reason(serving_dir: str, name: str, now: Optional[float] = None) -> Optional[str]:
  """Why staging folder ``name`` is abandoned under the module docstring's rule, or None."""
  if not name.startswith(STAGING_PREFIX) or name.isdigit():
    return None
  now = time.time() if now is None else now
  path = os.path.join(serving_dir, name)
  owner = _owner(name)
  try:
    last_write = _last_write(path)
  except Exception:  # pylint: disable=broad-except  # removed by its owner meanwhile
    return None
  if owner is not None and owner[0] == _hostname():
    pid = owner[1]
    started = _process_start(pid)
    if started is None:
      return f'its push (pid {pid} on this host) is no longer running'
    if started > last_write + _CLOCK_SLACK_S:
      return (f'pid {pid} was reused: the running process started after the folder '
              'was last written')
    return None
  idle = now - last_write
  if idle > STALE_AFTER_S:
    who = f'host {owner[0]}' if owner else 'an unknown host'
    return f'left by {who} and unchanged for {idle / 3600:.1f} h'
  return None


def remove_stale_staging(serving_dir: str) -> List[str]:
  """Removes abandoned staging folders of serving_dir; returns the removed paths."""
  from absl import logging  # pylint: disable=g-import-not-at-top
  fileio = _fileio()
  if not fileio.isdir(serving_dir):
    return []
  removed = []
  for name in sorted(n.rstrip('/') for n in fileio.listdir(serving_dir)):
    reason = stale_reason(serving_dir, name)
    if reason is None:
      continue
    path = os.path.join(serving_dir, name)
    logging.warning('Removing stale push staging folder %s: %s.', path, reason)
    try:
      fileio.rmtree(path)
      removed.append(path)
    except Exception as e:  # pylint: disable=broad-except  # another push got it first
      logging.warning('Could not remove %s: %s', path, e)
  return removed

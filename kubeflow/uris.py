"""Where things live on a KFP v2 cluster: object-store URIs and their pod-local mirrors.

The KFP v2 launcher downloads every input artifact from the object store to a local
path before the container command runs and uploads every output artifact from its
local path afterwards. The mapping is fixed by the launcher (``LocalPathForURI``):
``gs://b/k`` <-> ``/gcs/b/k``, ``s3://b/k`` <-> ``/s3/b/k``, ``minio://b/k`` <->
``/minio/b/k``, all under ``$ARTIFACT_LOCAL_PATH`` (empty in production).

Paths that TensorFlow itself opens (the data to ingest, the serving directory) are
not artifacts, so the launcher does not move them: they must be on a filesystem TF
can open directly in the image: ``gs://`` or a mounted volume (absolute path).
"""
import os
from typing import Optional

# Object stores the KFP v2 launcher mirrors locally, with their mirror prefixes.
MIRRORED_SCHEMES = {'gs://': 'gcs', 's3://': 's3', 'minio://': 'minio'}
# Env var naming the root of the launcher's local mirror (the launcher's own name).
LOCAL_ROOT_ENV = 'ARTIFACT_LOCAL_PATH'
# Remote filesystems TensorFlow 2.16 opens itself (tensorflow-io-gcs-filesystem).
TF_REMOTE_SCHEMES = ('gs://',)


class UriError(ValueError):
  """A path or URI cannot be used where it was given; the message says why."""


def scheme(uri: str) -> Optional[str]:
  """'gs://' for 'gs://b/k'; None for a plain path."""
  head, sep, _ = uri.partition('://')
  return head + sep if sep else None


def is_mirrored(uri: str) -> bool:
  return scheme(uri) in MIRRORED_SCHEMES


def local_root() -> str:
  return os.environ.get(LOCAL_ROOT_ENV, '')


def to_local(uri: str, root: Optional[str] = None) -> str:
  """The launcher's local mirror path of an object-store URI."""
  s = scheme(uri)
  if s not in MIRRORED_SCHEMES:
    raise UriError(f'{uri!r}: not an object-store URI the KFP launcher mirrors '
                   f'({", ".join(MIRRORED_SCHEMES)})')
  root = local_root() if root is None else root
  return f'{root.rstrip("/")}/{MIRRORED_SCHEMES[s]}/{uri[len(s):]}'


def to_remote(path: str, root: Optional[str] = None) -> str:
  """Inverse of to_local."""
  root = (local_root() if root is None else root).rstrip('/')
  for s, prefix in MIRRORED_SCHEMES.items():
    head = f'{root}/{prefix}/'
    if path.startswith(head):
      return s + path[len(head):]
  raise UriError(f'{path!r}: not under the launcher mirror root {root or "/"!r}')


def check_pipeline_root(uri: str) -> str:
  """The pipeline root must be an object store the launcher can mirror."""
  if not uri:
    raise UriError('--pipeline-root is required: an object-store URI such as '
                   'gs://bucket/root, s3://bucket/root or minio://mlpipeline/v2/artifacts')
  if not is_mirrored(uri):
    raise UriError(
        f'pipeline root {uri!r} is {"a local path" if scheme(uri) is None else "not supported"}: '
        f'every step runs in its own pod, so artifacts must live in an object store '
        f'the KFP launcher mirrors ({", ".join(MIRRORED_SCHEMES)})')
  if not uri[len(scheme(uri)):].strip('/'):
    raise UriError(f'pipeline root {uri!r} names no bucket')
  return uri.rstrip('/')


def check_tf_location(uri: str, what: str) -> str:
  """A location TensorFlow opens itself from inside the image: gs:// or absolute."""
  if not uri:
    raise UriError(f'{what} is required (gs://... or an absolute path on a mounted volume)')
  s = scheme(uri)
  if s is None:
    if not os.path.isabs(uri):
      raise UriError(f'{what} {uri!r} is a relative path: inside the pod it would '
                     'resolve against the container working directory and vanish with '
                     'the pod; use gs://... or an absolute path on a mounted volume '
                     '(--pvc-mount)')
    return uri
  if s not in TF_REMOTE_SCHEMES:
    raise UriError(f'{what} {uri!r}: TensorFlow 2.16 in the image cannot open {s} '
                   'paths (no tensorflow-io); use gs://... or mount the bucket as a '
                   'volume (--pvc-mount) and give its absolute path')
  return uri

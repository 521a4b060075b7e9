"""Beam steps whose workers run outside the pod (Flink/Spark portable runner, Dataflow).

Such workers cannot see the pod's local copies of the artifacts, so these steps keep
the object-store URIs (only gs://: the image's TF and Beam open it natively) and the
entry point then
  * creates each output's (empty) local mirror directory, because the KFP launcher
    uploads from there afterwards and fails on a missing path, and
  * deletes the zero-byte "dir/" marker objects TF's GCS filesystem leaves under the
    outputs: the launcher's download of them into the next pod turns each marker into
    a file where a directory must go (kubeflow/pipelines#13476).
"""
import os
from typing import Iterable, List, Optional, Sequence

from kubeflow import uris

# Beam runners that execute inside this process or on this machine.
LOCAL_RUNNERS = ('DirectRunner', 'BundleBasedDirectRunner', 'SwitchingDirectRunner',
                 'InteractiveRunner', 'PrismRunner')


class RemoteBeamError(ValueError):
  """A remote Beam runner cannot work with this step's artifact locations."""


def runner(beam_args: Sequence[str]) -> Optional[str]:
  """The --runner value ('--runner=X' or '--runner X'), or None."""
  for i, arg in enumerate(beam_args):
    if arg.startswith('--runner='):
      return arg.split('=', 1)[1]
    if arg == '--runner' and i + 1 < len(beam_args):
      return beam_args[i + 1]
  return None


def is_remote(beam_args: Sequence[str]) -> bool:
  name = runner(beam_args)
  return name is not None and name.split('.')[-1] not in LOCAL_RUNNERS


def check_uris(artifact_uris: Iterable[str]) -> None:
  bad = sorted(u for u in artifact_uris if not u.startswith('gs://'))
  if bad:
    raise RemoteBeamError(
        f'a remote Beam runner reads and writes the artifacts itself, which needs a '
        f'gs:// pipeline root; got {bad[:3]}. Use gs:// or the in-pod DirectRunner.')


def make_local_mirrors(output_uris: Iterable[str], root: str) -> List[str]:
  made = []
  for uri in output_uris:
    path = uris.to_local(uri, root)
    os.makedirs(path, exist_ok=True)
    made.append(path)
  return made


def delete_directory_markers(output_uris: Iterable[str], client=None) -> List[str]:
  """Deletes zero-size objects named '.../' under each gs:// URI; returns their URIs."""
  deleted = []
  for uri in output_uris:
    bucket_name, _, prefix = uri[len('gs://'):].partition('/')
    if client is None:
      from google.cloud import storage  # pylint: disable=g-import-not-at-top
      client = storage.Client()
    bucket = client.bucket(bucket_name)
    for blob in client.list_blobs(bucket_name, prefix=prefix.rstrip('/') + '/'):
      if blob.name.endswith('/') and not blob.size:
        bucket.blob(blob.name).delete()
        deleted.append(f'gs://{bucket_name}/{blob.name}')
  return deleted

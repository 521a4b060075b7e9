"""Pusher executor whose filesystem push is atomic for readers of the serving dir.

The stock executor copies the model file by file straight into
``<base_directory>/<version>``, so TF Serving, which polls base_directory for
numbered folders, can find a version folder that is still being written. (The
stock code copies saved_model.pb last to narrow that window, but the variables
of a half-copied model can still be seen.)

Here the stock Do() runs unchanged (blessing check, versioning, archive copy,
``pushed*`` properties) with its base_directory pointed at a hidden staging folder
*inside* the serving dir; once the copy is complete the version folder is renamed
into place. A rename within one filesystem is atomic on POSIX, so a reader sees
either no version folder or a complete one. TF Serving ignores the staging folder
because its name is not a number. On object stores (gs://, s3://) a rename is a
copy and offers no such guarantee.

A push killed hard leaves its staging folder behind; every blessed push first
removes abandoned ones (serving_dir.remove_stale_staging documents the rule: only
``.push-staging-*`` folders whose owning process is gone, never a version).
"""
import hashlib
import os
from typing import Any, Dict, List, Optional

from absl import logging
from tfx import types
from tfx.components.pusher import executor as stock
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

from components.pusher import serving_dir as serving_dir_lib

STAGING_PREFIX = serving_dir_lib.STAGING_PREFIX
PUSHED_KEY = 'pushed'
PUSHED_DESTINATION_KEY = 'pushed_destination'
PUSHED_VERSION_KEY = 'pushed_version'
ALREADY_SERVING_KEY = 'already_serving_version'


class Executor(stock.Executor):
  """Stock Pusher with copy-to-staging-then-rename filesystem pushes."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    destination = pusher_pb2.PushDestination()
    proto_utils.json_to_proto(
        exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
    if destination.WhichOneof('destination') != 'filesystem':
      return super().Do(input_dict, output_dict, exec_properties)

    serving_dir = destination.filesystem.base_directory
    model_push = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.PUSHED_MODEL_KEY])
    if self.CheckBlessing(input_dict):
      serving_dir_lib.remove_stale_staging(serving_dir)
      serving_version = _version_holding(self.GetModelPath(input_dict), serving_dir)
      if serving_version is not None:
        # A re-run over an unchanged model (e.g. re-evaluated against itself as
        # the newly blessed baseline) must not add a duplicate version.
        logging.info('Model already serving as version %s; not pushing it again.',
                     serving_version)
        self._MarkNotPushed(model_push)
        model_push.set_string_custom_property(ALREADY_SERVING_KEY, serving_version)
        return
    staging_dir = os.path.join(serving_dir, serving_dir_lib.staging_name())
    destination.filesystem.base_directory = staging_dir
    staged_properties = dict(exec_properties)
    staged_properties[standard_component_specs.PUSH_DESTINATION_KEY] = (
        proto_utils.proto_to_json(destination))
    try:
      super().Do(input_dict, output_dict, staged_properties)
      if model_push.get_int_custom_property(PUSHED_KEY) == 1:
        self._publish(model_push, staging_dir, serving_dir)
    finally:
      if fileio.exists(staging_dir):
        fileio.rmtree(staging_dir)

  def _publish(self, model_push: types.Artifact, staging_dir: str,
               serving_dir: str) -> None:
    """Renames the complete staged version folder into the serving dir."""
    version = model_push.get_string_custom_property(PUSHED_VERSION_KEY)
    if not version:
      raise RuntimeError(f'pushed model {model_push.uri} has no {PUSHED_VERSION_KEY!r} '
                         'property; cannot tell which staged folder to publish')
    staged = os.path.join(staging_dir, version)
    serving_path = os.path.join(serving_dir, version)
    if fileio.exists(serving_path):
      # As the stock executor: an existing version is never overwritten.
      logging.info('Destination directory %s already exists, skipping current push.',
                   serving_path)
    else:
      fileio.rename(staged, serving_path)
      logging.info('Model published atomically to %s.', serving_path)
    model_push.set_string_custom_property(PUSHED_DESTINATION_KEY, serving_path)


def _fingerprint(model_dir: str) -> str:
  """Content hash of a SavedModel directory (relative paths and bytes)."""
  h = hashlib.sha256()
  for root, dirs, files in fileio.walk(model_dir):
    dirs.sort()
    for name in sorted(files):
      path = os.path.join(root, name)
      h.update(os.path.relpath(path, model_dir).encode())
      with fileio.open(path, 'rb') as f:
        h.update(f.read())
  return h.hexdigest()


def _version_holding(model_dir: str, serving_dir: str) -> Optional[str]:
  """The complete version in serving_dir with exactly this model, if any."""
  versions = serving_dir_lib.versions(serving_dir)
  if not versions:
    return None
  want = _fingerprint(model_dir)
  for version in versions:
    if _fingerprint(os.path.join(serving_dir, version)) == want:
      return version
  return None

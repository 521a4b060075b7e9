"""The RobustnessEvaluator's baseline on open-source KFP: the newest pushed model.

Open-source KFP v2 cannot run TFX resolver nodes (its workflow compiler rejects a
ResolverSpec with "resolver not implemented yet"), so kubeflow/compile.py swaps the
LatestBlessedModelStrategy resolver for a container step running this executor.

The Pusher pushes exactly the blessed models, so the newest complete version folder
of the serving directory is the latest blessed (and pushed) model. It is copied into
this step's Model artifact in the layout TFX readers expect
(<uri>/Format-Serving/saved_model.pb). A marker file in the artifact records the
outcome; with nothing pushed yet it says so, and kubeflow/entrypoint.py then hands
the evaluator an empty baseline list, as the local resolver does.
"""
import json
import os
from typing import Any, Dict, List, Optional

from absl import logging
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.dsl.io import fileio
from tfx.types import artifact_utils
from tfx.utils import io_utils
from tfx.utils import path_utils

# The Pusher's own scan: the newest complete numbered version folder, or None.
from components.pusher.serving_dir import latest_version_dir

SERVING_DIR_KEY = 'serving_dir'
MODEL_KEY = 'model'
MARKER_FILE = 'baseline_resolution.json'
SOURCE_PROPERTY = 'baseline_source'


def write_marker(artifact_uri: str, source: Optional[str]) -> None:
  with fileio.open(os.path.join(artifact_uri, MARKER_FILE), 'w') as f:
    f.write(json.dumps({'found': source is not None, 'source': source}))


def is_unresolved(artifact_uri: str) -> bool:
  """True when the artifact is this resolver's output and found no model."""
  marker = os.path.join(artifact_uri, MARKER_FILE)
  if not fileio.exists(marker):
    return False
  with fileio.open(marker) as f:
    return not json.loads(f.read())['found']


class Executor(base_executor.BaseExecutor):
  """Copies the newest pushed model into the output Model artifact (if any)."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    serving_dir = exec_properties[SERVING_DIR_KEY]
    model = artifact_utils.get_single_instance(output_dict[MODEL_KEY])
    source = latest_version_dir(serving_dir)
    fileio.makedirs(model.uri)
    if source is None:
      logging.info('No pushed model in %s yet: the evaluator gets no baseline.',
                   serving_dir)
    else:
      io_utils.copy_dir(source, path_utils.serving_model_dir(model.uri))
      logging.info('Baseline: latest pushed model %s', source)
    write_marker(model.uri, source)
    model.set_string_custom_property(SOURCE_PROPERTY, source or '')

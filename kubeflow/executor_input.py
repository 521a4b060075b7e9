"""Repairs of the ExecutorInput the open-source KFP v2 launcher hands a TFX step.

Each function fixes one known mismatch between what the launcher sends and what
TFX's Vertex-oriented entry point (kubeflow_v2_run_executor) expects:

fill_input_types       The open-source driver passes input artifacts with an empty
                       or generic ("system.*") type schema; TFX then cannot find the
                       artifact class (tensorflow/tfx#7768). The compiled component's
                       input definitions hold the right type, so it is copied in
                       (fill_output_types does the same for outputs, from the
                       outputs spec kubeflow.compile adds to the step's args).
localize               TFX would read and write the object-store URIs directly: TF
                       2.16 cannot open s3:// or minio://, and on gs:// it leaves
                       zero-byte "dir/" marker objects that make the launcher's
                       download of the next step's inputs fail (kubeflow/pipelines
                       #13476). The launcher already mirrors every artifact at a
                       local path (downloads inputs before, uploads outputs after), so
                       the executor is pointed at those paths instead.
restore_output_uris    ...and the output metadata is given the object-store URIs back,
                       since the launcher uploads from the local path of the URI it
                       reads there.
drop_unresolved        Inputs produced by kubeflow.baseline_resolver that found no
                       model are removed, so the executor sees an empty list exactly
                       as with the local resolver.
merge_driver_outputs   ExampleGen's span/version/fingerprint, computed by TFX's driver
                       (run inside the step: open-source KFP has no driver hook), are
                       attached to the output artifact as Vertex would.
"""
from typing import Dict, List, Optional

from kfp.pipeline_spec import pipeline_spec_pb2

from kubeflow import baseline_resolver
from kubeflow import uris

ExecutorInput = pipeline_spec_pb2.ExecutorInput
ExecutorOutput = pipeline_spec_pb2.ExecutorOutput
InputsSpec = pipeline_spec_pb2.ComponentInputsSpec
OutputsSpec = pipeline_spec_pb2.ComponentOutputsSpec


class ExecutorInputError(ValueError):
  """The executor input cannot be repaired; the message names the artifact."""


def _untyped(type_schema: pipeline_spec_pb2.ArtifactTypeSchema) -> bool:
  kind = type_schema.WhichOneof('kind')
  if kind is None:
    return True
  if kind == 'instance_schema':
    return not type_schema.instance_schema.strip()
  if kind == 'schema_title':
    return type_schema.schema_title.startswith('system.')
  return False


def _fill_types(artifacts, declared, direction: str) -> List[str]:
  fixed = []
  for key, artifact_list in artifacts.items():
    for artifact in artifact_list.artifacts:
      if not _untyped(artifact.type):
        continue
      if declared is None or key not in declared.artifacts:
        raise ExecutorInputError(
            f'{direction} artifact {key!r} ({artifact.uri}) arrived without a type and '
            f'the component {direction}s spec does not declare it; recompile with '
            'kubeflow.compile')
      artifact.type.CopyFrom(declared.artifacts[key].artifact_type)
      fixed.append(key)
  return sorted(set(fixed))


def fill_input_types(executor_input: ExecutorInput,
                     inputs_spec: Optional[InputsSpec]) -> List[str]:
  """Copies the declared type into untyped input artifacts; returns the keys fixed."""
  return _fill_types(executor_input.inputs.artifacts, inputs_spec, 'input')


def fill_output_types(executor_input: ExecutorInput,
                      outputs_spec: Optional[OutputsSpec]) -> List[str]:
  """The same for outputs (the driver types them from the spec; this is insurance)."""
  return _fill_types(executor_input.outputs.artifacts, outputs_spec, 'output')


def localize(executor_input: ExecutorInput, root: str) -> Dict[str, str]:
  """Points artifact URIs at the launcher's local mirror; returns {local: remote}."""
  remote_by_local = {}
  for section in (executor_input.inputs.artifacts, executor_input.outputs.artifacts):
    for artifact_list in section.values():
      for artifact in artifact_list.artifacts:
        if uris.is_mirrored(artifact.uri):
          local = uris.to_local(artifact.uri, root)
          remote_by_local[local] = artifact.uri
          artifact.uri = local
  return remote_by_local


def restore_output_uris(executor_output: ExecutorOutput,
                        remote_by_local: Dict[str, str]) -> None:
  for artifact_list in executor_output.artifacts.values():
    for artifact in artifact_list.artifacts:
      artifact.uri = remote_by_local.get(artifact.uri, artifact.uri)


def drop_unresolved(executor_input: ExecutorInput) -> List[str]:
  """Removes inputs that are 'no model found' resolver outputs; returns their keys."""
  dropped = []
  for key, artifact_list in executor_input.inputs.artifacts.items():
    keep = [a for a in artifact_list.artifacts
            if not baseline_resolver.is_unresolved(a.uri)]
    if len(keep) != len(artifact_list.artifacts):
      dropped.append(key)
      del artifact_list.artifacts[:]
      artifact_list.artifacts.extend(keep)
  return dropped


def merge_driver_outputs(executor_input: ExecutorInput,
                         driver_output: ExecutorOutput) -> None:
  """Driver-computed output artifact metadata (span, version, ...) onto the outputs."""
  for key, artifact_list in driver_output.artifacts.items():
    if key not in executor_input.outputs.artifacts or not artifact_list.artifacts:
      continue
    target = executor_input.outputs.artifacts[key].artifacts[0]
    target.metadata.update(artifact_list.artifacts[0].metadata)


"""Container entry point of every step: TFX's KFP v2 executor entry point, repaired
for open-source KFP v2.

    python -m kubeflow.entrypoint --executor_class_path X \\
        --json_serialized_invocation_args '{{$}}' [--json_serialized_inputs_spec_args J] \\
        [--json_serialized_outputs_spec_args J] [beam args...]

The arguments are those of tfx.orchestration.kubeflow.v2.container.
kubeflow_v2_run_executor, which does the work, plus the outputs spec. Around it,
this wrapper:
  1. types untyped artifacts from the inputs/outputs specs (tensorflow/tfx#7768),
  2. points the executor at the launcher's local copies of the artifacts instead of
     their object-store URIs (kubeflow/pipelines#13476; s3:// and minio:// roots);
     except for Beam steps on a remote runner, whose workers need the URIs
     (kubeflow/remote_beam.py),
  3. drops a baseline that kubeflow.baseline_resolver did not find,
  4. runs TFX's FileBasedExampleGen driver (span, version, fingerprint) for
     ExampleGen steps, which open-source KFP never runs as a hook,
  5. writes the object-store URIs back into the output metadata for the launcher.
Details and reasons: kubeflow/executor_input.py.
"""
import argparse
import os
import sys
from typing import Dict, List, Optional, Tuple

from absl import logging
from google.protobuf import json_format

from kubeflow import executor_input as fixes
from kubeflow import remote_beam
from kubeflow import uris


def parse_args(argv: List[str]) -> Tuple[argparse.Namespace, List[str]]:
  """Known TFX flags, and the rest (the Beam pipeline args), as TFX parses them."""
  p = argparse.ArgumentParser(prog='python -m kubeflow.entrypoint')
  p.add_argument('--executor_class_path', required=True)
  p.add_argument('--json_serialized_invocation_args', required=True)
  p.add_argument('--json_serialized_inputs_spec_args', default=None)
  # Ours (kubeflow.compile adds it); removed before TFX parses the rest.
  p.add_argument('--json_serialized_outputs_spec_args', default=None)
  return p.parse_known_args(argv)


def _read_executor_output(path: str) -> fixes.ExecutorOutput:
  from tfx.dsl.io import fileio  # pylint: disable=g-import-not-at-top
  out = fixes.ExecutorOutput()
  with fileio.open(path, 'rb') as f:
    json_format.Parse(f.read(), out, ignore_unknown_fields=True)
  return out


def _write_executor_output(path: str, out: fixes.ExecutorOutput) -> None:
  from tfx.dsl.io import fileio  # pylint: disable=g-import-not-at-top
  with fileio.open(path, 'wb') as f:
    f.write(json_format.MessageToJson(out, sort_keys=True))


def _run_example_gen_driver(executor_input: fixes.ExecutorInput,
                            args: argparse.Namespace) -> None:
  from tfx.orchestration.kubeflow.v2.file_based_example_gen import driver  # pylint: disable=g-import-not-at-top
  driver.main(argparse.Namespace(
      json_serialized_invocation_args=json_format.MessageToJson(executor_input),
      json_serialized_inputs_spec_args=args.json_serialized_inputs_spec_args))
  fixes.merge_driver_outputs(
      executor_input, _read_executor_output(executor_input.outputs.output_file))


def _make_output_dirs(executor_input: fixes.ExecutorInput) -> None:
  """As TFX's own launchers do, for local paths (object stores need no directories)."""
  from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils as utils  # pylint: disable=g-import-not-at-top
  from tfx.orchestration.portable import outputs_utils  # pylint: disable=g-import-not-at-top
  outputs = utils.parse_raw_artifact_dict(executor_input.outputs.artifacts)
  outputs_utils.make_output_dirs({k: [a for a in v if uris.scheme(a.uri) is None]
                                  for k, v in outputs.items()})


def _artifact_uris(section) -> list:
  return [a.uri for artifact_list in section.values() for a in artifact_list.artifacts]


def _parse_spec(text: Optional[str], message_cls):
  if not text:
    return None
  spec = message_cls()
  json_format.Parse(text, spec, ignore_unknown_fields=True)
  return spec


def _point_at_artifacts(executor_input: fixes.ExecutorInput,
                        remote_workers: bool) -> Dict[str, str]:
  """Local mirror paths for in-pod executors; URIs (and empty mirrors) for remote Beam."""
  if not remote_workers:
    return fixes.localize(executor_input, uris.local_root())
  outputs = _artifact_uris(executor_input.outputs.artifacts)
  remote_beam.check_uris(_artifact_uris(executor_input.inputs.artifacts) + outputs)
  remote_beam.make_local_mirrors(outputs, uris.local_root())
  return {}


def run(argv: List[str]) -> None:
  """Repairs the executor input, runs the TFX executor, repairs the output metadata."""
  from tfx.components.example_gen import base_example_gen_executor  # pylint: disable=g-import-not-at-top
  from tfx.dsl.components.base import base_beam_executor  # pylint: disable=g-import-not-at-top
  from tfx.dsl.io import fileio  # pylint: disable=g-import-not-at-top
  from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_run_executor  # pylint: disable=g-import-not-at-top
  from tfx.utils import import_utils  # pylint: disable=g-import-not-at-top

  logging.set_verbosity(logging.INFO)
  args, beam_args = parse_args(argv)
  executor_input = _parse_spec(args.json_serialized_invocation_args, fixes.ExecutorInput)
  typed = fixes.fill_input_types(
      executor_input, _parse_spec(args.json_serialized_inputs_spec_args, fixes.InputsSpec))
  typed += fixes.fill_output_types(
      executor_input, _parse_spec(args.json_serialized_outputs_spec_args, fixes.OutputsSpec))
  executor_cls = import_utils.import_class_by_path(args.executor_class_path)
  remote_workers = (issubclass(executor_cls, base_beam_executor.BaseBeamExecutor)
                    and remote_beam.is_remote(beam_args))
  output_uris = _artifact_uris(executor_input.outputs.artifacts)
  remote_by_local = _point_at_artifacts(executor_input, remote_workers)
  dropped = fixes.drop_unresolved(executor_input)
  logging.info('entrypoint: typed %s, %d artifact URIs read/written locally, remote Beam '
               'workers: %s, no baseline for %s', typed, len(remote_by_local),
               remote_workers, dropped)

  output_file = executor_input.outputs.output_file
  if (issubclass(executor_cls, base_example_gen_executor.BaseExampleGenExecutor)
      and not fileio.exists(output_file)):
    _run_example_gen_driver(executor_input, args)
  _make_output_dirs(executor_input)

  args.json_serialized_invocation_args = json_format.MessageToJson(executor_input)
  del args.json_serialized_outputs_spec_args
  kubeflow_v2_run_executor._run_executor(args, beam_args)  # pylint: disable=protected-access

  executor_output = _read_executor_output(output_file)
  fixes.restore_output_uris(executor_output, remote_by_local)
  _write_executor_output(output_file, executor_output)
  if remote_workers:
    logging.info('entrypoint: deleted GCS directory markers %s',
                 remote_beam.delete_directory_markers(output_uris))


def main(argv: Optional[List[str]] = None) -> None:
  run(sys.argv[1:] if argv is None else argv)
  # The outputs and their metadata are written. Skipping interpreter teardown avoids
  # native (TF / Beam) destructors crashing at exit and turning a finished step into
  # a failed pod; the launcher only looks at the exit code and the files.
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(0)  # pylint: disable=protected-access


if __name__ == '__main__':
  main()

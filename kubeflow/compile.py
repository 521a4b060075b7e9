"""Compiles the pipeline of pipeline/pipeline.py into a KFP v2 package (YAML).

    python -m kubeflow.compile --output kubeflow/build/pipeline.yaml \\
        --image REGISTRY/mnist-adv:TAG --pipeline-root gs://BUCKET/root \\
        --data-dir gs://BUCKET/mnist --serving-dir gs://BUCKET/serving [--gpus 1] ...

The pipeline is built by the same create_pipeline() as the local runner. The KFP
specific parts are: data_dir and the span as run parameters, per-step images and
resources (GPUs on the Trainers only), and the edits open-source KFP v2 needs
(kubeflow/spec_rewrite.py). The package's first YAML document is the PipelineSpec,
the optional second one the Kubernetes PlatformSpec (node selectors, tolerations,
volumes).
"""
import argparse
import dataclasses
import os
import re
import sys
from typing import Any, Dict, List, Optional

from pipeline import progress

progress.quiet_environment()

# pylint: disable=g-import-not-at-top,wrong-import-position
import yaml

from kubeflow import deploy_config as deploy_lib
from kubeflow import run_parameters
from kubeflow import spec_rewrite
from kubeflow import uris
from pipeline import config as config_lib
from pipeline import flags

KFP_NAME_HINT = 'lower-case letters, digits and dashes, starting with a letter or digit'


class CompileError(ValueError):
  """The pipeline cannot be compiled as asked; the message says which flag and why."""


@dataclasses.dataclass
class Compiled:
  pipeline_spec: Dict[str, Any]
  platform_spec: Optional[Dict[str, Any]]
  tfx_pipeline: Any
  config: config_lib.PipelineConfig
  deploy: deploy_lib.DeployConfig


def kfp_pipeline_name(name: str) -> str:
  """KFP v2 (and TFX's KFP compiler) want [a-z0-9][a-z0-9-]{0,127}."""
  kfp_name = name.lower().replace('_', '-')
  if not re.fullmatch(r'[a-z0-9][a-z0-9-]{0,127}', kfp_name):
    raise CompileError(f'--pipeline-name={name!r}: a KFP pipeline name needs {KFP_NAME_HINT}')
  return kfp_name


def _resources(cpu: float, memory_gb: float, gpus: int = 0, gpu_type: str = ''):
  from kfp.pipeline_spec import pipeline_spec_pb2  # pylint: disable=g-import-not-at-top
  spec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec(
      cpu_limit=cpu, memory_limit=memory_gb)
  if gpus:
    spec.accelerator.type = gpu_type
    spec.accelerator.count = gpus
  return spec


def _gpu_nodes() -> tuple:
  from pipeline import pipeline as pipeline_lib  # pylint: disable=g-import-not-at-top
  return (pipeline_lib.TRAINER, pipeline_lib.BASE_TRAINER)


def build_tfx_pipeline(config: config_lib.PipelineConfig,
                       deploy: deploy_lib.DeployConfig):
  """create_pipeline() with run parameters, per-step resources and the image schema."""
  from tfx.dsl.components.base import base_component  # pylint: disable=g-import-not-at-top
  from tfx.orchestration import data_types  # pylint: disable=g-import-not-at-top
  from tfx.types import standard_component_specs  # pylint: disable=g-import-not-at-top
  from components.robustness_evaluator.spec import BASELINE_BLESSING_KEY  # pylint: disable=g-import-not-at-top
  from pipeline import pipeline as pipeline_lib  # pylint: disable=g-import-not-at-top

  data_dir = data_types.RuntimeParameter(
      name=run_parameters.DATA_DIR, ptype=str, default=deploy.data_dir,
      description=run_parameters.DESCRIPTIONS[run_parameters.DATA_DIR])
  p = pipeline_lib.create_pipeline(
      config, data_dir, beam_pipeline_args=list(deploy.beam_args or config.beam_args),
      schema_path=deploy.schema_path,
      # Open-source KFP cannot run TFX resolvers: no drift reference (drift is
      # skipped; every other data check runs).
      drift_reference=False)
  nodes = {c.id: c for c in p.components}
  # The container resolver that stands in for TFX's on KFP (kubeflow/baseline_resolver.py)
  # yields the latest pushed Model only, no ModelBlessing. The evaluator's baseline
  # blessing is optional: without it, the baseline is attacked again instead of its
  # unchanged figures being reused from the evaluation that blessed it.
  nodes[pipeline_lib.EVALUATOR].inputs.pop(BASELINE_BLESSING_KEY, None)
  # FileBasedExampleGen takes range_config as a RuntimeParameter (TFX supports it for
  # KFP); MnistExampleGen does not expose it, so it is attached to the built node.
  nodes[pipeline_lib.EXAMPLE_GEN].exec_properties[
      standard_component_specs.RANGE_CONFIG_KEY] = data_types.RuntimeParameter(
          name=run_parameters.RANGE_CONFIG, ptype=str, default=run_parameters.LATEST_SPAN,
          description=run_parameters.DESCRIPTIONS[run_parameters.RANGE_CONFIG])
  for node in p.components:
    if not isinstance(node, base_component.BaseComponent):
      continue
    if node.id in _gpu_nodes():
      node.with_platform_config(_resources(deploy.trainer_cpu, deploy.trainer_memory_gb,
                                           deploy.gpus, deploy.gpu_type))
    else:
      node.with_platform_config(_resources(deploy.cpu, deploy.memory_gb))
  return p


def compile_pipeline(config: config_lib.PipelineConfig,
                     deploy: deploy_lib.DeployConfig) -> Compiled:
  """Validates everything first, then compiles; nothing is written."""
  from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner as runner_lib  # pylint: disable=g-import-not-at-top
  from tfx.orchestration.kubeflow.v2 import pipeline_builder  # pylint: disable=g-import-not-at-top

  try:
    deploy.validate()
    uris.check_tf_location(config.serving_dir, '--serving-dir')
  except (deploy_lib.DeployError, uris.UriError) as e:
    raise CompileError(str(e)) from e
  config = config.replace(pipeline_name=kfp_pipeline_name(config.pipeline_name),
                          pipeline_root=deploy.pipeline_root)

  p = build_tfx_pipeline(config, deploy)
  gpu_nodes = [n for n in _gpu_nodes() if n in {c.id for c in p.components}]
  images = {pipeline_builder.DEFAULT_IMAGE_PATH_KEY: deploy.image}
  images.update({n: deploy.trainer_image for n in gpu_nodes})
  runner = runner_lib.KubeflowV2DagRunner(runner_lib.KubeflowV2DagRunnerConfig(
      display_name=config.pipeline_name, default_image=images,
      default_commands=list(deploy_lib.ENTRYPOINT_COMMAND),
      # 2.1: typed parameters (parameterValues), which the open-source launcher sends.
      use_pipeline_spec_2_1=True))
  spec = runner.run(p, write_out=False)['pipelineSpec']

  spec = _for_open_source_kfp(spec, config, deploy)
  return Compiled(spec, _placement(spec, deploy, gpu_nodes), p, config, deploy)


def _for_open_source_kfp(spec: Dict[str, Any], config: config_lib.PipelineConfig,
                         deploy: deploy_lib.DeployConfig) -> Dict[str, Any]:
  """The spec_rewrite edits, each for a reason given in place or in spec_rewrite."""
  from google.protobuf import json_format  # pylint: disable=g-import-not-at-top
  from pipeline import pipeline as pipeline_lib  # pylint: disable=g-import-not-at-top

  cpu_resources = json_format.MessageToDict(_resources(deploy.cpu, deploy.memory_gb))
  spec = spec_rewrite.replace_blessed_model_resolver(
      spec, pipeline_lib.RESOLVER, serving_dir=config.serving_dir, image=deploy.image,
      command=deploy_lib.ENTRYPOINT_COMMAND, resources=cpu_resources)
  left = spec_rewrite.resolver_tasks(spec)
  if left:
    raise CompileError(f'tasks {left} use TFX resolvers, which open-source KFP cannot run')
  spec_rewrite.set_parameter_defaults(
      spec, {run_parameters.DATA_DIR: deploy.data_dir,
             run_parameters.RANGE_CONFIG: run_parameters.LATEST_SPAN},
      run_parameters.DESCRIPTIONS)
  # KFP's cache key is the step's inputs, and ExampleGen's inputs (the data_dir
  # string) do not change when a new span lands; cached, a scheduled run would
  # retrain on the old data. (Vertex runs a fingerprinting driver instead.)
  spec_rewrite.set_caching(spec, [pipeline_lib.EXAMPLE_GEN], False)
  # TFX drops the ResourceSpec of FileBasedExampleGen steps; put it back.
  spec_rewrite.set_missing_resources(spec, pipeline_lib.EXAMPLE_GEN, cpu_resources)
  # Open-source KFP never runs this Vertex-only hook; kubeflow/entrypoint.py runs the
  # same TFX driver inside the step instead, so the spec shows what really runs.
  spec_rewrite.executor_of(spec, pipeline_lib.EXAMPLE_GEN)['container'].pop('lifecycle', None)
  spec_rewrite.add_outputs_spec_args(spec)
  spec['defaultPipelineRoot'] = deploy.pipeline_root
  return spec


def _placement(spec: Dict[str, Any], deploy: deploy_lib.DeployConfig,
               gpu_nodes: List[str]) -> Optional[Dict[str, Any]]:
  """The Kubernetes PlatformSpec: GPU placement for the Trainers, the rest elsewhere."""
  mounts = [list(m) for m in deploy.pvc_mounts]
  gpu_cfg = spec_rewrite.kubernetes_executor_config(
      dict(deploy.gpu_node_selector),
      [t.to_platform() for t in deploy.effective_gpu_tolerations], mounts)
  cpu_cfg = spec_rewrite.kubernetes_executor_config(dict(deploy.node_selector), (), mounts)
  return spec_rewrite.platform_spec({
      spec_rewrite.executor_label_of(spec, t): gpu_cfg if t in gpu_nodes else cpu_cfg
      for t in sorted(spec_rewrite.tasks(spec))})


def validate_package(compiled: Compiled) -> None:
  """Both documents parse as the KFP protos the backend will read."""
  from google.protobuf import json_format  # pylint: disable=g-import-not-at-top
  from kfp.pipeline_spec import pipeline_spec_pb2  # pylint: disable=g-import-not-at-top
  json_format.ParseDict(compiled.pipeline_spec, pipeline_spec_pb2.PipelineSpec())
  if compiled.platform_spec:
    json_format.ParseDict(compiled.platform_spec, pipeline_spec_pb2.PlatformSpec())


def write_package(compiled: Compiled, path: str) -> str:
  validate_package(compiled)
  if not path.endswith(('.yaml', '.yml')):
    raise CompileError(f'--output={path!r}: the KFP client takes a .yaml package '
                       '(a .json file would be a Vertex PipelineJob)')
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  docs = [compiled.pipeline_spec] + ([compiled.platform_spec] if compiled.platform_spec else [])
  header = ('# Compiled by `python -m kubeflow.compile` from pipeline/pipeline.py; '
            'regenerate rather than edit.\n'
            f'# Name: {compiled.config.pipeline_name}\n'
            f'# Parameters: {", ".join(sorted(run_parameters.DESCRIPTIONS))}\n')
  with open(path, 'w') as f:
    f.write(header)
    yaml.dump_all(docs, f, Dumper=_PlainDumper, sort_keys=True)
  return path


class _PlainDumper(yaml.SafeDumper):
  """Writes repeated sub-documents in full: no &anchors / *aliases in the package."""

  def ignore_aliases(self, data):
    return True


# ------------------------------------------------------------------------ CLI


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
  d = deploy_lib.DeployConfig()
  p = argparse.ArgumentParser(prog='python -m kubeflow.compile',
                              description=__doc__.split('\n\n')[0])
  p.add_argument('--output', required=True, help='package path, ending in .yaml')
  g = p.add_argument_group('images')
  g.add_argument('--image', default='', help='image of every step (kubeflow/Dockerfile)')
  g.add_argument('--gpu-image', default=None,
                 help='image of the Trainer steps (default: --image)')
  g.add_argument('--schema-path', default=d.schema_path,
                 help=f'curated schema inside the image (default {d.schema_path})')
  g = p.add_argument_group('resources')
  g.add_argument('--gpus', type=int, default=d.gpus,
                 help=f'GPUs per Trainer pod; 0 trains on CPU (default {d.gpus})')
  g.add_argument('--gpu-type', default=d.gpu_type,
                 help=f'Kubernetes GPU resource name (default {d.gpu_type})')
  g.add_argument('--trainer-cpu', type=float, default=d.trainer_cpu,
                 help=f'vCPU limit of a Trainer pod (default {d.trainer_cpu})')
  g.add_argument('--trainer-memory', default=str(d.trainer_memory_gb),
                 help=f'memory limit of a Trainer pod, e.g. 16G (default {d.trainer_memory_gb}G)')
  g.add_argument('--cpu', type=float, default=d.cpu,
                 help=f'vCPU limit of every other pod (default {d.cpu})')
  g.add_argument('--memory', default=str(d.memory_gb),
                 help=f'memory limit of every other pod (default {d.memory_gb}G)')
  g = p.add_argument_group('placement (written to the Kubernetes PlatformSpec)')
  g.add_argument('--gpu-node-selector', action='append', default=[], metavar='KEY=VALUE',
                 help='node label the Trainer pods require, repeatable')
  g.add_argument('--gpu-toleration', action='append', default=None,
                 metavar='KEY[=VALUE][:EFFECT]',
                 help='taint the Trainer pods tolerate, repeatable (default '
                      'nvidia.com/gpu:NoSchedule when --gpus > 0)')
  g.add_argument('--no-gpu-tolerations', action='store_true',
                 help='add no toleration to the Trainer pods')
  g.add_argument('--node-selector', action='append', default=[], metavar='KEY=VALUE',
                 help='node label every other pod requires, repeatable')
  g.add_argument('--pvc-mount', action='append', default=[], metavar='PVC:/PATH',
                 help='mount an existing PersistentVolumeClaim in every pod, repeatable '
                      '(e.g. for --data-dir / --serving-dir on a volume)')
  g = p.add_argument_group('beam')
  g.add_argument('--beam-arg', action='append', default=[], metavar='--OPTION=VALUE',
                 help='Beam pipeline option for ExampleGen/StatisticsGen/Transform, '
                      'repeatable; replaces the in-pod DirectRunner defaults (and '
                      '--beam-workers), e.g. --beam-arg=--runner=PortableRunner')
  flags.add_config_flags(p)
  return p.parse_args(argv)


def configs_from_args(args: argparse.Namespace):
  """(PipelineConfig, DeployConfig) from the flags; raises CompileError."""
  # --pipeline-root and --serving-dir are config flags (pipeline/flags.py): unset, they
  # leave no attribute.
  if getattr(args, 'pipeline_root', None) is None:
    raise CompileError('--pipeline-root is required: an object-store URI such as '
                       'gs://bucket/root, s3://bucket/root or minio://mlpipeline/v2/artifacts')
  if args.data_dir is None:
    raise CompileError('--data-dir is required: the default data location of runs '
                       '(gs://... or a mounted absolute path); runs may override it')
  if getattr(args, 'serving_dir', None) is None:
    raise CompileError('--serving-dir is required: where the Pusher publishes blessed '
                       'models (gs://... or a mounted absolute path)')
  try:
    config = flags.config_from_args(args)
    tolerations = None
    if args.no_gpu_tolerations:
      tolerations = ()
    elif args.gpu_toleration is not None:
      tolerations = tuple(deploy_lib.parse_toleration(t, '--gpu-toleration')
                          for t in args.gpu_toleration)
    deploy = deploy_lib.DeployConfig(
        image=args.image, gpu_image=args.gpu_image, pipeline_root=args.pipeline_root,
        data_dir=args.data_dir, gpus=args.gpus, gpu_type=args.gpu_type,
        trainer_cpu=args.trainer_cpu,
        trainer_memory_gb=deploy_lib.parse_memory_gb(args.trainer_memory, '--trainer-memory'),
        cpu=args.cpu, memory_gb=deploy_lib.parse_memory_gb(args.memory, '--memory'),
        schema_path=args.schema_path, beam_args=tuple(args.beam_arg),
        node_selector=tuple(deploy_lib.parse_label(s, '--node-selector')
                            for s in args.node_selector),
        gpu_node_selector=tuple(deploy_lib.parse_label(s, '--gpu-node-selector')
                                for s in args.gpu_node_selector),
        gpu_tolerations=tolerations,
        pvc_mounts=tuple(deploy_lib.parse_pvc_mount(m, '--pvc-mount') for m in args.pvc_mount),
    ).validate()
  except (config_lib.ConfigError, deploy_lib.DeployError, uris.UriError) as e:
    raise CompileError(str(e)) from e
  return config, deploy


def main(argv: Optional[List[str]] = None) -> int:
  args = parse_args(argv)
  from absl import logging  # pylint: disable=g-import-not-at-top
  # TFX's compiler logs deprecation notes and a spurious image-map warning.
  logging.set_verbosity(logging.ERROR)
  try:
    config, deploy = configs_from_args(args)
    compiled = compile_pipeline(config, deploy)
    path = write_package(compiled, args.output)
  except CompileError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  for flag, image in (('--image', deploy.image), ('--gpu-image', deploy.trainer_image)):
    if not deploy_lib.image_is_pinned(image):
      print(f'warning: {flag}={image} has no tag or uses :latest; runs are only '
            'reproducible with a fixed tag or digest', file=sys.stderr)
  if getattr(args, 'metadata_path', None):
    print('warning: --metadata-path is ignored on Kubeflow (KFP keeps the metadata)',
          file=sys.stderr)
  n = len(spec_rewrite.tasks(compiled.pipeline_spec))
  print(f'wrote {path}: pipeline {compiled.config.pipeline_name!r}, {n} steps, '
        f'{deploy.gpus} GPU(s) per Trainer, root {deploy.pipeline_root}')
  return 0


if __name__ == '__main__':
  sys.exit(main())

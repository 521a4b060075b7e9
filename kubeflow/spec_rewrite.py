"""Edits of the TFX-compiled KFP PipelineSpec (JSON dict form) for open-source KFP v2.

KubeflowV2DagRunner targets Vertex AI Pipelines; open-source KFP v2 runs the same IR
with these differences, each handled here and explained where it is done:
  * ResolverSpec executors are not implemented (the KFP workflow compiler fails with
    "resolver not implemented yet"): the latest-blessed-model resolver becomes a
    container step (kubeflow.baseline_resolver).
  * Root parameters need their defaults in the spec (Vertex keeps them in the
    PipelineJob's runtime config, which the YAML package does not carry).
  * The pipeline root default goes into the spec (defaultPipelineRoot).
  * Node placement (node selector, tolerations, volumes) goes into a second YAML
    document, the Kubernetes PlatformSpec, which the KFP backend applies to the pod.
"""
import copy
import json
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

BLESSING_RESOLVER_SUFFIX = '-model-blessing-resolver'
MODEL_RESOLVER_SUFFIX = '-model-resolver'
RESOLVER_EXECUTOR_CLASS = 'kubeflow.baseline_resolver.Executor'
SERVING_DIR_PARAM = 'serving_dir'
EXECUTOR_LABEL = '{}_executor'
OUTPUTS_SPEC_FLAG = '--json_serialized_outputs_spec_args'


class SpecError(ValueError):
  """The compiled spec cannot run on open-source KFP as it stands."""


def tasks(spec: Dict[str, Any]) -> Dict[str, Any]:
  return spec['root']['dag']['tasks']


def executor_of(spec: Dict[str, Any], task_name: str) -> Dict[str, Any]:
  component = spec['components'][tasks(spec)[task_name]['componentRef']['name']]
  return spec['deploymentSpec']['executors'][component['executorLabel']]


def executor_label_of(spec: Dict[str, Any], task_name: str) -> str:
  return spec['components'][tasks(spec)[task_name]['componentRef']['name']]['executorLabel']


def replace_blessed_model_resolver(spec: Dict[str, Any], node_id: str, *,
                                   serving_dir: str, image: str,
                                   command: Sequence[str],
                                   resources: Optional[Dict[str, Any]] = None
                                   ) -> Dict[str, Any]:
  """Swaps the two resolver tasks TFX emits for one container task named node_id.

  The new task runs kubeflow.baseline_resolver.Executor with the serving directory
  as its only parameter and outputs the same Model artifact key, so consumers are
  rewired by name only. It is never cached: its answer depends on what was pushed
  since, not on its inputs.
  """
  spec = copy.deepcopy(spec)
  all_tasks = tasks(spec)
  blessing_task, model_task = node_id + BLESSING_RESOLVER_SUFFIX, node_id + MODEL_RESOLVER_SUFFIX
  missing = [t for t in (blessing_task, model_task) if t not in all_tasks]
  if missing:
    raise SpecError(f'resolver {node_id!r}: expected TFX tasks {missing} in the spec')
  model_outputs = spec['components'][model_task]['outputDefinitions']['artifacts']
  if len(model_outputs) != 1:
    raise SpecError(f'resolver {node_id!r}: expected one Model output, got {sorted(model_outputs)}')
  (model_key, model_def), = model_outputs.items()

  for name in (blessing_task, model_task):
    label = executor_label_of(spec, name)
    del spec['deploymentSpec']['executors'][label]
    del spec['components'][all_tasks[name]['componentRef']['name']]
    del all_tasks[name]

  inputs = {'parameters': {SERVING_DIR_PARAM: {'parameterType': 'STRING'}}}
  label = EXECUTOR_LABEL.format(node_id)
  spec['components'][node_id] = {
      'executorLabel': label,
      'inputDefinitions': inputs,
      'outputDefinitions': {'artifacts': {model_key: model_def}},
  }
  container = {
      'image': image,
      'command': list(command),
      'args': ['--executor_class_path', RESOLVER_EXECUTOR_CLASS,
               '--json_serialized_invocation_args', '{{$}}',
               '--json_serialized_inputs_spec_args', json.dumps(inputs, sort_keys=True)],
  }
  if resources:
    container['resources'] = resources
  spec['deploymentSpec']['executors'][label] = {'container': container}
  all_tasks[node_id] = {
      'taskInfo': {'name': node_id},
      'componentRef': {'name': node_id},
      'inputs': {'parameters': {SERVING_DIR_PARAM: {'runtimeValue': {'constant': serving_dir}}}},
      'cachingOptions': {'enableCache': False},
  }

  for name, task in all_tasks.items():
    for key, artifact in task.get('inputs', {}).get('artifacts', {}).items():
      source = artifact.get('taskOutputArtifact', {})
      if source.get('producerTask') == blessing_task:
        raise SpecError(f'task {name!r} input {key!r} reads the ModelBlessing of '
                        f'{node_id!r}, which the container resolver does not provide')
      if source.get('producerTask') == model_task:
        source['producerTask'] = node_id
        source['outputArtifactKey'] = model_key
    if 'dependentTasks' in task:
      deps = {node_id if d in (blessing_task, model_task) else d
              for d in task['dependentTasks']}
      task['dependentTasks'] = sorted(deps)
  return spec


def add_outputs_spec_args(spec: Dict[str, Any]) -> None:
  """Gives every TFX container step its output definitions, as TFX gives the inputs'.

  kubeflow/entrypoint.py types an output artifact from them should the launcher send
  it untyped, as it does for inputs (tensorflow/tfx#7768).
  """
  for name in tasks(spec):
    container = executor_of(spec, name).get('container')
    if container is None or OUTPUTS_SPEC_FLAG in container.get('args', []):
      continue
    component = spec['components'][tasks(spec)[name]['componentRef']['name']]
    outputs = {'artifacts': component.get('outputDefinitions', {}).get('artifacts', {})}
    args = container['args']
    at = args.index('{{$}}') + 1
    container['args'] = args[:at] + [OUTPUTS_SPEC_FLAG, json.dumps(outputs, sort_keys=True)] \
        + args[at:]


def resolver_tasks(spec: Dict[str, Any]) -> List[str]:
  """Tasks whose executor is a ResolverSpec (which open-source KFP cannot run)."""
  return sorted(t for t in tasks(spec) if 'resolver' in executor_of(spec, t))


def set_parameter_defaults(spec: Dict[str, Any], defaults: Mapping[str, Any],
                           descriptions: Optional[Mapping[str, str]] = None) -> None:
  params = spec['root'].setdefault('inputDefinitions', {}).setdefault('parameters', {})
  for name, value in defaults.items():
    if name not in params:
      raise SpecError(f'pipeline parameter {name!r} is not used by any step')
    params[name]['defaultValue'] = value
    if descriptions and name in descriptions:
      params[name]['description'] = descriptions[name]


def set_caching(spec: Dict[str, Any], task_names: Iterable[str], enabled: bool) -> None:
  for name in task_names:
    tasks(spec)[name]['cachingOptions'] = {'enableCache': enabled}


def set_missing_resources(spec: Dict[str, Any], task_name: str,
                          resources: Dict[str, Any]) -> None:
  container = executor_of(spec, task_name).get('container')
  if container is not None and 'resources' not in container:
    container['resources'] = copy.deepcopy(resources)


def platform_spec(executor_configs: Mapping[str, Dict[str, Any]]) -> Optional[Dict[str, Any]]:
  """The Kubernetes PlatformSpec document, or None when nothing is configured."""
  configs = {label: cfg for label, cfg in executor_configs.items() if cfg}
  if not configs:
    return None
  return {'platforms': {'kubernetes': {'deploymentSpec': {'executors': configs}}}}


def kubernetes_executor_config(node_selector: Mapping[str, str] = (),
                               tolerations: Sequence[Dict[str, str]] = (),
                               pvc_mounts: Sequence[Sequence[str]] = ()) -> Dict[str, Any]:
  """JSON form of kfp-kubernetes' KubernetesExecutorConfig (fields KFP 2.x reads)."""
  cfg: Dict[str, Any] = {}
  if node_selector:
    cfg['nodeSelector'] = {'labels': dict(node_selector)}
  if tolerations:
    cfg['tolerations'] = [dict(t) for t in tolerations]
  if pvc_mounts:
    cfg['pvcMount'] = [{'constant': name, 'mountPath': path} for name, path in pvc_mounts]
  return cfg

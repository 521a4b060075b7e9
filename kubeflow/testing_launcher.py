"""Test helper: runs a compiled KFP v2 package on this machine the way the KFP v2
backend would. Used by kubeflow/local_run_test.py (and handy for debugging without a
cluster); not part of the deployment.

Each step's container command and args from the spec run as a subprocess (with this
interpreter standing in for the image's `python`), with the ExecutorInput ({{$}})
the KFP v2 driver/launcher builds:

* parameters: task constants, pipeline parameters (run arguments or the spec's
  defaults) and upstream output parameters;
* input artifacts: the upstream step's output artifacts as the launcher recorded
  them (object-store URI, metadata merged from the step's output metadata file),
  typed as the open-source driver sends them: with an empty type schema
  (tensorflow/tfx#7768), unless keep_input_types;
* output artifacts: {pipeline_root}/{pipeline}/{run_id}/{task}/{key}, typed from
  the component's output definitions; output metadata file in the pod's /tmp.

Object store and pods are directories: the store holds every URI at its launcher
mirror path, and each step gets its own "pod" directory as ARTIFACT_LOCAL_PATH.
Like the launcher, inputs are copied store -> pod before a step and outputs pod ->
store after it, so a step only sees what it declared. Importer tasks are resolved
like the driver does; resolver tasks fail, as on open-source KFP. Independent steps
run in parallel (max_parallel; Argo would run the whole DAG level at once). No
caching: every step runs.
"""
import collections
import concurrent.futures
import copy
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Any, Dict, Iterable, List, Mapping, Optional

import yaml

from kubeflow import uris

OUTPUT_METADATA = 'tmp/kfp_outputs/output_metadata.json'


class StepFailed(RuntimeError):
  """A step exited non-zero or broke the launcher contract; the message has its log."""


def load_package(path: str) -> Dict[str, Any]:
  with open(path) as f:
    docs = list(yaml.safe_load_all(f))
  return docs[0]


def topological_order(spec: Mapping[str, Any]) -> List[str]:
  tasks = spec['root']['dag']['tasks']
  deps = {t: set(tasks[t].get('dependentTasks', [])) for t in tasks}
  order: List[str] = []
  while deps:
    ready = sorted(t for t, d in deps.items() if not d - set(order))
    if not ready:
      raise StepFailed(f'dependency cycle among tasks {sorted(deps)}')
    order.extend(ready)
    for t in ready:
      del deps[t]
  return order


def _copy(src: str, dst: str) -> None:
  if os.path.isdir(src):
    shutil.copytree(src, dst, dirs_exist_ok=True)
  elif os.path.exists(src):
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.copy2(src, dst)
  else:
    raise StepFailed(f'{src}: no such artifact in the object store')


class LocalLauncher:
  """One pipeline run; outputs[task][key] is the recorded RuntimeArtifact (JSON)."""

  def __init__(self, spec: Dict[str, Any], work_dir: str, *, run_id: str = 'run-1',
               python: str = sys.executable, keep_input_types: bool = False,
               max_parallel: int = 2, env: Optional[Mapping[str, str]] = None):
    self.spec = spec
    self.work_dir = os.path.abspath(work_dir)
    self.store = os.path.join(self.work_dir, 'store')
    self.run_id = run_id
    self.python = python
    self.keep_input_types = keep_input_types
    self.max_parallel = max_parallel
    self.env = dict(env or {})
    self.pipeline_root = spec['defaultPipelineRoot']
    self.pipeline_name = spec['pipelineInfo']['name']
    self.outputs: Dict[str, Dict[str, Dict[str, Any]]] = {}
    self.output_parameters: Dict[str, Dict[str, Any]] = {}
    self.executor_inputs: Dict[str, Dict[str, Any]] = {}
    self.seconds: Dict[str, float] = {}

  # ------------------------------------------------------------------ paths

  def store_path(self, uri: str) -> str:
    return uris.to_local(uri, self.store)

  def pod_dir(self, task: str) -> str:
    return os.path.join(self.work_dir, 'pods', self.run_id, task)

  def log_path(self, task: str) -> str:
    return os.path.join(self.work_dir, 'logs', self.run_id, f'{task}.log')

  # ------------------------------------------------------------------ run

  def run(self, arguments: Optional[Mapping[str, Any]] = None,
          only: Optional[Iterable[str]] = None,
          reuse: Optional['LocalLauncher'] = None) -> Dict[str, Dict[str, Dict[str, Any]]]:
    """Runs the DAG (or only some tasks, taking the others' outputs from reuse)."""
    tasks = self.spec['root']['dag']['tasks']
    selected = set(tasks) if only is None else set(only)
    unknown = selected - set(tasks)
    if unknown:
      raise StepFailed(f'unknown tasks {sorted(unknown)}')
    if reuse is not None:
      for t in set(tasks) - selected:
        if t in reuse.outputs:
          self.outputs[t] = copy.deepcopy(reuse.outputs[t])
          self.output_parameters[t] = copy.deepcopy(reuse.output_parameters.get(t, {}))
    params = self._pipeline_parameters(arguments or {})
    order = [t for t in topological_order(self.spec) if t in selected]
    pending = collections.OrderedDict((t, set(tasks[t].get('dependentTasks', [])) & selected)
                                      for t in order)
    with concurrent.futures.ThreadPoolExecutor(self.max_parallel) as pool:
      running: Dict[concurrent.futures.Future, str] = {}
      done: set = set()
      while pending or running:
        for t in [t for t, d in pending.items() if d <= done][:self.max_parallel - len(running)]:
          del pending[t]
          running[pool.submit(self._run_task, t, params)] = t
        finished, _ = concurrent.futures.wait(
            running, return_when=concurrent.futures.FIRST_COMPLETED)
        for future in finished:
          task = running.pop(future)
          future.result()  # re-raises StepFailed; the pool waits for the others
          done.add(task)
    return self.outputs

  def _pipeline_parameters(self, arguments: Mapping[str, Any]) -> Dict[str, Any]:
    declared = self.spec['root'].get('inputDefinitions', {}).get('parameters', {})
    unknown = set(arguments) - set(declared)
    if unknown:
      raise StepFailed(f'unknown pipeline parameters {sorted(unknown)}')
    params = {}
    for name, spec in declared.items():
      if name in arguments:
        params[name] = arguments[name]
      elif 'defaultValue' in spec:
        params[name] = spec['defaultValue']
      elif not spec.get('isOptional'):
        raise StepFailed(f'pipeline parameter {name!r} has no value and no default')
    return params

  def _task_parameters(self, task: Dict[str, Any], params: Mapping[str, Any]) -> Dict[str, Any]:
    values = {}
    for name, source in task.get('inputs', {}).get('parameters', {}).items():
      if 'runtimeValue' in source:
        values[name] = source['runtimeValue']['constant']
      elif 'componentInputParameter' in source:
        values[name] = params[source['componentInputParameter']]
      elif 'taskOutputParameter' in source:
        out = source['taskOutputParameter']
        values[name] = self.output_parameters[out['producerTask']][out['outputParameterKey']]
      else:
        raise StepFailed(f'task {task["taskInfo"]["name"]}: unsupported parameter source {source}')
    return values

  def _input_artifacts(self, task: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    artifacts = {}
    for key, source in task.get('inputs', {}).get('artifacts', {}).items():
      if 'taskOutputArtifact' not in source:
        raise StepFailed(f'task {task["taskInfo"]["name"]}: unsupported artifact source {source}')
      out = source['taskOutputArtifact']
      artifact = copy.deepcopy(self.outputs[out['producerTask']][out['outputArtifactKey']])
      if not self.keep_input_types:
        artifact['type'] = {'instanceSchema': ''}
      artifacts[key] = {'artifacts': [artifact]}
    return artifacts

  def _run_task(self, name: str, params: Mapping[str, Any]) -> None:
    task = self.spec['root']['dag']['tasks'][name]
    component = self.spec['components'][task['componentRef']['name']]
    executor = self.spec['deploymentSpec']['executors'][component['executorLabel']]
    if 'resolver' in executor:
      raise StepFailed(f'task {name}: open-source KFP cannot run a ResolverSpec '
                       '("resolver not implemented yet")')
    if 'importer' in executor:
      self._run_importer(name, task, executor['importer'], params)
      return
    self._run_container(name, task, component, executor['container'], params)

  def _run_importer(self, name: str, task: Dict[str, Any], importer: Dict[str, Any],
                    params: Mapping[str, Any]) -> None:
    source = importer['artifactUri']
    uri = (params[source['runtimeParameter']] if 'runtimeParameter' in source
           else self._task_parameters(task, params).get('artifact_uri', source.get('constant')))
    self.outputs[name] = {'artifact': {'name': f'{self.run_id}/{name}/artifact', 'uri': uri,
                                       'type': importer['typeSchema'],
                                       'metadata': importer.get('metadata', {})}}

  def _run_container(self, name: str, task: Dict[str, Any], component: Dict[str, Any],
                     container: Dict[str, Any], params: Mapping[str, Any]) -> None:
    pod = self.pod_dir(name)
    outputs = {}
    for key, definition in component.get('outputDefinitions', {}).get('artifacts', {}).items():
      uri = f'{self.pipeline_root}/{self.pipeline_name}/{self.run_id}/{name}/{key}'
      outputs[key] = {'artifacts': [{'type': definition['artifactType'], 'uri': uri}]}
    executor_input = {
        'inputs': {'parameterValues': self._task_parameters(task, params),
                   'artifacts': self._input_artifacts(task)},
        'outputs': {'artifacts': outputs,
                    'outputFile': os.path.join(pod, OUTPUT_METADATA)},
    }
    # Launcher: download the inputs to the pod, create the output parents.
    for artifact_list in executor_input['inputs']['artifacts'].values():
      for artifact in artifact_list['artifacts']:
        _copy(self.store_path(artifact['uri']), uris.to_local(artifact['uri'], pod))
    for artifact_list in outputs.values():
      os.makedirs(os.path.dirname(uris.to_local(artifact_list['artifacts'][0]['uri'], pod)),
                  exist_ok=True)
    os.makedirs(os.path.dirname(executor_input['outputs']['outputFile']), exist_ok=True)

    self.executor_inputs[name] = executor_input
    command = self._command(name, container, executor_input)
    env = dict(os.environ, **self.env)
    env[uris.LOCAL_ROOT_ENV] = pod
    os.makedirs(os.path.dirname(self.log_path(name)), exist_ok=True)
    started = time.monotonic()
    with open(self.log_path(name), 'w') as log:
      code = subprocess.run(command, cwd=pod, env=env, stdout=log, stderr=subprocess.STDOUT,
                            check=False).returncode
    self.seconds[name] = time.monotonic() - started
    if code != 0:
      raise StepFailed(f'task {name} exited with {code}; last lines of '
                       f'{self.log_path(name)}:\n{self._tail(name)}')
    self._collect(name, pod, executor_input)

  def _command(self, name: str, container: Dict[str, Any],
               executor_input: Dict[str, Any]) -> List[str]:
    command = list(container.get('command', [])) + list(container.get('args', []))
    if not command:
      raise StepFailed(f'task {name}: the container has no command (image entry point)')
    if command[0] == 'python':
      command[0] = self.python
    serialized = json.dumps(executor_input)
    resolved = [arg.replace('{{$}}', serialized) for arg in command]
    leftover = [arg for arg in resolved if '{{$.' in arg]
    if leftover:
      raise StepFailed(f'task {name}: placeholders this emulation does not fill: {leftover}')
    return resolved

  def _collect(self, name: str, pod: str, executor_input: Dict[str, Any]) -> None:
    """Launcher: merge the output metadata file, upload the outputs pod -> store."""
    path = executor_input['outputs']['outputFile']
    reported = {}
    if os.path.exists(path):
      with open(path) as f:
        reported = json.load(f)
    recorded = {}
    for key, artifact_list in executor_input['outputs']['artifacts'].items():
      artifact = copy.deepcopy(artifact_list['artifacts'][0])
      for src in reported.get('artifacts', {}).get(key, {}).get('artifacts', [])[:1]:
        if src.get('uri'):
          artifact['uri'] = src['uri']
        artifact.setdefault('metadata', {}).update(src.get('metadata', {}))
      try:
        local = uris.to_local(artifact['uri'], pod)
      except uris.UriError as e:
        raise StepFailed(f'task {name} output {key!r}: the launcher cannot upload it: {e}')
      if os.path.exists(local):
        _copy(local, self.store_path(artifact['uri']))
      artifact['name'] = f'{self.run_id}/{name}/{key}'
      recorded[key] = artifact
    self.outputs[name] = recorded
    self.output_parameters[name] = reported.get('parameterValues', {})

  def _tail(self, name: str, lines: int = 40) -> str:
    with open(self.log_path(name)) as f:
      return ''.join(f.readlines()[-lines:])

"""Read-only queries over the pipeline's ml-metadata: runs, node executions, outputs.

TFX records each node run as an execution attached to a 'node' context
('<pipeline>.<node id>') and a 'pipeline_run' context (the run id); these helpers
join the two so the report, the lineage command and the tests share one reading.
"""
import dataclasses
from typing import Dict, List, Optional

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.orchestration import metadata

Execution = metadata_store_pb2.Execution
Artifact = metadata_store_pb2.Artifact
DONE = (Execution.COMPLETE, Execution.CACHED)
_OUTPUT_EVENTS = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)
_INPUT_EVENTS = (metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.DECLARED_INPUT)


def open_store(sqlite_path: str) -> metadata_store.MetadataStore:
  return metadata_store.MetadataStore(
      metadata.sqlite_metadata_connection_config(sqlite_path))


def executions_by_node(store: metadata_store.MetadataStore,
                       run_id: Optional[str] = None) -> Dict[str, List[Execution]]:
  """node id -> executions, oldest first; only those of run_id when given."""
  allowed = None
  if run_id is not None:
    ctx = store.get_context_by_type_and_name('pipeline_run', run_id)
    allowed = {e.id for e in store.get_executions_by_context(ctx.id)} if ctx else set()
  out: Dict[str, List[Execution]] = {}
  for ctx in store.get_contexts_by_type('node'):
    node = ctx.name.split('.', 1)[-1]
    execs = [e for e in store.get_executions_by_context(ctx.id)
             if allowed is None or e.id in allowed]
    if execs:
      out[node] = sorted(execs, key=lambda e: e.id)
  return out


def done(executions: List[Execution]) -> List[Execution]:
  return [e for e in executions if e.last_known_state in DONE]


@dataclasses.dataclass
class Run:
  run_id: str
  created_ms: int


def runs(store: metadata_store.MetadataStore) -> List[Run]:
  """Pipeline runs, oldest first."""
  ctxs = store.get_contexts_by_type('pipeline_run')
  return sorted((Run(c.name, c.create_time_since_epoch) for c in ctxs),
                key=lambda r: (r.created_ms, r.run_id))


def artifacts(store: metadata_store.MetadataStore, execution_id: int,
              outputs: bool = True, live_only: bool = True) -> List[Artifact]:
  kinds = _OUTPUT_EVENTS if outputs else _INPUT_EVENTS
  events = store.get_events_by_execution_ids([execution_id])
  arts = store.get_artifacts_by_id([ev.artifact_id for ev in events if ev.type in kinds])
  if live_only:
    arts = [a for a in arts if a.state == Artifact.LIVE]
  return arts


def type_name(store: metadata_store.MetadataStore, artifact: Artifact) -> str:
  return store.get_artifact_types_by_id([artifact.type_id])[0].name


def by_type(store: metadata_store.MetadataStore, arts: List[Artifact]) -> Dict[str, Artifact]:
  return {type_name(store, a): a for a in arts}


def producer(store: metadata_store.MetadataStore, artifact_id: int) -> Optional[Execution]:
  """The execution that first output the artifact (not a cached re-use)."""
  events = [ev for ev in store.get_events_by_artifact_ids([artifact_id])
            if ev.type in _OUTPUT_EVENTS]
  if not events:
    return None
  execs = store.get_executions_by_id([ev.execution_id for ev in events])
  return min(execs, key=lambda e: e.id)


def prop(artifact_or_execution, name: str):
  """A property or custom property value, whatever its type (None if absent)."""
  for props in (artifact_or_execution.properties, artifact_or_execution.custom_properties):
    if name in props:
      v = props[name]
      kind = v.WhichOneof('value')
      if kind == 'struct_value':
        from google.protobuf import json_format  # pylint: disable=g-import-not-at-top
        return json_format.MessageToDict(v.struct_value)
      return getattr(v, kind) if kind else None
  return None

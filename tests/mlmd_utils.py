"""Reading ml-metadata in tests: executions and artifacts by component id."""
from typing import Dict, List

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.orchestration import metadata


def store(sqlite_path: str) -> metadata_store.MetadataStore:
  return metadata_store.MetadataStore(
      metadata.sqlite_metadata_connection_config(sqlite_path))


def executions_by_node(s: metadata_store.MetadataStore) -> Dict[str, List]:
  """node id -> executions (oldest first), from TFX's per-node contexts."""
  out: Dict[str, List] = {}
  for ctx in s.get_contexts_by_type('node'):
    node = ctx.name.split('.', 1)[-1]
    out[node] = sorted(s.get_executions_by_context(ctx.id), key=lambda e: e.id)
  return out


def complete(executions) -> List:
  return [e for e in executions
          if e.last_known_state in (metadata_store_pb2.Execution.COMPLETE,
                                    metadata_store_pb2.Execution.CACHED)]


def output_artifacts(s: metadata_store.MetadataStore, execution_id: int,
                     live_only: bool = True) -> List:
  events = s.get_events_by_execution_ids([execution_id])
  ids = [ev.artifact_id for ev in events
         if ev.type in (metadata_store_pb2.Event.OUTPUT,
                        metadata_store_pb2.Event.DECLARED_OUTPUT)]
  arts = s.get_artifacts_by_id(ids)
  if live_only:
    arts = [a for a in arts if a.state == metadata_store_pb2.Artifact.LIVE]
  return arts

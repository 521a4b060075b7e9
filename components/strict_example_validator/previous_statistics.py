"""Resolver strategy for the validator's ``previous_statistics`` input.

Drift must be measured against data that was accepted: if the reference were
simply the latest older statistics, one rejected span would become the reference
of the next (a good span would then "drift", or a repeat of the same bad data
would not). So this strategy keeps only statistics that a successful (or cached)
StrictExampleValidator execution consumed as its ``statistics`` input, newest
first. It returns an empty list rather than None when there are none (the first
span), so the run goes on and the executor skips the drift check; the executor
then compares against the newest of them other than the current statistics.

Usage (local and Vertex runners; open-source KFP cannot run resolver nodes):

    tfx.dsl.Resolver(
        strategy_class=ValidatedStatisticsStrategy,
        config={'max_artifacts': 10},
        statistics=tfx.dsl.Channel(type=ExampleStatistics,
                                   producer_component_id=statistics_gen.id),
    ).with_id('previous_statistics_resolver')
"""
from typing import Dict, List, Optional

import ml_metadata as mlmd
from ml_metadata.proto import metadata_store_pb2
from tfx import types
from tfx.dsl.components.common import resolver

VALIDATOR_TYPE_SUFFIX = 'StrictExampleValidator'
STATISTICS_INPUT_KEY = 'statistics'
_DONE = (metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.CACHED)


def _validated_ids(store: mlmd.MetadataStore, artifact_ids: List[int]) -> set:
  """Ids among artifact_ids consumed as 'statistics' by a finished validator run."""
  if not artifact_ids:
    return set()
  events = [e for e in store.get_events_by_artifact_ids(artifact_ids)
            if e.type == metadata_store_pb2.Event.INPUT and e.path.steps and
            e.path.steps[0].key == STATISTICS_INPUT_KEY]
  executions = {e.id: e for e in store.get_executions_by_id(
      list({e.execution_id for e in events}))}
  type_names = {t.id: t.name for t in store.get_execution_types_by_id(
      list({e.type_id for e in executions.values()}))} if executions else {}
  return {e.artifact_id for e in events
          if e.execution_id in executions
          and executions[e.execution_id].last_known_state in _DONE
          and type_names.get(executions[e.execution_id].type_id, '').endswith(
              VALIDATOR_TYPE_SUFFIX)}


class ValidatedStatisticsStrategy(resolver.ResolverStrategy):
  """Up to max_artifacts validated statistics per input, newest first; maybe none."""

  def __init__(self, max_artifacts: int = 10):
    self._max = max_artifacts

  def resolve_artifacts(
      self, store: mlmd.MetadataStore,
      input_dict: Dict[str, List[types.Artifact]]
  ) -> Optional[Dict[str, List[types.Artifact]]]:
    result = {}
    for key, artifacts in input_dict.items():
      ok = _validated_ids(store, [a.id for a in artifacts])
      chosen = sorted((a for a in artifacts if a.id in ok), key=lambda a: a.id,
                      reverse=True)
      result[key] = chosen[:self._max]
    return result

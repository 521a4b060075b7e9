"""The previous-statistics strategy keeps only statistics a finished validator accepted."""
import ml_metadata as mlmd
from ml_metadata.proto import metadata_store_pb2
from tfx.types import standard_artifacts

from components.strict_example_validator import previous_statistics as ps

Execution = metadata_store_pb2.Execution


def _store():
  return mlmd.MetadataStore(metadata_store_pb2.ConnectionConfig(
      fake_database=metadata_store_pb2.FakeDatabaseConfig()))


def _statistics(store, n):
  type_id = store.put_artifact_type(metadata_store_pb2.ArtifactType(name='ExampleStatistics'))
  ids = store.put_artifacts([metadata_store_pb2.Artifact(type_id=type_id, uri=f'/s/{i}')
                             for i in range(n)])
  out = []
  for artifact_id, i in zip(ids, range(n)):
    a = standard_artifacts.ExampleStatistics()
    a.id, a.uri = artifact_id, f'/s/{i}'
    out.append(a)
  return out


def _consume(store, artifact, type_name, state, key='statistics'):
  type_id = store.put_execution_type(metadata_store_pb2.ExecutionType(name=type_name))
  [execution_id] = store.put_executions([Execution(type_id=type_id,
                                                   last_known_state=state)])
  event = metadata_store_pb2.Event(artifact_id=artifact.id, execution_id=execution_id,
                                   type=metadata_store_pb2.Event.INPUT)
  event.path.steps.add().key = key
  event.path.steps.add().index = 0
  store.put_events([event])


def test_only_statistics_accepted_by_a_finished_validator_newest_first():
  store = _store()
  s = _statistics(store, 6)
  validator = 'components.strict_example_validator.component.StrictExampleValidator'
  _consume(store, s[0], validator, Execution.COMPLETE)
  _consume(store, s[1], validator, Execution.CACHED)
  _consume(store, s[2], validator, Execution.FAILED)            # rejected span
  _consume(store, s[3], 'tfx.components.SchemaGen', Execution.COMPLETE)
  _consume(store, s[4], validator, Execution.COMPLETE, key='previous_statistics')
  _consume(store, s[5], validator, Execution.COMPLETE)
  got = ps.ValidatedStatisticsStrategy(max_artifacts=2).resolve_artifacts(
      store, {'statistics': s})
  assert [a.uri for a in got['statistics']] == ['/s/5', '/s/1']


def test_nothing_validated_yet_is_an_empty_list_not_none():
  store = _store()
  got = ps.ValidatedStatisticsStrategy().resolve_artifacts(
      store, {'statistics': _statistics(store, 2)})
  assert got == {'statistics': []}
  assert ps.ValidatedStatisticsStrategy().resolve_artifacts(
      store, {'statistics': []}) == {'statistics': []}

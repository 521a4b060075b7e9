"""Test shorthands over pipeline.metadata_queries."""
from pipeline import metadata_queries as mq

store = mq.open_store
executions_by_node = mq.executions_by_node
complete = mq.done


def output_artifacts(s, execution_id, live_only=True):
  return mq.artifacts(s, execution_id, outputs=True, live_only=live_only)

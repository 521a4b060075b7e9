"""Lineage from ml-metadata: past runs, and each pushed model traced back to data.

    python -m pipeline.lineage [--pipeline-root runs/pipeline] [--json]

For every run: its nodes' states, the candidate's key metrics, blessing and push.
For every pushed model: push -> blessing -> evaluation -> training run -> Transform
-> ExampleGen span.
"""
import argparse
import json
import os
import sys
from typing import Any, Dict, List, Optional

from pipeline import config as config_lib
from pipeline import metadata_queries as mq
from pipeline import pipeline as pipeline_lib


def _first(store, execution_id: int, type_name: str, outputs: bool) -> Optional[mq.Artifact]:
  arts = mq.artifacts(store, execution_id, outputs=outputs, live_only=False)
  return next((a for a in arts if mq.type_name(store, a) == type_name), None)


def _metrics(evaluation: Optional[mq.Artifact]) -> Dict[str, float]:
  if evaluation is None:
    return {}
  return {k: round(v.double_value, 4) for k, v in evaluation.custom_properties.items()
          if k.endswith('_accuracy')}


def list_runs(store) -> List[Dict[str, Any]]:
  out = []
  for run in mq.runs(store):
    execs = mq.executions_by_node(store, run.run_id)
    entry: Dict[str, Any] = {
        'run_id': run.run_id,
        'states': {n: mq.Execution.State.Name(es[-1].last_known_state)
                   for n, es in execs.items()}}
    ev = mq.done(execs.get(pipeline_lib.EVALUATOR, []))
    if ev:
      entry['metrics'] = _metrics(_first(store, ev[-1].id, 'ModelEvaluation', True))
      blessing = _first(store, ev[-1].id, 'ModelBlessing', True)
      entry['blessed'] = bool(blessing and mq.prop(blessing, 'blessed'))
    push = mq.done(execs.get(pipeline_lib.PUSHER, []))
    if push:
      pushed = _first(store, push[-1].id, 'PushedModel', True)
      entry['pushed_version'] = (mq.prop(pushed, 'pushed_version')
                                 if pushed and mq.prop(pushed, 'pushed') == 1 else None)
    out.append(entry)
  return out


def trace_pushes(store) -> List[Dict[str, Any]]:
  """Each pushed model, followed upstream through the recorded events."""
  out = []
  for pushed in store.get_artifacts_by_type('PushedModel'):
    if mq.prop(pushed, 'pushed') != 1:
      continue
    push_exec = mq.producer(store, pushed.id)
    model = _first(store, push_exec.id, 'Model', False)
    blessing = _first(store, push_exec.id, 'ModelBlessing', False)
    eval_exec = mq.producer(store, blessing.id) if blessing else None
    evaluation = _first(store, eval_exec.id, 'ModelEvaluation', True) if eval_exec else None
    train_exec = mq.producer(store, model.id) if model else None
    transformed = _first(store, train_exec.id, 'Examples', False) if train_exec else None
    transform_exec = mq.producer(store, transformed.id) if transformed else None
    raw = _first(store, transform_exec.id, 'Examples', False) if transform_exec else None
    out.append({
        'pushed_version': mq.prop(pushed, 'pushed_version'),
        'pushed_destination': mq.prop(pushed, 'pushed_destination'),
        'push_execution': push_exec.id,
        'blessing': {'artifact_id': blessing.id, 'uri': blessing.uri,
                     'blessed': mq.prop(blessing, 'blessed'),
                     'baseline_model_id': mq.prop(blessing, 'baseline_model_id')}
                    if blessing else None,
        'evaluation': {'execution_id': eval_exec.id, 'uri': evaluation.uri,
                       'metrics': _metrics(evaluation)} if evaluation else None,
        'model': {'artifact_id': model.id, 'uri': model.uri} if model else None,
        'training_execution': train_exec.id if train_exec else None,
        'transformed_examples': transformed.uri if transformed else None,
        'data': _data(raw) if raw else None,
    })
  return out


# Custom properties TfdsMnistExampleGen records on its examples: which dataset.
TFDS_PROPERTIES = ('tfds_name', 'tfds_version', 'tfds_data_dir')


def _data(raw) -> Dict[str, Any]:
  """The examples a model was trained on: span and version, and for the tfds source
  the dataset name, version and data dir."""
  data = {'span': mq.prop(raw, 'span'), 'version': mq.prop(raw, 'version'),
          'uri': raw.uri, 'input_fingerprint': mq.prop(raw, 'input_fingerprint')}
  data.update({k: mq.prop(raw, k) for k in TFDS_PROPERTIES if mq.prop(raw, k)})
  return data


def render(runs: List[Dict[str, Any]], pushes: List[Dict[str, Any]]) -> str:
  lines = [f'{len(runs)} run(s):']
  for r in runs:
    failed = [n for n, s in r['states'].items() if s not in ('COMPLETE', 'CACHED')]
    metrics = ' '.join(f'{k}={v:.3f}' for k, v in sorted(r.get('metrics', {}).items()))
    lines.append(f"  {r['run_id']}: {'FAILED ' + ','.join(failed) if failed else 'ok'}"
                 f"  {metrics}  blessed={r.get('blessed')}"
                 f"  pushed={r.get('pushed_version')}")
  lines.append(f'\n{len(pushes)} pushed model(s):')
  for p in pushes:
    lines += [
        f"  version {p['pushed_version']} at {p['pushed_destination']}",
        f"    <- blessing {p['blessing']}",
        f"    <- evaluation {p['evaluation']}",
        f"    <- model {p['model']} (training execution {p['training_execution']})",
        f"    <- transformed examples {p['transformed_examples']}",
        f"    <- data {p['data']}",
    ]
  return '\n'.join(lines)


def main(argv=None) -> int:
  d = config_lib.PipelineConfig()
  p = argparse.ArgumentParser(prog='python -m pipeline.lineage', description=__doc__)
  p.add_argument('--pipeline-root', default=d.pipeline_root)
  p.add_argument('--metadata-path', default=None)
  p.add_argument('--json', action='store_true', help='print JSON instead of text')
  args = p.parse_args(argv)
  path = args.metadata_path or os.path.join(args.pipeline_root, 'metadata.sqlite')
  if not os.path.isfile(path):
    print(f'error: {path}: no ml-metadata database (run `make run` first)', file=sys.stderr)
    return 1
  store = mq.open_store(path)
  runs, pushes = list_runs(store), trace_pushes(store)
  print(json.dumps({'runs': runs, 'pushes': pushes}, indent=2) if args.json
        else render(runs, pushes))
  return 0


if __name__ == '__main__':
  sys.exit(main())

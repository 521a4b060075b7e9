"""The end-of-run report: robustness table, blessing checks, push, plots, timings.

Built from ml-metadata and the evaluator's metrics.json, so it describes what the
pipeline recorded, cached steps included. Written as JSON to
``<pipeline_root>/reports/<run_id>/report.json`` and, for scripts and monitoring,
to the stable ``<pipeline_root>/reports/latest/report.json``.
"""
import datetime
import json
import os
import tempfile
from typing import Any, Dict, List, Optional, Tuple

from components.pusher.executor import ALREADY_SERVING_KEY
from components.robustness_evaluator import spec as evaluator_spec
from pipeline import config as config_lib
from pipeline import metadata_queries as mq
from pipeline import pipeline as pipeline_lib

REPORTS_DIR = 'reports'
LATEST = 'latest'
REPORT_FILE = 'report.json'


def report_path(pipeline_root: str, run_id: str = LATEST) -> str:
  return os.path.join(pipeline_root, REPORTS_DIR, run_id, REPORT_FILE)


def _read_json(path: str) -> Optional[Dict[str, Any]]:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def build(config: config_lib.PipelineConfig, timings: List[Tuple[str, float]],
          wall_s: float, run_id: Optional[str] = None) -> Dict[str, Any]:
  store = mq.open_store(config.metadata)
  all_runs = mq.runs(store)
  if not all_runs:
    raise RuntimeError(f'{config.metadata}: no pipeline run recorded')
  run_id = run_id or all_runs[-1].run_id
  execs = mq.executions_by_node(store, run_id)

  def outputs(node: str) -> Dict[str, mq.Artifact]:
    done = mq.done(execs.get(node, []))
    return mq.by_type(store, mq.artifacts(store, done[-1].id)) if done else {}

  states = {node: mq.Execution.State.Name(es[-1].last_known_state)
            for node, es in execs.items()}
  report: Dict[str, Any] = {
      'run_id': run_id,
      'finished_at': datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec='seconds'),
      'pipeline_root': config.pipeline_root,
      'config': config.to_dict(),
      'wall_s': round(wall_s, 1),
      'components': [{'node': node, 'seconds': round(s, 1), 'state': states.get(node)}
                     for node, s in timings],
  }
  examples = outputs(pipeline_lib.EXAMPLE_GEN).get('Examples')
  if examples is not None:
    report['data'] = {'span': mq.prop(examples, 'span'), 'uri': examples.uri}
  models = {}
  for node, role in ((pipeline_lib.TRAINER, 'adversarial'),
                     (pipeline_lib.BASE_TRAINER, 'base')):
    model = outputs(node).get('Model')
    if model is not None:
      models[role] = {'uri': model.uri, 'artifact_id': model.id}
  report['models'] = models

  ev = outputs(pipeline_lib.EVALUATOR)
  evaluation, blessing = ev.get('ModelEvaluation'), ev.get('ModelBlessing')
  metrics = _read_json(os.path.join(evaluation.uri, evaluator_spec.METRICS_FILE)) if evaluation else None
  if metrics:
    report['table'] = _table(metrics)
    report['figures'] = _figures(metrics)
    report['curve'] = _curve(metrics)
    report['warnings'] = metrics.get('warnings', [])
    report['metrics_path'] = os.path.join(evaluation.uri, evaluator_spec.METRICS_FILE)
    report['plots'] = [os.path.join(evaluation.uri, p) for p in evaluator_spec.PLOT_FILES]
  if blessing is not None:
    report['blessed'] = bool(mq.prop(blessing, 'blessed'))
    report['checks'] = (metrics or {}).get('checks', [])
    report['baseline_model'] = mq.prop(blessing, 'baseline_model')

  pushed = outputs(pipeline_lib.PUSHER).get('PushedModel')
  if pushed is not None and mq.prop(pushed, 'pushed') == 1:
    report['push'] = {'pushed': True, 'version': mq.prop(pushed, 'pushed_version'),
                      'path': mq.prop(pushed, 'pushed_destination')}
  elif pushed is not None and mq.prop(pushed, ALREADY_SERVING_KEY):
    version = mq.prop(pushed, ALREADY_SERVING_KEY)
    report['push'] = {'pushed': False, 'version': version,
                      'path': os.path.join(config.serving_dir, version),
                      'reason': f'this exact model is already serving as version {version}'}
  else:
    failed = [c['name'] for c in report.get('checks', []) if not c.get('passed')]
    why = ('the model was not blessed: failed ' + ', '.join(failed) if failed else
           'the model was not blessed' if blessing is not None else
           'the pipeline did not reach the Pusher')
    report['push'] = {'pushed': False, 'reason': why}
  return report


def _table(metrics: Dict[str, Any]) -> Dict[str, Any]:
  """The tutorial's table (rows base / adversarial), extended with white-box attacks."""
  if 'comparison_table' in metrics:
    return metrics['comparison_table']
  candidate = metrics['models']['candidate']
  row = {'clean': candidate['clean']['accuracy']}
  row.update({f'{k} white-box': v['accuracy'] for k, v in candidate['attacks'].items()})
  return {'columns': list(row), 'rows': {'adversarial': row}}


def _figures(metrics: Dict[str, Any]) -> List[Dict[str, Any]]:
  """The candidate's gate figures, each with its sample size and 95% interval."""
  candidate = metrics['models']['candidate']
  rows = [('clean', candidate['clean'])] + list(candidate['attacks'].items())
  return [{'name': name, 'accuracy': e['accuracy'], 'num_examples': e['num_examples'],
           'ci95': e.get('ci95'), 'reused': 'reused_from' in e}
          for name, e in rows]


def _curve(metrics: Dict[str, Any]) -> Dict[str, Any]:
  """The candidate's robustness curve: accuracy per attack family and epsilon."""
  sweep = metrics['models']['candidate'].get('sweep', {})
  return {'sample_size': sweep.get('sample_size'), 'accuracy': sweep.get('accuracy', {}),
          'apgd_sample_size': metrics.get('config', {}).get('sweep_apgd_sample_size')}


def write(report: Dict[str, Any], pipeline_root: str) -> str:
  """Writes the run's report and replaces 'latest' atomically; returns the run path."""
  text = json.dumps(report, indent=2, sort_keys=True)
  paths = [report_path(pipeline_root, report['run_id']), report_path(pipeline_root)]
  for path in paths:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix='.report-')
    with os.fdopen(fd, 'w') as f:
      f.write(text)
    os.replace(tmp, path)
  return paths[0]


def build_and_write(config, timings, wall_s) -> Dict[str, Any]:
  report = build(config, timings, wall_s)
  report['report_path'] = report_path(config.pipeline_root, report['run_id'])
  report['latest_report_path'] = report_path(config.pipeline_root)
  write(report, config.pipeline_root)
  return report


def _pct(v) -> str:
  return f'{100 * v:5.1f}%' if isinstance(v, (int, float)) else '    —'


def render(report: Dict[str, Any]) -> str:
  lines = [f"\nRun {report['run_id']} finished in {report['wall_s']:.0f} s"
           + (f" (data span {report['data']['span']})" if report.get('data') else '')]
  table = report.get('table')
  if table:
    cols = table['columns']
    width = max(len(c) for c in cols) + 2
    lines += ['', 'Accuracy on the eval split (white-box = attack crafted against the '
              'model itself):',
              f"{'model':<13}" + ''.join(f'{c:>{width}}' for c in cols)]
    for row, values in table['rows'].items():
      lines.append(f'{row:<13}' + ''.join(f'{_pct(values.get(c)):>{width}}' for c in cols))
  if report.get('figures'):
    lines += ['', 'Candidate, white-box (AutoAttack is the number to trust: the worst '
              'case per image over its attacks):']
    for f in report['figures']:
      ci = f.get('ci95')
      interval = f'  95% CI [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]' if ci else ''
      reused = '  (reused)' if f.get('reused') else ''
      lines.append(f"  {f['name']:<24}{_pct(f['accuracy'])}  n={f['num_examples']:<6}"
                   f'{interval}{reused}')
  curve = report.get('curve') or {}
  if curve.get('accuracy'):
    eps = sorted({e for by in curve['accuracy'].values() for e in by}, key=float)
    lines += ['', f"Robustness curve (first {curve['sample_size']} images; APGD-CE on "
              f"the first {curve.get('apgd_sample_size')}):",
              f"  {'epsilon':<10}" + ''.join(f'{e:>9}' for e in eps)]
    for family, by in curve['accuracy'].items():
      lines.append(f'  {family:<10}' + ''.join(f'{_pct(by.get(e)):>9}' for e in eps))
  if 'blessed' in report:
    lines += ['', 'Blessing: ' + ('BLESSED' if report['blessed'] else 'NOT BLESSED')]
    for c in report.get('checks', []):
      mark = 'pass' if c.get('passed') else 'FAIL'
      what = {'ci95_lower_bound': ' (95% lower bound)',
              'num_examples': ' (images)'}.get(c.get('measure'), '')
      lines.append(f"  [{mark}] {c['name']}{what}: {c.get('value'):.4f} "
                   f"{c.get('comparison', '>=')} {c.get('threshold'):.4f}")
  for w in report.get('warnings', []):
    lines.append(f'  warning: {w}')
  push = report['push']
  lines += ['', f"Pushed: version {push['version']} -> {push['path']}" if push['pushed']
            else f"Not pushed: {push['reason']}"]
  if report.get('plots'):
    lines += ['Plots: ' + '\n       '.join(report['plots'])]
  lines += ['', 'Wall time per component:']
  for c in report['components']:
    lines.append(f"  {c['node']:<32}{c['seconds']:7.1f} s  {c['state'] or ''}")
  lines += ['', f"Report: {report.get('report_path')}",
            f"        (latest: {report.get('latest_report_path')})"]
  return '\n'.join(lines)

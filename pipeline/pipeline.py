"""The one pipeline definition; the local and Kubeflow runners are thin wrappers.

ExampleGen -> StatisticsGen -> SchemaGen (inferred, for review)
          \-> ExampleValidator (curated schema, fails on anomalies) -> Transform
Transform -> Trainer (adversarial) [+ BaseTrainer] -> RobustnessEvaluator
          (with the latest blessed model as baseline) -> Pusher (only when blessed)
"""
import os
from typing import List, Optional

from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx

from components.mnist_example_gen.component import MnistExampleGen
from components.robustness_evaluator.spec import eval_config_to_json
from components.strict_example_validator.component import StrictExampleValidator
from components.strict_example_validator.previous_statistics import ValidatedStatisticsStrategy
from pipeline.config import PipelineConfig

SCHEMA_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'schema',
                           'schema.pbtxt')
PREPROCESSING_FN = 'components.transform.preprocessing.preprocessing_fn'
RUN_FN = 'components.trainer.run_fn.run_fn'

# Node ids, used by the runners and the report.
EXAMPLE_GEN = 'MnistExampleGen'
VALIDATOR = 'ExampleValidator'
PREVIOUS_STATISTICS = 'previous_statistics_resolver'
TRANSFORM = 'Transform'
TRAINER = 'Trainer'
BASE_TRAINER = 'BaseTrainer'
RESOLVER = 'latest_blessed_model_resolver'
EVALUATOR = 'RobustnessEvaluator'
PUSHER = 'Pusher'


def trainer_config_json(config: PipelineConfig) -> str:
  """The Trainer's own section: only the fields that shape training, so unrelated
  changes keep its cache."""
  return config.trainer_config().to_json()


def create_pipeline(
    config: PipelineConfig,
    data_dir: str,
    *,
    metadata_connection_config: Optional[metadata_store_pb2.ConnectionConfig] = None,
    beam_pipeline_args: Optional[List[str]] = None,
    schema_path: str = SCHEMA_PATH,
    data_only: bool = False,
    drift_reference: bool = True,
) -> tfx.dsl.Pipeline:
  """Builds the pipeline. data_only stops after Transform (ingest and normalize).

  data_dir is the IDX directory, or the tfds data dir when config.data_source is
  'tfds'; both ExampleGens have the node id EXAMPLE_GEN and the same output schema.
  drift_reference adds a resolver of the newest accepted statistics, so the
  validator checks the new span for drift (open-source KFP cannot run TFX
  resolvers, so the Kubeflow build leaves it out and skips the drift check).
  """
  config.validate()
  if config.data_source == 'tfds':
    # Imported here: the IDX path never needs tensorflow-datasets' component.
    from components.mnist_example_gen.tfds_component import TfdsMnistExampleGen  # pylint: disable=g-import-not-at-top
    example_gen = TfdsMnistExampleGen(data_dir, version=config.tfds_version).with_id(
        EXAMPLE_GEN)
  else:
    example_gen = MnistExampleGen(input_base=data_dir, span_pattern=config.span_pattern)
  statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs['examples'])
  schema_gen = tfx.components.SchemaGen(
      statistics=statistics_gen.outputs['statistics'], infer_feature_shape=True)
  curated_schema = tfx.components.ImportSchemaGen(schema_file=schema_path)
  previous = None
  nodes_before = []
  if drift_reference:
    previous = tfx.dsl.Resolver(
        strategy_class=ValidatedStatisticsStrategy,
        config={'max_artifacts': 10},
        statistics=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ExampleStatistics,
                                   producer_component_id=statistics_gen.id),
    ).with_id(PREVIOUS_STATISTICS)
    nodes_before.append(previous)
  validator = StrictExampleValidator(
      statistics=statistics_gen.outputs['statistics'],
      schema=curated_schema.outputs['schema'],
      examples=example_gen.outputs['examples'],
      previous_statistics=previous.outputs['statistics'] if previous else None,
      data_checks=config.data_checks).with_id(VALIDATOR)
  transform = tfx.components.Transform(
      examples=example_gen.outputs['examples'],
      schema=curated_schema.outputs['schema'],
      preprocessing_fn=PREPROCESSING_FN).with_id(TRANSFORM)
  # Transform does not read the anomalies, so the order is made explicit: nothing is
  # transformed (or trained) unless validation passed.
  transform.add_upstream_node(validator)
  nodes = [example_gen, statistics_gen, schema_gen, curated_schema, *nodes_before,
           validator, transform]

  if not data_only:
    nodes += _training_nodes(config, transform)

  return tfx.dsl.Pipeline(
      pipeline_name=config.pipeline_name,
      pipeline_root=config.pipeline_root,
      components=nodes,
      enable_cache=config.enable_cache,
      metadata_connection_config=metadata_connection_config,
      beam_pipeline_args=list(beam_pipeline_args if beam_pipeline_args is not None
                              else config.beam_args),
  )


def _trainer(config: PipelineConfig, transform, mode: str, node_id: str):
  return tfx.components.Trainer(
      run_fn=RUN_FN,
      examples=transform.outputs['transformed_examples'],
      transform_graph=transform.outputs['transform_graph'],
      custom_config={'config': trainer_config_json(config), 'mode': mode},
  ).with_id(node_id)


def _training_nodes(config: PipelineConfig, transform) -> list:
  # Imported here so the data half does not need the training stack.
  from components.pusher.component import AtomicPusher  # pylint: disable=g-import-not-at-top
  from components.robustness_evaluator.component import RobustnessEvaluator  # pylint: disable=g-import-not-at-top

  trainer = _trainer(config, transform, 'adversarial', TRAINER)
  nodes = [trainer]
  base_model = None
  if config.train_base_model:
    base_trainer = _trainer(config, transform, 'base', BASE_TRAINER)
    base_model = base_trainer.outputs['model']
    nodes.append(base_trainer)

  resolver = tfx.dsl.Resolver(
      strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
      model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
      model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
  ).with_id(RESOLVER)

  evaluator = RobustnessEvaluator(
      model=trainer.outputs['model'],
      examples=transform.outputs['transformed_examples'],
      baseline_model=resolver.outputs['model'],
      base_model=base_model,
      config=eval_config_to_json(config.eval),
  ).with_id(EVALUATOR)

  pusher = AtomicPusher(
      model=trainer.outputs['model'],
      model_blessing=evaluator.outputs['blessing'],
      push_destination=tfx.proto.PushDestination(
          filesystem=tfx.proto.PushDestination.Filesystem(
              base_directory=config.serving_dir)),
  ).with_id(PUSHER)
  return nodes + [resolver, evaluator, pusher]

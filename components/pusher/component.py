"""The stock Pusher with the atomic, de-duplicating filesystem executor."""
from tfx.components import Pusher
from tfx.dsl.components.base import executor_spec

from components.pusher import executor


class AtomicPusher(Pusher):
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

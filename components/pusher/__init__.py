"""The stock TFX Pusher with an atomic filesystem push (see executor.py); use it via
``tfx.components.Pusher(custom_executor_spec=ExecutorClassSpec(Executor))``."""

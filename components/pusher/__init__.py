"""The stock TFX Pusher with an atomic filesystem push (see executor.py): use
``components.pusher.component.AtomicPusher``, whose EXECUTOR_SPEC is the atomic
executor (the executor-spec way, not the deprecated ``custom_executor_spec``)."""

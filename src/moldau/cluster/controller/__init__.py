"""The controller: a pure state machine, driven by events (DESIGN.md, "The cluster").

- ``controller.Controller.handle(event, now_ms) -> commands``: Kafka's
  KafkaController, partition and replica state machines and topic deletion;
- ``context``: its in-memory view (Kafka: ControllerContext);
- ``deletion``: topic deletion (Kafka: TopicDeletionManager);
- ``batch``: one event's decisions rendered as commands (Kafka:
  ControllerBrokerRequestBatch);
- ``events`` in, ``commands`` out (the shell's contract is in ``commands``);
- ``election`` and ``alter_partition``: the rules, as pure functions;
- ``reassignment``: partition reassignment's rules (KIP-455: the replicas
  while moving, the checks of a target, when it is complete);
- ``rebalance``: which partitions the auto leader rebalance hands back to
  their preferred replica (Kafka: checkAndTriggerAutoLeaderRebalance);
- ``states``: the state tables with Kafka's legal moves.

Nothing here imports asyncio or kazoo (tests/unit/test_pure_imports.py).
"""

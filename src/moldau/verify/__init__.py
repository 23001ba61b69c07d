"""``moldau verify``: audit a Kafka-compatible cluster the way Jepsen does.

A workload (``workload``) writes unique values through an idempotent acks=all
producer and reads them back through a consumer group, while ``faults``
kills, pauses and restarts brokers; every step is an event of a ``History``
(``history``), and ``checker`` finds in it what a correct cluster never does:
an acknowledged value lost, a value stored twice, a producer's values out of
order, one offset holding two values, a consumer that skipped committed
records, a group that forgot an accepted commit, a partition owned by two
members at once. ``replicas`` compares the replicas' segment files of a
``moldau cluster up`` byte for byte.
"""

"""The transaction coordinator's pure core (Kafka's KIP-98 coordinator).

``records`` is the ``__transaction_state`` format, ``state`` a transactional
id's states and transitions, ``coordinator`` the decisions. The asyncio shell
is ``moldau.broker.transactions``.
"""

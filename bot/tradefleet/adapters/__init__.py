"""Edges that talk to an exchange: market-data feed, REST, execution, user data stream."""

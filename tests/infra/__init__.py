"""Test infrastructure: real Cassandra and Redis servers started from package registries."""

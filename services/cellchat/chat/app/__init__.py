"""Use cases: one place where each command and query is carried out; transports call only these."""

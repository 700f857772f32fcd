"""The chat domain: frozen values and pure rules. Imports no I/O library, reads no clock.

Everything time-dependent takes `now_ms` as an argument so the rules are testable without
sockets or sleeps.
"""

"""Which CQL statements one SendMessage issues, traced from the real service code.

Figure 3's peer (a) claims to issue "the same CQL statements the service issues". The service
changes; this trace keeps the claim honest: it runs the chat use case on the CQL store (in this
process, against the bench keyspace), records the statement names of a steady-state send, and
the figure compares them with `bench.cqlpeer.SAME_SEQUENCE`, noting any drift in the results.
"""

from __future__ import annotations

import uuid
from typing import Any


def service_send_statements(host: str, port: int, keyspace: str) -> list[str]:
    import trio
    from cassandra.query import BatchStatement

    from cellchat.chat.app.service import NewMessage
    from cellchat.chat.domain.model import MessageKind
    from cellchat.chat.server import build_app
    from cellchat.chat.storage import trio_cql
    from cellchat.chat.storage.cql import open_cql_store
    from cellchat.settings import Settings

    trace: list[str] = []
    names: dict[Any, str] = {}
    original = trio_cql.TrioSession._run  # every query passes here, alone or sent together

    def name_of(statement: Any) -> str:
        if isinstance(statement, BatchStatement):
            inner = [names.get(entry[1], "?") for entry in statement._statements_and_parameters]
            return f"BATCH({','.join(inner)})"
        prepared = getattr(statement, "prepared_statement", statement)
        return names.get(getattr(prepared, "query_id", None), "?")

    async def traced(self: Any, statements: Any, *args: Any) -> Any:
        trace.extend(name_of(statement) for statement, _ in statements)
        return await original(self, statements, *args)

    async def main() -> list[str]:
        async with open_cql_store([host], port, keyspace) as store:
            for name, statement in store._q.items():
                names[statement.query_id] = name
            app = build_app(Settings(), store)
            buyer, seller = f"trace-b-{uuid.uuid4().hex[:6]}", f"trace-s-{uuid.uuid4().hex[:6]}"
            view, _ = await app.create_direct(buyer, seller)
            cid = view.conversation.conversation_id
            trio_cql.TrioSession._run = traced  # type: ignore[method-assign,assignment]
            try:
                for i in range(3):  # the first sends fill caches; the third is steady
                    trace.clear()
                    await app.send_message(buyer, NewMessage(cid, f"t{i}", MessageKind.TEXT,
                                                             text="trace"))
            finally:
                trio_cql.TrioSession._run = original  # type: ignore[method-assign]
            return list(trace)

    return trio.run(main)

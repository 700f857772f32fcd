"""Reading migration files: split a .cql file into statements and fingerprint them.

A statement ends at a `;` outside string literals, quoted identifiers and comments. Comments
(`--`, `//`, `/* */`) are dropped and runs of whitespace outside literals collapse to one
space, so the checksum changes when a statement changes and not when a comment or the
indentation does.
"""

from __future__ import annotations

import hashlib


class CqlSyntaxError(ValueError):
    """A migration file cannot be split into statements (an unterminated literal or comment)."""


def split_statements(text: str) -> list[str]:
    statements: list[str] = []
    current: list[str] = []
    pending_space = False
    i, n = 0, len(text)

    def emit(chunk: str) -> None:
        nonlocal pending_space
        if pending_space and current:
            current.append(" ")
        pending_space = False
        current.append(chunk)

    while i < n:
        ch = text[i]
        if ch.isspace():
            pending_space = True
            i += 1
        elif text.startswith("--", i) or text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
            pending_space = True
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise CqlSyntaxError("unterminated /* comment")
            i = end + 2
            pending_space = True
        elif ch in "'\"":
            end = _end_of_quoted(text, i, ch)
            emit(text[i:end])
            i = end
        elif text.startswith("$$", i):
            end = text.find("$$", i + 2)
            if end < 0:
                raise CqlSyntaxError("unterminated $$ string")
            emit(text[i : end + 2])
            i = end + 2
        elif ch == ";":
            statement = "".join(current).strip()
            if statement:
                statements.append(statement)
            current.clear()
            pending_space = False
            i += 1
        else:
            emit(ch)
            i += 1
    tail = "".join(current).strip()
    if tail:
        statements.append(tail)
    return statements


def _end_of_quoted(text: str, start: int, quote: str) -> int:
    """Index just past the literal opened at `start`; a doubled quote is an escaped one."""
    i = start + 1
    while True:
        end = text.find(quote, i)
        if end < 0:
            kind = "string literal" if quote == "'" else "quoted identifier"
            raise CqlSyntaxError(f"unterminated {kind}")
        if text.startswith(quote * 2, end):
            i = end + 2
            continue
        return end + 1


def checksum(statements: list[str]) -> str:
    digest = hashlib.sha256()
    for statement in statements:
        digest.update(statement.encode())
        digest.update(b"\x00")
    return digest.hexdigest()

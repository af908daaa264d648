#!/usr/bin/env python3
"""mdBook preprocessor: removes the indentation that code included by anchor keeps.

The guide includes code from the `guide_examples` crate with `{{#include file:anchor}}`. An
anchor inside a function body keeps the body's indentation; this strips the common leading
whitespace of every fenced code block, after the `links` preprocessor has done the includes.
"""
import json
import re
import sys

FENCE = re.compile(r"^(```+)[^\n]*\n(.*?)^\1[ \t]*$", re.S | re.M)


def dedent_block(code: str) -> str:
    lines = code.split("\n")
    indents = [len(l) - len(l.lstrip(" ")) for l in lines if l.strip()]
    cut = min(indents, default=0)
    return "\n".join(l[cut:] if l.strip() else l.strip() for l in lines)


def dedent_fences(text: str) -> str:
    def repl(m: "re.Match[str]") -> str:
        head = m.group(0)[: m.start(2) - m.start(0)]
        tail = m.group(0)[m.end(2) - m.start(0) :]
        return head + dedent_block(m.group(2)) + tail

    return FENCE.sub(repl, text)


def walk(items):
    for item in items:
        chapter = item.get("Chapter") if isinstance(item, dict) else None
        if chapter:
            chapter["content"] = dedent_fences(chapter["content"])
            walk(chapter.get("sub_items", []))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "supports":
        sys.exit(0)  # every renderer
    _context, book = json.load(sys.stdin)
    walk(book.get("sections") or book.get("items") or [])
    json.dump(book, sys.stdout)


if __name__ == "__main__":
    main()

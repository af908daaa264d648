#!/usr/bin/env python3
"""Checks the built book (docs/book) for broken internal links and leftovers of the build.

* every relative `href`/`src` points at a file that exists, and its `#fragment` (if any) at an
  `id` in that file;
* no `{{#include ...}}` or `ANCHOR` marker survived (a missing file), and no code block is
  empty (an anchor that does not exist includes nothing);
* included Rust code was dedented (the dedent preprocessor ran).

Usage: python3 docs/tools/check_links.py [docs/book]   (exit status 1 on any problem)
"""
import html
import os
import re
import sys
from urllib.parse import unquote, urlsplit

ATTR = re.compile(r'\b(?:href|src)="([^"]*)"')
ID = re.compile(r'\bid="([^"]*)"')


def main() -> int:
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "book")
    root = os.path.normpath(root)
    pages = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            if f.endswith(".html"):
                path = os.path.normpath(os.path.join(dirpath, f))
                with open(path, encoding="utf-8") as fh:
                    pages[path] = fh.read()
    if not pages:
        print(f"no HTML pages under {root}: build the book first (mdbook build docs)")
        return 1
    ids = {p: set(html.unescape(i) for i in ID.findall(t)) for p, t in pages.items()}
    problems = []
    for page, text in sorted(pages.items()):
        rel = os.path.relpath(page, root)
        for link in ATTR.findall(text):
            link = html.unescape(link)
            parts = urlsplit(link)
            if parts.scheme or link.startswith("//") or link.startswith("mailto:"):
                continue  # external
            target = page if not parts.path else os.path.normpath(
                os.path.join(os.path.dirname(page), unquote(parts.path)))
            if not os.path.exists(target):
                problems.append(f"{rel}: broken link {link!r} (no {os.path.relpath(target, root)})")
                continue
            frag = unquote(parts.fragment)
            if frag and target.endswith(".html") and frag not in ids.get(target, set()):
                problems.append(f"{rel}: broken anchor {link!r} (no id {frag!r} in {os.path.relpath(target, root)})")
        if "{{#include" in text or "{{#rustdoc_include" in text:
            problems.append(f"{rel}: an include was not resolved")
        if re.search(r"ANCHOR(_END)?:", text):
            problems.append(f"{rel}: an ANCHOR marker is left in the output")
        for block in re.findall(r'<pre><code class="language-[^"]*">(.*?)</code></pre>', text, re.S):
            if not block.strip():
                problems.append(f"{rel}: an empty code block (an include of a missing anchor?)")
        for block in re.findall(r'<code class="language-rust[^"]*">(.*?)</code>', text, re.S):
            first = block.split("\n", 1)[0]
            if first.startswith(" "):
                problems.append(f"{rel}: a Rust block starts indented (did the dedent preprocessor run?)")
                break
    for p in problems:
        print(p)
    print(f"checked {len(pages)} pages: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

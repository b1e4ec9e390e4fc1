"""MkDocs hooks (mkdocs.yml `hooks:`): the files that the topic pages link outside docs/ join the site.

A page in docs/ may link or show a file of the repository beside it — a figure or JSON under
benchmarks/results/, a script under scripts/. On GitHub those links work as written; MkDocs would leave them
out of the site and report them. Here every such file that exists is copied into the site under ``repo/``
(``../benchmarks/results/x.png`` is served as ``repo/benchmarks/results/x.png``) and the link is rewritten to
it, so the figures show and the strict build keeps failing on links that are really broken. Markdown files
outside docs/ (the README) are not copied: the site's home page is docs/index.md.

`FieldDocs`, a griffe extension (mkdocs.yml: mkdocstrings' `extensions`), gives the reference the card's field
descriptions: `zoo.cards` writes them once, as ``name: str = _doc("what it is")`` (they also become the JSON
Schema's descriptions), and griffe, reading the source without running it, would not see them.
`ProseLists`, another, lets a docstring's list follow its lead-in line directly ("Guarantees:" then "- state: …"),
as plain text and GitHub read it; Markdown needs a blank line there, else the list runs into the paragraph.
"""

from __future__ import annotations

import ast
import posixpath
import re
from pathlib import Path
from typing import Any

import griffe
from mkdocs.structure.files import File, Files

REPO = Path(__file__).resolve().parent.parent
PREFIX = "repo"
LINK = re.compile(r"(!?\[[^\]]*\]\()([^)\s#]+)")


def _outside_docs(docs_dir: Path, page_uri: str, target: str) -> str | None:
    """The repository-relative path of ``target`` (a link of the page ``page_uri``) when it is an existing
    non-Markdown file of the repository outside docs/; else None (MkDocs judges the link itself)."""
    if re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:|/", target):
        return None
    path = ((docs_dir / page_uri).parent / target).resolve()
    if path.suffix == ".md" or not path.is_file() or path.is_relative_to(docs_dir):
        return None
    if not path.is_relative_to(REPO):
        return None
    return path.relative_to(REPO).as_posix()


def on_files(files: Files, config: Any) -> Files:
    docs_dir = Path(config.docs_dir).resolve()
    for page in list(files.documentation_pages()):
        for _, target in LINK.findall(page.content_string):
            rel = _outside_docs(docs_dir, page.src_uri, target)
            uri = f"{PREFIX}/{rel}"
            if rel is not None and files.get_file_from_path(uri) is None:
                files.append(File.generated(config, uri, abs_src_path=str(REPO / rel)))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    docs_dir = Path(config.docs_dir).resolve()

    def repoint(match: re.Match[str]) -> str:
        rel = _outside_docs(docs_dir, page.file.src_uri, match.group(2))
        if rel is None:
            return match.group(0)
        here = posixpath.dirname(page.file.src_uri) or "."
        return match.group(1) + posixpath.relpath(f"{PREFIX}/{rel}", here)

    return LINK.sub(repoint, markdown)


class FieldDocs(griffe.Extension):
    """A dataclass whose fields are written ``x: T = _doc("text", ...)`` gets an ``Attributes:`` section, one
    row per field (its type and text), added to its docstring; the fields' ``_doc(...)`` values are not shown."""

    def on_class_members(self, *, node: Any, cls: griffe.Class, **kwargs: Any) -> None:
        rows, documented = [], False
        for statement in getattr(node, "body", []):
            if not (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)):
                continue
            name, text = statement.target.id, ""
            value = statement.value
            if isinstance(value, ast.Call) and getattr(value.func, "id", None) == "_doc" and value.args:
                first = value.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    text, documented = first.value, True
            rows.append(f"    {name} ({ast.unparse(statement.annotation)}): {text or '-'}")
        if not documented:
            return
        head = cls.docstring.value if cls.docstring else ""
        cls.docstring = griffe.Docstring(
            (head + "\n\n" if head else "") + "Attributes:\n" + "\n".join(rows), parent=cls
        )


# A list item right under an unindented line of text.
LIST_AFTER_PROSE = re.compile(r"(?m)^([^\s\-*].*)\n(?=[-*] )")


class ProseLists(griffe.Extension):
    """A blank line before a docstring's list that follows a line of prose (section items, indented, untouched)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None and LIST_AFTER_PROSE.search(obj.docstring.value):
            obj.docstring.value = LIST_AFTER_PROSE.sub(r"\1\n\n", obj.docstring.value)

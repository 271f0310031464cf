"""Every link in README.md and docs/**/*.md points inside the repository, at something that exists.

The rule: everything the documentation links to is inside the repository, so a clone (or an
offline copy) has all of it. Checked for Markdown links and images (``[text](target)``,
``![alt](target)``), reference definitions (``[label]: target``), autolinks (``<scheme:...>``),
bare ``http(s)://`` / ``www.`` URLs (GitHub makes them links) and HTML ``href``/``src``:

- the target is a relative path: no URL scheme (``https:``, ``file:``, ``mailto:``, ...), no
  absolute path, nothing that leaves the repository root (``../`` too far, or a symlink out);
- after dropping a ``#anchor`` it names an existing file or folder, with the exact case;
- a ``#anchor`` on a Markdown file (or on the file itself: ``#anchor``) is one of its headings,
  slugged as GitHub does (lowercase; punctuation other than ``-`` and ``_`` dropped; each space
  becomes ``-``; repeated headings get ``-1``, ``-2``, ...), or an HTML ``id``/``name`` in it.

Fenced code blocks, inline code and HTML comments are not looked at. Pure Python, no Qt.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]

_FENCE_OPEN = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(?P<text>.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_NOT_PARAGRAPH = re.compile(r"^\s*(?:$|#|>|\||[-*+](?:\s|$)|\d+[.)](?:\s|$)|`{3,}|~{3,})")
_CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)")
_ESCAPED = re.compile(r"\\[\[\]()<>!`]")
_INLINE_LINK = re.compile(
    r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]"  # [text], one level of nested brackets (an image)
    r"\(\s*(?P<target><[^<>\n]*>|[^\s()<>]*(?:\([^\s()]*\)[^\s()<>]*)*)"  # target
    r"(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^()]*\)))?\s*\)"  # optional title
)
_REFERENCE = re.compile(r"^ {0,3}\[(?P<label>[^\]]+)\]:\s*(?P<target><[^<>]*>|\S+)")
_AUTOLINK = re.compile(r"<(?P<target>[A-Za-z][A-Za-z0-9+.\-]{1,31}:[^\s<>]*|[^\s<>@]+@[^\s<>@]+)>")
_BARE_URL = re.compile(r"(?<![\w/.\-])(?P<target>(?:https?://|www\.)[^\s<>()\[\]]+)")
_HTML_ATTR = re.compile(
    r"<(?:a|img|source|link|script|iframe)\b[^>]*?\b(?:href|src)\s*=\s*"
    r"(?:\"(?P<dq>[^\"]*)\"|'(?P<sq>[^']*)'|(?P<bare>[^\s>]+))", re.IGNORECASE)
_HTML_ID = re.compile(r"<[A-Za-z][^>]*?\b(?:id|name)\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")


def doc_files(root: Path = ROOT) -> list[Path]:
    """README.md and every Markdown file under docs/."""
    files = [root / "README.md"] if (root / "README.md").is_file() else []
    if (root / "docs").is_dir():
        files += sorted(p for p in (root / "docs").rglob("*.md") if p.is_file())
    return files


def _prose_lines(text: str, blank_code: bool = True) -> list[tuple[int, str]]:
    """(line number, text) of the lines outside fenced code and HTML comments; with
    ``blank_code``, inline code and backslash-escaped brackets are blanked out."""
    out: list[tuple[int, str]] = []
    fence: str | None = None
    in_comment = False
    for number, line in enumerate(text.splitlines(), 1):
        if fence is not None:
            stripped = line.strip()
            if stripped.startswith(fence) and set(stripped) == {fence[0]}:
                fence = None
            continue
        opened = _FENCE_OPEN.match(line)
        if opened and not in_comment and not (opened["fence"][0] == "`" and "`" in opened["info"]):
            fence = opened["fence"]
            continue
        kept = []
        rest = line
        while rest:
            if in_comment:
                end = rest.find("-->")
                if end < 0:
                    rest = ""
                    break
                rest = rest[end + 3:]
                in_comment = False
            else:
                start = rest.find("<!--")
                if start < 0:
                    kept.append(rest)
                    break
                kept.append(rest[:start])
                rest = rest[start + 4:]
                in_comment = True
        prose = "".join(kept)
        if blank_code:
            prose = _ESCAPED.sub("  ", prose)
            prose = _CODE_SPAN.sub(lambda m: " " * len(m.group(0)), prose)
        out.append((number, prose))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text (without the duplicate suffix)."""
    text = re.sub(r"!\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # images → alt text
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # links → their text
    text = re.sub(r"<[^>]+>", "", text)  # HTML tags
    text = text.replace("`", "").replace("*", "").replace("~", "")
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor a Markdown file offers: its headings' slugs and its HTML ids/names."""
    found: set[str] = set()
    counts: dict[str, int] = {}
    previous = ""
    for _number, line in _prose_lines(path.read_text(encoding="utf-8"), blank_code=False):
        heading = None
        atx = _ATX.match(line)
        if atx:
            heading = atx["text"] or ""
        elif _SETEXT.match(line) and previous.strip() and not _NOT_PARAGRAPH.match(previous):
            heading = previous.strip()
        if heading is not None:
            base = slug(heading)
            n = counts.get(base, 0)
            counts[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
        found.update(m.group(1) for m in _HTML_ID.finditer(line))
        previous = "" if heading is not None else line
    return found


def links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every link and image in a Markdown file."""
    out: list[tuple[int, str]] = []
    for number, line in _prose_lines(path.read_text(encoding="utf-8")):
        spans: list[tuple[int, int]] = []
        pos = 0
        while (m := _INLINE_LINK.search(line, pos)) is not None:
            if all(m.end() != end for _start, end in spans):  # ![alt](x) is also [alt](x)
                out.append((number, m["target"]))
                spans.append(m.span())
            pos = m.start() + 1  # also the image inside [![alt](img)](target)
        ref = _REFERENCE.match(line)
        if ref and not ref["label"].startswith("^"):  # [^1]: is a footnote, not a link
            out.append((number, ref["target"]))
            spans.append(ref.span())
        masked = list(line)
        for start, end in spans:
            masked[start:end] = " " * (end - start)
        rest = "".join(masked)
        for m in _AUTOLINK.finditer(rest):
            target = m["target"]
            out.append((number, target if _SCHEME.match(target) else f"mailto:{target}"))
        rest = _AUTOLINK.sub(lambda m: " " * len(m.group(0)), rest)
        for m in _HTML_ATTR.finditer(rest):
            out.append((number, next(g for g in (m["dq"], m["sq"], m["bare"]) if g is not None)))
        rest = _HTML_ATTR.sub(lambda m: " " * len(m.group(0)), rest)
        out.extend((number, m["target"].rstrip(".,;:!?'\"")) for m in _BARE_URL.finditer(rest))
    return out


def _exists_exact(root: Path, rel: Path) -> bool:
    """``root / rel`` exists with exactly this spelling (as on GitHub, whatever the local FS)."""
    here = root
    for part in rel.parts:
        try:
            if part not in os.listdir(here):
                return False
        except (NotADirectoryError, FileNotFoundError, PermissionError):
            return False
        here = here / part
    return True


def check_target(doc: Path, target: str, root: Path,
                 cache: dict[Path, set[str]] | None = None) -> str | None:
    """Why ``target`` (a link in ``doc``) breaks the rule, or None when it is fine."""
    cache = {} if cache is None else cache
    t = target.strip()
    if t.startswith("<") and t.endswith(">"):
        t = t[1:-1].strip()
    if not t:
        return "empty link target"
    if _SCHEME.match(t) or t.lower().startswith("www."):
        return ("points outside the repository (a URL or a drive letter; link to a file in the "
                "repository instead)")
    if t.startswith(("/", "\\")):
        return "absolute path (use a path relative to this file)"
    raw_path, _, anchor = t.partition("#")
    raw_path = unquote(raw_path.split("?", 1)[0])
    if "\\" in raw_path:
        return "backslash in the path (use /)"
    root = root.resolve()
    if raw_path:
        lexical = Path(os.path.normpath(doc.parent.resolve() / raw_path))
        if not lexical.is_relative_to(root):
            return "leaves the repository"
        if not _exists_exact(root, lexical.relative_to(root)):
            return "no such file or folder in the repository"
        if not lexical.resolve().is_relative_to(root):
            return "leaves the repository (through a symlink)"
        linked = lexical
    else:
        linked = doc
    if anchor and linked.is_file() and linked.suffix.lower() in (".md", ".markdown"):
        if linked not in cache:
            cache[linked] = anchors(linked)
        if unquote(anchor) not in cache[linked]:
            return f"no heading '#{anchor}' in {linked.relative_to(root).as_posix()}"
    return None


def broken_links(doc: Path, root: Path = ROOT) -> list[str]:
    """``file:line: target: why`` for every link of ``doc`` that breaks the rule."""
    cache: dict[Path, set[str]] = {}
    rel = doc.resolve().relative_to(root.resolve()).as_posix()
    out = []
    for number, target in links(doc):
        why = check_target(doc, target, root, cache)
        if why is not None:
            out.append(f"{rel}:{number}: {target}: {why}")
    return out


DOCS = doc_files()


@pytest.mark.parametrize("doc", DOCS, ids=[d.relative_to(ROOT).as_posix() for d in DOCS])
def test_links_stay_inside_the_repository(doc: Path) -> None:
    bad = broken_links(doc)
    assert not bad, (f"{len(bad)} link(s) in {doc.relative_to(ROOT).as_posix()} break the rule "
                     "'everything the docs link to is inside the repository':\n  "
                     + "\n  ".join(bad))


def test_the_docs_are_found() -> None:
    names = {d.relative_to(ROOT).as_posix() for d in DOCS}
    assert {"README.md", "docs/cli.md", "docs/standards.md"} <= names


def test_slugs_follow_github() -> None:
    assert slug("`ls --json`") == "ls---json"
    assert slug("Application profiles (PS3.11)") == "application-profiles-ps311"
    assert slug("What PATH and SRC may be") == "what-path-and-src-may-be"
    assert slug("The DICOMDIR (Basic Directory IOD, PS3.3 Annex F)") == \
        "the-dicomdir-basic-directory-iod-ps33-annex-f"
    assert slug("Images: [shown](x.md) *here*") == "images-shown-here"
    assert slug("snake_case and über") == "snake_case-and-über"


def test_the_checker_catches_bad_links(tmp_path: Path) -> None:
    """Planted bad links are all reported, with their line; good ones and code are not."""
    root = tmp_path / "repo"
    (root / "docs" / "img").mkdir(parents=True)
    (root / "docs" / "img" / "shot.png").write_bytes(b"")
    (tmp_path / "outside.md").write_text("# Outside\n", encoding="utf-8")
    (root / "docs" / "guide.md").write_text(
        "# Guide\n\n## `ls --json`\n\n## Same\n\n## Same\n\nTitle\n-----\n\n"
        '<a id="custom"></a>\n', encoding="utf-8")
    good = [
        "[guide](docs/guide.md)", "[json](docs/guide.md#ls---json)",
        "[second](docs/guide.md#same-1)", "[setext](docs/guide.md#title)",
        "[html id](docs/guide.md#custom)", "[folder](docs/)", "[self](#top-heading)",
        "![shot](docs/img/shot.png)", '[titled](docs/guide.md "Guide")',
        "[![shot](docs/img/shot.png)](docs/guide.md)", "[ref]: docs/guide.md",
        "[spaced](<docs/guide.md>)",
    ]
    bad = [
        "[up](../outside.md)", "[abs](/etc/passwd)", "[web](https://example.com/x)",
        "[mail](mailto:someone@example.com)", "[file](file:///etc/passwd)",
        "[gone](docs/missing.md)", "[anchor](docs/guide.md#no-such-heading)",
        "[ref2]: http://example.com", "![pic](docs/img/missing.png)",
        "<https://example.com/auto>", "see https://example.com/bare here",
        "[case](DOCS/guide.md)", "[empty]()", "[win](C:\\Windows\\x.md)",
        "[local](#no-heading-here)", '<img src="https://example.com/badge.svg">',
        "[deep](docs/../../outside.md)",
    ]
    ignored = [
        "```", "[in fence](https://example.com/fenced)", "```",
        "`[inline](https://example.com/code)` and ``[x](/abs)``",
        "<!-- [commented](https://example.com/c) -->", r"\[not a link\](docs/missing.md)",
    ]
    lines = ["# Top heading", "", *good, "", *ignored, "", *bad]
    readme = root / "README.md"
    readme.write_text("\n".join(lines) + "\n", encoding="utf-8")
    if hasattr(os, "symlink"):
        try:
            (root / "escape").symlink_to(tmp_path / "outside.md")
        except OSError:
            pass
        else:
            readme.write_text(readme.read_text(encoding="utf-8") + "[link](escape)\n",
                              encoding="utf-8")
            bad.append("[link](escape)")

    found = broken_links(readme, root)
    numbers = [int(f.split(":")[1]) for f in found]
    expected = [i for i, line in enumerate(readme.read_text(encoding="utf-8").splitlines(), 1)
                if line in bad]
    assert sorted(set(numbers)) == expected, "\n".join(found)
    assert all(f.startswith("README.md:") for f in found)
    assert broken_links(root / "docs" / "guide.md", root) == []

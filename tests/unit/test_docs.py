"""The documentation holds together: citations in code land on a section, links land on a file.

Code comments cite ``docs/istio-semantics.md`` by anchor and its traps by number; the README and
the pages under ``docs/`` link to each other and to files of the repository.  A renamed heading,
a renumbered trap or a moved file breaks them silently, so they are checked here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SEMANTICS = ROOT / "docs" / "istio-semantics.md"

# Where citations of the docs may appear: code, tests, the chart and the build files.
CITING_GLOBS = (
    "webhook/**/*.py",
    "tests/**/*.py",
    "charts/**/*.yaml",
    "charts/**/*.tpl",
    "charts/**/*.txt",
    "Makefile",
    "pyproject.toml",
)

_CITATION = re.compile(r"\bdocs/([\w./-]+\.md)(?:#([\w-]+))?")
_TRAPS = re.compile(r"\btraps? (\d+(?:(?:, | and )\d+)*)")
_EXPLICIT_ANCHOR = re.compile(r"""<a\s+(?:id|name)=["']([^"']+)["']""")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_FENCE = re.compile(r"^\s*(```|~~~)")


def _outside_fences(text: str) -> Iterator[str]:
    """The lines of a markdown document that are not inside fenced code blocks."""
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield line


def heading_slug(heading: str) -> str:
    """The anchor GitHub generates for a markdown heading."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """Every anchor a markdown document defines: explicit ``<a id>`` tags and heading slugs."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in _outside_fences(markdown):
        found.update(_EXPLICIT_ANCHOR.findall(line))
        heading = _HEADING.match(line)
        if heading:
            slug = heading_slug(heading.group(2))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def broken_links(page: Path, root: Path) -> list[str]:
    """Relative links of ``page`` whose file (or anchor in a markdown file) does not exist."""
    problems: list[str] = []
    for line in _outside_fences(page.read_text(encoding="utf-8")):
        for target in _LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            path_part, _, fragment = target.partition("#")
            resolved = (page.parent / path_part).resolve() if path_part else page
            if not resolved.exists():
                problems.append(f"{page.relative_to(root)}: {target} (no such file)")
                continue
            if (
                fragment
                and resolved.suffix == ".md"
                and fragment not in anchors(resolved.read_text(encoding="utf-8"))
            ):
                problems.append(f"{page.relative_to(root)}: {target} (no such anchor)")
    return problems


def citations(files: Iterable[Path], root: Path) -> Iterator[tuple[str, str, str | None]]:
    """``(where, page, anchor or None)`` for every citation of a docs page in ``files``."""
    for path in files:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for page, anchor in _CITATION.findall(line):
                yield f"{path.relative_to(root)}:{number}", page, anchor or None


def trap_numbers(files: Iterable[Path], root: Path) -> Iterator[tuple[str, int]]:
    """``(where, n)`` for every "trap n" / "traps n and m" mentioned in ``files``."""
    for path in files:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for group in _TRAPS.findall(line):
                for n in re.findall(r"\d+", group):
                    yield f"{path.relative_to(root)}:{number}", int(n)


def _citing_files(root: Path) -> list[Path]:
    files: set[Path] = set()
    for pattern in CITING_GLOBS:
        files.update(p for p in root.glob(pattern) if p.is_file() and ".venv" not in p.parts)
    return sorted(files)


def _markdown_pages(root: Path) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def test_every_docs_citation_in_code_names_an_existing_section() -> None:
    found = list(citations(_citing_files(ROOT), ROOT))
    assert found, "no docs/ citation found: the scan itself is broken"
    missing = []
    for where, page, anchor in found:
        target = ROOT / "docs" / page
        if not target.is_file():
            missing.append(f"{where}: docs/{page} does not exist")
        elif anchor and anchor not in anchors(target.read_text(encoding="utf-8")):
            missing.append(f"{where}: docs/{page}#{anchor} has no such section")
    assert missing == []


def test_every_trap_mentioned_in_code_is_a_numbered_trap_of_the_semantics_page() -> None:
    defined = anchors(SEMANTICS.read_text(encoding="utf-8"))
    mentioned = list(trap_numbers(_citing_files(ROOT), ROOT))
    assert mentioned, "no trap mentioned anywhere: the scan itself is broken"
    missing = [f"{where}: trap {n}" for where, n in mentioned if f"trap-{n}" not in defined]
    assert missing == []


def test_every_relative_link_in_the_readme_and_docs_resolves() -> None:
    pages = _markdown_pages(ROOT)
    assert len(pages) > 1
    problems = [problem for page in pages for problem in broken_links(page, ROOT)]
    assert problems == []


def test_readme_is_an_entry_page_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) < 175
    assert "make run " in readme
    assert "make test " in readme
    assert "`.ci/run` runs exactly `make test`" in readme


@pytest.mark.parametrize(
    ("heading", "slug"),
    [
        ("1. Host names and the cluster domain", "1-host-names-and-the-cluster-domain"),
        ("2.3 `exportTo` and `egressProxy`", "23-exportto-and-egressproxy"),
        ("Security model: the compromised tenant", "security-model-the-compromised-tenant"),
        ("DELETE and UPDATE", "delete-and-update"),
    ],
)
def test_heading_slugs_follow_github(heading: str, slug: str) -> None:
    assert heading_slug(heading) == slug


def test_anchors_ignore_headings_inside_code_blocks_and_number_duplicates() -> None:
    markdown = '# Title\n\n```sh\n# not a heading\n```\n\n## Part\n\n## Part\n\n<a id="x-1"></a>\n'
    assert anchors(markdown) == {"title", "part", "part-1", "x-1"}


def test_broken_links_reports_missing_files_and_anchors(tmp_path: Path) -> None:
    (tmp_path / "pages").mkdir()
    (tmp_path / "pages" / "a.md").write_text("# A\n\n## Known\n", encoding="utf-8")
    page = tmp_path / "README.md"
    page.write_text(
        "[ok](pages/a.md#known) [web](https://example.com/x) [self](#top)\n"
        "# Top\n"
        "[gone](pages/b.md) [bad anchor](pages/a.md#unknown)\n"
        "```\n[in code](pages/c.md)\n```\n",
        encoding="utf-8",
    )
    assert broken_links(page, tmp_path) == [
        "README.md: pages/b.md (no such file)",
        "README.md: pages/a.md#unknown (no such anchor)",
    ]


def test_citation_and_trap_scans_read_what_comments_write(tmp_path: Path) -> None:
    source = tmp_path / "check.py"
    source.write_text(
        "# see docs/istio-semantics.md#sidecar-precedence, trap 8\n"
        "# and docs/policy.md; traps 12 and 16; bootstrap 3 is not a trap\n",
        encoding="utf-8",
    )
    assert list(citations([source], tmp_path)) == [
        ("check.py:1", "istio-semantics.md", "sidecar-precedence"),
        ("check.py:2", "policy.md", None),
    ]
    assert list(trap_numbers([source], tmp_path)) == [
        ("check.py:1", 8),
        ("check.py:2", 12),
        ("check.py:2", 16),
    ]

"""Cross-file context: folder walk filters, retrieval, exclusion, budget, LRU, stability
(completion/project/snippets.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import pytest

from completion.project.snippets import SnippetIndex, identifiers

ROOT = Path(__file__).resolve().parents[1]

GEOMETRY = '''"""Plane geometry helpers."""

import math


def distance(a, b):
    return math.hypot(b[0] - a[0], b[1] - a[1])


def midpoint(a, b):
    return ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)


def perimeter(vertices):
    total = 0.0
    for i, point in enumerate(vertices):
        total += distance(point, vertices[i - 1])
    return total


def polygon_area(vertices):
    """Shoelace formula; vertices in order."""
    twice = 0.0
    for (x0, y0), (x1, y1) in zip(vertices, vertices[1:] + vertices[:1]):
        twice += x0 * y1 - x1 * y0
    return abs(twice) / 2


class BoundingBox:
    def __init__(self, left, bottom, right, top):
        self.left, self.bottom, self.right, self.top = left, bottom, right, top

    @classmethod
    def from_points(cls, points):
        xs = [p[0] for p in points]
        ys = [p[1] for p in points]
        return cls(min(xs), min(ys), max(xs), max(ys))
'''

TEXTUTIL = '''"""String helpers."""

import re


def slugify(title):
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def truncate_words(sentence, limit):
    words = sentence.split()
    return " ".join(words[:limit])
'''

MAIN = """from pkg.geometry import BoundingBox, polygon_area
from pkg.textutil import slugify


def report(name, vertices):
    print(slugify(name), polygon_area(vertices))
"""

# Text around the cursor while editing main.py: names defined in pkg/geometry.py.
QUERY = """def plot_outline(vertices, points):
    area = polygon_area(vertices)
    box = BoundingBox.from_points(points)
    twice = area * 2
"""


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A small project plus everything the walk must skip."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "geometry.py").write_text(GEOMETRY)
    (pkg / "textutil.py").write_text(TEXTUTIL)
    (tmp_path / "main.py").write_text(MAIN)
    (tmp_path / "README.md").write_text("polygon_area BoundingBox from_points\n")
    decoy = "def polygon_area(vertices):\n    return BoundingBox.from_points(vertices)\n"
    for skipped in (".venv/lib/site-packages", "node_modules", ".hidden", "build", "pkg/__pycache__"):
        (tmp_path / skipped).mkdir(parents=True)
        (tmp_path / skipped / "decoy.py").write_text(decoy)
    (pkg / "blob.py").write_bytes(decoy.encode() + b"\0\x01\x02")
    (pkg / "latin1.py").write_bytes(decoy.encode() + "# café\n".encode("latin-1"))
    (pkg / "huge.py").write_text(decoy * 1000)  # ~70 KB, over the 20 KB limit below
    return tmp_path


def make_index(**kwargs: int) -> SnippetIndex:
    return SnippetIndex(**{"chunk_lines": 8, "stride": 4, "max_file_bytes": 20_000, **kwargs})


def rooted(root: Path, **kwargs: int) -> SnippetIndex:
    """An index that has walked `root` (empty or not): its open documents may join."""
    index = make_index(**kwargs)
    index.index_folder(str(root))
    return index


def indexed(workspace: Path) -> SnippetIndex:
    index = make_index()
    assert index.index_folder(str(workspace)) == 4
    return index


def test_index_folder_skips_environments_binaries_non_utf8_and_huge_files(workspace: Path) -> None:
    index = indexed(workspace)
    for name in ("pkg/__init__.py", "pkg/geometry.py", "pkg/textutil.py", "main.py"):
        assert str(workspace / name) in index
    paths = {s.path for s in index.snippets(QUERY + MAIN + TEXTUTIL, limit=100)}
    assert paths == {"pkg/geometry.py", "pkg/textutil.py", "main.py"}  # relative display paths, nothing skipped


def test_retrieval_finds_the_chunks_defining_the_names_at_the_cursor(workspace: Path) -> None:
    found = indexed(workspace).snippets(QUERY, exclude=str(workspace / "main.py"))
    assert [s.path for s in found[:2]] == ["pkg/geometry.py"] * 2
    best = found[0].text + found[1].text
    assert "def polygon_area(vertices):" in best and "def from_points(cls, points):" in best
    for s in found:  # start_line is the 0-based line of the text in its file
        assert s.text.split("\n") == GEOMETRY.split("\n")[s.start_line : s.start_line + s.text.count("\n") + 1]


def test_nothing_relevant_gives_nothing(workspace: Path) -> None:
    index = indexed(workspace)
    for query in ("", "if x:\n    return None", "unrelated_name another_one"):
        assert index.snippets(query) == []
        assert index.render(query, exclude=None, budget_chars=10_000) == ""


def test_exclude_matches_the_disk_copy_when_given_as_uri(workspace: Path) -> None:
    index = indexed(workspace)
    uri = (workspace / "pkg" / "geometry.py").as_uri()
    index.update(uri, GEOMETRY + "\ndef polygon_area_3d(vertices):\n    pass\n")
    assert len(index) == 4  # the open buffer replaced the disk copy: one key per file
    assert "polygon_area_3d" in index.snippets("polygon_area_3d vertices")[0].text
    assert all(s.path != "pkg/geometry.py" for s in index.snippets(QUERY, exclude=uri))
    assert "pkg/geometry.py" not in index.render(QUERY, exclude=uri, budget_chars=10_000)


def test_snippets_of_one_file_do_not_overlap(workspace: Path) -> None:
    found = indexed(workspace).snippets(QUERY + GEOMETRY, limit=100)
    spans = sorted((s.path, s.start_line, s.start_line + s.text.count("\n") + 1) for s in found)
    for (p0, _, end0), (p1, start1, _) in pairwise(spans):
        assert p0 != p1 or end0 <= start1


def test_order_follows_jaccard_similarity(tmp_path: Path) -> None:
    index = rooted(tmp_path)
    index.update(str(tmp_path / "geometry.py"), GEOMETRY)
    query = identifiers(QUERY)
    found = index.snippets(QUERY, limit=100)
    jaccard = [len(query & identifiers(s.text)) / len(query | identifiers(s.text)) for s in found]
    assert jaccard == sorted(jaccard, reverse=True) and jaccard[-1] > 0
    assert all(s.score == pytest.approx(found[0].score / jaccard[0] * j) for s, j in zip(found, jaccard, strict=True))


def test_wide_chunks_count_exactly(tmp_path: Path) -> None:
    """A chunk with more than 255 distinct names needs 2-byte counters."""
    names = [f"name_{i}" for i in range(300)]
    index = rooted(tmp_path)
    index.update(str(tmp_path / "wide.py"), " ".join(names))
    [many] = index.snippets(" ".join(names[:280]))  # Jaccard 280/300: would overflow a 1-byte counter
    [few] = index.snippets(" ".join(names[:10]))  # Jaccard 10/300
    assert many.score / few.score == pytest.approx(28)


def test_recency_breaks_ties(tmp_path: Path) -> None:
    index = rooted(tmp_path)
    index.update(str(tmp_path / "a.py"), GEOMETRY)
    index.update(str(tmp_path / "b.py"), GEOMETRY)
    assert index.snippets(QUERY)[0].path == "b.py"
    index.update(str(tmp_path / "a.py"), GEOMETRY)  # edited again: the most recently touched
    assert index.snippets(QUERY)[0].path == "a.py"


@pytest.mark.parametrize("budget", [0, 40, 200, 400, 700, 1500, 10_000])
def test_render_respects_budget_with_whole_snippets(workspace: Path, budget: int) -> None:
    index = indexed(workspace)
    block = index.render(QUERY, exclude=str(workspace / "main.py"), budget_chars=budget)
    assert len(block) <= budget
    if block:
        assert block.endswith("\n") and block.startswith("# Path: ")
        sources = {"pkg/geometry.py": GEOMETRY, "pkg/textutil.py": TEXTUTIL}
        for part in block[:-1].split("\n\n"):
            header, *lines = part.split("\n")
            source = sources[header.removeprefix("# Path: ")]
            text = "\n".join(line.removeprefix("#").removeprefix(" ") for line in lines)
            assert text in source and all(line.startswith("#") for line in lines)
    if budget >= 1500:  # the best snippet comes last, next to the code being completed: a whole definition
        assert block.split("\n\n")[-1] == "# Path: pkg/geometry.py\n" + "".join(
            f"# {line}\n" for line in GEOMETRY[GEOMETRY.index("def polygon_area") :].split("\n\n\n")[0].split("\n")
        )


def test_render_format(tmp_path: Path) -> None:
    index = SnippetIndex()
    index.index_folder(str(tmp_path))
    index.update((tmp_path / "pkg" / "util.py").as_uri(), "def helper(x):\n\n    return x + 1\n")
    index.update((tmp_path / "pkg" / "other.py").as_uri(), "def helper_two(y):\n    return helper(y)\n")
    assert index.render("helper(x)", exclude=None, budget_chars=1000) == (
        "# Path: pkg/other.py\n# def helper_two(y):\n#     return helper(y)\n"
        "\n"
        "# Path: pkg/util.py\n# def helper(x):\n#\n#     return x + 1\n"
    )
    assert index.render("helper(x)", exclude=None, budget_chars=60) == (
        "# Path: pkg/util.py\n# def helper(x):\n#\n#     return x + 1\n"
    )


def test_lru_eviction_drops_least_recently_touched(tmp_path: Path) -> None:
    index = rooted(tmp_path, max_files=2)
    a, b, c = (str(tmp_path / n) for n in ("a.py", "b.py", "c.py"))
    index.update(a, "alpha_name = 1")
    index.update(b, "beta_name = 1")
    index.update(a, "alpha_name = 1")
    index.update(c, "gamma_name = 1")
    assert a in index and c in index and b not in index
    assert index.snippets("beta_name") == []


def test_folder_walk_never_evicts_open_documents(workspace: Path) -> None:
    index = make_index(max_files=3)
    index.index_folder(str(workspace / "pkg"))  # fills the index, and lets the workspace's documents in below
    first, second = (workspace / "pkg" / "new_1.py").as_uri(), (workspace / "pkg" / "new_2.py").as_uri()
    index.remove(str(workspace / "pkg" / "textutil.py"))
    index.update(first, "open_buffer_name = 1")
    assert index.index_folder(str(workspace)) == 0  # full: main.py waits
    assert len(index) == 3 and first in index
    index.update(second, "second_buffer = 2")  # evicts a disk file, not the open buffer
    assert first in index and second in index and len(index) == 3


def test_remove_and_oversized_update(tmp_path: Path) -> None:
    index = rooted(tmp_path)
    a = str(tmp_path / "a.py")
    index.update(a, GEOMETRY)
    index.remove(a)
    index.remove("never-added.py")
    assert len(index) == 0 and index.snippets(QUERY) == []
    index.update(a, GEOMETRY)
    index.update(a, GEOMETRY * 100)  # grew past max_file_bytes: dropped rather than kept stale
    assert a not in index


def test_index_folder_honours_should_stop_and_max_files(workspace: Path) -> None:
    assert make_index().index_folder(str(workspace), should_stop=lambda: True) == 0
    polls = 0

    def stop_after_two() -> bool:
        nonlocal polls
        polls += 1
        return polls > 2

    index = make_index()  # polled before README.md, main.py, then stops: the walk is sorted, top folder first
    assert index.index_folder(str(workspace), should_stop=stop_after_two) == 1 and polls == 3
    assert str(workspace / "main.py") in index and len(index) == 1
    assert make_index().index_folder(str(workspace), max_files=1) == 1


def test_open_buffers_are_not_overwritten_by_the_disk(workspace: Path) -> None:
    index = make_index()
    index.index_folder(str(workspace / "pkg"))
    index.update(str(workspace / "main.py"), "buffer_only_name = 1")  # not a file of pkg/: left out
    assert str(workspace / "main.py") not in index
    index.index_folder(str(workspace))  # its folder is walked: from now on it joins
    index.update(str(workspace / "main.py"), "buffer_only_name = 1")
    assert index.index_folder(str(workspace)) == 0
    assert index.snippets("buffer_only_name")[0].path == "main.py"


def test_render_is_stable_across_processes(workspace: Path) -> None:
    """Same index state and query give the same string, whatever the hash seed (set order varies with it)."""
    script = (
        "import sys; from completion.project.snippets import SnippetIndex\n"
        "index = SnippetIndex(chunk_lines=8, stride=4)\n"
        "index.index_folder(sys.argv[1]); m = sys.argv[1] + '/main.py'; index.update(m, open(m).read())\n"
        f"sys.stdout.write(index.render({QUERY + MAIN!r}, exclude=None, budget_chars=2000))\n"
    )
    outputs = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
        run = subprocess.run([sys.executable, "-c", script, str(workspace)], capture_output=True, text=True, env=env)
        assert run.returncode == 0, run.stderr
        outputs.add(run.stdout)
    assert len(outputs) == 1 and outputs.pop().startswith("# Path: ")


def test_many_files_answer_from_the_right_chunk(tmp_path: Path) -> None:
    """The size the time budget is set for (200 files x 500 lines); correctness only, no timing."""
    index = SnippetIndex()
    index.index_folder(str(tmp_path))
    for f in range(200):
        lines = [
            f"def func_{f}_{i}(arg_{i % 7}, value):\n    return helper_{i % 13}(arg_{i % 7}) + value"
            for i in range(250)
        ]
        index.update(str(tmp_path / f"mod_{f}.py"), "\n".join(lines))
    found = index.snippets("result = func_123_200(arg_5, value) + func_123_201(arg_6, value)")
    # Each function is a chunk of its own: func_123_201's shares three names with the query (func_123_200's two).
    assert found[0].path == "mod_123.py" and found[0].text == lines[201].replace("func_199_", "func_123_")
    assert len(index.render("helper_3 arg_2", exclude=None, budget_chars=3000)) <= 3000


def test_bad_arguments_raise() -> None:
    for kwargs in ({"chunk_lines": 0}, {"stride": 0}, {"stride": 30}, {"max_files": 0}, {"max_file_bytes": 0}):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            SnippetIndex(**kwargs)
    with pytest.raises(ValueError, match="budget_chars"):
        SnippetIndex().render("x", exclude=None, budget_chars=-1)

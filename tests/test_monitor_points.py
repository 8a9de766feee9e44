"""The dereference-monitor benchmark's point set: the selection rules on a small fixture tree,
and the shipped file against the installed jedi/parso/pygls sources."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest

from benchmarks import monitor_points as mp
from benchmarks.monitors import receiver_kind

SHIPPED = Path(__file__).resolve().parent.parent / "benchmarks" / "data" / "monitor_points.jsonl.gz"


def _module(tag: str, n: int) -> str:
    """A self-heavy module with many distinct receivers and every kind of non-point."""
    lines = [
        '"""Docstring mentioning self.not_a_point and os.path."""',
        "import os.path",
        "from collections import abc",
        "from .pkg.sub import (",
        "    thing,",
        ")",
        "",
        "",
        "@functools.lru_cache(maxsize=None)",
        f"def helper_{tag}(value):",
        "    # a comment with value.not_a_point",
        "    text = 'value.in_a_string'",
        "    number = 1.5.real + 1 .imag",
        "    return os.path.join(text, str(number))",
        "",
        "",
        f"class Thing_{tag}:",
        "    @property",
        "    def name(self):",
        "        return self._name",
        "",
    ]
    for i in range(n):
        lines += [
            f"    def method_{i}(self, obj_{i}, rows):",
            f"        self.alpha_{i} = obj_{i}.beta_{i}",
            f"        self.gamma_{i}(rows[{i}].delta_{i})",
            f"        if self.eta_{i}:",
            f"            self.theta_{i}.append(rows[{i}].delta_{i})",
            f"        result = helper_{tag}(obj_{i}).epsilon_{i}",
            f"        name_{i}.name_{i}  # trivial: the receiver is the same name",
            f"        x = other.zeta_{i} < other.zeta_{i}",
            "",
        ]
    return "\n".join(lines) + "\n"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    files = {
        "jedi/api/one.py": _module("a", 12),
        "jedi/api/two.py": _module("n", 6),
        "jedi/inference/three.py": _module("b", 10),
        "parso/four.py": _module("c", 8),
        "parso/python/five.py": _module("o", 5),
        "pygls/six.py": _module("d", 9),
        "pygls/server/seven.py": _module("e", 7),
        "pygls/eight.py": _module("p", 6),
        "jedi/third_party/skip.py": _module("f", 8),
        "jedi/third_party/typeshed/stdlib/skip.py": _module("g", 8),
        "parso/tests/skip.py": _module("h", 8),
        "pygls/test/skip.py": _module("i", 8),
        "jedi/stub.pyi": _module("j", 8),
        "jedi/small.py": "import os\nos.getcwd()\n",
        "jedi/large.py": _module("k", 400),
        "other/skip.py": _module("l", 8),
        "jedi/crlf.py": _module("m", 8).replace("\n", "\r\n"),
    }
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8"))
    return tmp_path


def _check_point(point: dict) -> None:
    text, offset, target = point["text"], point["offset"], point["target"]
    assert text[offset - 1] == "."
    assert text[offset : offset + len(target)] == target
    after = text[offset + len(target) : offset + len(target) + 1]
    assert not (after.isalnum() or after == "_"), point["id"]
    assert target.isidentifier()
    line_start = text.rfind("\n", 0, offset) + 1
    before_dot = text[line_start : offset - 1]
    assert before_dot.endswith(point["receiver"])
    assert not before_dot.lstrip().startswith(("import ", "from ", "@"))
    assert set(point) == {"id", "path", "text", "offset", "target", "receiver"}


def _check_mix(points: list[dict]) -> None:
    n = len(points)
    mix = Counter(p["receiver"] for p in points)
    assert mix["self"] <= mp.SELF_SHARE * n
    assert all(v <= mp.OTHER_SHARE * n for k, v in mix.items() if k != "self"), mix.most_common(3)
    assert max(Counter(p["path"] for p in points).values()) <= mp.MAX_PER_FILE


def test_find_dereferences_rules() -> None:
    found = mp.find_dereferences(_module("z", 1))
    sites = {(d.receiver, d.target) for d in found}
    # first dereference on each line only; nothing from strings, comments, imports, decorators, numbers
    assert sites == {
        ("os", "path"),
        ("self", "_name"),
        ("self", "alpha_0"),
        ("self", "gamma_0"),
        ("self", "eta_0"),
        ("self", "theta_0"),
        (")", "epsilon_0"),
        ("name_0", "name_0"),
        ("other", "zeta_0"),
    }
    assert {d.target for d in found if d.trivial} == {"name_0"}  # the receiver is the same name
    text = "def f(a, b):\n    return a.value < b.value, b.other\n"
    (only,) = mp.find_dereferences(text)
    assert (only.receiver, only.target, only.trivial) == ("a", "value", False)
    assert mp.find_dereferences("x = [y.attr for y in ys]\ny = (a).b + c[0].d\n")[1].receiver == ")"
    assert mp.find_dereferences("value = value.value\n")[0].trivial
    assert mp.find_dereferences("x = (\n    a\n    .b)\nf(g. h)\nNone.x\nz = 'a'.join(q)\n") == []
    assert mp.find_dereferences("def broken(:\n  (\n") == []


def test_source_files_skips(tree: Path) -> None:
    assert mp.source_files(tree) == [
        "jedi/api/one.py",
        "jedi/api/two.py",
        "jedi/crlf.py",
        "jedi/inference/three.py",
        "parso/four.py",
        "parso/python/five.py",
        "pygls/eight.py",
        "pygls/server/seven.py",
        "pygls/six.py",
    ]
    assert mp.read_source(tree / "jedi/crlf.py") is None


def test_points_follow_the_rules(tree: Path) -> None:
    points = mp.generate(tree, count=40, seed=0)
    assert len(points) == 40
    assert {p["path"] for p in points} == set(mp.source_files(tree)) - {"jedi/crlf.py"}
    for point in points:
        _check_point(point)
        assert (tree / point["path"]).read_text(encoding="utf-8") == point["text"]
    _check_mix(points)
    assert Counter(p["receiver"] for p in points)["self"] == int(mp.SELF_SHARE * 40)  # the cap binds here
    assert len({p["id"] for p in points}) == len(points)
    assert points == sorted(points, key=lambda p: (p["path"], p["offset"]))


def test_caps_shrink_count_when_short(tree: Path) -> None:
    points = mp.generate(tree, count=500, seed=0)  # 8 files x 6 per file = 48 at most
    assert 0 < len(points) <= 48
    _check_mix(points)


def test_deterministic(tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = mp.generate(tree, count=25, seed=3)
    assert mp.generate(tree, count=25, seed=3) == first
    assert mp.encode(first) == mp.encode(mp.generate(tree, count=25, seed=3))
    assert mp.generate(tree, count=25, seed=4) != first
    out_a, out_b = tmp_path / "a" / "p.jsonl.gz", tmp_path / "b.jsonl.gz"
    assert mp.main(["--root", str(tree), "--count", "25", "--seed", "3", "--out", str(out_a)]) == 0
    assert mp.main(["--root", str(tree), "--count", "25", "--seed", "3", "--out", str(out_b)]) == 0
    assert out_a.read_bytes() == out_b.read_bytes()
    assert mp.load_points(out_a) == first
    printed = capsys.readouterr().out
    assert "25 points from" in printed and "self" in printed and "bytes gzipped" in printed


def _shipped() -> list[dict]:
    with gzip.open(SHIPPED, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_shipped_points_match_installed_files() -> None:
    points = _shipped()
    root = mp.project_root()
    assert len(points) >= 240
    assert len({p["path"] for p in points}) >= 60
    assert {p["path"].split("/", 1)[0] for p in points} == set(mp.PACKAGES)
    assert SHIPPED.stat().st_size < 1_500_000
    texts: dict[str, str] = {}
    for point in points:
        path = point["path"]
        if path not in texts:
            texts[path] = (root / path).read_text(encoding="utf-8")
        assert texts[path] == point["text"], f"{path} differs from the installed file; regenerate the points"
        _check_point(point)
    _check_mix(points)


def test_shipped_points_regenerate() -> None:
    """The shipped file is what the generator makes from the installed packages."""
    assert mp.generate(mp.project_root()) == _shipped()


@pytest.mark.parametrize(
    ("line", "receiver", "kind"),
    [
        ("self.", "self", "self"),
        ("cls.", "cls", "self"),
        ("f(x).", ")", "chain"),
        ("a.b.", "b", "chain"),
        ("os.", "os", "module"),
        ("np.", "np", "module"),
        ("helpers.", "helpers", "module"),  # `from . import helpers`: a module file beside this one
        ("Thing.", "Thing", "imported"),
        ("value.", "value", "local"),
    ],
)
def test_receiver_kinds_are_read_from_the_file(tmp_path: Path, line: str, receiver: str, kind: str) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "helpers.py").write_text("")
    head = "import os\nimport numpy as np\nfrom . import helpers\nfrom .models import Thing\nvalue = 1\n"
    text = head + line + "x\n"
    point = {"receiver": receiver, "text": text, "offset": len(head + line), "path": "pkg/mod.py"}
    assert receiver_kind(point, str(tmp_path)) == kind

"""``reprokit report``: one self-contained HTML page about real recorded runs (issue 13, item 3).

The runs are recorded by real scripts in a real git repository, replayed, checked and swept
over seeds by the real CLI; the pages are read back with an HTML parser, and (where Debian's
``chromium`` is installed) rendered in headless Chromium: the page renders, the curves are
visible in a screenshot, and the console shows no Content-Security-Policy violation.
"""

from __future__ import annotations

import base64
import hashlib
import html.parser
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path

import pytest

import reprokit
from reprokit._verbs.audit import summarize
from reprokit._verbs.report import PALETTE, _ticks
from tests.conftest import clean_env, cli, git, make_repo

TRAIN = """
import random, sys, reprokit

@reprokit.track
def train(lr=0.1, epochs=20, seed=0):
    random.seed(seed)
    loss = 2.0
    for e in range(epochs):
        loss = loss * (1 - lr) + 0.05 * random.random()
        reprokit.log_metric("loss", loss, step=e)
        reprokit.log_metric("acc", 1 - loss / 2, step=e)
    return {"loss": loss}

if __name__ == "__main__":
    train(lr=float(sys.argv[1]))
"""

# Noise no seed controls: a determinism check finds it.
NOISY = """
import os, reprokit

@reprokit.track
def noisy():
    for i in range(3):
        reprokit.log_metric("noise", os.urandom(1)[0], step=i)

noisy()
"""

# A run whose name, params and metric name try to break out of the page's markup.
HOSTILE = """
import reprokit
with reprokit.run("</svg><script>alert(1)</script>", seed=1,
                  params={"note": "<script>alert(2)</script>", "lr": "</svg><img src=x>"}) as r:
    for i in range(5):
        r.log_metric("</svg>loss", 1.0 / (i + 1), step=i)
"""

HOSTILE_BITS = ("<script", "</svg><", "<img")


class Page(html.parser.HTMLParser):
    """Every start tag with its attributes, and the text of the page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.ends: list[str] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self.ends.append(tag)

    def handle_endtag(self, tag: str) -> None:
        self.ends.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def all(self, tag: str, **attrs: str) -> list[dict[str, str | None]]:
        return [
            a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items())
        ]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Three runs of a training script (lr 0.1, 0.2, 0.05; the first two under different
    OMP_NUM_THREADS), a replay and a determinism check of the first, a 4-seed sweep of it, and
    one hostile run."""
    repo = make_repo(tmp_path_factory.mktemp("report") / "repo", {"train.py": TRAIN})
    (repo / "hostile.py").write_text(HOSTILE)
    (repo / "noisy.py").write_text(NOISY)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "hostile")
    ids = []
    for lr, threads in (("0.1", "1"), ("0.2", "2"), ("0.05", "2")):
        env = clean_env(OMP_NUM_THREADS=threads, PYTHONHASHSEED="0")
        proc = subprocess.run(
            [sys.executable, "train.py", lr], cwd=repo, env=env, capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr
        ids.append(reprokit.load("latest", store=repo / ".reprokit").id)
    first = ids[0]
    replayed = cli(repo, "replay", first, "-q")
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    checked = cli(repo, "check", first)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    swept = cli(repo, "seeds", first, "--seeds", "0-3", "--json")
    assert swept.returncode == 0, swept.stderr
    sweep = json.loads(swept.stdout)
    found = {}
    for script in ("hostile.py", "noisy.py"):
        proc = subprocess.run(
            [sys.executable, script], cwd=repo, env=clean_env(), capture_output=True
        )
        assert proc.returncode == 0, proc.stderr
        found[script] = reprokit.load("latest", store=repo / ".reprokit").id
    noisy = cli(repo, "check", found["noisy.py"])
    assert noisy.returncode == 1, noisy.stdout + noisy.stderr
    return {
        "repo": repo,
        "ids": ids,
        "sweep": sweep,
        "hostile": found["hostile.py"],
        "noisy": found["noisy.py"],
    }


def report(runs: dict, *refs: str, name: str = "report.html") -> tuple[str, Page]:
    out = runs["repo"].parent / name
    proc = cli(runs["repo"], "report", *refs, "-o", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = out.read_text(encoding="utf-8")
    return text, Page(text)


def rows(page_text: str, section: str) -> list[str]:
    """The table rows of one section (between its h2 and the next)."""
    part = page_text.split(f'<h2 id="{section}">', 1)[1].split("<h2", 1)[0]
    return re.findall(r"<tr[^>]*>.*?</tr>", part, flags=re.S)


def test_params_are_side_by_side_with_differences_marked(runs):
    text, _ = report(runs, *runs["ids"])
    by_key = {re.search(r"<th[^>]*>([^<]*)</th>", r).group(1): r for r in rows(text, "params")}
    assert 'class="differs"' in by_key["lr"]
    assert [c for c in re.findall(r'<td class="mono">([^<]*)</td>', by_key["lr"])] == [
        "0.1",
        "0.2",
        "0.05",
    ]
    assert 'class="differs"' not in by_key["epochs"] and 'class="differs"' not in by_key["seed"]


def test_each_metric_is_one_chart_with_every_runs_curve_and_a_legend(runs):
    text, page = report(runs, *runs["ids"])
    charts = text.split('<svg class="chart"')[1:]
    assert len(charts) == 2  # acc and loss
    for chart, metric in zip(charts, ("acc", "loss"), strict=True):
        assert f"<title>{metric}</title>" in chart
        strokes = re.findall(r'<path d="M[^"]+" fill="none" stroke="(#[0-9a-f]{6})"', chart)
        assert strokes == list(PALETTE[:3])
        ticks = re.findall(r'text-anchor="middle">([^<]+)</text>', chart)
        assert "0" in ticks and "step" in ticks  # x ticks from step 0, the axis label
    legend = [li for li in text.split('<ul class="legend">')[1].split("</ul>")[0].split("<li>")]
    assert sum(m[-6:] in "".join(legend) for m in runs["ids"]) == 3
    assert not page.all("script")


def test_user_data_cannot_inject_markup(runs):
    text, page = report(runs, runs["hostile"], runs["ids"][0])
    for bit in HOSTILE_BITS:
        assert bit not in text.lower()
    assert not page.all("script") and not page.all("img")
    assert page.ends.count("svg") == len(page.all("svg"))  # no </svg> came from the data
    shown = "".join(page.text)
    assert "</svg><script>alert(1)</script>" in shown  # shown as text
    assert "<script>alert(2)</script>" in shown and "</svg>loss" in shown


def test_page_loads_nothing_and_allows_only_its_own_style(runs):
    text, page = report(runs, *runs["ids"])
    (csp,) = page.all("meta", **{"http-equiv": "Content-Security-Policy"})
    policy = dict(p.strip().split(" ", 1) for p in str(csp["content"]).split(";"))
    assert policy["default-src"] == "'none'" and policy["img-src"] == "'none'"
    style = text.split("<style>", 1)[1].split("</style>", 1)[0]
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert policy["style-src"] == f"'sha256-{digest}'"
    for tag, attrs in page.tags:
        assert tag not in ("script", "link", "iframe", "object", "embed", "img"), tag
        for name in attrs:
            assert name not in ("src", "href", "style") and not name.startswith("on"), (tag, name)


def test_seed_sweep_gets_its_robustness_section_with_a_confidence_band(runs):
    text, _ = report(runs, runs["sweep"]["group"])
    section = text.split('id="seeds-1">', 1)[1].split('<h2 id="verdicts">', 1)[0]
    assert runs["sweep"]["group"] in section
    assert section.count("<polygon") == 2 + 3  # loss and acc curves; 3 final results
    values = runs["sweep"]["results"]["metric loss"]["values"]
    expect = summarize(values)
    row = next(r for r in rows(text, "seeds-1") if ">metric loss<" in r)
    assert f"{expect['mean']:.6g}" in row
    assert f"[{expect['ci95'][0]:.6g}, {expect['ci95'][1]:.6g}]" in row
    assert "seeds 0, 1, 2, 3" in section


def test_replay_and_check_verdicts_are_shown(runs):
    text, _ = report(runs, runs["ids"][0])
    verdicts = rows(text, "verdicts")[1:]
    kinds = sorted(re.findall(r"<td>(replay|determinism check)</td>", "".join(verdicts)))
    assert kinds == ["determinism check", "replay"]
    assert all('class="good"' in r for r in verdicts)
    assert ">identical<" in "".join(verdicts) and ">deterministic<" in "".join(verdicts)


def test_a_failed_determinism_check_is_shown_with_what_differed(runs):
    text, _ = report(runs, runs["noisy"], name="noisy.html")
    (row,) = rows(text, "verdicts")[1:]
    assert '<td class="bad">not deterministic</td>' in row
    assert "differ in: metric noise" in row


def test_environment_differences_list_only_what_differs(runs):
    text, _ = report(runs, *runs["ids"])
    found = rows(text, "environment")[1:]
    keys = [re.search(r"<th[^>]*>([^<]*)</th>", r).group(1) for r in found]
    assert "variables.OMP_NUM_THREADS" in keys
    assert not any(k.startswith("packages.") for k in keys)  # one interpreter, one set
    same, _ = report(runs, *runs["ids"][1:], name="same.html")
    assert "The runs share one environment" in same


def test_the_same_runs_give_the_same_bytes(runs):
    a, _ = report(runs, *runs["ids"], name="a.html")
    b, _ = report(runs, *runs["ids"], name="b.html")
    assert a == b


def test_unknown_run_exits_2_with_one_line(runs):
    proc = cli(runs["repo"], "report", runs["ids"][0], "nosuchrun", "-o", "x.html")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "nosuchrun" in proc.stderr
    assert not (runs["repo"] / "x.html").exists()


def test_json_names_what_the_page_holds(runs):
    out = runs["repo"].parent / "j.html"
    proc = cli(runs["repo"], "report", runs["sweep"]["group"], "-o", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["schema"] == 1 and data["metrics"] == ["acc", "loss"]
    assert data["sweeps"] == [runs["sweep"]["group"]] and len(data["runs"]) == 4
    assert data["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()


def test_every_archive_carries_a_report_that_verify_derives_again(runs, tmp_path):
    paper = tmp_path / "paper.tar.gz"
    made = cli(runs["repo"], "archive", runs["ids"][0], runs["ids"][1], "-o", str(paper))
    assert made.returncode == 0, made.stderr
    with tarfile.open(paper) as tf:
        top = tf.getnames()[0].split("/")[0]
        page = tf.extractfile(f"{top}/report.html").read().decode()
        sums = tf.extractfile(f"{top}/CHECKSUMS.sha256").read().decode()
        tf.extractall(tmp_path / "x")  # our own archive, just written
    assert "  report.html\n" in sums
    assert all(rid in page for rid in runs["ids"][:2]) and runs["ids"][2] not in page
    assert cli(tmp_path, "verify", str(paper)).returncode == 0
    # An edit with CHECKSUMS.sha256 recomputed is still caught: the page is derived again.
    folder = tmp_path / "x" / top
    edited = page.replace(">0.1<", ">0.01<")
    assert edited != page
    (folder / "report.html").write_text(edited, encoding="utf-8")
    lines = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel != "CHECKSUMS.sha256":
            lines.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {rel}\n")
    (folder / "CHECKSUMS.sha256").write_text("".join(lines))
    forged = tmp_path / "forged.tar.gz"
    with tarfile.open(forged, "w:gz") as tf:
        tf.add(folder, arcname=top)
    proc = cli(tmp_path, "verify", str(forged))
    assert proc.returncode == 1
    assert "report.html does not match" in proc.stderr


def test_the_readme_transcript_runs_as_shown(runs):
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## HTML report\n", 1)[1].split("\n## ", 1)[0]
    transcript = section.split("```console\n", 1)[1].split("```", 1)[0].splitlines()
    (i,) = [i for i, line in enumerate(transcript) if line.startswith("$ reprokit report")]
    shown_ids = ("913ab0", "7ba2fa")
    group = runs["sweep"]["group"]
    command = transcript[i][2:].replace("seeds-123b5a11", group)
    for shown, real in zip(shown_ids, runs["ids"][1::-1], strict=True):
        command = command.replace(shown, real[-6:])
    proc = cli(runs["repo"], *command.split()[1:])
    assert proc.returncode == 0, proc.stderr
    # The same page in another store: 2 runs + 4 seeds here, 2 + 5 there.
    expected = transcript[i + 1].replace("seeds-123b5a11", group).replace("7 run(s)", "6 run(s)")
    assert proc.stdout.strip() == expected
    assert (runs["repo"] / "report.html").is_file()


def test_help_has_a_description_and_examples(tmp_path):
    proc = cli(tmp_path, "report", "--help")
    assert proc.returncode == 0
    assert "examples:" in proc.stdout and "reprokit report" in proc.stdout
    assert "--store" in proc.stdout and "report.html" in proc.stdout


@pytest.mark.parametrize(
    ("lo", "hi", "expected"),
    [
        (0.0, 0.93, ["0", "0.2", "0.4", "0.6", "0.8", "1.0"]),
        (0.75, 1.93, ["0.75", "1.00", "1.25", "1.50", "1.75", "2.00"]),
        (0.0, 19.0, ["0", "5", "10", "15", "20"]),
        (3.0, 3.0, ["2.6", "2.8", "3.0", "3.2", "3.4"]),
        (-1e-4, 3e-4, ["-0.0001", "0", "0.0001", "0.0002", "0.0003"]),
    ],
)
def test_axis_ticks_are_round_numbers_covering_the_data(lo, hi, expected):
    start, stop, ticks = _ticks(lo, hi)
    assert [t for _, t in ticks] == expected
    assert start <= lo and stop >= hi


# -- in a real browser ---------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium (Debian's chromium package) is not installed"
)
CSP_VIOLATION = re.compile(r"content security policy|refused to", re.I)


def chromium(page: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium on ``page``, console messages on stderr; offline by construction of
    the page (and no network is needed)."""
    assert CHROMIUM is not None
    cmd = [
        CHROMIUM,
        "--headless",
        "--disable-gpu",
        "--no-first-run",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--v=1",
        f"--user-data-dir={tmp_path / 'profile'}",
        *args,
        page.as_uri(),
    ]
    if os.geteuid() == 0:
        cmd.insert(1, "--no-sandbox")  # Chromium refuses to run as root inside its sandbox
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def decode_png(data: bytes) -> list[bytearray]:
    """The rows of an 8-bit, non-interlaced RGB or RGBA PNG as RGB bytes per row."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, chunks, header = 8, [], None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            chunks.append(body)
    assert header is not None
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and interlace == 0 and colour in (2, 6), header
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(b"".join(chunks))
    stride = width * bpp
    prev = [0] * stride
    out = []
    for y in range(height):
        kind = raw[y * (stride + 1)]
        cur = list(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        if kind == 2:
            cur = [(c + b) & 255 for c, b in zip(cur, prev, strict=True)]
        for x in range(stride if kind in (1, 3, 4) else 0):
            a = cur[x - bpp] if x >= bpp else 0
            b = prev[x]
            if kind == 1:
                cur[x] = (cur[x] + a) & 255
            elif kind == 3:
                cur[x] = (cur[x] + ((a + b) >> 1)) & 255
            elif kind == 4:
                c = prev[x - bpp] if x >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                cur[x] = (cur[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        prev = cur
        row = bytearray(cur) if bpp == 3 else bytearray(v for i, v in enumerate(cur) if i % 4 != 3)
        out.append(row)
    return out


def pixels_near(rows_: list[bytearray], colour: str, tolerance: int = 12) -> int:
    import numpy as np

    img = np.array([np.frombuffer(bytes(r), dtype=np.uint8) for r in rows_]).reshape(
        len(rows_), -1, 3
    )
    want = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.int16)
    close = np.abs(img.astype(np.int16) - want).max(axis=2) <= tolerance
    return int(close.sum())


@needs_chromium
def test_page_renders_in_chromium(runs, tmp_path):
    report(runs, *runs["ids"], name="render.html")
    dom = chromium(runs["repo"].parent / "render.html", tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "<h1>reprokit report: 3 runs: train</h1>" in dom.stdout
    assert dom.stdout.count('<svg class="chart"') == 2


def screenshot(page: Path, tmp_path: Path) -> list[bytearray]:
    png = tmp_path / (page.stem + ".png")
    proc = chromium(page, tmp_path, f"--screenshot={png}", "--window-size=1400,1100")
    assert proc.returncode == 0 and png.exists(), proc.stderr[-2000:]
    return decode_png(png.read_bytes())


@needs_chromium
def test_plots_are_visible_in_a_screenshot(runs, tmp_path):
    text, _ = report(runs, *runs["ids"], name="shot.html")
    image = screenshot(runs["repo"].parent / "shot.html", tmp_path)
    # Three runs' curves in two charts: each run's colour covers far more pixels than its
    # legend swatches (22x2.5 px each, five per run) could.
    for colour in PALETTE[:3]:
        assert pixels_near(image, colour) > 400, colour
    # The control: the same page without the curves shows only the swatches.
    bare = tmp_path / "bare.html"
    bare.write_text(re.sub(r'<path d="M[^>]*>(<title>.*?</title>)?</path>', "", text))
    image = screenshot(bare, tmp_path)
    for colour in PALETTE[:3]:
        assert pixels_near(image, colour) < 400, colour


@needs_chromium
def test_console_shows_no_csp_violation_and_the_check_would_see_one(runs, tmp_path):
    text, _ = report(runs, runs["sweep"]["group"], name="csp.html")
    page = runs["repo"].parent / "csp.html"
    clean = chromium(page, tmp_path, f"--screenshot={tmp_path / 'a.png'}")
    assert clean.returncode == 0, clean.stderr[-2000:]
    assert not [line for line in clean.stderr.splitlines() if CSP_VIOLATION.search(line)]
    # The negative control: the same page with an inline script and a style attribute.
    bad = tmp_path / "violating.html"
    bad.write_text(
        text.replace("<body>", '<body><p style="color:red">x</p><script>document.title=1</script>'),
        encoding="utf-8",
    )
    violated = chromium(bad, tmp_path, f"--screenshot={tmp_path / 'b.png'}")
    found = [line for line in violated.stderr.splitlines() if CSP_VIOLATION.search(line)]
    assert len(found) >= 2, violated.stderr[-3000:]


def test_long_and_non_finite_series_are_thinned_and_drawn_with_gaps(tmp_path):
    import warnings

    from reprokit._verbs.report import MAX_POINTS
    from reprokit._verbs.report import report as write_report

    store = tmp_path / "store"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with reprokit.run("long", seed=0, store=store) as r:
            for i in range(20_000):
                value = float("nan") if i == 7_000 else float("inf") if i == 9_000 else i % 97
                r.log_metric("loss", value, step=i)
    out = write_report([r.id], tmp_path / "long.html", store=store)
    text = (tmp_path / "long.html").read_text()
    (path,) = re.findall(r'<path d="([^"]+)" fill="none"', text)
    assert path.count("M") == 3  # two gaps: the NaN and the infinity break the line
    assert path.count("L") + path.count("M") <= MAX_POINTS + 4
    assert "2 non-finite value(s) not drawn" in text
    peaks = [float(p.split()[1]) for p in re.split(r"[ML]", path) if p.strip()]
    ticks = dict(re.findall(r'y="([\d.]+)" text-anchor="end">(\d+)</text>', text))
    at = {int(label): float(y) - 4 for y, label in ticks.items()}  # labels sit 4 below
    top = at[0] + (at[100] - at[0]) * 96 / 100
    assert min(peaks) == pytest.approx(top, abs=0.01)  # each bucket's maximum, 96, is kept
    assert max(peaks) == pytest.approx(at[0], abs=0.01)  # and its minimum, 0
    assert out.metrics == ["loss"] and out.size == len(text.encode())


SEVERAL_CALLS = """
import random, reprokit

@reprokit.track
def train(lr=0.1, epochs=5):
    loss = 1.0
    for step in range(epochs):
        loss = loss * (1 - lr) + 0.01 * random.random()
        reprokit.log_metric("loss", loss, step=step)
    return {"loss": loss}

if __name__ == "__main__":
    for lr in (0.1, 0.2, 0.3):
        train(lr=lr)
"""


def test_a_sweep_a_check_and_their_report_of_one_call_among_several_are_about_that_call(tmp_path):
    """A script that calls its tracked function three times is re-run whole by ``seeds`` and
    ``check``: the sweep summarises the same call as the run named (its lr), and the report
    neither judges a check by the other calls' results nor mixes the calls in one sweep."""
    repo = make_repo(tmp_path / "repo", {"train.py": SEVERAL_CALLS})
    env = clean_env()
    proc = subprocess.run(
        [sys.executable, "train.py"], cwd=repo, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    store = repo / ".reprokit"
    target = reprokit.load("train@latest", store=store)
    assert target.params["lr"] == 0.3
    sweep = cli(repo, "seeds", "train@latest", "--seeds", "1-3", "--json")
    assert sweep.returncode in (0, 1), sweep.stderr
    doc = json.loads(sweep.stdout)
    assert [reprokit.load(r, store=store).params["lr"] for r in doc["runs"]] == [0.3, 0.3, 0.3]
    check = cli(repo, "check", "train@latest")
    assert check.returncode == 0, check.stdout + check.stderr
    one = cli(repo, "report", "train@latest", "-o", "one.html")
    assert one.returncode == 0, one.stderr
    text = (repo / "one.html").read_text()
    assert "determinism check" in text and "not deterministic" not in text
    many = cli(repo, "report", doc["group"], "-o", "sweep.html")
    assert many.returncode == 0, many.stderr
    page = (repo / "sweep.html").read_text()
    assert f"{doc['group']} (train #2)" in page and f"{doc['group']} (train #0)" in page

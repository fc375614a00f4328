"""``report``: one self-contained HTML page about runs, to look at and to hand on.

The page holds the runs' params side by side (differences marked), every metric's curves of all
the runs overlaid (inline SVG), a seed-robustness section for the runs of a seed sweep (the mean
curve with its 95 % confidence band, the final results per seed with the interval of their
mean), the replay and audit verdicts recorded about the runs, and where their environments
differ.

It carries no script and fetches nothing: a Content-Security-Policy allows only its one style
sheet, by hash. Everything shown comes from the sealed runs, and the page is a function of them
alone (no clock, no paths of this machine): rendering the same runs again gives the same bytes,
which is what lets ``verify`` re-derive the copy an archive carries.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reprokit._model import compare as cmp
from reprokit._model.errors import ArgumentError, ReprokitError, RunNotFound
from reprokit._model.manifest import Manifest, as_mapping
from reprokit._model.report import Report
from reprokit._model.version import __version__
from reprokit._reexec.execute import reruns_script
from reprokit._store.store import Store
from reprokit._verbs.audit import results_of, summarize
from reprokit._verbs.replay import compare_runs
from reprokit._verbs.templates import templates_dir

TEMPLATE = "report.html.j2"
STYLE = "report.css"
GENERATOR = re.compile(rb'<meta name="generator" content="reprokit ([^"]+)">')
_GROUP_REF = re.compile(r"^(seeds|check)-[0-9a-f]{8}$")

# Colour-blind-safe (Okabe-Ito, without the yellow that vanishes on white); after the 7th run
# the colours repeat with a dash pattern.
PALETTE = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#222222")
DASHES = ("", "7 4", "2 3", "9 3 2 3")
BAND = "#0072b2"

# Plot geometry in SVG user units.
WIDTH, HEIGHT = 640, 300
LEFT, RIGHT, TOP, BOTTOM = 70, 16, 14, 44
MAX_POINTS = 1500  # per curve; longer series are thinned, keeping each bucket's min and max


@dataclass(frozen=True)
class HtmlReport(Report):
    """What ``report`` wrote: the file, the runs in it, what it charted."""

    path: str
    runs: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)  # one chart each
    sweeps: list[str] = field(default_factory=list)  # seed-sweep groups with a robustness section
    verdicts: int = 0  # replay and audit verdicts shown
    size: int = 0
    sha256: str = ""


def report(
    refs: Iterable[str],
    path: str | os.PathLike[str] = "report.html",
    *,
    store: Store | Path | str | None = None,
) -> HtmlReport:
    """Write the HTML report of the runs ``refs`` name to ``path``.

    A ref is what ``load`` accepts, or the group a ``reprokit seeds`` (or ``check``) printed,
    which stands for all of that group's runs. Every run must verify first; the verdicts shown
    are those the store holds about the runs (replays, determinism checks).
    """
    out_path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(out_path))
    if not os.path.isdir(parent):
        raise ReprokitError(f"cannot write {out_path}: folder {parent} does not exist")
    st = Store.at(store)
    ids = resolve_refs(st, list(refs))
    for rid in ids:
        st.verify(rid)
    runs = [st.load(rid) for rid in ids]
    evidence = related_runs(st, ids)
    page = render_report(runs, st, evidence)
    tmp = f"{out_path}.{os.getpid()}.partial"
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(page.html)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out_path)
    except OSError as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise ReprokitError(f"cannot write {out_path}: {exc.strerror}") from None
    data = page.html.encode("utf-8")
    return HtmlReport(
        path=out_path,
        runs=ids,
        metrics=page.metrics,
        sweeps=page.sweeps,
        verdicts=page.verdicts,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )


def resolve_refs(st: Store, refs: list[str]) -> list[str]:
    """Run ids, in the order named, without repeats; a group name stands for its runs."""
    if not refs:
        raise ArgumentError("refs", "names no run: name the runs to report on")
    ids: list[str] = []
    groups: dict[str, list[str]] | None = None
    for ref in refs:
        try:
            found = [st.resolve(ref)]
        except RunNotFound:
            if not _GROUP_REF.match(ref):
                raise
            if groups is None:
                groups = {}
                for entry in st.entries(head=True):
                    group = entry.manifest.run.get("group") if entry.manifest else None
                    if isinstance(group, str):
                        groups.setdefault(group, []).append(entry.id)
            if ref not in groups:
                raise
            found = sorted(groups[ref])
        ids.extend(rid for rid in found if rid not in ids)
    return ids


def related_runs(st: Store, ids: Sequence[str]) -> list[Manifest]:
    """The store's runs that say something about ``ids``: replays of them, and the executions
    of determinism checks and seed sweeps made from them."""
    wanted = set(ids)
    out = []
    for entry in st.entries(head=True):
        m = entry.manifest
        if m is None or entry.id in wanted:
            continue
        if m.run.get("replay_of") in wanted:
            out.append(st.load(entry.id))
    return sorted(out, key=lambda m: m.id)


# -- what the page shows -------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderedReport:
    """The page's text and a summary of what is in it."""

    html: str
    metrics: list[str]
    sweeps: list[str]
    verdicts: int


def render_report(
    runs: Sequence[Manifest], store: Store, evidence: Iterable[Manifest] = ()
) -> RenderedReport:
    """The HTML page for ``runs`` (in that order); verdicts come from ``runs`` and ``evidence``
    (the replays and audit executions about them). Same inputs, same bytes."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    if not runs:
        raise ArgumentError("refs", "names no run: name the runs to report on")
    runs = list(runs)
    known = {m.id: m for m in runs}
    for m in evidence:
        known.setdefault(m.id, m)
    all_runs = [known[k] for k in sorted(known)]
    sweeps = _sweeps(runs)
    swept = {m.id: m.seeds.get("seed") for group in sweeps.values() for m in group}
    legend = {m.id: _legend_entry(i, m, swept) for i, m in enumerate(runs)}
    series = {m.id: _metric_series(store, m) for m in runs}
    names = sorted({name for s in series.values() for name in s})
    charts = [_metric_chart(name, runs, series, legend) for name in names]
    robustness = [_robustness(group, members, series, legend) for group, members in sweeps.items()]
    verdicts = _verdicts(runs, all_runs, store)
    env = Environment(
        loader=FileSystemLoader(str(templates_dir())),
        undefined=StrictUndefined,
        autoescape=True,  # run names, params and messages are user data
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    style = (templates_dir() / STYLE).read_text(encoding="utf-8")
    style_hash = base64.b64encode(hashlib.sha256(style.encode("utf-8")).digest()).decode()
    html = env.get_template(TEMPLATE).render(
        version=__version__,
        style=style,
        csp=(
            f"default-src 'none'; style-src 'sha256-{style_hash}'; img-src 'none'; "
            "base-uri 'none'; form-action 'none'"
        ),
        title=_title(runs),
        runs=[_run_row(m, legend[m.id]) for m in runs],
        params=_side_by_side([m.params for m in runs]),
        charts=charts,
        robustness=robustness,
        verdicts=verdicts,
        environment=_environment_rows(runs),
        environment_summary=_environment_summary(runs[0]),
    )
    return RenderedReport(
        html=html,
        metrics=names,
        sweeps=list(sweeps),
        verdicts=sum(len(v["rows"]) for v in verdicts),
    )


def _title(runs: Sequence[Manifest]) -> str:
    names = sorted({str(m.run.get("name") or "-") for m in runs})
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    return f"{len(runs)} run{'s' if len(runs) != 1 else ''}: {shown}"


def _legend_entry(i: int, m: Manifest, swept: Mapping[str, Any]) -> dict[str, Any]:
    label = f"{m.run.get('name') or '-'} {m.id[-6:]}"
    if m.id in swept:
        label += f" (seed {swept[m.id]})"
    return {
        "label": label,
        "colour": PALETTE[i % len(PALETTE)],
        "dash": DASHES[(i // len(PALETTE)) % len(DASHES)],
    }


def _run_row(m: Manifest, legend: Mapping[str, Any]) -> dict[str, Any]:
    code = m.code
    commit = code.get("commit")
    text = str(commit)[:10] if isinstance(commit, str) else str(code.get("kind") or "-")
    duration = m.run.get("duration_s")
    return {
        "id": m.id,
        "label": legend["label"],
        "colour": legend["colour"],
        "dash": legend["dash"],
        "name": m.run.get("name") or "-",
        "status": m.run.get("status") or "-",
        "started": m.run.get("started") or "-",
        "duration": f"{duration:.3g} s" if isinstance(duration, (int, float)) else "-",
        "commit": text + (" +dirty" if code.get("dirty") else ""),
        "seed": _text(m.seeds.get("seed")),
        "results": [{"name": k, "value": _number(v)} for k, v in sorted(results_of(m).items())],
    }


def _text(value: Any) -> str:
    """A recorded value as one line of text (the template escapes it)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def _number(x: float) -> str:
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return f"{x:.6g}" if isinstance(x, float) else str(x)


def _side_by_side(mappings: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows ``{key, cells, differs}`` over the union of the flattened keys."""
    flat = [cmp.flatten(dict(m)) if m else {} for m in mappings]
    keys = sorted({k for f in flat for k in f})
    rows = []
    for key in keys:
        values = [f.get(key, cmp.MISSING_VALUE) for f in flat]
        cells = [_text(v) if v is not cmp.MISSING_VALUE else "—" for v in values]
        differs = len(mappings) > 1 and any(_same_key(v) != _same_key(values[0]) for v in values)
        rows.append({"key": key, "cells": cells, "differs": differs})
    return rows


def _same_key(value: Any) -> str:
    """Values equal as recorded compare equal here (1 and 1.0 do not: they are recorded apart)."""
    return json.dumps([type(value).__name__, value], sort_keys=True, default=str)


# -- environment ---------------------------------------------------------------------------------


def _environment_view(m: Manifest) -> dict[str, Any]:
    env = m.environment
    return {
        "python": as_mapping(env.get("python")),
        "packages": as_mapping(env.get("packages")),
        "variables": as_mapping(env.get("variables")),
        "hardware": as_mapping(m.hardware),
    }


def _environment_rows(runs: Sequence[Manifest]) -> list[dict[str, Any]]:
    """Only the environment keys on which the runs differ."""
    if len(runs) < 2:
        return []
    return [row for row in _side_by_side([_environment_view(m) for m in runs]) if row["differs"]]


def _environment_summary(m: Manifest) -> str:
    env = m.environment
    py = as_mapping(env.get("python"))
    hw = as_mapping(m.hardware)
    os_info = as_mapping(hw.get("os"))
    cpu = as_mapping(hw.get("cpu"))
    packages = as_mapping(env.get("packages"))
    gpus = hw.get("gpus")
    gpus = gpus if isinstance(gpus, list) else []
    parts = [
        f"{py.get('implementation', 'Python')} {py.get('version', '?')}",
        f"{len(packages)} distributions",
        f"{os_info.get('system', '?')} {os_info.get('machine', '')}".strip(),
        str(cpu.get("model") or "CPU ?"),
    ]
    names = [str(g.get("name")) for g in gpus if isinstance(g, Mapping)]
    if names:
        parts.append(", ".join(names))
    return "; ".join(parts)


# -- verdicts ------------------------------------------------------------------------------------


def _verdicts(
    runs: Sequence[Manifest], known: Sequence[Manifest], store: Store
) -> list[dict[str, Any]]:
    """Per reported run: its replays' verdicts and its determinism checks (the executions
    compared again, exactly). (A seed sweep's runs do not name the run they came from: they get
    a robustness section when they are reported, by their group.)"""
    out = []
    for m in runs:
        rows: list[dict[str, Any]] = []
        about = [r for r in known if r.run.get("replay_of") == m.id and _reexecutes(r, m)]
        for r in about:
            if (r.run.get("entry") or {}).get("kind") == "replay":
                causes = r.outputs.get("causes") or []
                detail = str(causes[0]) if causes else _tolerance(r)
                rows.append(_replay_row("replay", r.id, r, detail))
        groups: dict[str, list[Manifest]] = {}
        for r in about:
            group = r.run.get("group")
            if isinstance(group, str) and not r.run.get("parent"):
                groups.setdefault(group, []).append(r)
        for group, members in sorted(groups.items()):
            members.sort(key=lambda r: r.id)
            if group.startswith("check-"):
                rows.append(_check_row(group, members, store))
        if m.run.get("replay_of") and (m.run.get("entry") or {}).get("kind") == "replay":
            of = str(m.run.get("replay_of"))
            rows.append(_replay_row("this run is a replay", of, m, f"of run {of}"))
        if rows:
            out.append({"run": m.id, "name": m.run.get("name") or "-", "rows": rows})
    return out


def _replay_row(kind: str, record: str, r: Manifest, detail: str) -> dict[str, Any]:
    verdict = str(r.outputs.get("verdict") or "unknown")
    good = (
        True
        if verdict in (cmp.IDENTICAL, cmp.WITHIN)
        else False
        if verdict in (cmp.DIFFERENT, cmp.MISSING)
        else None  # undetermined: no verdict either way
    )
    return {
        "kind": kind,
        "id": record,
        "when": r.run.get("started") or "-",
        "verdict": verdict.replace("_", " "),
        "good": good,
        "detail": detail,
    }


def _tolerance(r: Manifest) -> str:
    p = r.params
    rtol, atol = p.get("rtol") or 0, p.get("atol") or 0
    return f"rtol {rtol}, atol {atol}" if rtol or atol else "exact comparison"


def _reexecutes(r: Manifest, m: Manifest) -> bool:
    """Whether ``r`` (a run saying ``replay_of: m``) is a replay's record or the re-execution of
    ``m`` itself: a re-run script makes every tracked call again, and each says whose
    re-execution its process was; only the same call (name, and order in a re-run script)
    stands for ``m``."""
    if (r.run.get("entry") or {}).get("kind") == "replay":
        return True
    if r.run.get("name") != m.run.get("name"):
        return False
    return not reruns_script(m) or r.run.get("ordinal") == m.run.get("ordinal")


def _check_row(group: str, members: list[Manifest], store: Store) -> dict[str, Any]:
    """A determinism check's verdict, derived again from its recorded executions: each compared
    exactly with the first, as ``check`` compared them."""
    row: dict[str, Any] = {
        "kind": "determinism check",
        "id": group,
        "when": members[0].run.get("started") or "-",
    }
    if len(members) < 2:
        return row | {"verdict": "undetermined", "good": None, "detail": "one execution kept"}
    differing: list[str] = []
    for other in members[1:]:
        result = compare_runs(members[0], other, store, 0.0, 0.0)
        for name, outcome in result["outputs"].items():
            if outcome["verdict"] != cmp.IDENTICAL and name not in differing:
                differing.append(name)
    if differing:
        detail = f"{len(members)} executions with one seed; differ in: " + ", ".join(differing)
        return row | {"verdict": "not deterministic", "good": False, "detail": detail}
    detail = f"{len(members)} executions with one seed agree exactly"
    return row | {"verdict": "deterministic", "good": True, "detail": detail}


# -- metric curves -------------------------------------------------------------------------------


def _metric_series(store: Store, m: Manifest) -> dict[str, list[tuple[float, float]]]:
    """Each metric's (step, value) points, in the order logged."""
    out: dict[str, list[tuple[float, float]]] = {}
    for i, point in enumerate(cmp.read_jsonl(store.folder_of(m) / "metrics.jsonl")):
        name, value, step = point.get("name"), point.get("value"), point.get("step")
        if not isinstance(name, str) or isinstance(value, bool):
            continue
        if not isinstance(value, (int, float)):
            continue
        x = step if isinstance(step, (int, float)) and not isinstance(step, bool) else i
        out.setdefault(name, []).append((float(x), float(value)))
    return out


def _metric_chart(
    name: str,
    runs: Sequence[Manifest],
    series: Mapping[str, Mapping[str, list[tuple[float, float]]]],
    legend: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    lines = []
    for m in runs:
        points = series[m.id].get(name)
        if points:
            lines.append({**legend[m.id], "points": points})
    chart = _Chart(title=name, x_label="step", y_label=name)
    for line in lines:
        chart.add_line(line["points"], line["colour"], line["dash"], line["label"])
    return chart.finish()


class _Chart:
    """A line chart's geometry: scales fitted to what was added, ticks, SVG path data."""

    def __init__(self, title: str, x_label: str, y_label: str) -> None:
        self.title, self.x_label, self.y_label = title, x_label, y_label
        self.lines: list[dict[str, Any]] = []
        self.bands: list[dict[str, Any]] = []
        self.dots: list[dict[str, Any]] = []
        self.x_categories: list[str] | None = None
        self.skipped = 0

    def add_line(
        self,
        points: Sequence[tuple[float, float]],
        colour: str,
        dash: str = "",
        label: str = "",
        width: float = 2.0,
        opacity: float = 1.0,
    ) -> None:
        finite = [p for p in points if math.isfinite(p[0]) and math.isfinite(p[1])]
        self.skipped += len(points) - len(finite)
        self.lines.append(
            {
                "points": _thin(list(points)),
                "colour": colour,
                "dash": dash,
                "label": label,
                "width": width,
                "opacity": opacity,
            }
        )

    def add_band(
        self,
        xs: Sequence[float],
        lows: Sequence[float],
        highs: Sequence[float],
        colour: str,
        label: str = "",
    ) -> None:
        self.bands.append(
            {"xs": list(xs), "lows": list(lows), "highs": list(highs), "c": colour, "label": label}
        )

    def add_dots(self, points: Sequence[tuple[float, float]], colours: Sequence[str]) -> None:
        for (x, y), c in zip(points, colours, strict=True):
            self.dots.append({"x": x, "y": y, "colour": c})

    def _extent(self) -> tuple[list[float], list[float]]:
        xs: list[float] = []
        ys: list[float] = []
        for line in self.lines:
            xs += [p[0] for p in line["points"]]
            ys += [p[1] for p in line["points"]]
        for band in self.bands:
            xs += band["xs"]
            ys += band["lows"] + band["highs"]
        xs += [d["x"] for d in self.dots]
        ys += [d["y"] for d in self.dots]
        return [x for x in xs if math.isfinite(x)], [y for y in ys if math.isfinite(y)]

    def finish(self) -> dict[str, Any]:
        xs, ys = self._extent()
        if self.x_categories is not None:
            x_lo, x_hi = -0.5, len(self.x_categories) - 0.5
            x_ticks = [(float(i), c) for i, c in enumerate(self.x_categories)]
        else:
            x_lo, x_hi, x_ticks = _ticks(min(xs, default=0.0), max(xs, default=1.0))
        y_lo, y_hi, y_ticks = _ticks(min(ys, default=0.0), max(ys, default=1.0))
        plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

        def sx(x: float) -> float:
            return round(LEFT + (x - x_lo) / (x_hi - x_lo) * plot_w, 2)

        def sy(y: float) -> float:
            return round(TOP + (y_hi - y) / (y_hi - y_lo) * plot_h, 2)

        lines = []
        for line in self.lines:
            lines.append({**line, "d": _path(line["points"], sx, sy), "points": None})
        bands = []
        for band in self.bands:
            upper = [f"{sx(x)},{sy(h)}" for x, h in zip(band["xs"], band["highs"], strict=True)]
            lower = [f"{sx(x)},{sy(lo)}" for x, lo in zip(band["xs"], band["lows"], strict=True)]
            if upper:
                bands.append({"colour": band["c"], "points": " ".join(upper + lower[::-1])})
        return {
            "title": self.title,
            "x_label": self.x_label,
            "y_label": self.y_label,
            "width": WIDTH,
            "height": HEIGHT,
            "left": LEFT,
            "right": WIDTH - RIGHT,
            "top": TOP,
            "bottom": HEIGHT - BOTTOM,
            "x_ticks": [{"at": sx(v), "label": t} for v, t in x_ticks],
            "y_ticks": [{"at": sy(v), "label": t} for v, t in y_ticks],
            "lines": lines,
            "bands": bands,
            "dots": [{"x": sx(d["x"]), "y": sy(d["y"]), "colour": d["colour"]} for d in self.dots],
            "legend": [
                {
                    "label": line["label"],
                    "colour": line["colour"],
                    "dash": line["dash"],
                    "band": False,
                }
                for line in self.lines
                if line["label"]
            ]
            + [
                {"label": band["label"], "colour": band["c"], "dash": "", "band": True}
                for band in self.bands
                if band["label"]
            ],
            "skipped": self.skipped,
        }


def _path(points: Sequence[tuple[float, float]], sx: Any, sy: Any) -> str:
    """SVG path data through the finite points; a non-finite value breaks the line."""
    parts: list[str] = []
    pen_up = True
    for x, y in points:
        if not (math.isfinite(x) and math.isfinite(y)):
            pen_up = True
            continue
        parts.append(f"{'M' if pen_up else 'L'}{sx(x)} {sy(y)}")
        pen_up = False
    if len(parts) == 1:  # one point: a short tick, so it shows
        px, py = parts[0][1:].split()
        parts.append(f"L{float(px) + 0.01} {py}")
    return " ".join(parts)


def _thin(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """At most about MAX_POINTS points (plus the gaps): each bucket keeps its first, min, max
    and last point, and any non-finite one."""
    if len(points) <= MAX_POINTS:
        return points
    size = math.ceil(len(points) / (MAX_POINTS // 4))
    out: list[tuple[float, float]] = []
    for start in range(0, len(points), size):
        bucket = points[start : start + size]
        finite = [p for p in bucket if math.isfinite(p[1])]
        keep = {0, len(bucket) - 1}
        # A non-finite value is a gap in the line: it stays, so the gap does.
        keep.update(i for i, p in enumerate(bucket) if not math.isfinite(p[1]))
        if finite:
            keep.add(bucket.index(min(finite, key=lambda p: p[1])))
            keep.add(bucket.index(max(finite, key=lambda p: p[1])))
        out.extend(bucket[i] for i in sorted(keep))
    return out


def _ticks(lo: float, hi: float, count: int = 5) -> tuple[float, float, list[tuple[float, str]]]:
    """A domain widened to round numbers and its ticks (1, 2, 2.5 or 5 times a power of ten)."""
    if hi < lo:
        lo, hi = hi, lo
    if hi == lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / count
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw * (1 - 1e-9))
    start = math.floor(lo / step + 1e-9) * step
    stop = math.ceil(hi / step - 1e-9) * step
    n = int(round((stop - start) / step))
    values = [start + i * step for i in range(n + 1)]
    decimals = max(0, -math.floor(math.log10(step) + 1e-9) + (1 if step / power == 2.5 else 0))
    big = max(abs(start), abs(stop))
    if big >= 1e6 or (big < 1e-3 and big > 0) or decimals > 6:
        labels = [f"{v:.3g}" for v in values]
    else:
        labels = [f"{v:.{decimals}f}" for v in values]
    labels = ["0" if re.fullmatch(r"-?0(\.0*)?", t) else t for t in labels]
    return start, stop, list(zip(values, labels, strict=True))


# -- seed sweeps ---------------------------------------------------------------------------------


def _sweeps(runs: Sequence[Manifest]) -> dict[str, list[Manifest]]:
    """The seed sweeps among ``runs``: groups named by ``seeds``/``across_seeds`` with at least
    two of the reported runs, each sorted by seed."""
    found: dict[str, list[Manifest]] = {}
    for m in runs:
        group = m.run.get("group")
        if isinstance(group, str) and group.startswith("seeds-") and not m.run.get("parent"):
            found.setdefault(group, []).append(m)
    groups: dict[str, list[Manifest]] = {}
    for group, members in found.items():
        seeds = [json.dumps(m.seeds.get("seed")) for m in members]
        if len(set(seeds)) == len(seeds):
            groups[group] = members
            continue
        # Several runs under one seed: a re-run script made several tracked calls per
        # execution. One sweep per call (name, and order in its process), never a summary
        # that mixes them.
        for m in members:
            call = f"{group} ({m.run.get('name')} #{m.run.get('ordinal')})"
            groups.setdefault(call, []).append(m)

    def seed_order(m: Manifest) -> tuple[int, str]:
        s = m.seeds.get("seed")
        return (s if isinstance(s, int) else 0, m.id)

    return {
        g: sorted(members, key=seed_order)
        for g, members in sorted(groups.items())
        if len(members) >= 2
    }


def _robustness(
    group: str,
    members: list[Manifest],
    series: Mapping[str, Mapping[str, list[tuple[float, float]]]],
    legend: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """A sweep's section: per metric the mean curve across seeds with its 95 % confidence band
    (Student t), per final result the value of each seed with the interval of the mean."""
    seeds = [_text(m.seeds.get("seed")) for m in members]
    curves = []
    names = sorted({n for m in members for n in series[m.id]})
    for name in names:
        by_step: dict[float, list[float]] = {}
        for m in members:
            for x, y in series[m.id].get(name, []):
                if math.isfinite(y):
                    by_step.setdefault(x, []).append(y)
        chart = _Chart(f"{name}: mean of {len(members)} seeds, 95 % CI", "step", name)
        for m in members:
            chart.add_line(series[m.id].get(name, []), "#9a9a9a", width=1.0, opacity=0.6)
        steps = sorted(by_step)
        stats = {x: summarize(by_step[x]) for x in steps}
        banded = [x for x in steps if stats[x].get("ci95")]
        if banded:
            chart.add_band(
                banded,
                [stats[x]["ci95"][0] for x in banded],
                [stats[x]["ci95"][1] for x in banded],
                BAND,
                label="95 % CI of the mean",
            )
        chart.add_line([(x, stats[x]["mean"]) for x in steps], BAND, label="mean across seeds")
        curves.append(chart.finish())
    results: dict[str, list[float | None]] = {}
    for i, m in enumerate(members):
        for key, value in results_of(m).items():
            results.setdefault(key, [None] * len(members))[i] = value
    finals = []
    table = []
    for key in sorted(results):
        values = results[key]
        present = [v for v in values if v is not None and math.isfinite(v)]
        summary = summarize(present)
        table.append(
            {
                "name": key,
                "n": summary["n"],
                "mean": _number(summary["mean"]) if "mean" in summary else "—",
                "std": _number(summary["std"]) if summary.get("std") is not None else "—",
                "min": _number(summary["min"]) if "min" in summary else "—",
                "max": _number(summary["max"]) if "max" in summary else "—",
                "ci": (
                    f"[{_number(summary['ci95'][0])}, {_number(summary['ci95'][1])}]"
                    if summary.get("ci95")
                    else "—"
                ),
                "cv": _number(summary["cv"]) if summary.get("cv") is not None else "—",
            }
        )
        chart = _Chart(f"{key} per seed, mean and 95 % CI", "seed", key)
        chart.x_categories = seeds
        if summary.get("ci95"):
            lo, hi = summary["ci95"]
            chart.add_band(
                [-0.5, len(seeds) - 0.5], [lo, lo], [hi, hi], BAND, label="95 % CI of the mean"
            )
        if "mean" in summary:
            chart.add_line(
                [(-0.5, summary["mean"]), (len(seeds) - 0.5, summary["mean"])],
                BAND,
                dash="6 3",
                label="mean",
            )
        where = [(float(i), v) for i, v in enumerate(values) if v is not None and math.isfinite(v)]
        chart.add_dots(where, [legend[members[int(x)].id]["colour"] for x, _ in where])
        finals.append(chart.finish())
    return {
        "group": group,
        "n": len(members),
        "seeds": ", ".join(seeds),
        "curves": curves,
        "finals": finals,
        "table": table,
    }


def generator_of(page: bytes) -> str | None:
    """The reprokit version that wrote a report page, from its generator meta tag."""
    found = GENERATOR.search(page[:4096])
    return found.group(1).decode("ascii", "replace") if found else None

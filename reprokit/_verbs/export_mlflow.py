"""Export sealed runs to an MLflow tracking server, over its REST API (no mlflow package).

Each reprokit run becomes one MLflow run: params (nested ones flattened to ``a.b``), every
metric point with its step and wall-clock time, the return value's numbers as ``return.*``
metrics, tags (reprokit run id, code digest and commit, seed, status, replay verdicts) and
the manifest as the artifact ``reprokit/manifest.yaml``.

Exporting is idempotent. The MLflow run carries the reprokit run id in the tag
``reprokit.run_id``; the tag ``reprokit.exported`` is set last, as the commit point. A run
found complete is not written again (only tags whose value changed, such as a newer replay
verdict, are set); one found incomplete (an export that was cut off) is deleted and exported
anew, so metric points are never logged twice.
"""

from __future__ import annotations

import base64
import calendar
import json
import math
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from reprokit._model.compare import flatten, read_jsonl
from reprokit._model.errors import ReprokitError
from reprokit._model.manifest import Manifest
from reprokit._model.redact import strip_url_credentials
from reprokit._store.query import replay_verdicts
from reprokit._store.store import MANIFEST, Store

RUN_ID_TAG = "reprokit.run_id"
DONE_TAG = "reprokit.exported"
MAX_PARAM_VALUE = 6000  # MLflow's limit on a param value
BATCH_METRICS = 1000  # MLflow's limits on one log-batch request
BATCH_PARAMS = 100
_STATUS = {"completed": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}


class MlflowExportReport:
    """What one export did: per run, the MLflow run and whether anything was written."""

    def __init__(self, tracking_uri: str, experiment: str) -> None:
        self.tracking_uri = strip_url_credentials(tracking_uri)
        self.experiment = experiment
        self.experiment_id: str | None = None
        self.runs: list[dict[str, Any]] = []

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": 1,
            "tracking_uri": self.tracking_uri,
            "experiment": self.experiment,
            "experiment_id": self.experiment_id,
            "runs": self.runs,
        }


class MlflowClient:
    """The few MLflow REST calls an export needs, with urllib."""

    def __init__(self, tracking_uri: str, timeout: float = 30.0) -> None:
        parsed = urllib.parse.urlsplit(tracking_uri)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ReprokitError(
                "export needs an MLflow tracking server URL (http:// or https://), got "
                f"{strip_url_credentials(tracking_uri)!r}"
            )
        self.shown = strip_url_credentials(tracking_uri)
        netloc = parsed.hostname or ""
        if parsed.port:
            netloc += f":{parsed.port}"
        self.base = urllib.parse.urlunsplit(
            (parsed.scheme, netloc, parsed.path.rstrip("/"), "", "")
        )
        self.timeout = timeout
        self.headers = {"User-Agent": "reprokit"}
        # MLflow's own conventions for credentials: a URL's user:password, else its variables.
        user = urllib.parse.unquote(parsed.username or "") or os.environ.get(
            "MLFLOW_TRACKING_USERNAME"
        )
        password = urllib.parse.unquote(parsed.password or "") or os.environ.get(
            "MLFLOW_TRACKING_PASSWORD", ""
        )
        token = os.environ.get("MLFLOW_TRACKING_TOKEN")
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        elif user:
            pair = base64.b64encode(f"{user}:{password}".encode()).decode()
            self.headers["Authorization"] = f"Basic {pair}"

    def call(
        self, method: str, path: str, payload: Any = None, data: bytes | None = None
    ) -> dict[str, Any]:
        """One request; the decoded JSON answer. ReprokitError with MLflow's message on error."""
        url = self.base + path
        headers = dict(self.headers)
        if payload is not None:
            data = json.dumps(payload, allow_nan=False).encode()
            headers["Content-Type"] = "application/json"
        elif data is not None:
            headers["Content-Type"] = "application/octet-stream"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                answer = json.loads(raw)
            except ValueError:
                answer = {"message": raw[:200].decode("utf-8", "replace")}
            error = MlflowError(
                f"MLflow at {self.shown} answered {exc.code} to {method} {path.split('?')[0]}: "
                f"{answer.get('message') or exc.reason}"
            )
            error.code = answer.get("error_code")
            raise error from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ReprokitError(f"cannot reach MLflow at {self.shown}: {reason}") from None
        if not body.strip():
            return {}
        try:
            return json.loads(body)
        except ValueError:
            raise ReprokitError(
                f"{self.shown} did not answer like an MLflow tracking server ({path})"
            ) from None

    def get(self, path: str, **query: str) -> dict[str, Any]:
        return self.call("GET", path + "?" + urllib.parse.urlencode(query))

    def post(self, path: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        return self.call("POST", path, payload)


class MlflowError(ReprokitError):
    """An MLflow server refused a request (``.code``: MLflow's error code)."""

    code: str | None = None


def _ms(stamp: Any) -> int | None:
    """``2026-11-26T22:59:06.264Z`` -> milliseconds since the epoch."""
    if not isinstance(stamp, str) or len(stamp) < 19:
        return None
    try:
        seconds = calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None
    millis = stamp[20:23] if len(stamp) >= 23 and stamp[19] == "." else "0"
    return seconds * 1000 + int(millis.ljust(3, "0")) if millis.isdigit() else seconds * 1000


def _key(name: str) -> str:
    """An MLflow key: letters, digits and ``_-. /`` kept, anything else as ``_``."""
    out = "".join(c if c.isalnum() or c in "_-. /" else "_" for c in str(name))
    return out[:250] or "_"


def _number(value: float) -> float | str:
    """A metric value as MLflow's JSON takes it (non-finite numbers spelled out)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _param_text(value: Any) -> str:
    # As mlflow.log_param writes them: str() of the value.
    text = value if isinstance(value, str) else str(value)
    if len(text) > MAX_PARAM_VALUE:
        text = text[: MAX_PARAM_VALUE - 3] + "..."
    return text


def params_of(m: Manifest) -> list[dict[str, str]]:
    """The run's params as MLflow params: nested mappings flattened to dotted keys."""
    flat = flatten(dict(m.params)) if m.params else {}
    return [{"key": _key(k), "value": _param_text(v)} for k, v in sorted(flat.items())]


def metrics_of(m: Manifest, folder: Path) -> list[dict[str, Any]]:
    """Every metric point (step and time kept) and the return value's numbers."""
    started = _ms(m.run.get("started")) or 0
    ended = _ms(m.run.get("ended")) or started
    out = []
    for point in read_jsonl(folder / "metrics.jsonl"):
        try:
            value = float(point["value"])
        except (KeyError, TypeError, ValueError):
            continue
        ts = point.get("ts")
        step = point.get("step")
        out.append(
            {
                "key": _key(point.get("name", "metric")),
                "value": _number(value),
                "timestamp": int(ts * 1000) if isinstance(ts, (int, float)) else started,
                "step": step if isinstance(step, int) and not isinstance(step, bool) else 0,
            }
        )
    ret = (m.outputs.get("return") or {}).get("value")
    numbers: dict[str, Any] = {}
    if isinstance(ret, (int, float)) and not isinstance(ret, bool):
        numbers["return"] = ret
    elif isinstance(ret, Mapping):
        numbers = {f"return.{k}": v for k, v in flatten(dict(ret)).items()}
    for name, value in sorted(numbers.items()):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out.append({"key": _key(name), "value": _number(float(value)), "timestamp": ended})
            out[-1]["step"] = 0
    return out


def tags_of(m: Manifest, store: Store) -> dict[str, str]:
    """The MLflow tags of a run (the commit point ``reprokit.exported`` excluded)."""
    code, run, seeds = m.code, m.run, m.seeds
    tags: dict[str, str] = {RUN_ID_TAG: m.id, "reprokit.status": str(run.get("status"))}
    if m.name:
        tags["mlflow.runName"] = str(m.name)
    if code.get("digest"):
        tags["reprokit.code_digest"] = str(code["digest"])
    if code.get("commit"):
        tags["mlflow.source.git.commit"] = str(code["commit"])
        tags["reprokit.dirty"] = "true" if code.get("dirty") else "false"
    if code.get("branch"):
        tags["mlflow.source.git.branch"] = str(code["branch"])
    if seeds.get("seed") is not None:
        tags["reprokit.seed"] = str(seeds["seed"])
    entry = run.get("entry") or {}
    source = entry.get("file_rel") or " ".join(map(str, entry.get("argv") or [])) or None
    if source:
        tags["mlflow.source.name"] = str(source)[:500]
    tags["reprokit.replayable"] = "true" if run.get("replayable", True) else "false"
    for key in ("replay_of", "group", "parent"):
        if run.get(key):
            tags[f"reprokit.{key}"] = str(run[key])
    verdict = m.outputs.get("verdict")
    if isinstance(verdict, str):  # this run is itself a replay's verdict
        tags["reprokit.verdict"] = verdict
    replays = replay_verdicts(store, m.id)
    if replays:
        last_id, last = replays[-1]
        tags["reprokit.verdict.replay"] = last
        tags["reprokit.verdict.replay_run"] = last_id
        tags["reprokit.verdict.replays"] = ", ".join(f"{v} ({i})" for i, v in replays)[:5000]
    manifest_path = store.runs / m.id / MANIFEST
    import hashlib

    tags["reprokit.manifest_sha256"] = hashlib.sha256(manifest_path.read_bytes()).hexdigest()
    return {_key(k): v[:MAX_PARAM_VALUE] for k, v in tags.items()}


def _experiment_id(client: MlflowClient, name: str) -> str:
    try:
        found = client.get("/api/2.0/mlflow/experiments/get-by-name", experiment_name=name)
        return str(found["experiment"]["experiment_id"])
    except MlflowError as exc:
        if exc.code != "RESOURCE_DOES_NOT_EXIST":
            raise
    try:
        made = client.post("/api/2.0/mlflow/experiments/create", {"name": name})
    except MlflowError as exc:
        if exc.code != "RESOURCE_ALREADY_EXISTS":  # created meanwhile by someone else
            raise
        found = client.get("/api/2.0/mlflow/experiments/get-by-name", experiment_name=name)
        return str(found["experiment"]["experiment_id"])
    return str(made["experiment_id"])


def _find(client: MlflowClient, experiment_id: str, run_id: str) -> list[dict[str, Any]]:
    """The active MLflow runs of the experiment that carry ``run_id`` in their tag."""
    answer = client.post(
        "/api/2.0/mlflow/runs/search",
        {
            "experiment_ids": [experiment_id],
            "filter": f"tags.`{RUN_ID_TAG}` = '{run_id}'",
            "run_view_type": "ACTIVE_ONLY",
            "max_results": 10,
        },
    )
    return list(answer.get("runs") or [])


def _tags_dict(mlflow_run: Mapping[str, Any]) -> dict[str, str]:
    return {t["key"]: t.get("value", "") for t in (mlflow_run.get("data") or {}).get("tags") or []}


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _artifact_url(client: MlflowClient, artifact_uri: str, rel: str) -> str | None:
    """The upload URL of an artifact when the server serves its artifact store, else None."""
    scheme = "mlflow-artifacts:"
    if not artifact_uri.startswith(scheme):
        return None
    rest = artifact_uri[len(scheme) :]
    if rest.startswith("//"):  # mlflow-artifacts://host:port/path: the path after the host
        rest = "/" + rest[2:].partition("/")[2]
    path = urllib.parse.quote(rest.strip("/") + "/" + rel)
    return f"/api/2.0/mlflow-artifacts/artifacts/{path}"


def _export_one(
    client: MlflowClient, experiment_id: str, m: Manifest, store: Store
) -> dict[str, Any]:
    tags = tags_of(m, store)
    result: dict[str, Any] = {"run": m.id, "name": m.name}
    for old in _find(client, experiment_id, m.id):
        info = old["info"]
        have = _tags_dict(old)
        if have.get(DONE_TAG) == "complete":
            changed = {k: v for k, v in tags.items() if have.get(k) != v}
            for key, value in changed.items():
                client.post(
                    "/api/2.0/mlflow/runs/set-tag",
                    {"run_id": info["run_id"], "key": key, "value": value},
                )
            result.update(
                {
                    "mlflow_run_id": info["run_id"],
                    "created": False,
                    "tags_updated": sorted(changed),
                }
            )
            return result
        # Cut off during an earlier export: start again rather than log points twice.
        client.post("/api/2.0/mlflow/runs/delete", {"run_id": info["run_id"]})

    folder = store.runs / m.id
    params = params_of(m)
    metrics = metrics_of(m, folder)
    started = _ms(m.run.get("started"))
    create: dict[str, Any] = {
        "experiment_id": experiment_id,
        "run_name": str(m.name or m.id),
        "tags": [{"key": k, "value": v} for k, v in tags.items()],
    }
    if started is not None:
        create["start_time"] = started
    parent = m.run.get("parent")
    if parent:
        found = _find(client, experiment_id, str(parent))
        if found:
            create["tags"].append(
                {"key": "mlflow.parentRunId", "value": found[0]["info"]["run_id"]}
            )
    made = client.post("/api/2.0/mlflow/runs/create", create)["run"]["info"]
    mlflow_id = made["run_id"]
    for chunk in _chunks(params, BATCH_PARAMS):
        client.post("/api/2.0/mlflow/runs/log-batch", {"run_id": mlflow_id, "params": chunk})
    for chunk in _chunks(metrics, BATCH_METRICS):
        client.post("/api/2.0/mlflow/runs/log-batch", {"run_id": mlflow_id, "metrics": chunk})
    url = _artifact_url(client, str(made.get("artifact_uri") or ""), "reprokit/manifest.yaml")
    if url is not None:
        client.call("PUT", url, data=(folder / MANIFEST).read_bytes())
        result["artifact"] = "reprokit/manifest.yaml"
    else:
        result["artifact"] = None
        result["artifact_skipped"] = (
            f"the server does not serve its artifact store ({made.get('artifact_uri')}); "
            "start it with --serve-artifacts to upload the manifest"
        )
    update: dict[str, Any] = {
        "run_id": mlflow_id,
        "status": _STATUS.get(str(m.run.get("status")), "KILLED"),
    }
    ended = _ms(m.run.get("ended"))
    if ended is not None:
        update["end_time"] = ended
    client.post("/api/2.0/mlflow/runs/update", update)
    client.post(
        "/api/2.0/mlflow/runs/set-tag", {"run_id": mlflow_id, "key": DONE_TAG, "value": "complete"}
    )
    result.update(
        {
            "mlflow_run_id": mlflow_id,
            "created": True,
            "params": len(params),
            "metric_points": len(metrics),
            "tags": len(tags) + 1,
        }
    )
    return result


def export_mlflow(
    refs: Iterable[str],
    tracking_uri: str,
    *,
    experiment: str = "reprokit",
    store: Store | Path | str | None = None,
    timeout: float = 30.0,
    on_run: Callable[[dict[str, Any]], None] | None = None,
) -> MlflowExportReport:
    """Export runs ``refs`` to the MLflow server at ``tracking_uri`` (experiment ``experiment``,
    created when missing). Each run is verified first (``TamperedError`` for one that fails).

    Idempotent: a run exported before is found by its ``reprokit.run_id`` tag and not written
    again. ``on_run(result)`` hears each run's result as it is done.
    """
    wanted = list(refs)
    if not wanted:
        raise ReprokitError("name at least one run to export")
    if not experiment:
        raise ReprokitError("the MLflow experiment name must not be empty")
    st = Store.at(store)
    manifests = []
    for ref in wanted:
        st.verify(ref)
        manifests.append(st.load(ref))
    client = MlflowClient(tracking_uri, timeout=timeout)
    report = MlflowExportReport(tracking_uri, experiment)
    report.experiment_id = _experiment_id(client, experiment)
    seen: set[str] = set()
    # Oldest first: a parent starts before its nested runs, so it is in MLflow by the time
    # they name it as their mlflow.parentRunId.
    for m in sorted(manifests, key=lambda m: m.id):
        if m.id in seen:
            continue
        seen.add(m.id)
        result = _export_one(client, report.experiment_id, m, st)
        result["url"] = (
            f"{client.shown.rstrip('/')}/#/experiments/{report.experiment_id}/runs/"
            + (result["mlflow_run_id"])
        )
        report.runs.append(result)
        if on_run is not None:
            on_run(result)
    return report

"""``medcls-ui``: its arguments and errors (fast), then the real MLflow UI on a two-job sweep,
driven by headless Chromium: the runs are listed and comparable, screenshots are kept.

Screenshots land in ``$MEDCLS_TEST_ARTIFACTS/ui`` (default ``test-artifacts/ui`` in the repo).
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import quote

import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from medcls.cli import ui

# Starts MLflow servers (and headless Chromium): minutes, so the slow tier.
pytestmark = pytest.mark.slow


def option(cmd: Sequence[str], name: str) -> str:
    return cmd[list(cmd).index(name) + 1]


# ------------------------------------------------------------------------- arguments, errors
@pytest.mark.parametrize(
    ("uri", "path"),
    [
        ("sqlite:///mlflow.db", "mlflow.db"),
        ("sqlite:////srv/studies/mlflow.db", "/srv/studies/mlflow.db"),
        ("file:///srv/mlruns", "/srv/mlruns"),
        ("mlruns", "mlruns"),
        ("postgresql://mlflow@db.internal/mlflow", None),
    ],
)
def test_local_store_path(uri: str, path: str | None) -> None:
    assert ui.local_store_path(uri) == path


def test_default_store_is_the_one_medcls_trains_into(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ui.default_tracking_uri() == "sqlite:///mlflow.db"  # conf/logger/mlflow.yaml
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////srv/studies/mlflow.db")
    assert ui.default_tracking_uri() == "sqlite:////srv/studies/mlflow.db"


def test_command_line(workdir: Path, helpers) -> None:
    (workdir / "mlflow.db").touch()
    port = helpers.free_port()
    cmd, url = ui.build_command(["--port", str(port), "--static-prefix", "/mlflow"])
    assert cmd[1:4] == ["-m", "mlflow", "server"]
    assert option(cmd, "--backend-store-uri") == "sqlite:///mlflow.db"
    assert option(cmd, "--host") == "127.0.0.1"
    assert option(cmd, "--port") == str(port)
    assert option(cmd, "--workers") == "1"
    assert option(cmd, "--default-artifact-root") == str(workdir / "mlruns")  # medcls' artifacts
    assert cmd[-2:] == ["--static-prefix", "/mlflow"]  # unknown options go to mlflow server
    assert url == f"http://127.0.0.1:{port}"

    cmd, url = ui.build_command(
        ["--port", str(port), "--host", "0.0.0.0", "--default-artifact-root", "/srv/art"]
    )
    assert cmd.count("--default-artifact-root") == 1 and cmd[-1] == "/srv/art"
    assert url == f"http://127.0.0.1:{port}"


def test_missing_store_says_train_first(workdir: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        ui.build_command([])
    msg = str(exc.value.code)
    assert "no runs yet: run medcls-train first" in msg
    assert str(workdir / "mlflow.db") in msg


def test_busy_port(workdir: Path) -> None:
    (workdir / "mlflow.db").touch()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(SystemExit) as exc:
            ui.build_command(["--port", str(port)])
    assert f"port {port} on 127.0.0.1 is busy" in str(exc.value.code)


def test_bad_port_and_remote_store(workdir: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        ui.build_command(["--port", "70000"])
    assert exc.value.code == 2  # argparse usage error
    with pytest.raises(SystemExit) as exc:
        ui.build_command(["--backend-store-uri", "http://mlflow.internal:5000"])
    assert "is a tracking server already" in str(exc.value.code)


def test_entry_points(helpers, workdir: Path) -> None:
    proc = helpers.run_cli("medcls-ui", [], cwd=workdir, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert "no runs yet: run medcls-train first" in proc.stderr
    proc = subprocess.run(
        [str(helpers.BIN / "python"), "-m", "medcls.cli.ui", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "--backend-store-uri" in proc.stdout and "127.0.0.1" in proc.stdout


# -------------------------------------------------------------------- the UI in a browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Headless, and quiet on a closed network: no background services (update, sync, field trials:
# without these flags Chromium's own connections get refused and pages stall), no proxy, and
# every host name except loopback unresolvable, so the page can reach nothing but the server.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",  # root in CI containers
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--hide-scrollbars",
]
# The UI's own and MLflow's usage reporting stay off; so does any network beyond loopback.
SERVER_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}


def artifacts_dir(helpers) -> Path:
    base = os.environ.get("MEDCLS_TEST_ARTIFACTS") or helpers.REPO / "test-artifacts"
    out = Path(base) / "ui"
    out.mkdir(parents=True, exist_ok=True)
    return out


def kill_group(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM the process group (server + uvicorn, or Chromium + helpers), wait up to ``grace``
    seconds for all of it to end, SIGKILL what is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        proc.poll()  # reap the leader; members still alive keep the group id in use
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def page_text(dom: str) -> str:
    dom = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", dom)))


def render(
    url: str, tmp: Path, screenshot: Path | None, size: tuple[int, int], budget_ms: int
) -> tuple[str, str]:
    """Load ``url`` in a fresh headless Chromium; the rendered page's text (and its stderr).
    Virtual time pauses while requests are pending, so the single-page app finishes loading."""
    profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp)
    cmd = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
    cmd += [
        f"--window-size={size[0]},{size[1]}",
        f"--virtual-time-budget={budget_ms}",
        "--dump-dom",
    ]
    if screenshot is not None:
        cmd.append(f"--screenshot={screenshot}")
    proc = subprocess.Popen(
        [*cmd, url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        pytest.fail(f"Chromium did not finish loading {url} in 180 s")
    finally:
        kill_group(proc, grace=2)  # and any helper process it left behind
    return page_text(out), err


def render_until(
    url: str,
    expected: Sequence[str],
    tmp: Path,
    screenshot: Path | None = None,
    size: tuple[int, int] = (1600, 1000),
) -> str:
    """The page's text once all of ``expected`` shows (a second, longer try on a slow machine)."""
    for budget in (15_000, 45_000):
        text, err = render(url, tmp, screenshot, size, budget)
        if all(e in text for e in expected):
            return text
    missing = [e for e in expected if e not in text]
    if screenshot is not None:
        screenshot.with_suffix(".txt").write_text(text)  # what the page said, for the record
    pytest.fail(f"{url}: {missing} not on the page.\npage: {text[:3000]}\nchromium: {err[-2000:]}")


@pytest.fixture
def chromium() -> str:
    if CHROMIUM is None or not hasattr(os, "killpg"):
        pytest.skip("needs Chromium (Debian: apt-get install chromium; .ci/run installs it)")
    return CHROMIUM


@pytest.fixture
def sweep(chromium: str, helpers, workdir: Path) -> dict:
    """A two-job multirun into ./mlflow.db of a fresh working directory, as a user runs it."""
    base = [
        o
        for o in helpers.train_overrides()
        if o != "logger=none" and not o.startswith("data.num_samples=")
    ]
    proc = helpers.run_cli(
        "medcls-train",
        [
            "-m",
            "optimizer.lr=1e-3,3e-3",
            "run_name=lr${optimizer.lr}",
            *base,
            "data.num_samples=64",
            "trainer.max_epochs=1",
            "++trainer.limit_train_batches=2",
            "logger=mlflow",
            "experiment_name=ui_sweep",
        ],
        cwd=workdir,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    client = MlflowClient(helpers.sqlite_uri(workdir / "mlflow.db"))
    exp = client.get_experiment_by_name("ui_sweep")
    runs = client.search_runs([exp.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("medcls.role") == "sweep"]
    children = sorted((r for r in runs if r is not parent), key=lambda r: r.info.run_name)
    assert [r.info.run_name for r in children] == ["lr0.001", "lr0.003"]
    return {"experiment_id": exp.experiment_id, "parent": parent, "children": children,
            "client": client}  # fmt: skip


@pytest.fixture
def ui_server(helpers, workdir: Path, sweep: dict) -> Iterator[str]:
    """``medcls-ui`` on a free loopback port of the sweep's directory; stopped in any case."""
    port = helpers.free_port()
    env = {**os.environ, **helpers.OFFLINE_ENV, **SERVER_ENV}
    env.pop("MLFLOW_TRACKING_URI", None)
    log_path = workdir / "medcls-ui.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [str(helpers.BIN / "medcls-ui"), "--port", str(port)],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, no proxy
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with opener.open(f"{base}/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"medcls-ui did not come up on {base}:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.5)
        first = log_path.read_text().splitlines()[0]
        assert f"{base}/#/experiments" in first and "sqlite:///mlflow.db" in first, first
        yield base
    finally:
        kill_group(proc, grace=15)


def test_ui_lists_and_compares_sweep_runs(
    helpers, tmp_path: Path, sweep: dict, ui_server: str
) -> None:
    base, exp_id = ui_server, sweep["experiment_id"]
    parent, children = sweep["parent"], sweep["children"]
    shots = artifacts_dir(helpers)
    for old in shots.glob("*.png"):
        old.unlink()

    # The experiment's runs table (the "Model training" view), best validation score first:
    # sorted by a metric, MLflow lists parent and children flat instead of folding the children.
    sort = quote("metrics.`val/balanced_accuracy`", safe="")
    url = (
        f"{base}/#/experiments/{exp_id}/runs?workflowType=machine_learning"
        f"&orderByKey={sort}&orderByAsc=false"
    )
    names = [parent.info.run_name, *(c.info.run_name for c in children)]
    text = render_until(url, [*names, "3 matching runs"], tmp_path, shots / "experiment_runs.png")
    assert "Sort: val/balanced_accuracy" in text

    # The compare page of the two jobs: both runs side by side, their params and metrics. Its
    # metrics table renders only the rows in view, in name order: look for the first few.
    ids = [c.info.run_id for c in children]
    shared = sorted(set(children[0].data.metrics) & set(children[1].data.metrics))[:3]
    url = (
        f"{base}/#/compare-runs?runs={quote(json.dumps(ids), safe='')}"
        f"&experiments={quote(json.dumps([exp_id]), safe='')}"
    )
    expected = ["Comparing 2 Runs", *ids, "lr0.001", "lr0.003", "optimizer.lr", *shared]
    text = render_until(url, expected, tmp_path, shots / "compare_runs.png", (1600, 1600))
    metrics_table = text.partition("Metrics Show diff only")[2]
    assert metrics_table and all(k in metrics_table for k in shared), text[-3000:]
    row = re.search(r"optimizer\.lr (\S+) (\S+) ", text.partition("Parameters Show diff only")[2])
    assert row and {row[1], row[2]} == {"0.001", "0.003"}, text[:3000]

    # A job's run page: the partitions it trained and was tested on (mlflow.log_input), and its
    # MLflow Model; then the experiment's Models tab lists each job's model.
    child = children[0]
    dataset = f"{child.data.tags['dataset']}-train"
    url = f"{base}/#/experiments/{exp_id}/runs/{child.info.run_id}"
    text = render_until(url, [child.info.run_name, dataset, "model"], tmp_path,
                        shots / "run_datasets_models.png", (1600, 1200))  # fmt: skip
    digest = next(d.dataset.digest for d in child.inputs.dataset_inputs
                  if d.dataset.name == dataset)  # fmt: skip
    assert digest in text, text[:3000]
    url = f"{base}/#/experiments/{exp_id}/models"
    text = render_until(url, [c.info.run_name for c in children], tmp_path,
                        shots / "experiment_models.png")  # fmt: skip
    table = text.partition("Source run")[2]
    assert table.count("model Ready") == 2, text[:3000]  # one logged model per job, READY
    assert all(c.info.run_name in table for c in children), text[:3000]  # from its run

    # The files medcls logs are served (the run page's Artifacts tab reads these endpoints).
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    listing = f"{base}/ajax-api/2.0/mlflow/artifacts/list?run_id={ids[0]}"
    with opener.open(listing, timeout=30) as r:
        files = {f["path"] for f in json.load(r)["files"]}
    assert {"confusion_matrix.png", "resolved_config.yaml", "test_predictions.csv"} <= files
    png = f"{base}/get-artifact?path=confusion_matrix.png&run_uuid={ids[0]}"
    with opener.open(png, timeout=30) as r:
        assert r.read(8) == b"\x89PNG\r\n\x1a\n"

    for shot, size in (("experiment_runs.png", (1600, 1000)), ("compare_runs.png", (1600, 1600))):
        with Image.open(shots / shot) as im:
            assert im.size == size
            assert len(im.convert("RGB").getcolors(1_000_000)) > 100  # a rendered page, not blank

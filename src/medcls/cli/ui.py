"""``medcls-ui``: the MLflow UI on the tracking store medcls trains into.

    medcls-ui                         # ./mlflow.db (or $MLFLOW_TRACKING_URI), http://127.0.0.1:5000
    medcls-ui --port 5001
    medcls-ui --backend-store-uri sqlite:////data/studies/mlflow.db

Options it does not know go to ``mlflow server`` unchanged (``medcls-ui --static-prefix /mlflow``).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Sequence
from urllib.parse import unquote, urlparse

FALLBACK_URI = "sqlite:///mlflow.db"


def default_tracking_uri() -> str:
    """The store ``medcls-train`` logs into: ``logger.mlflow.tracking_uri`` of the configs
    (``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` in the working directory)."""
    try:
        from omegaconf import OmegaConf

        from medcls.config import CONFIG_DIR

        node = OmegaConf.load(os.path.join(CONFIG_DIR, "logger", "mlflow.yaml"))
        return str(node.mlflow.tracking_uri or "") or FALLBACK_URI
    except Exception:
        return os.environ.get("MLFLOW_TRACKING_URI") or FALLBACK_URI


def local_store_path(uri: str) -> str | None:
    """The file (SQLite) or folder (file store) behind a local store URI; None for a database
    server (postgresql://, mysql://, ...)."""
    if uri.startswith("sqlite:///"):
        path = unquote(uri[len("sqlite:///") :]).split("?", 1)[0]
        return None if path in ("", ":memory:") else path
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return unquote(parsed.path)
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):  # a plain path
        return uri
    return None


def port_busy(host: str, port: int) -> bool:
    """True when a server could not listen on ``host:port`` (something else already does)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return False  # let the server report the bad host
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            s.bind(addr)
        except OSError:
            return True
    return False


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="medcls-ui",
        description="Browse, compare and chart medcls runs: the MLflow UI on the project's store.",
        epilog="Other options are passed to `mlflow server` (see `mlflow server --help`).",
        allow_abbrev=False,
    )
    p.add_argument("--port", type=int, default=5000, help="port to listen on (default: 5000)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help=(
            "interface to listen on (default: 127.0.0.1, this machine only). The MLflow UI has no "
            "login and anyone who reaches it can read, edit and delete runs: use 0.0.0.0 only on "
            "a trusted network, with --allowed-hosts <name> for the address you browse to."
        ),
    )
    p.add_argument(
        "--backend-store-uri",
        default=None,
        help="the MLflow store (default: the one medcls-train uses, $MLFLOW_TRACKING_URI or "
        f"{FALLBACK_URI} in the working directory)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes (default: 1, plenty for one person; mlflow's own default is 4)",
    )
    return p


def build_command(argv: Sequence[str] | None = None) -> tuple[list[str], str]:
    """The ``mlflow server`` command line and the URL to open; exits with a message when the
    store does not exist yet, is remote, or the port is taken."""
    p = parser()
    args, extra = p.parse_known_args(argv)
    if not 0 < args.port < 65536:
        p.error(f"--port {args.port}: not a port number")
    uri = args.backend_store_uri or default_tracking_uri()
    if urlparse(uri).scheme in ("http", "https", "databricks"):
        sys.exit(f"medcls-ui: {uri} is a tracking server already: open it in a browser")
    path = local_store_path(uri)
    if path is not None and not os.path.exists(path):
        sys.exit(
            f"medcls-ui: no runs yet: run medcls-train first (no MLflow store at "
            f"{os.path.abspath(path)}; pick another with --backend-store-uri or "
            "$MLFLOW_TRACKING_URI)"
        )
    if port_busy(args.host, args.port):
        sys.exit(
            f"medcls-ui: port {args.port} on {args.host} is busy (another `mlflow ui`?): "
            "choose another with --port"
        )

    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri]
    cmd += ["--host", args.host, "--port", str(args.port), "--workers", str(args.workers)]
    if path is not None and not any(a.startswith("--default-artifact-root") for a in extra):
        # medcls logs straight into the store, so its runs' artifacts are files under ./mlruns
        # (absolute paths the UI serves as they are). Experiments created in the UI get the same
        # kind of location instead of mlflow-artifacts:/, which only a client going through this
        # server could write to.
        root = os.path.join(os.path.dirname(os.path.abspath(path)), "mlruns")
        cmd += ["--default-artifact-root", root]
    cmd += extra

    shown = (
        "127.0.0.1" if args.host in ("0.0.0.0", "") else "::1" if args.host == "::" else args.host
    )
    url = f"http://[{shown}]:{args.port}" if ":" in shown else f"http://{shown}:{args.port}"
    return cmd, url


def main(argv: Sequence[str] | None = None) -> None:
    cmd, url = build_command(argv)
    uri = cmd[cmd.index("--backend-store-uri") + 1]
    # The server's job runner (GenAI scorers, trace jobs) is half a dozen extra processes that
    # medcls runs never use; MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true brings it back.
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    # MLflow 3 opens on its GenAI pages; ?workflowType=machine_learning shows runs and charts.
    print(f"MLflow UI for {uri}: {url}/#/experiments?workflowType=machine_learning", flush=True)
    print("(Ctrl-C stops it)", flush=True)
    if os.name == "nt":  # no exec on Windows: wait for the server instead
        import subprocess

        sys.exit(subprocess.call(cmd))
    os.execv(cmd[0], cmd)  # the server takes over this process (signals, exit code)


if __name__ == "__main__":
    main()

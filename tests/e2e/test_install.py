"""streamq installs as one import name: the wheel holds only ``streamq``, and an app with its own
top-level ``services`` and ``shared`` packages (common names) runs a worker over its handler module and
submits through the client, its packages and streamq's side by side in one process."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

from streamq.testing import RedisServer, Service, free_port, wait_http, wait_until
from tests.support import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.standalone_only(reason="installs a wheel in a fresh venv")]

APP_TASKS = """
import services
import shared
from streamq import TaskContext, handler


@handler("report")
async def report(payload, ctx: TaskContext):
    return {"services": services.NAME, "shared": shared.NAME, "n": payload, "task": ctx.task_id}
"""

SUBMIT = """
import json, sys
import services, shared, streamq
import streamq.services.worker
with streamq.Client(sys.argv[1]) as client:
    task = client.wait(client.submit("report", 7).id, timeout=60)
print(json.dumps({"task": task.model_dump(mode="json"), "mine": [services.NAME, shared.NAME],
                  "worker_module": streamq.services.worker.__file__}))
"""


def _wheel(out: Path) -> Path:
    """The project's wheel, built offline (the dev install brings the build backend)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    [wheel] = out.glob("streamq-*.whl")
    return wheel


def _venv(path: Path, wheel: Path) -> Path:
    """A fresh venv with the wheel installed; its dependencies come from the project's own venv (a path
    entry, so nothing is downloaded and nothing of the checkout is importable)."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    python = path / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True)
    return path / "bin"


@pytest.mark.timeout(180)
def test_an_app_with_its_own_services_and_shared_packages_runs_streamq(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path / "dist")
    assert {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()} == {
        "streamq",
        "streamq-0.1.0.dist-info",
    }
    bin_dir = _venv(tmp_path / "venv", wheel)
    app = tmp_path / "app"
    for package in ("services", "shared"):
        (app / package).mkdir(parents=True)
        (app / package / "__init__.py").write_text(f'NAME = "the app\'s own {package}"\n')
    (app / "app_tasks.py").write_text(textwrap.dedent(APP_TASKS))

    server = RedisServer()
    port = free_port()
    env = {"STREAMQ_REDIS_URL": server.url, "STREAMQ_API_PORT": str(port), "STREAMQ_METRICS_PORT": "0"}
    api = Service("api", env, tmp_path, command=[str(bin_dir / "streamq"), "api"], cwd=app)
    worker = Service("worker", env, tmp_path, command=[str(bin_dir / "streamq"), "worker", "-H", "app_tasks"], cwd=app)
    try:
        wait_http(f"http://127.0.0.1:{port}/api/health")
        wait_until(lambda: "worker started" in worker.log(), 60, "the installed worker started")
        out = subprocess.run(
            [bin_dir / "python", "-c", SUBMIT, f"http://127.0.0.1:{port}"],
            cwd=app,
            check=True,
            capture_output=True,
            text=True,
            timeout=90,
        ).stdout
        seen = json.loads(out)
        task = seen["task"]
        assert task["status"] == "completed", task
        assert task["result"]["services"] == "the app's own services" and task["result"]["n"] == 7
        assert seen["mine"] == ["the app's own services", "the app's own shared"]
        assert seen["worker_module"].startswith(str(tmp_path / "venv"))  # the installed streamq, not the checkout
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]
        assert api.stop() == 0, api.log()[-3000:]
        server.stop()

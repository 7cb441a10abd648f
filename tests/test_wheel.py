"""The package as users get it: a wheel and an sdist, installed into a fresh virtual environment.

The wheel is built, checked with ``twine check`` (with the sdist), installed into a new virtual
environment outside the repository, and used from a folder outside the repository: ``stylefusion
--help``; ``stylefusion init --preset tiny`` then ``stylefusion detect`` on the carphone clip;
``stylefusion serve``, which answers HTTP on 127.0.0.1; ``stylefusion space --out d``, after which
``python d/app.py`` serves the page. Without the ``app`` extra, ``stylefusion serve`` names the
extra to install and exits 2.

How it fits in about a minute on 2 cores (installing torch, gradio and the rest into a new
environment would take minutes and gigabytes):

- the sources (``pyproject.toml``, ``README.md``, ``stylefusion/``) are copied to a temporary
  folder and built there with ``python -m build --no-isolation`` (no download of setuptools into an
  isolated build environment, and no ``build/`` or ``*.egg-info`` left in the shared checkout);
- the fresh environment is made with ``venv --without-pip``; this interpreter's pip installs the
  wheel into it (``pip --python FRESH install --no-deps --no-index``), so only the package comes
  from the wheel;
- the DEPENDENCIES come from the test interpreter's own site-packages through one ``.pth`` line in
  the fresh environment (a plain path line: the ``.pth`` files in that folder, such as the
  editable install's finder, are not processed, so the repository is not importable there). The
  fresh site-packages comes first on ``sys.path``; the test asserts that ``stylefusion`` imports
  from it, not from the repository;
- "without the app extra" is a second environment whose ``.pth`` points at a folder of links to
  the same site-packages minus gradio;
- the two servers start one after the other on the tiny checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest
from appserver import serve_app

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "stylefusion")
#: Files besides the Python modules that the CLI and the app need at run time.
DATA_FILES = ("stylefusion/templates/model_card.md.j2", "stylefusion/schemas/detection_result.schema.json",
              "stylefusion/space/Space.yaml")
APP_MODULES = ("stylefusion/app/__init__.py", "stylefusion/app/page.py", "stylefusion/app/model.py",
               "stylefusion/app/render.py", "stylefusion/app/demo.py", "stylefusion/app/_spaces.py")
RUN_TIMEOUT_S = 240


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "STYLEFUSION_MODEL")}
    env.update(HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", STYLEFUSION_NO_DEMO="1",
               STYLEFUSION_CACHE=str(tmp / "cache"), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    return env


def _run(cmd: list[str], cwd: Path, env: dict[str, str], ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S)
    if ok and proc.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} exited with {proc.returncode}:\n{proc.stdout[-2000:]}\n"
                    f"{proc.stderr[-3000:]}")
    return proc


def _make_venv(where: Path, deps: Path, wheel: Path) -> Path:
    """A new environment with the wheel installed and ``deps`` (a site-packages) on its path."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, timeout=60)
    python = where / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    (Path(purelib) / "_stylefusion_test_deps.pth").write_text(f"{deps}\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    "--no-index", "--disable-pip-version-check", str(wheel)], check=True, timeout=120)
    return where


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> dict[str, Path]:
    """The wheel and the sdist, built from a copy of the sources; twine-checked."""
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(REPO / name, src / name)
    out = tmp_path_factory.mktemp("dist")
    t0 = time.perf_counter()
    build = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--skip-dependency-check",
                            "--outdir", str(out), str(src)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    wheels, sdists = sorted(out.glob("*.whl")), sorted(out.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(p.name for p in out.iterdir())
    check = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", str(wheels[0]), str(sdists[0])],
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    print(f"\nbuilt and checked {wheels[0].name}, {sdists[0].name} in {time.perf_counter() - t0:.1f} s")
    return {"wheel": wheels[0], "sdist": sdists[0]}


@pytest.fixture(scope="module")
def fresh(dist, tmp_path_factory) -> dict[str, Path]:
    """A fresh environment with the wheel, and a folder outside the repository to run it from."""
    root = tmp_path_factory.mktemp("fresh")
    assert REPO not in root.parents
    deps = Path(sysconfig.get_paths()["purelib"])
    venv = _make_venv(root / "venv", deps, dist["wheel"])
    work = root / "work"
    work.mkdir()
    return {"venv": venv, "bin": venv / "bin", "work": work, "root": root}


@pytest.fixture(scope="module")
def tiny_model(fresh) -> Path:
    """``stylefusion init --preset tiny``, run from the installed package."""
    out = fresh["work"] / "tiny"
    proc = _run([fresh["bin"] / "stylefusion", "init", "--preset", "tiny", "--out", out.name], fresh["work"],
                _env(fresh["root"]))
    assert "UNTRAINED tiny checkpoint" in proc.stdout
    assert {p.name for p in out.iterdir()} >= {"config.json", "model.safetensors"}
    return out


def test_wheel_and_sdist_carry_the_app_and_the_data(dist):
    names = set(zipfile.ZipFile(dist["wheel"]).namelist())
    missing = [n for n in (*DATA_FILES, *APP_MODULES, "stylefusion/cli.py", "stylefusion/hub.py",
                           "stylefusion/model_ref.py") if n not in names]
    assert not missing, missing
    assert not any(n.startswith(("tests/", "benchmarks/", "hub/")) or n == "app.py" for n in names)
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "stylefusion = stylefusion.cli:main" in zipfile.ZipFile(dist["wheel"]).read(entry_points).decode()
    # The packaged manifest is the repository's (what `stylefusion space` and the default model read).
    packaged = zipfile.ZipFile(dist["wheel"]).read("stylefusion/space/Space.yaml")
    assert packaged == (REPO / "stylefusion" / "space" / "Space.yaml").read_bytes()
    import tarfile

    with tarfile.open(dist["sdist"]) as sdist:
        members = {m.name.split("/", 1)[1] for m in sdist.getmembers() if "/" in m.name}
    assert not [n for n in (*DATA_FILES, *APP_MODULES, "pyproject.toml", "README.md") if n not in members]


def test_installed_package_runs_from_the_wheel(fresh):
    env = _env(fresh["root"])
    where = _run([fresh["bin"] / "python", "-c",
                  "import stylefusion, importlib.resources as r; print(stylefusion.__file__); "
                  "print(all((r.files('stylefusion') / p).is_file() for p in "
                  "('templates/model_card.md.j2', 'schemas/detection_result.schema.json', 'space/Space.yaml')))"],
                 fresh["work"], env).stdout.split()
    assert Path(where[0]).is_relative_to(fresh["venv"]), where  # not the repository's copy
    assert where[1] == "True"
    help_text = _run([fresh["bin"] / "stylefusion", "--help"], fresh["work"], env).stdout
    for command in ("detect", "init", "serve", "space", "card", "push"):
        assert command in help_text


def test_detect_from_the_wheel(fresh, tiny_model, carphone):
    env = _env(fresh["root"])
    out = _run([fresh["bin"] / "stylefusion", "detect", carphone, "--model", tiny_model.name, "--json", "r.json"],
               fresh["work"], env)
    (result,) = json.loads((fresh["work"] / "r.json").read_text())["results"]
    assert result["label"] == "untrained" and result["p_fake"] is None and len(result["frames"]) == 32
    assert "1 of 1 videos analysed" in out.stderr


def test_serve_answers_http(fresh, tiny_model):
    env = _env(fresh["root"])
    with serve_app(tiny_model, fresh["root"] / "serve.log", timeout=180, env=env, cwd=fresh["work"],
                   command=[fresh["bin"] / "stylefusion", "serve"]) as (url, _), \
            urllib.request.urlopen(url + "config", timeout=30) as response:
        config = response.read().decode()
    assert "untrained" in config and str(tiny_model) in config and "could not be loaded" not in config


def test_space_folder_serves_the_page(fresh, tiny_model):
    env = _env(fresh["root"])
    work = fresh["work"]
    _run([fresh["bin"] / "stylefusion", "space", "--out", "d", "--model", tiny_model], work, env)
    assert {p.name for p in (work / "d").iterdir()} >= {"README.md", "app.py", "requirements.txt", "model"}
    # d/app.py passes its own --model (the copy in d/model); --host/--port reach it through sys.argv.
    with serve_app(None, fresh["root"] / "space.log", timeout=180, env=env, cwd=work,
                   command=[fresh["bin"] / "python", "d/app.py"]) as (url, _), \
            urllib.request.urlopen(url + "config", timeout=30) as response:
        config = response.read().decode()
    assert "untrained" in config and str((work / "d" / "model").resolve()) in config


def test_serve_without_the_app_extra_names_it(dist, fresh):
    """An environment with the package and every dependency but gradio: `serve` says what to install."""
    deps = Path(sysconfig.get_paths()["purelib"])
    no_gradio = fresh["root"] / "deps-without-gradio"
    no_gradio.mkdir()
    for entry in deps.iterdir():
        if not entry.name.lower().startswith(("gradio", "_stylefusion_test_deps")):
            (no_gradio / entry.name).symlink_to(entry)
    venv = _make_venv(fresh["root"] / "venv-no-app", no_gradio, dist["wheel"])
    env = _env(fresh["root"])
    proc = _run([venv / "bin" / "stylefusion", "serve"], fresh["work"], env, ok=False)
    assert proc.returncode == 2, proc.stderr
    assert 'pip install "stylefusion[app]"' in proc.stderr and "gradio" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert _run([venv / "bin" / "stylefusion", "serve", "--help"], fresh["work"], env).returncode == 0

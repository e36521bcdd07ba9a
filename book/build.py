"""Build the RHEL book: execute every notebook once, then render the HTML offline.

Usage::

    python book/build.py [--profile smoke|full] [--notebooks PATTERN] [--skip-execute]

Step 1 (:func:`execute_notebooks`) runs each notebook of ``notebooks/`` with papermill,
injecting ``profile=<profile>``, under a Jupyter kernel that points at this Python
(:func:`ensure_kernelspec`). Executed copies go to ``_build/executed/notebooks/``.

Step 2 (:func:`build_html`) copies ``_config.yml``, ``_toc.yml`` and ``book/`` into a staging
tree ``_build/stage/`` together with the executed notebooks, and runs Jupyter Book there with
its own execution off and warnings as errors. The site is written to ``_build/html/`` and
checked for references to outside hosts (:func:`find_external_resources`).

The functions are imported by the tests (``tests/book_fixtures.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import os
import re
import shutil
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
BUILD = ROOT / "_build"
EXECUTED = BUILD / "executed"
STAGE = BUILD / "stage"
HTML = BUILD / "html"
KERNEL_NAME = "rhel-book"
KERNEL_DISPLAY_NAME = "Python (rhel-book)"
PROFILES = ("smoke", "full")


class BookBuildError(RuntimeError):
    """A notebook failed, Jupyter Book reported a warning, or the site is not offline."""


@dataclass
class NotebookRun:
    """Outcome of executing one notebook."""

    name: str
    source: Path
    output: Path
    seconds: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


# ---------------------------------------------------------------------------------------------
# table of contents
# ---------------------------------------------------------------------------------------------
def toc_docnames(root: Path = ROOT) -> list[str]:
    """Document names listed in ``_toc.yml`` (root first, then in reading order)."""
    import yaml

    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    names: list[str] = [str(toc["root"])]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                names.append(str(entry["file"]))
            for key in ("chapters", "sections", "parts"):
                walk(entry.get(key))

    for key in ("chapters", "parts", "sections"):
        walk(toc.get(key))
    return [re.sub(r"\.(md|ipynb)$", "", n) for n in names]


def toc_source(docname: str, root: Path = ROOT) -> Path:
    """Source file of a toc entry (``.md`` or ``.ipynb``)."""
    for suffix in (".md", ".ipynb"):
        path = root / f"{docname}{suffix}"
        if path.exists():
            return path
    raise FileNotFoundError(f"_toc.yml lists {docname!r} but neither .md nor .ipynb exists")


def list_notebooks(pattern: str | None = None, root: Path = ROOT) -> list[Path]:
    """Notebooks of ``notebooks/``: those in ``_toc.yml`` first (in its order), then the rest.

    ``pattern`` selects by file name: a glob (``'01_*'``) or, without glob characters, a
    substring (``echo`` matches ``03_echo_explorer.ipynb``).
    """
    all_nbs = sorted((root / "notebooks").glob("*.ipynb"))
    order = {name: i for i, name in enumerate(toc_docnames(root))}
    all_nbs.sort(key=lambda p: (order.get(f"notebooks/{p.stem}", len(order)), p.name))
    if pattern:
        if any(c in pattern for c in "*?["):
            all_nbs = [p for p in all_nbs if fnmatch.fnmatch(p.name, pattern)]
        else:
            all_nbs = [p for p in all_nbs if pattern in p.name]
    return all_nbs


# ---------------------------------------------------------------------------------------------
# step 1: execution
# ---------------------------------------------------------------------------------------------
def ensure_kernelspec(name: str = KERNEL_NAME) -> str:
    """Make sure the Jupyter kernel ``name`` runs this interpreter (``sys.executable``).

    Installs the kernelspec under ``sys.prefix/share/jupyter/kernels`` (the virtual
    environment) when it is missing or points at another Python.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    def current_argv0() -> str | None:
        try:
            return KernelSpecManager().get_kernel_spec(name).argv[0]
        except NoSuchKernel:
            return None

    if current_argv0() == sys.executable:
        return name
    from ipykernel.kernelspec import install

    install(kernel_name=name, display_name=KERNEL_DISPLAY_NAME, prefix=sys.prefix)
    argv0 = current_argv0()
    if argv0 != sys.executable:
        raise BookBuildError(
            f"the Jupyter kernel {name!r} runs {argv0}, not {sys.executable}: another kernelspec "
            f"named {name!r} shadows the one in {sys.prefix}/share/jupyter/kernels "
            f"(see `jupyter kernelspec list`); remove it."
        )
    return name


@contextlib.contextmanager
def _kernel_environment(root: Path):
    """Environment the kernels inherit while notebooks run (restored afterwards)."""
    paths = [str(root)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    update = {
        # the repository's library first on the path
        "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths)),
        # ipykernel's debugger warns on stderr about frozen modules; not part of the book
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        # figures must reach the notebook even if the caller set another backend
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
    }
    with mock.patch.dict(os.environ, update):  # restores the environment on exit
        yield


def _error_summary(exc: BaseException) -> str:
    ename = getattr(exc, "ename", None)
    evalue = getattr(exc, "evalue", None)
    if ename is not None:
        return f"{ename}: {evalue}"
    return f"{type(exc).__name__}: {exc}"


def execute_notebooks(
    profile: str = "smoke",
    pattern: str | None = None,
    out_dir: Path = EXECUTED,
    root: Path = ROOT,
    timeout: int | None = 600,
    log=print,
) -> list[NotebookRun]:
    """Execute the notebooks with papermill into ``out_dir/notebooks/<name>.ipynb``.

    Every selected notebook runs (a failure does not stop the others); the returned list says
    which failed. The working directory of a notebook is its folder in the repository.
    """
    import papermill as pm

    from rhel_lib.reproduce import kernel_manager_class

    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, not {profile!r}")
    notebooks = list_notebooks(pattern, root)
    if not notebooks:
        raise BookBuildError(f"no notebook in {root / 'notebooks'} matches {pattern!r}")
    kernel = ensure_kernelspec()
    dest = Path(out_dir) / "notebooks"
    dest.mkdir(parents=True, exist_ok=True)
    toc = set(toc_docnames(root))

    runs: list[NotebookRun] = []
    t_total = time.perf_counter()
    for i, nb in enumerate(notebooks, 1):
        output = dest / nb.name
        note = "" if f"notebooks/{nb.stem}" in toc else "  (not in _toc.yml)"
        log(f"[{i}/{len(notebooks)}] executing {nb.name} (profile={profile}){note} ...", flush=True)
        t0 = time.perf_counter()
        error = None
        for attempt in (1, 2):
            try:
                with _kernel_environment(root):
                    pm.execute_notebook(
                        str(nb),
                        str(output),
                        parameters={"profile": profile},
                        kernel_name=kernel,
                        # this interpreter, local sockets in a private folder: no TCP ports
                        # that a kernel started elsewhere at the same moment could also pick
                        kernel_manager_class=kernel_manager_class(),
                        language="python",
                        cwd=str(nb.parent),
                        progress_bar=False,
                        log_output=False,
                        execution_timeout=timeout,
                    )
                error = None
                break
            except Exception as exc:  # papermill raises PapermillExecutionError on a cell error
                error = _error_summary(exc)
                # nbclient can stall on widget comm messages (jupyter/nbclient#312): a cell that
                # times out is retried once in a fresh kernel; real errors are not retried.
                timed_out = "timeout" in type(exc).__name__.lower() or "timed out" in str(exc)
                if attempt == 1 and timed_out:
                    log(f"[{i}/{len(notebooks)}] {nb.name}: cell timed out, retrying once")
                    continue
                break
        seconds = time.perf_counter() - t0
        runs.append(NotebookRun(nb.name, nb, output, seconds, error))
        status = "ok" if error is None else f"FAILED: {error}"
        log(f"[{i}/{len(notebooks)}] {nb.name}: {status} ({seconds:.1f} s)", flush=True)
    n_fail = sum(not r.ok for r in runs)
    log(
        f"executed {len(runs)} notebook(s) in {time.perf_counter() - t_total:.1f} s"
        + (f", {n_fail} failed" if n_fail else ""),
        flush=True,
    )
    return runs


# ---------------------------------------------------------------------------------------------
# step 2: HTML
# ---------------------------------------------------------------------------------------------
_IGNORE = shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints", "*.pyc", "build.py")


def stage_tree(executed_dir: Path = EXECUTED, stage_dir: Path = STAGE, root: Path = ROOT) -> Path:
    """Create the source tree Jupyter Book reads: the book files plus executed notebooks.

    Every notebook in the table of contents must have an executed copy in ``executed_dir``.
    """
    stage_dir = Path(stage_dir)
    if stage_dir.exists():
        shutil.rmtree(stage_dir)
    stage_dir.mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(root / name, stage_dir / name)
    shutil.copytree(root / "book", stage_dir / "book", ignore=_IGNORE)
    # non-notebook files next to the notebooks (images, small data) come along
    shutil.copytree(
        root / "notebooks",
        stage_dir / "notebooks",
        ignore=shutil.ignore_patterns("*.ipynb", ".ipynb_checkpoints", "__pycache__"),
    )
    missing, stale = [], []
    for docname in toc_docnames(root):
        src = toc_source(docname, root)
        if src.suffix != ".ipynb":
            continue
        executed = Path(executed_dir) / src.relative_to(root)
        if not executed.exists():
            missing.append(str(src.relative_to(root)))
            continue
        if executed.stat().st_mtime < src.stat().st_mtime:
            stale.append(str(src.relative_to(root)))
        target = stage_dir / src.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(executed, target)
    if missing:
        raise BookBuildError(
            "no executed copy of "
            + ", ".join(missing)
            + f" in {executed_dir}: run `python book/build.py` without --skip-execute/--notebooks"
        )
    for name in stale:
        print(f"warning: the executed copy of {name} is older than the notebook", flush=True)
    return stage_dir


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _run_streaming(cmd: list[str], cwd: Path, quiet: bool) -> tuple[int, str]:
    tail: deque[str] = deque(maxlen=80)
    env = dict(os.environ)
    plain = quiet or not sys.stdout.isatty()
    if plain:
        env["NO_COLOR"] = "1"
        env.pop("FORCE_COLOR", None)
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        errors="replace",
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if plain:
            line = _ANSI.sub("", line)  # Jupyter Book colours its log even when piped
        tail.append(line)
        if not quiet:
            sys.stdout.write(line)
            sys.stdout.flush()
    return proc.wait(), "".join(tail)


def build_html(
    executed_dir: Path = EXECUTED,
    root: Path = ROOT,
    build_dir: Path = BUILD,
    quiet: bool = False,
) -> Path:
    """Build ``build_dir/html`` from the executed notebooks; returns the path of index.html.

    Jupyter Book runs with ``execute_notebooks: off`` (see ``_config.yml``) and
    ``-W -n --keep-going --all``: any Sphinx warning fails the build.
    """
    build_dir = Path(build_dir)
    stage = stage_tree(executed_dir, build_dir / "stage", root)
    html_dir = build_dir / "html"
    if html_dir.exists():
        shutil.rmtree(html_dir, ignore_errors=True)  # no stale pages of removed chapters
    cmd = [
        sys.executable,
        "-c",
        "from jupyter_book.cli.main import main; main()",
        "build",
        str(stage),
        "--path-output",
        str(build_dir.parent),
        "--builder",
        "html",
        "--all",
        "-W",
        "-n",
        "--keep-going",
    ]
    if build_dir.name != "_build":
        raise ValueError("Jupyter Book always writes into <path-output>/_build")
    t0 = time.perf_counter()
    rc, tail = _run_streaming(cmd, cwd=stage, quiet=quiet)
    if rc != 0:
        raise BookBuildError(f"jupyter-book build failed (exit {rc}); last lines:\n{tail}")
    external = find_external_resources(html_dir)
    if external:
        raise BookBuildError(
            "the built site loads resources from outside hosts:\n  " + "\n  ".join(external)
        )
    print(f"built HTML in {time.perf_counter() - t0:.1f} s", flush=True)
    return html_dir / "index.html"


# tags/attributes through which a page *loads* something (plain <a href> links are fine)
_LOADING_ATTR = re.compile(
    r"<(script|link|img|iframe|source|video|audio|embed|object)\b[^>]*?"
    r"\b(src|href|data)\s*=\s*[\"']?((?:https?:)?//[^\"'\s>]+)",
    flags=re.IGNORECASE,
)
_CSS_URL = re.compile(r"url\(\s*[\"']?((?:https?:)?//[^\"')\s]+)", flags=re.IGNORECASE)
_CSS_IMPORT = re.compile(r"@import\s+[\"']((?:https?:)?//[^\"']+)", flags=re.IGNORECASE)


def find_external_resources(html_dir: Path = HTML) -> list[str]:
    """References to other hosts that a browser would load, as ``file: url`` strings.

    Scans every ``.html`` and ``.css`` file of the site (scripts are checked in the browser).
    """
    html_dir = Path(html_dir)
    found = []
    for path in sorted(html_dir.rglob("*")):
        if path.suffix not in (".html", ".css") or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        urls = [m.group(3) for m in _LOADING_ATTR.finditer(text)] if path.suffix == ".html" else []
        urls += [m.group(1) for m in _CSS_URL.finditer(text)]
        urls += [m.group(1) for m in _CSS_IMPORT.finditer(text)]
        rel = path.relative_to(html_dir)
        found += [f"{rel}: {u}" for u in dict.fromkeys(urls)]
    return found


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=PROFILES, default="smoke")
    parser.add_argument(
        "--notebooks",
        metavar="PATTERN",
        default=None,
        help="execute only notebooks whose file name matches (glob, or substring); the others "
        "are rendered from their previous executed copies",
    )
    parser.add_argument(
        "--skip-execute",
        action="store_true",
        help="do not execute; render the executed copies already in _build/executed",
    )
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    parser.add_argument("--quiet", action="store_true", help="hide Jupyter Book's log")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    try:
        if not args.skip_execute:
            runs = execute_notebooks(args.profile, args.notebooks, timeout=args.timeout)
            failed = [r for r in runs if not r.ok]
            if failed:
                for r in failed:
                    print(f"error: notebook {r.source.relative_to(ROOT)} failed: {r.error}")
                    print(f"       its executed copy (with the traceback): {r.output}")
                return 1
        index = build_html(quiet=args.quiet)
    except BookBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"book built in {time.perf_counter() - t0:.1f} s")
    print(index)
    return 0


if __name__ == "__main__":
    sys.exit(main())

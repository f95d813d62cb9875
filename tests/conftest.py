"""Shared fixtures: settings on temporary folders, and the real sample knowledge base built once per session."""

from __future__ import annotations

import ctypes
import gc
import inspect
import os
import resource
import sys
from pathlib import Path

import pytest

from kgqa import assets
from kgqa.settings import Settings


def pytest_configure(config):
    """The test run is an edge like the CLI: no hub is ever reached, tokenizers stay single-process."""
    assets.stay_offline()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_collection_modifyitems(config, items):
    """Skip `gpu` tests where CUDA is absent (CI never has it)."""
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


# --- memory: each test's growth of the test process's resident memory, bounded ----------------------------
#
# ``VmHWM`` is the process's high-water mark: a test that raises it past ``KGQA_TEST_MAX_RSS_MB``
# (default below; 0 switches the bound off) fails at its teardown, naming itself, so a test that would
# take the machine's memory is found by its name, not by the OOM killer. Child processes (a served app,
# an ingest's workers) count through ``RUSAGE_CHILDREN``, the largest child waited for. Reading both is
# two system calls a test. With ``KGQA_TEST_RSS_REPORT=<file>`` the tests that raised the peak most,
# and those that kept most memory after they ended, are written there at the end of the session.
MAX_RSS_MB = 8192  # the bundled LM peaks at 3.5 GB a model, 5.5 GB where a test loads a second beside it
_RSS_KEY = pytest.StashKey[tuple[float, float, float]]()
_RSS_RECORDS: list[tuple[str, float, float, float, float, float]] = []


def _rss_now_mb() -> float:
    """The process's resident memory now (MB); 0 where /proc is not there."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # pragma: no cover - not Linux
        return 0.0


def _peak_mb() -> float:
    """This process's own high-water mark (MB): ``VmHWM``, which starts afresh with the program.

    ``ru_maxrss`` does not: Linux carries it over from the parent through fork and exec, so a
    pytest started by a large one would read the parent's peak as its own.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # pragma: no cover


def _rss_marks() -> tuple[float, float, float]:
    """(resident now, this process's peak, the largest waited-for child's peak), in MB (ru_maxrss is in KiB)."""
    peak = _peak_mb()
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return _rss_now_mb(), peak, children


def rss_bound_mb() -> float:
    return float(os.environ.get("KGQA_TEST_MAX_RSS_MB", MAX_RSS_MB))


def rss_overrun(before: tuple[float, float, float], after: tuple[float, float, float], bound: float) -> str | None:
    """Why a test that moved the marks from ``before`` to ``after`` broke the bound, or None."""
    if bound <= 0:
        return None
    for name, old, new in (("the test process", before[1], after[1]), ("a child process", before[2], after[2])):
        if new > bound >= old:
            return (f"{name} peaked at {new:.0f} MB resident during this test, over the {bound:.0f} MB bound "
                    f"(KGQA_TEST_MAX_RSS_MB); before it the peak was {old:.0f} MB")
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    item.stash[_RSS_KEY] = _rss_marks()  # before its fixtures, module and session ones included, are set up
    yield
    if nextitem is None or nextitem.module is not item.module:  # its module's fixtures are torn down and, now
        _release_after_module(item.module.__name__)  # that the protocol has dropped the test's arguments, unheld


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if call.when != "teardown" or _RSS_KEY not in item.stash:
        return
    before, after = item.stash[_RSS_KEY], _rss_marks()
    _RSS_RECORDS.append((item.nodeid, after[1] - before[1], after[0] - before[0], after[1], after[2] - before[2],
                         after[2]))
    overrun = rss_overrun(before, after, rss_bound_mb())
    report = outcome.get_result()
    if overrun and report.passed:
        report.outcome, report.longrepr = "failed", overrun


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get("KGQA_TEST_RSS_REPORT")
    if not path or not _RSS_RECORDS:
        return
    self_peak = max(r[3] for r in _RSS_RECORDS)
    child_peak = max(r[5] for r in _RSS_RECORDS)
    lines = [f"peak resident memory: test process {self_peak:.0f} MB, largest child {child_peak:.0f} MB; "
             f"bound {rss_bound_mb():.0f} MB", "", "raised the test process's peak most (MB: rise, peak after):"]
    lines += [f"{r[1]:8.0f} {r[3]:8.0f}  {r[0]}" for r in sorted(_RSS_RECORDS, key=lambda r: -r[1])[:25] if r[1] >= 1]
    lines += ["", "kept the most resident memory after it ended (MB):"]
    lines += [f"{r[2]:8.0f}  {r[0]}" for r in sorted(_RSS_RECORDS, key=lambda r: -r[2])[:15] if r[2] >= 1]
    lines += ["", "raised the largest child's peak (MB: rise, child peak after):"]
    lines += [f"{r[4]:8.0f} {r[5]:8.0f}  {r[0]}" for r in sorted(_RSS_RECORDS, key=lambda r: -r[4])[:10] if r[4] >= 1]
    lines += ["", "resident at each module's end, and after its left-behind models were released (MB):"]
    lines += [f"{b:8.0f} {a:8.0f}  {m} ({n} LM workers stopped)" for m, b, a, n in _RELEASES]
    Path(path).write_text("\n".join(lines) + "\n")


def _owner_is_orphaned(owner) -> bool:
    """Whether nothing but its own bound methods (a worker thread's target) holds ``owner``: no object refers to
    it, and no running function has it in a local variable (locals are not objects the collector sees)."""
    for holder in gc.get_referrers(owner):  # a loop, not a generator: its closure would hold ``owner`` too
        if not (inspect.ismethod(holder) and holder.__self__ is owner):
            return False
    for frame in sys._current_frames().values():
        while frame is not None:
            if frame.f_code is not _owner_is_orphaned.__code__:
                for value in frame.f_locals.values():
                    if value is owner:
                        return False
            frame = frame.f_back
    return True


def _close_orphaned_lm_workers() -> int:
    batching = sys.modules.get("models.lm.batching")
    if batching is None:  # no local LM was loaded
        return 0
    return batching.close_workers(lambda queue: _owner_is_orphaned(queue.owner))


def release_orphaned_models() -> int:
    """Stop the LM worker threads whose generator nothing else holds any more, and give the memory back.

    A ``LocalGenerator`` (a QA engine's, or a test's own) runs a worker thread whose target is the
    generator itself, so a generator that is never closed is never freed: its model (about 2 GB
    resident for the bundled LM on the onnx backend) stays for the rest of the session. A module
    whose fixture warms a ``QAEngine`` (which has no ``close``) left one behind each; a whole run
    piled them up to 13.1 GB in the test process. Returns how many workers were stopped.
    """
    gc.collect()
    stopped = _close_orphaned_lm_workers()
    gc.collect()
    try:  # glibc keeps freed memory in its arenas; hand it back so the next module starts low
        ctypes.CDLL(None).malloc_trim(0)
    except (AttributeError, OSError):  # pragma: no cover - not glibc
        pass
    return stopped


_RELEASES: list[tuple[str, float, float, int]] = []  # (module, resident before, after, LM workers stopped)


def _release_after_module(module: str) -> None:
    """After every test module, once its fixtures are torn down, release the models it left behind."""
    before = _rss_now_mb()
    stopped = release_orphaned_models()
    _RELEASES.append((module, before, _rss_now_mb(), stopped))


@pytest.fixture(scope="session")
def project_settings() -> Settings:
    """The project's own data folder: where `kgqa setup` put the sample dump and the converted LM."""
    return Settings()


@pytest.fixture(scope="session")
def lm_path(project_settings: Settings) -> str:
    """The converted bundled LM if setup made it, else the GGUF itself."""
    return assets.resolve_lm(project_settings).label


@pytest.fixture(scope="session")
def sample_dump(project_settings: Settings) -> Path:
    path = assets.sample_dump_path(project_settings)
    if not path.is_file():
        pytest.fail(f"sample dump missing at {path}: run `make assets` (or `kgqa setup`)")
    return path


@pytest.fixture
def tmp_settings(tmp_path: Path, lm_path: str, project_settings: Settings) -> Settings:
    """Settings on an empty data folder, sharing the bundled models."""
    return Settings(data_dir=tmp_path / "data", lm_path=lm_path, models_dir=project_settings.models_dir)


@pytest.fixture(scope="session")
def sample_kb(
    tmp_path_factory: pytest.TempPathFactory, lm_path: str, sample_dump: Path, project_settings: Settings
) -> Settings:
    """The real sample dump ingested once per session into a temporary data folder (read-only for tests).

    ``KGQA_TEST_KB_DIR`` points at an already built sample knowledge base instead,
    which saves the ingest when iterating locally.
    """
    prebuilt = os.environ.get("KGQA_TEST_KB_DIR")
    if prebuilt:
        return Settings(data_dir=Path(prebuilt), lm_path=lm_path, models_dir=project_settings.models_dir)
    from kg.ingest import ingest_dump

    settings = Settings(
        data_dir=tmp_path_factory.mktemp("sample-kb") / "data", lm_path=lm_path, models_dir=project_settings.models_dir
    )
    ingest_dump(settings, sample_dump, progress=False)
    return settings


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL server for the session (``tests/helpers/databases.py``), stopped at its end.

    When none can be started the tests that need it fail, saying why; only
    ``KGQA_TEST_POSTGRES=0`` turns them into skips.
    """
    from tests.helpers.databases import POSTGRES_SWITCH, PostgresUnavailable, postgres_wanted, start_postgres

    if not postgres_wanted():
        pytest.skip(f"{POSTGRES_SWITCH}=0: PostgreSQL tests switched off")
    try:
        server = start_postgres()
    except PostgresUnavailable as exc:
        reason = str(exc)
    else:
        yield server
        server.stop()
        return
    pytest.fail(f"no PostgreSQL server for the tests: {reason} ({POSTGRES_SWITCH}=0 skips them)", pytrace=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_settings(request: pytest.FixtureRequest, tmp_settings: Settings):
    """``tmp_settings`` on a fresh, empty database of each backend, so a store test runs once per backend."""
    if request.param == "sqlite":
        yield tmp_settings
        return
    server = request.getfixturevalue("postgres_server")
    url = server.create_database()
    yield tmp_settings.with_overrides(database_url=url)
    server.drop_database(url)

"""Shared fixtures: settings on temporary folders, and the real sample knowledge base built once per session."""

from __future__ import annotations

import os
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

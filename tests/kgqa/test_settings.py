"""Settings come from KGQA_* variables, default to the data folder, and are overridable."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from kgqa.settings import PROJECT_ROOT, Settings


def test_defaults_live_under_the_data_folder(monkeypatch):
    for name in ("KGQA_DATA_DIR", "KGQA_DATABASE_URL", "KGQA_LM_PATH", "KGQA_DEVICE"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.data_dir == PROJECT_ROOT / "data"
    assert settings.database_url == f"sqlite:///{PROJECT_ROOT / 'data' / 'kgqa.db'}"
    assert settings.device == "auto"
    assert settings.faiss_path.parent == settings.data_dir / "index"


def test_environment_variables_are_read(monkeypatch, tmp_path):
    monkeypatch.setenv("KGQA_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("KGQA_DEVICE", "cpu")
    monkeypatch.setenv("KGQA_TOP_K", "7")
    settings = Settings()
    assert settings.data_dir == tmp_path
    assert settings.database_url == f"sqlite:///{tmp_path / 'kgqa.db'}"
    assert settings.device == "cpu"
    assert settings.top_k == 7


def test_explicit_database_url_wins(monkeypatch):
    monkeypatch.setenv("KGQA_DATABASE_URL", "sqlite:///:memory:")
    assert Settings().database_url == "sqlite:///:memory:"


def test_overrides_make_a_new_object_and_move_the_database(tmp_path):
    base = Settings(data_dir=Path("/nonexistent"))
    moved = base.with_overrides(data_dir=tmp_path, top_k=3)
    assert moved.database_url == f"sqlite:///{tmp_path / 'kgqa.db'}"
    assert moved.top_k == 3 and base.top_k == 10
    with pytest.raises(ValidationError):
        base.top_k = 9  # frozen


def test_invalid_values_are_rejected(monkeypatch):
    monkeypatch.setenv("KGQA_DEVICE", "tpu")
    with pytest.raises(ValidationError):
        Settings()


def test_moving_the_data_folder_keeps_an_explicit_models_folder(tmp_path):
    shared = Settings(data_dir=tmp_path / "a", models_dir=tmp_path / "models")
    assert shared.with_overrides(data_dir=tmp_path / "b").models_dir == tmp_path / "models"
    derived = Settings(data_dir=tmp_path / "a")
    assert derived.models_dir == tmp_path / "a" / "models"
    assert derived.with_overrides(data_dir=tmp_path / "b").models_dir == tmp_path / "b" / "models"

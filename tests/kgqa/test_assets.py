"""Bundled assets are found on disk; a missing or wrong one gives a one-line error, not a traceback."""

import subprocess
import sys

import pytest

from kgqa import assets
from kgqa.settings import Settings


def test_bundled_assets_are_found(project_settings):
    assert assets.bundled_gguf_path().name == assets.BUNDLED_GGUF
    assert (assets.resolve_embedder(project_settings) / "modules.json").is_file()


def test_configured_gguf_file_is_used(tmp_path):
    gguf = assets.bundled_gguf_path()
    source = assets.resolve_lm(Settings(data_dir=tmp_path, lm_path=str(gguf)))
    assert (source.folder, source.gguf_file) == (gguf.parent, gguf.name)


def test_unconverted_data_folder_falls_back_to_the_gguf(tmp_path):
    source = assets.resolve_lm(Settings(data_dir=tmp_path))
    assert source.gguf_file == assets.BUNDLED_GGUF


def test_wrong_model_path_is_a_clear_error(tmp_path):
    with pytest.raises(assets.AssetMissing, match="KGQA_LM_PATH"):
        assets.resolve_lm(Settings(data_dir=tmp_path, lm_path=str(tmp_path / "nope")))
    with pytest.raises(assets.AssetMissing, match="KGQA_EMBEDDER_PATH"):
        assets.resolve_embedder(Settings(data_dir=tmp_path, embedder_path=str(tmp_path)))


def test_cli_reports_a_wrong_model_path_in_one_line(tmp_path):
    env = {"KGQA_DATA_DIR": str(tmp_path), "KGQA_EMBEDDER_PATH": str(tmp_path / "missing"), "PATH": ""}
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli", "setup", "--no-dump", "--no-lm"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "KGQA_EMBEDDER_PATH" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_reports_an_invalid_setting_in_one_line(tmp_path):
    env = {"KGQA_DATA_DIR": str(tmp_path), "KGQA_DEVICE": "tpu", "PATH": ""}
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli", "kg", "stats"], capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("kgqa: invalid setting: KGQA_DEVICE")
    assert "Traceback" not in proc.stderr

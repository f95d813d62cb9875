"""One typed settings object, read from ``KGQA_*`` environment variables.

It is built once at the edge (CLI, app factory, test fixture) and passed in
explicitly; nothing deeper in the code reads the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Where the knowledge base lives, which models to use and the service limits."""

    model_config = SettingsConfigDict(env_prefix="KGQA_", frozen=True, extra="forbid")

    # Everything the service reads or writes lives under this folder.
    data_dir: Path = PROJECT_ROOT / "data"
    # Any SQLAlchemy URL; empty means sqlite:///<data_dir>/kgqa.db.
    database_url: str = ""
    # Prepared models (converted LM, embedder export); empty means <data_dir>/models.
    # Several knowledge bases can share one models folder.
    models_dir: Path | None = None
    # A local HF model folder or a .gguf file; empty means the bundled SmolLM2-135M-Instruct.
    lm_path: str = ""
    # A local sentence-transformers folder; empty means the bundled all-MiniLM-L6-v2.
    embedder_path: str = ""
    # The embedder's ONNX export on CPU: "int8" (dynamic int8) or "fp32" (unquantised, ~1.5x slower per query;
    # README, "Retrieval on a held-out corpus", measures both). Re-ingest after changing it, so passages match queries.
    embedder_precision: Literal["int8", "fp32"] = "int8"
    # "auto" picks cuda when available, else cpu.
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # What decodes: "onnx" (onnxruntime decoder, cpu only), "transformers" (generate),
    # "llamacpp" (llama.cpp in process, a GGUF on its own quantised kernels), or "auto":
    # llamacpp for a GGUF file on cpu, onnx for a Llama-family fp32 model on cpu, else
    # transformers (models/lm/backends.py says why).
    lm_backend: Literal["auto", "onnx", "transformers", "llamacpp"] = "auto"
    # Generation on an OpenAI-compatible server instead (vLLM, TGI, llama.cpp, Ollama):
    # its base URL, e.g. http://gpu-host:8000/v1; empty runs the LM in process.
    lm_url: str = ""
    # The model to ask that server for; empty takes the first one its /models lists.
    lm_model: str = ""
    # Sent as "Authorization: Bearer <key>" when set.
    lm_api_key: str = Field(default="", repr=False)
    # Seconds the server may stay silent: the whole answer without streaming, between chunks with it.
    lm_timeout_s: float = Field(default=120.0, gt=0)
    # Retries of a connection failure or HTTP 429/5xx, with exponential backoff, before the first token.
    lm_retries: int = Field(default=2, ge=0, le=10)

    # QA engine knobs.
    # The reader's fitted model (`kgqa eval fit-reader --out FILE`); empty means the shipped qa/reader_model.json.
    reader_model: str = ""
    # The claim checker's fitted model (`kgqa eval fit-checker`, or `kgqa eval calibrate` for your own LM);
    # empty means the shipped qa/checker_model.json.
    checker_model: str = ""
    # Passages an answer is read from (the prompt holds those its token budget fits, in rank order).
    top_k: int = Field(default=10, ge=1, le=50)
    max_new_tokens: int = Field(default=96, ge=1, le=2048)
    # Evidence budget in prompt tokens; 0 means pick by device (small on CPU, large on GPU).
    evidence_tokens: int = Field(default=0, ge=0)

    # Service limits.
    max_question_chars: int = Field(default=1000, ge=1)
    # What a question may cost, in the LM's tokens: a 1,000-character English question is ~200, the same
    # length of CJK characters or combining marks 2,000-2,900 (41-53 s an answer instead of ~2 s).
    max_question_tokens: int = Field(default=256, ge=1)
    max_history_tokens: int = Field(default=512, ge=0)  # the earlier turns the prompt keeps, together
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    rate_limit_per_minute: int = Field(default=120, ge=0)  # 0 disables rate limiting
    # Admission: at most max_concurrent answers are generated at once, max_waiting more
    # requests wait in line, the rest get 503 + Retry-After at once. Measured with
    # `bench/serve.py --sweep 1,2,4,8` on the 2-core CPU (shared, load average 8-11):
    # 1/2/4/8 at once gave 0.16/0.22/0.15/0.15 answers/s at p95 13/12/33/58 s, so 2 at once
    # (the most answers/s and the lowest p95) and a line of 10 s budget x 0.22/s = 2.
    max_concurrent: int = Field(default=2, ge=1)
    max_waiting: int = Field(default=2, ge=0)
    batch_size: int = Field(default=8, ge=1)

    @model_validator(mode="after")
    def _fill_derived_defaults(self) -> "Settings":
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{self.data_dir / 'kgqa.db'}")
        if self.models_dir is None:
            object.__setattr__(self, "models_dir", self.data_dir / "models")
        return self

    def with_overrides(self, **changes: object) -> "Settings":
        """A copy with some fields replaced; tests use it instead of touching the environment.

        Moving ``data_dir`` moves the database and models folder too, unless they
        were set explicitly (to somewhere other than their default place).
        """
        values = self.model_dump()
        if "data_dir" in changes:
            if "database_url" not in changes and self.database_url == f"sqlite:///{self.data_dir / 'kgqa.db'}":
                values["database_url"] = ""
            if "models_dir" not in changes and self.models_dir == self.data_dir / "models":
                values["models_dir"] = None
        values.update(changes)
        return Settings(**values)

    # Derived paths: one place that says how the data folder is laid out.
    @property
    def dumps_dir(self) -> Path:
        return self.data_dir / "dumps"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"

    @property
    def faiss_path(self) -> Path:
        return self.index_dir / "passages.faiss"

    @property
    def graph_path(self) -> Path:
        return self.index_dir / "graph.pickle"

    @property
    def eval_dir(self) -> Path:
        return self.data_dir / "eval"

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"


def command_settings(ctx) -> Settings:
    """The settings a ``kgqa`` command runs with: those its caller put in the click context, else ``KGQA_*``.

    Tests invoke commands with ``obj={"settings": ...}``; under the ``kgqa`` group the
    context object is Flask's ``ScriptInfo``, whose ``data`` dict holds them instead.
    Read once per invocation and shared by the group and its subcommands.
    """
    store = ctx.find_object(dict)
    if store is None:
        info = ctx.find_root().obj
        store = info.data if isinstance(getattr(info, "data", None), dict) else ctx.ensure_object(dict)
    return store.setdefault("settings", Settings())

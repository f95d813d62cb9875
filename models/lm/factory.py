"""``make_generator(settings)``: the one place that turns settings into the generator that writes answers.

- ``KGQA_LM_URL`` set: ``OpenAIGenerator``, any OpenAI-compatible server (``KGQA_LM_BACKEND`` and
  ``KGQA_LM_PATH`` then choose nothing, except that the latter's tokenizer counts tokens);
- else, when ``llamacpp_choice`` says llama.cpp runs the model (``KGQA_LM_BACKEND=llamacpp``, or
  ``auto`` meeting a GGUF on cpu): ``LlamaCppGenerator``;
- else ``LocalGenerator``, which loads the model and opens the onnx or transformers backend itself.

The QA engine calls this and never names a backend. Nothing loads here: each generator
loads its model on ``warm_up()``.
"""

from __future__ import annotations

from kgqa.settings import Settings
from models.lm.generator import Generator


def make_generator(settings: Settings) -> Generator:
    if settings.lm_url:
        from models.lm.remote import OpenAIGenerator

        return OpenAIGenerator(settings)
    from models.lm.backends import llamacpp_choice

    choice = llamacpp_choice(settings)
    if choice is not None:
        from models.lm.llamacpp import LlamaCppGenerator

        return LlamaCppGenerator(settings, reason=choice.reason)
    from models.lm.local_generator import LocalGenerator

    return LocalGenerator(settings)

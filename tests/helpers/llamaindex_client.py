"""Ask ``/v1`` through LlamaIndex's ``OpenAILike`` and print what it read, as one JSON object.

Run by ``tests/app/test_framework_citations.py`` with the Python of an environment that has
``llama-index-llms-openai-like`` (``KGQA_LLAMAINDEX_PYTHON``): its OpenAI integration pins ``openai<3``,
so it cannot share kgqa's environment. It imports nothing of kgqa.

    python tests/helpers/llamaindex_client.py http://127.0.0.1:5000/v1 "What is the capital of Alabama?"
"""

from __future__ import annotations

import json
import sys


def annotations_of(obj) -> list[dict]:
    """The ``annotations`` of an openai message or delta (a typed field or an extra one), or of a dict, as
    Chat Completions annotations (``{"type", "url_citation": {...}}``; the Responses API's are flat)."""
    if isinstance(obj, dict):
        notes = obj.get("annotations") or []
    else:
        notes = getattr(obj, "annotations", None) or (getattr(obj, "model_extra", None) or {}).get("annotations") or []
    notes = [n if isinstance(n, dict) else n.model_dump() for n in notes]
    return [n if "url_citation" in n else {"type": n["type"], "url_citation": n} for n in notes]


def main(base_url: str, question: str) -> dict:
    import openai
    from llama_index.core.llms import ChatMessage
    from llama_index.llms.openai import OpenAIResponses
    from llama_index.llms.openai_like import OpenAILike

    messages = [ChatMessage(role="user", content=question)]
    llm = OpenAILike(model="kgqa", api_base=base_url, api_key="unused", is_chat_model=True, max_retries=0,
                     timeout=60, context_window=4096)
    chat = llm.chat(messages)
    streamed, stream_notes = "", []
    for part in llm.stream_chat(messages):
        streamed = part.message.content
        if part.raw is not None and part.raw.choices:
            stream_notes += annotations_of(part.raw.choices[0].delta)

    # OpenAIResponses reads the Responses API (/v1/responses); it checks the model name against OpenAI's list
    # (kgqa accepts any name), and keeps the annotations in the ChatResponse's additional_kwargs.
    responses = OpenAIResponses(model="gpt-4o", api_base=base_url, api_key="unused", max_retries=0, timeout=60)
    replied = responses.chat(messages)
    for last in responses.stream_chat(messages):
        pass

    defaults = OpenAILike(model="kgqa", api_base=base_url, api_key="unused", max_retries=0, timeout=60)
    default_errors = {}
    for name, call in [("complete", lambda: defaults.complete(question)), ("chat", lambda: defaults.chat(messages))]:
        try:  # the defaults: is_chat_model=False posts to /v1/completions
            call()
            default_errors[name] = None
        except openai.APIStatusError as exc:
            default_errors[name] = {"status": exc.status_code, "message": str(exc)}
    return {
        "chat": {"content": chat.message.content, "annotations": annotations_of(chat.raw.choices[0].message),
                 "additional_kwargs": sorted(chat.message.additional_kwargs)},
        "stream_chat": {"content": streamed, "annotations": stream_notes},
        "responses_chat": {"content": replied.message.content,
                           "annotations": annotations_of(replied.additional_kwargs)},
        "responses_stream_chat": {"content": last.message.content,
                                  "annotations": annotations_of(last.additional_kwargs)},
        "defaults_errors": default_errors,
        "versions": {"openai": openai.__version__},
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))

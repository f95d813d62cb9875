"""Fast unit tests of the generation plumbing: configs, per-row stop strings, the batching queue, bad paths."""

from __future__ import annotations

import threading

import pytest

from kgqa.assets import AssetMissing
from models.lm.batching import BatchingQueue, Request
from models.lm.generator import GenerationConfig
from models.lm.local_generator import LocalGenerator
from models.lm.streaming import BatchTracker, Job, RowText


class CharTokenizer:
    """One token per character: enough to drive detokenisation honestly without a model."""

    def decode(self, ids, **_):
        return "".join(chr(i) for i in ids)


def run_row(text: str, stop=(), limit=100) -> tuple[list[str], RowText]:
    pieces: list[str] = []
    row = RowText(CharTokenizer(), stop, limit, pieces.append)
    for ch in text:
        if row.done:
            break
        row.push(ord(ch))
    row.finish("length")
    return pieces, row


def test_config_rejects_bad_values_and_accepts_one_stop_string():
    assert GenerationConfig.build(stop="END").stop == ("END",)
    with pytest.raises(ValueError):
        GenerationConfig(max_new_tokens=0)
    with pytest.raises(ValueError):
        GenerationConfig(do_sample=True, temperature=0)
    with pytest.raises(ValueError):
        GenerationConfig(top_p=1.5)


def test_batch_key_groups_greedy_and_isolates_beams_and_seeds():
    assert GenerationConfig().batch_key == GenerationConfig(max_new_tokens=5, stop=("x",)).batch_key
    assert GenerationConfig(num_beams=2).batch_key != GenerationConfig(num_beams=2).batch_key
    assert GenerationConfig(do_sample=True, seed=1).batch_key != GenerationConfig(do_sample=True, seed=1).batch_key


def test_stop_string_is_cut_and_never_streamed():
    pieces, row = run_row("The answer is Montgomery.\nQuestion: next", stop=("\nQuestion:",))
    assert "".join(pieces) == "The answer is Montgomery."
    assert row.finish_reason == "stop"
    assert not any("\n" in p for p in pieces)  # the held-back prefix of the stop string never leaked


def test_held_back_prefix_is_released_when_it_turns_out_not_to_be_a_stop():
    pieces, row = run_row("a\nQuiet end", stop=("\nQuestion:",))
    assert "".join(pieces) == "a\nQuiet end"
    assert row.finish_reason == "length"


def test_token_limit_ends_the_row():
    pieces, row = run_row("abcdefgh", limit=3)
    assert "".join(pieces) == "abc" and row.finish_reason == "length" and len(row.token_ids) == 3


def test_tracker_ends_rows_independently_at_eos():
    import torch

    out: list[list[str]] = [[], []]
    jobs = [Job([1], RowText(CharTokenizer(), (), 10, out[i].append), lambda: False) for i in range(2)]
    tracker = BatchTracker(jobs, eos_ids=frozenset({0}))
    done = tracker(torch.tensor([[ord("a")], [0]]), None)
    assert done.tolist() == [False, True]
    done = tracker(torch.tensor([[ord("a"), ord("b")], [0, 0]]), None)
    assert "".join(out[0]) == "ab" and out[1] == [] and done.tolist() == [False, True]


def test_waiting_requests_are_served_oldest_first_in_shared_batches_and_cancelled_ones_skipped():
    release, started = threading.Event(), threading.Event()
    batches: list[list[int]] = []

    def slow_batch(requests, join):
        started.set()
        release.wait(10)
        batches.append([r.prompt_ids[0] for r in requests])

    batcher = BatchingQueue(slow_batch, batch_size=2)
    batcher.start()
    first = batcher.submit(Request([1], GenerationConfig()))
    assert started.wait(10)  # the worker holds the first request; the rest wait, however many
    sampled = GenerationConfig(do_sample=True, temperature=0.7)
    waiting = [batcher.submit(Request([n], GenerationConfig() if n != 3 else sampled)) for n in range(2, 8)]
    waiting[2].cancelled.set()  # [4] gave up while waiting
    release.set()
    for request in [first, *waiting]:
        assert list(request.iter_pieces()) == []
    batcher.close()
    # oldest first; a batch takes later requests with the same decoding settings, at most two
    assert batches == [[1], [2, 5], [3], [6, 7]]


def test_closing_with_cancel_stops_a_decoding_batch_between_steps_and_gives_up_waiting_requests():
    steps, started = [], threading.Event()

    def decode_until_cancelled(requests, join):  # one "step" per loop, as the backends decode
        started.set()
        while not all(r.cancelled.is_set() for r in requests) and len(steps) < 10_000:
            steps.append(1)
            threading.Event().wait(0.001)

    batcher = BatchingQueue(decode_until_cancelled, batch_size=1)
    batcher.start()
    running = batcher.submit(Request([1], GenerationConfig()))
    assert started.wait(10)
    waiting = batcher.submit(Request([2], GenerationConfig()))
    batcher.close(cancel=True)
    assert not batcher._thread.is_alive() and len(steps) < 10_000
    assert running.cancelled.is_set() and list(waiting.iter_pieces()) == []


def test_close_workers_stops_the_started_queues_it_is_asked_to_and_no_others():
    from models.lm import batching

    def run_batch(requests, join):  # pragma: no cover - never asked anything
        pass

    stopped, kept = BatchingQueue(run_batch, batch_size=1), BatchingQueue(run_batch, batch_size=1)
    never_started = BatchingQueue(run_batch, batch_size=1)
    stopped.start()
    kept.start()
    assert stopped.owner is stopped  # a plain function runs its batches: the queue is its own owner
    assert batching.close_workers(lambda queue: queue in (stopped, never_started)) == 1
    assert not stopped._thread.is_alive() and kept._thread.is_alive()
    with pytest.raises(RuntimeError, match="closed"):
        stopped.submit(Request([1], GenerationConfig()))
    kept.close()


def test_worker_error_reaches_the_caller():
    def broken(requests, join):
        raise RuntimeError("kernel exploded")

    batcher = BatchingQueue(broken, batch_size=4)
    batcher.start()
    request = batcher.submit(Request([1], GenerationConfig()))
    with pytest.raises(RuntimeError, match="kernel exploded"):
        list(request.iter_pieces())
    batcher.close()


def test_wrong_model_path_raises_asset_missing(tmp_path, project_settings):
    settings = project_settings.with_overrides(lm_path=str(tmp_path / "no-such-model"))
    with pytest.raises(AssetMissing, match="KGQA_LM_PATH"):
        LocalGenerator(settings).warm_up()


def test_folder_with_a_broken_config_raises_asset_missing(tmp_path, project_settings):
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    settings = project_settings.with_overrides(lm_path=str(tmp_path))
    with pytest.raises(AssetMissing, match="cannot load"):
        LocalGenerator(settings).warm_up()


def test_messages_are_validated_before_queueing(project_settings):
    generator = LocalGenerator(project_settings)
    with pytest.raises(ValueError):
        generator.prompt_ids([{"role": "user"}])
    with pytest.raises(ValueError):
        generator.prompt_ids([])


def test_decode_threads_switches_after_prefill_and_restores():
    import torch

    from models.lm.transformers_backend import DecodeThreads

    before = torch.get_num_threads()
    policy = DecodeThreads.for_device("cpu")
    with policy.session():
        assert torch.get_num_threads() == before  # prefill keeps every thread
        done = policy(torch.zeros(3, 5, dtype=torch.long), None)
        assert torch.get_num_threads() == 1 and done.tolist() == [False] * 3
    assert torch.get_num_threads() == before
    assert DecodeThreads.for_device("cuda").decode_threads is None


def test_prefix_store_picks_the_longest_shared_entry_and_evicts_the_oldest():
    from models.lm.onnx_decoder import CachedPrefix
    from models.lm.onnx_generation import PrefixStore

    store = PrefixStore(entries=2, min_tokens=3)
    instructions = list(range(10))
    first = CachedPrefix(tuple(instructions + [50, 51, 52]), [])
    second = CachedPrefix(tuple(instructions + [60, 61]), [])
    store.remember(first, 0)
    store.remember(second, 0)
    assert store.lookup([instructions + [60, 61, 62, 63]]) is second  # 12 shared tokens beat 10
    assert store.lookup([instructions + [70]]) is first or store.lookup([instructions + [70]]) is second
    assert store.lookup([[99, 98, 97, 96]]) is None  # nothing shared
    assert store.lookup([[0, 1, 5, 6]]) is None  # fewer than min_tokens shared
    store.remember(CachedPrefix(tuple(instructions + [60, 61, 62, 63, 64]), []), 12)
    assert [e.token_ids[-1] for e in store._entries] == [52, 64]  # the extended prompt replaced its own prefix
    store.remember(CachedPrefix((7, 7, 7, 7), []), 0)
    assert [e.token_ids[-1] for e in store._entries] == [64, 7]  # capacity 2: the least recently used left
    assert (store.hits, store.reused_tokens) == (1, 12)

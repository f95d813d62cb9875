"""Rebuild a loaded Llama-family causal LM as an ONNX graph with an explicit KV cache.

Why: on the CPUs this service runs on, PyTorch's fp32 matmuls for a handful of rows
(one decode step, or four batched requests) cost 3x those of one row, and ``generate``
adds per-step Python work on top. onnxruntime's MLAS kernels read each weight once
for up to eight rows and its graph runs without Python between ops, so decode is
memory-bound as it should be and batching pays. The graph holds the same fp32
weights and the same maths as ``LlamaForCausalLM``; tests check greedy tokens match.
RMSNorm and rotary positions use onnxruntime's one-node kernels
(``SimplifiedLayerNormalization``, ``com.microsoft.RotaryEmbedding``): a decode step
is ~1,000 small ops, and each op saved is dispatch time saved.

Graph contract (batch B, new tokens S, cached tokens P, total T = P + S):
  inputs   input_ids int64 [B,S], position_ids int64 [B,S], attention_bias float [B,1,1,S,T],
           past_key_<i>, past_value_<i> float [B,KV,P,D] for every layer i
  outputs  logits float [B,V] for the last new token, present_key_<i>, present_value_<i> [B,KV,T,D]
The caller builds ``attention_bias`` (0 where a query may attend, a large negative
number elsewhere), so causal masking, padding and shared prefixes are all its choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

OPSET = 17
MASKED = -1.0e9  # finite, so a fully masked padding row still softmaxes to numbers


class UnsupportedModel(ValueError):
    """The model is not a plain Llama-family decoder this builder can express."""


@dataclass(frozen=True)
class LlamaShape:
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    hidden: int
    vocab: int
    eps: float
    rope_theta: float
    max_positions: int


def llama_shape(config: Any) -> LlamaShape:
    """Read the dimensions, refusing configs whose maths this graph does not reproduce."""
    if getattr(config, "model_type", None) not in ("llama", "mistral"):
        raise UnsupportedModel(f"model_type {getattr(config, 'model_type', None)!r} is not llama-family")
    if getattr(config, "sliding_window", None):
        raise UnsupportedModel("sliding-window attention is not supported")
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        raise UnsupportedModel("projection biases are not supported")
    if getattr(config, "hidden_act", "silu") != "silu":
        raise UnsupportedModel(f"activation {config.hidden_act!r} is not supported")
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        raise UnsupportedModel(f"rope scaling {rope.get('rope_type')!r} is not supported")
    theta = rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return LlamaShape(
        layers=config.num_hidden_layers,
        heads=heads,
        kv_heads=getattr(config, "num_key_value_heads", None) or heads,
        head_dim=head_dim,
        hidden=config.hidden_size,
        vocab=config.vocab_size,
        eps=float(config.rms_norm_eps),
        rope_theta=float(theta),
        max_positions=int(getattr(config, "max_position_embeddings", 4096)),
    )


def build_llama_graph(model: Any):
    """An ``onnx.ModelProto`` computing ``model`` (a loaded fp32 ``LlamaForCausalLM``) step by step."""
    import numpy as np
    import torch

    shape = llama_shape(model.config)
    state = {name: tensor.detach().to(torch.float32).cpu() for name, tensor in model.state_dict().items()}
    graph = _GraphBuilder(shape, intermediate=state["model.layers.0.mlp.gate_proj.weight"].shape[0])

    def weight(name: str) -> np.ndarray:
        return state[name].numpy()

    graph.constant("embed", weight("model.embed_tokens.weight"))
    head = "lm_head.weight"
    if head in state and not torch.equal(state[head], state["model.embed_tokens.weight"]):
        graph.constant("head", weight(head))
    else:
        head = "embed"  # tied: the head reads the embedding table transposed
    graph.rope_tables()
    x = graph.node("Gather", ["embed", "input_ids"], axis=0)
    for i in range(shape.layers):
        prefix = f"model.layers.{i}."
        for part, names in (
            ("qkv", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
            ("gate_up", ("mlp.gate_proj", "mlp.up_proj")),
        ):
            fused = np.concatenate([weight(prefix + n + ".weight") for n in names], axis=0)
            graph.constant(f"l{i}.{part}", np.ascontiguousarray(fused.T))
        graph.constant(f"l{i}.o", np.ascontiguousarray(weight(prefix + "self_attn.o_proj.weight").T))
        graph.constant(f"l{i}.down", np.ascontiguousarray(weight(prefix + "mlp.down_proj.weight").T))
        graph.constant(f"l{i}.norm1", weight(prefix + "input_layernorm.weight"))
        graph.constant(f"l{i}.norm2", weight(prefix + "post_attention_layernorm.weight"))
        x = graph.decoder_layer(i, x)
    last = graph.node("Gather", [x, graph.int64("last", [-1])], axis=1)  # [B,1,E]
    last = graph.node("Squeeze", [last, graph.int64("axis1", [1])])
    graph.constant("final_norm", weight("model.norm.weight"))
    normed = graph.rms_norm(last, "final_norm")
    graph.node("Gemm", [normed, head], outputs=["logits"], transB=1)
    return graph.model()


class _GraphBuilder:
    """Small helper that names nodes and collects initialisers while the graph is written."""

    def __init__(self, shape: LlamaShape, intermediate: int):
        from onnx import TensorProto, helper

        self.shape = shape
        self.intermediate = intermediate
        self.nodes: list = []
        self.initializers: list = []
        self._count = 0
        self._names: set[str] = set()
        s = shape
        self.inputs = [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["B", "S"]),
            helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["B", "S"]),
            helper.make_tensor_value_info("attention_bias", TensorProto.FLOAT, ["B", 1, 1, "S", "T"]),
        ]
        self.outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["B", s.vocab])]
        for i in range(s.layers):
            for kind in ("key", "value"):
                self.inputs.append(
                    helper.make_tensor_value_info(f"past_{kind}_{i}", TensorProto.FLOAT, ["B", s.kv_heads, "P", s.head_dim])
                )
                self.outputs.append(
                    helper.make_tensor_value_info(f"present_{kind}_{i}", TensorProto.FLOAT, ["B", s.kv_heads, "T", s.head_dim])
                )

    # -- primitives ------------------------------------------------------------------------
    def node(self, op: str, inputs: list[str], outputs: list[str] | None = None, **attrs) -> str:
        from onnx import helper

        self._count += 1
        outputs = outputs or [f"{op.lower()}_{self._count}"]
        self.nodes.append(helper.make_node(op, inputs, outputs, name=f"{op}_{self._count}", **attrs))
        return outputs[0]

    def constant(self, name: str, array) -> str:
        """Add an initialiser once; later calls with the same name reuse it."""
        from onnx import numpy_helper

        if name not in self._names:
            self._names.add(name)
            self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def int64(self, name: str, values: list[int]) -> str:
        import numpy as np

        return self.constant(name, np.array(values, dtype=np.int64))

    def float(self, name: str, value: float) -> str:
        import numpy as np

        return self.constant(name, np.array(value, dtype=np.float32))

    # -- blocks ----------------------------------------------------------------------------
    def rms_norm(self, x: str, weight: str) -> str:
        """weight * x / sqrt(mean(x^2) + eps), as ``LlamaRMSNorm`` computes it in fp32.

        onnxruntime's one-node kernel; its optimiser also folds the residual Add before it in.
        """
        return self.node("SimplifiedLayerNormalization", [x, weight], axis=-1, epsilon=self.shape.eps, stash_type=1)

    def rope_tables(self) -> None:
        """cos/sin of every position's rotary angles, half a head wide (the two halves repeat)."""
        import numpy as np

        s = self.shape
        inv = 1.0 / (s.rope_theta ** (np.arange(0, s.head_dim, 2, dtype=np.int64).astype(np.float32) / s.head_dim))
        freqs = np.outer(np.arange(s.max_positions, dtype=np.float32), inv.astype(np.float32))
        self.constant("cos_cache", np.cos(freqs).astype(np.float32))
        self.constant("sin_cache", np.sin(freqs).astype(np.float32))

    def rotate(self, x: str, heads: int) -> str:
        """Rotary positions on [B,S,heads*D], non-interleaved halves, as in ``apply_rotary_pos_emb``."""
        return self.node("RotaryEmbedding", [x, "position_ids", "cos_cache", "sin_cache"],
                         domain="com.microsoft", interleaved=0, num_heads=heads)

    def heads(self, x: str, count: int) -> str:
        """[B,S,count*D] -> [B,count,S,D]"""
        shaped = self.node("Reshape", [x, self.int64(f"heads{count}", [0, 0, count, self.shape.head_dim])])
        return self.node("Transpose", [shaped], perm=[0, 2, 1, 3])

    def decoder_layer(self, i: int, x: str) -> str:
        s = self.shape
        groups = s.heads // s.kv_heads
        h = self.rms_norm(x, f"l{i}.norm1")
        qkv = self.node("MatMul", [h, f"l{i}.qkv"])
        sizes = self.int64("qkv_sizes", [s.heads * s.head_dim, s.kv_heads * s.head_dim, s.kv_heads * s.head_dim])
        q, k, v = (f"l{i}.{n}" for n in ("q", "k", "v"))
        self.node("Split", [qkv, sizes], outputs=[q, k, v], axis=-1)
        q = self.heads(self.rotate(q, s.heads), s.heads)
        k = self.heads(self.rotate(k, s.kv_heads), s.kv_heads)
        key = self.node("Concat", [f"past_key_{i}", k], outputs=[f"present_key_{i}"], axis=2)
        value = self.node("Concat", [f"past_value_{i}", self.heads(v, s.kv_heads)], outputs=[f"present_value_{i}"], axis=2)
        # Grouped-query attention without copying K/V: queries as [B,KV,G,S,D] broadcast against [B,KV,1,T,D].
        q5 = self.node("Reshape", [q, self.int64("q5", [0, s.kv_heads, groups, -1, s.head_dim])])
        q5 = self.node("Mul", [q5, self.float("scale", s.head_dim ** -0.5)])
        k5 = self.node("Unsqueeze", [key, self.int64("axis2", [2])])
        v5 = self.node("Unsqueeze", [value, self.int64("axis2", [2])])
        scores = self.node("MatMul", [q5, self.node("Transpose", [k5], perm=[0, 1, 2, 4, 3])])
        weights = self.node("Softmax", [self.node("Add", [scores, "attention_bias"])], axis=-1)
        attended = self.node("MatMul", [weights, v5])  # [B,KV,G,S,D]
        attended = self.node("Reshape", [attended, self.int64("bhsd", [0, s.heads, -1, s.head_dim])])
        attended = self.node("Transpose", [attended], perm=[0, 2, 1, 3])
        attended = self.node("Reshape", [attended, self.int64("bse", [0, 0, s.heads * s.head_dim])])
        x = self.node("Add", [x, self.node("MatMul", [attended, f"l{i}.o"])])
        h = self.rms_norm(x, f"l{i}.norm2")
        gate, up = f"l{i}.gate", f"l{i}.up"
        sizes = self.int64("gu_sizes", [self.intermediate] * 2)
        self.node("Split", [self.node("MatMul", [h, f"l{i}.gate_up"]), sizes], outputs=[gate, up], axis=-1)
        act = self.node("Mul", [self.node("Mul", [gate, self.node("Sigmoid", [gate])]), up])
        return self.node("Add", [x, self.node("MatMul", [act, f"l{i}.down"])])

    def model(self):
        from onnx import helper

        graph = helper.make_graph(self.nodes, "llama_decoder", self.inputs, self.outputs, self.initializers)
        opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)]
        return helper.make_model(graph, opset_imports=opsets, producer_name="kgqa")

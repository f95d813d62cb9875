"""The claim checker's cross-encoder: only the fine-tuned layers are stored, and they load back exactly."""

import numpy as np
import pytest

from models.cross_encoder import ClaimCrossEncoder, CrossEncoderError, base_model, save_trained


def test_saved_layers_load_back_onto_the_bundled_base(tmp_path):
    import torch

    model, tokenizer = base_model()
    torch.manual_seed(0)
    with torch.no_grad():  # stand-in for fine-tuning: change the head and the last layer
        model.classifier.weight.normal_()
        model.bert.encoder.layer[5].output.dense.bias.add_(0.5)
    path = tmp_path / "checker.safetensors"
    save_trained(model, path, trained=1)
    first, seconds = "Who was Achilles' mother? Thetis was his mother.", ["Achilles: His mother was the nymph Thetis.",
                                                                           "Achilles: Peleus was the king."]
    expected = ClaimCrossEncoder.in_memory(model.half().float().eval(), tokenizer).score(first, seconds)
    loaded = ClaimCrossEncoder(path)
    assert np.allclose(loaded.score(first, seconds), expected, atol=1e-3)
    assert path.stat().st_size < 5_000_000  # one layer and the head, not the whole model


def test_missing_or_foreign_weights_are_one_clear_error(tmp_path):
    from safetensors.torch import save_file
    import torch

    with pytest.raises(CrossEncoderError, match="missing"):
        ClaimCrossEncoder(tmp_path / "absent.safetensors").warm_up()
    foreign = tmp_path / "foreign.safetensors"
    save_file({"classifier.weight": torch.zeros(3, 7)}, str(foreign))
    with pytest.raises(CrossEncoderError, match="does not fit"):
        ClaimCrossEncoder(foreign).warm_up()

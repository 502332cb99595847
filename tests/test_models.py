"""The states/patch interface of both models against their plain forward."""

import pytest
import torch
import torch.nn.functional as F

from grokkit.models import IGNORE, Decoder, Patch, Recursive
from grokkit.models.decoder import CausalSelfAttention
from grokkit.models.recursive import SelfAttention, SequenceMixer
from grokkit.train.losses import item_losses
from grokkit.train.module import GrokModule

VOCAB = 30
ITEMS = torch.tensor([[2, 20, 21, 5, 1], [3, 22, 23, 7, 1], [4, 20, 6, 1, 0], [8, 24, 25, 9, 1]])

MODELS = {
    "decoder": lambda: Decoder(VOCAB, 5, d_model=32, n_heads=4, n_layers=4),
    "decoder_shared": lambda: Decoder(VOCAB, 5, d_model=32, n_heads=4, n_layers=4, n_unique_layers=2),
    "decoder_sdpa": lambda: Decoder(VOCAB, 5, d_model=32, n_heads=4, n_layers=2, attention="sdpa"),
    "decoder_exact_gelu": lambda: Decoder(VOCAB, 5, d_model=32, n_heads=4, n_layers=2, activation="gelu"),
    "recursive_mlp": lambda: Recursive(VOCAB, 5, d_model=32, H_cycles=2, L_cycles=2),
    "recursive_attention": lambda: Recursive(
        VOCAB, 5, d_model=32, H_cycles=2, L_cycles=2, token_mixing="attention"
    ),
    "recursive_prefix": lambda: Recursive(VOCAB, 5, d_model=32, H_cycles=1, L_cycles=3, n_prefix=4),
    "recursive_trm": lambda: Recursive(
        VOCAB, 5, d_model=32, H_cycles=1, L_cycles=2, n_prefix=4, original_trm=True
    ),
}


@pytest.fixture(params=sorted(MODELS))
def model(request):
    torch.manual_seed(0)
    return MODELS[request.param]().eval()


def test_states_do_not_change_the_output_and_reproduce_it_through_the_lens(model):
    inputs, _ = model.inputs_and_targets(ITEMS)
    logits, states = model(inputs, return_states=True)
    assert torch.equal(logits, model(inputs))
    assert states.shape == (model.n_stages, len(ITEMS), inputs.size(1), model.d_model)
    torch.testing.assert_close(model.unembed(states[-1]), logits)


def test_patching_a_state_with_itself_changes_nothing(model):
    inputs, _ = model.inputs_and_targets(ITEMS)
    logits, states = model(inputs, return_states=True)
    position = torch.tensor([0, 1, 2, 1])
    for stage in range(model.n_stages):
        patch = Patch(stage, position, states[stage, torch.arange(len(ITEMS)), position])
        torch.testing.assert_close(model(inputs, patch=patch), logits)


def test_patching_the_embedding_equals_running_the_counterfactual_token(model):
    inputs, _ = model.inputs_and_targets(ITEMS)
    counterfactual = inputs.clone()
    counterfactual[:, 1] = 27
    _, counterfactual_states = model(counterfactual, return_states=True)
    position = torch.ones(len(ITEMS), dtype=torch.long)
    patch = Patch(0, position, counterfactual_states[0, :, 1])
    torch.testing.assert_close(model(inputs, patch=patch), model(counterfactual))
    assert not torch.allclose(model(inputs, patch=patch), model(inputs))


@pytest.mark.parametrize("name", [name for name in sorted(MODELS) if name != "recursive_trm"])
def test_a_patch_of_all_a_counterfactual_carries_gives_its_output_where_positions_do_not_mix(name):
    """With the token mixers zeroed each position is computed alone, so a patch at any stage of everything the
    counterfactual carries at position 1 must give position 1 the counterfactual's output: the recursive model's
    z_H, z_L and input embedding (re-added at every L step) all. (The TRM layout normalizes across positions.)"""
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (CausalSelfAttention, SelfAttention, SequenceMixer)):
                for parameter in module.parameters():
                    parameter.zero_()
    inputs, _ = model.inputs_and_targets(ITEMS)
    counterfactual = inputs.clone()
    counterfactual[:, 1] = 27
    expected, states = model(counterfactual, return_states=True)
    position = torch.ones(len(ITEMS), dtype=torch.long)
    for stage in range(model.n_stages):
        patched = model(inputs, patch=Patch.of(states, stage, position))
        torch.testing.assert_close(patched[:, 1], expected[:, 1])
        torch.testing.assert_close(patched[:, [0, 2]], model(inputs)[:, [0, 2]])


def test_attention_mixing_starts_its_positions_apart():
    """Its prefix slots get the same input and, under attention (the same at every position), the same
    gradient: with positions that start equal they would stay one slot."""
    torch.manual_seed(0)
    positions = Recursive(VOCAB, 5, d_model=32, token_mixing="attention", n_prefix=4).positions.detach()
    distances = torch.cdist(positions, positions)
    assert (distances + torch.eye(len(positions))).min() > 0.5


def test_patching_a_late_state_only_changes_what_depends_on_it():
    torch.manual_seed(0)
    decoder = Decoder(VOCAB, 5, d_model=32, n_heads=4, n_layers=4).eval()
    inputs, _ = decoder.inputs_and_targets(ITEMS)
    logits = decoder(inputs)
    patch = Patch(4, torch.full((len(ITEMS),), 2), torch.randn(len(ITEMS), 32))  # last stage, position r2
    patched = decoder(inputs, patch=patch)
    torch.testing.assert_close(patched[:, [0, 1, 3]], logits[:, [0, 1, 3]])  # causal, and no layer above
    assert not torch.allclose(patched[:, 2], logits[:, 2])


def test_targets_supervise_the_answer_only_for_the_decoder_and_everything_for_the_recursive_model():
    decoder_inputs, decoder_targets = Decoder(VOCAB, 5).inputs_and_targets(ITEMS)
    assert decoder_inputs.tolist()[0] == [2, 20, 21, 5]
    assert decoder_targets.tolist()[0] == [IGNORE, IGNORE, 5, 1]
    assert decoder_targets.tolist()[2] == [IGNORE, 6, 1, IGNORE]  # atomic: h r -> t </a>
    recursive_inputs, recursive_targets = Recursive(VOCAB, 5).inputs_and_targets(ITEMS)
    assert recursive_inputs.tolist()[0] == [2, 20, 21, 0, 0] and recursive_targets.tolist()[0] == [
        2,
        20,
        21,
        5,
        1,
    ]
    assert recursive_inputs.tolist()[2] == [4, 20, 0, 0, 0] and recursive_targets.tolist()[2] == [
        4,
        20,
        6,
        1,
        IGNORE,
    ]


def test_unembedding_only_the_loss_positions_keeps_the_loss_and_its_gradient(model):
    """The training step's ``loss_positions`` path: every supervised target lies inside the positions, and
    the loss (in its flat layout) and every gradient match those of logits at every position (up to float
    rounding)."""
    model.train()
    everywhere = model.training_io(ITEMS, every_position=True)
    inputs, targets, positions = model.training_io(ITEMS)
    if isinstance(model, Recursive):
        assert positions is None  # its loss reads every item slot
        return
    assert positions.shape == (len(ITEMS), 2) and (targets != IGNORE).all()  # t and </a> of every item
    outside = everywhere[1].scatter(1, positions, IGNORE)
    assert (outside == IGNORE).all()  # no target the loss reads was left out
    losses = []
    for net_inputs, net_targets, at in (everywhere, (inputs, targets, positions)):
        model.zero_grad()
        loss = item_losses(model(net_inputs, positions=at), net_targets, flat=at is not None).mean()
        loss.backward()
        losses.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    (full, full_grads), (sliced, sliced_grads) = losses
    torch.testing.assert_close(sliced, full)
    for a, b in zip(sliced_grads, full_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_answer_position_reads_the_answer_slot():
    assert Decoder(VOCAB, 5).answer_position(ITEMS).tolist() == [2, 2, 1, 2]
    assert Recursive(VOCAB, 5).answer_position(ITEMS).tolist() == [3, 3, 2, 3]


def test_shared_layers_have_fewer_weights_and_the_same_depth():
    shared, unshared = Decoder(VOCAB, 5, n_layers=8, n_unique_layers=4), Decoder(VOCAB, 5, n_layers=8)
    assert shared.n_stages == unshared.n_stages == 9
    assert sum(p.numel() for p in shared.parameters()) < sum(p.numel() for p in unshared.parameters())


def test_recursive_gradients_flow_through_the_last_cycle_only():
    torch.manual_seed(0)
    model = Recursive(VOCAB, 5, d_model=16, H_cycles=2, L_cycles=1)
    inputs, _ = model.inputs_and_targets(ITEMS)
    seen = []
    hook = model.level[0].register_forward_hook(lambda module, args, out: seen.append(out.requires_grad))
    model(inputs).sum().backward()
    hook.remove()
    assert seen == [False, False, True, True]
    assert model.embed.weight.grad is not None


@pytest.mark.parametrize(
    ("decay", "decayed_tables", "decayed_vectors"),
    [("all", True, True), ("matrices", True, False), ("blocks", False, False)],
)
def test_weight_decay_groups_leave_embedding_tables_alone_only_with_blocks(
    decay, decayed_tables, decayed_vectors
):
    module = GrokModule(
        lambda vocab, n: Decoder(vocab, n, d_model=32, n_heads=4, n_layers=2), VOCAB, 5, decay=decay
    )
    decayed = {id(p) for p in module.configure_optimizers()["optimizer"].param_groups[0]["params"]}
    assert (id(module.net.wte.weight) in decayed) is decayed_tables
    assert (id(module.net.wpe.weight) in decayed) is decayed_tables
    assert (id(module.net.ln_f.weight) in decayed) is decayed_vectors
    assert all(id(block.mlp.fc.weight) in decayed for block in module.net.blocks)


def test_the_bit_mask_dropout_keeps_each_element_with_probability_1_minus_p_and_scales_it():
    from grokkit.models.dropout import bit_mask_dropout

    torch.manual_seed(0)
    x = torch.ones(1_000_001, requires_grad=True)  # odd: the last 64-bit draw is half used
    out = bit_mask_dropout(x, 0.1)
    kept = out != 0
    assert out.unique().tolist() == [0.0, pytest.approx(1 / 0.9)]
    assert abs(kept.float().mean().item() - 0.9) < 5 * (0.9 * 0.1 / x.numel()) ** 0.5  # 5 sigma
    out.sum().backward()
    assert torch.equal(x.grad, out.detach())  # the gradient goes through the kept elements, scaled
    torch.manual_seed(0)
    assert torch.equal(bit_mask_dropout(x, 0.1), out)  # the seed fixes the mask
    assert not torch.equal(bit_mask_dropout(x, 0.1), out)  # and the generator moves on


def test_dropout_takes_the_bit_mask_only_where_pytorch_draws_its_mask_element_by_element(monkeypatch):
    from grokkit.models import dropout as module

    x = torch.ones(1000)
    assert module.dropout(x, 0.1, training=False) is x and module.dropout(x, 0.0, training=True) is x
    for per_element in (True, False):
        monkeypatch.setattr(module, "bernoulli_draws_per_element", lambda: per_element)  # noqa: B023
        torch.manual_seed(0)
        expected = module.bit_mask_dropout(x, 0.1) if per_element else F.dropout(x, 0.1, training=True)
        torch.manual_seed(0)
        assert torch.equal(module.Dropout(0.1).train()(x), expected)
        # p so close to 1 that 32 bits round it to 1: PyTorch's dropout, which keeps (almost surely) nothing
        assert not module.dropout(x, 1 - 2**-34, training=True).any()
    assert (module.keep_threshold(0.0), module.keep_threshold(0.25), module.keep_threshold(0.5)) == (
        -(2**31),
        -(2**30),
        0,
    )
    with pytest.raises(ValueError, match="between 0 and 1"):
        module.dropout(x, 1.5, training=True)


def test_the_per_element_probe_tells_how_pytorch_draws_a_dropout_mask():
    from grokkit.torch_private import bernoulli_draws_per_element

    torch.manual_seed(0)
    kept = F.dropout(torch.ones(10_000), 0.3, training=True) != 0
    torch.manual_seed(0)
    drawn = torch.empty(10_000, dtype=torch.float64).uniform_() < 0.7  # one uniform double per element
    assert torch.equal(kept, drawn) == bernoulli_draws_per_element()


def test_original_trm_builds_the_block_and_the_inputs_as_he_et_als_code():
    """``original_trm``: the MLP mixing's sum normalized across positions (the TRM code's block, transcribed
    here), one learned prefix slot and zero slots scaled with the embeddings, and 256-multiple widths."""
    torch.manual_seed(0)
    model = Recursive(vocab_size=30, item_len=5, d_model=64, n_prefix=16, original_trm=True)
    block = model.level[0]
    assert block.token_mixer.mlp.down.in_features == 256 and block.channel_mlp.down.in_features == 256
    assert model.prefix.shape == (1, 64)
    x = torch.randn(3, 21, 64)
    h = x.transpose(1, 2)  # trm.py: the mixer and its norm run on (B, D, L)
    h = F.rms_norm(h + block.token_mixer.mlp(h), (21,), eps=1e-5).transpose(1, 2)
    expected = F.rms_norm(h + block.channel_mlp(h), (64,), eps=1e-5)
    assert torch.allclose(block(x), expected, atol=1e-6)
    with torch.no_grad():
        model.prefix.fill_(1.0)
    inputs = torch.randint(3, 30, (2, 5))
    embedded = model.input_embedding(inputs)
    assert embedded.shape == (2, 21, 64) and torch.all(embedded[:, 0] == 8.0)  # sqrt(64) x the learned slot
    assert torch.all(embedded[:, 1:16] == 0) and torch.equal(embedded[:, 16:], 8.0 * model.embed(inputs))
    plain = Recursive(vocab_size=30, item_len=5, d_model=64, n_prefix=16)  # grokkit's layout
    assert plain.prefix.shape == (16, 64) and plain.level[0].token_mixer.mlp.down.in_features == 84
    assert not plain.level[0].sequence_norm and plain.level[0].channel_mlp.down.in_features == 176

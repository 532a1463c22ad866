"""Text conditioning: cross-attention in the shared blocks, the byte and the local Hugging Face encoders, guidance
with prompts and negative prompts, and exact resume with an encoder trained jointly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mmdiff.checkpoints import newest_checkpoint
from mmdiff.conditioners import ConditionedNetwork, TextPrompts, training_conditions, with_encoder
from mmdiff.core import DiffusionLoss, DiffusionModel, vp_cosine
from mmdiff.generation import GenerateOptions, generate
from mmdiff.modalities.audio import LogMelAdapter
from mmdiff.nn import UNet
from mmdiff.nn.blocks import CrossAttention
from mmdiff.train import Trainer

SHAPES = {1: (2, 8, 16), 2: (2, 3, 8, 8), 3: (2, 3, 4, 8, 8)}


def tiny_unet(dims: int, context_dim: int = 12, **kw) -> UNet:
    extra = {"factorized": True, "down_factor": (1, 2, 2)} if dims == 3 else {}
    torch.manual_seed(0)
    return UNet(
        dims=dims,
        in_channels=SHAPES[dims][1],
        channels=16,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attention_levels=(1,),
        context_dim=context_dim,
        **extra,
        **kw,
    )


def randomise(net: torch.nn.Module, cross_too: bool) -> None:
    """Give the zero-initialised layers random weights (a fresh U-Net's output is exactly zero)."""
    cross = {id(p) for m in net.modules() if isinstance(m, CrossAttention) for p in m.out.parameters()}
    cross |= {id(p) for p in net.pooled.parameters()}
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            if p.abs().sum() == 0 and (cross_too or id(p) not in cross):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_cross_attention_starts_silent_then_listens_to_real_tokens_only(dims):
    net = tiny_unet(dims).eval()
    assert sum(isinstance(m, CrossAttention) for m in net.modules()) == 4  # level 1 (down, up x2) + middle
    randomise(net, cross_too=False)
    x, t = torch.randn(SHAPES[dims]), torch.rand(2)
    context, mask = torch.randn(2, 5, 12), torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1]]).bool()
    plain = net(x, t)
    assert plain.abs().mean() > 0
    # zero-initialised outputs: a fresh text network is the network without text
    torch.testing.assert_close(net(x, t, context=context, context_mask=mask, pooled=torch.randn(2, 12)), plain)
    randomise(net, cross_too=True)
    listened = net(x, t, context=context, context_mask=mask)
    assert (listened - net(x, t)).abs().amax() > 1e-3
    padded = context.clone()
    padded[0, 2:] = 100.0  # only sample 0's padding changes
    again = net(x, t, context=padded, context_mask=mask)
    torch.testing.assert_close(again, listened)
    real = context.clone()
    real[0, 1] += 1.0  # a real token of sample 0 changes: sample 0 changes, sample 1 does not
    moved = net(x, t, context=real, context_mask=mask)
    assert (moved[0] - listened[0]).abs().amax() > 1e-4
    torch.testing.assert_close(moved[1], listened[1])


def test_pooled_norm_makes_two_captions_differ_in_the_embedding_from_the_first_step():
    """``pooled_norm``: the pooled text reaches the timestep embedding through LayerNorm and a linear layer with
    unit-variance outputs (as a class label's embedding), whatever the pooled vectors' scale; without it through a
    zero-initialised layer, so a fresh network ignores it."""
    plain, normed = tiny_unet(1, pooled_norm=False), tiny_unet(1, pooled_norm=True)
    pooled = 5.0 * torch.randn(64, 12, generator=torch.Generator().manual_seed(0))  # (B, context_dim)
    assert plain.pooled(pooled).abs().max() == 0
    emb = normed.pooled(pooled)  # (B, emb_dim)
    assert emb.shape == (64, plain.time.mlp[-1].out_features)  # (B, emb_dim)
    assert 0.6 < emb.std().item() < 1.6
    assert (emb[0] - emb[1]).norm() > 0.5 * emb[0].norm()


def test_a_bag_of_words_pools_each_word_as_a_label_whatever_the_caption_length():
    """``pooled="bag"``: a caption's pooled vector is the sum of its words' own vectors over the square root of its
    length (start token included), independent of the transformer; so changing one word of a long caption changes
    it by that word's two vectors, not by a mean over mixed tokens; order does not matter; padding adds nothing."""
    prompts = TextPrompts(max_length=24, dim=16, layers=1, heads=2, pooled="bag")
    torch.manual_seed(0)
    encoder = prompts.encoder(12)
    long = "a video of two red circles and a blue square gliding to the {} on a dark background"
    ids = prompts.tokenize([long.format("left"), long.format("right"), "left", "the square blue a"])
    pooled = encoder(ids["text_ids"], ids["text_mask"])["pooled"]  # (4, 12)
    table, n = encoder.bag.weight, int(ids["text_mask"][0].sum())
    left, right = (prompts.tokenize([w])["text_ids"][0, 1] for w in ("left", "right"))
    torch.testing.assert_close(pooled[0] - pooled[1], (table[left] - table[right]) / n**0.5)
    torch.testing.assert_close(pooled[2], (table[1] + table[left]) / 2**0.5)  # start token + "left"
    shuffled = prompts.tokenize(["blue the a square"])
    torch.testing.assert_close(encoder(shuffled["text_ids"], shuffled["text_mask"])["pooled"][0], pooled[3])
    assert 0.6 < pooled.std().item() < 1.6  # unit variance at the start, like a label embedding
    mean = TextPrompts(max_length=24, dim=16, layers=1, heads=2).encoder(12)
    assert mean.bag is None
    for bad, match in [
        ({"pooled": "max"}, "conditioner.pooled: expected one of mean, bag, got 'max'"),
        ({"pooled": "bag", "tokens": "bytes"}, "needs conditioner.tokens=words or a conditioner.path"),
    ]:
        with pytest.raises(ValueError, match=match):
            TextPrompts(**bad)


def test_a_unet_without_cross_attention_refuses_a_context_and_checks_its_width():
    with pytest.raises(ValueError, match="no cross-attention; set net.context_dim"):
        tiny_unet(1, context_dim=0)(torch.randn(SHAPES[1]), torch.rand(2), context=torch.randn(2, 3, 12))
    with pytest.raises(ValueError, match=r"context must be \(B, L, 12\)"):
        tiny_unet(1)(torch.randn(SHAPES[1]), torch.rand(2), context=torch.randn(2, 3, 7))


def test_hashed_words_are_stable_tokens_that_round_trip_and_cut():
    text = TextPrompts(max_length=6, prompts=["a red circle"], dim=32, layers=1, heads=2)
    cond = text({"caption": ["A  Red circle, moving!", "a red circle moving left fast"]})
    assert cond["text_ids"].shape == (2, 6)
    assert text.describe(cond) == ['"a red circle, moving"', '"a red circle moving left"']  # ',' is a token, '!' is cut
    ids = cond["text_ids"]
    assert ids[0, 1:4].tolist() == ids[1, 1:4].tolist() and len(set(ids[0, 1:].tolist())) == 5
    other = TextPrompts(vocab_size=8192)  # another process or run: the same ids for the same words
    assert other.tokenize(["a red circle"])["text_ids"][0, :4].tolist() == ids[0, :4].tolist()
    assert other.describe({"text_ids": ids[1:]}) == ['"a red circle ? ?"']  # words it never saw
    assert text.null()["text_mask"].sum() == 1
    with pytest.raises(ValueError, match="conditioner.tokens: expected one of words, bytes, got 'chars'"):
        TextPrompts(tokens="chars")


def test_byte_prompts_round_trip_cut_and_cycle():
    text = TextPrompts(
        tokens="bytes", max_length=16, prompts=["a red circle", "a blue square"], dim=32, layers=1, heads=2
    )
    cond = text({"caption": ["  A  Red   Circle ", "é and a long caption that is cut"]})
    assert cond["text_ids"].shape == (2, 16) and cond["text_mask"].dtype == torch.bool
    assert text.describe(cond) == [
        '"a red circle"',
        '"é and a long c"',
    ]  # lower-cased, spaces folded, 15 bytes (é is 2)
    assert text.describe(text.request(3)) == ['"a red circle"', '"a blue square"', '"a red circle"']
    assert text.describe(text.request(2, prompt=["x", "y"])) == ['"x"', '"y"']
    assert text.null()["text_mask"].sum() == 1  # the empty caption: the start token only
    with pytest.raises(ValueError, match=r"prompt: need one prompt or 3 \(one per sample\), got 2"):
        text.request(3, prompt=["a", "b"])
    with pytest.raises(ValueError, match=r"unknown condition\(s\) \['label'\]; this model takes: prompt"):
        text.request(2, label=1)
    with pytest.raises(ValueError, match="no 'caption' field"):
        text({"audio": torch.zeros(2, 1, 8)})


def test_training_dropout_gives_the_empty_caption_to_the_dropped_samples():
    text = TextPrompts(max_length=8, dropout=0.5, dim=32, layers=1, heads=2)
    batch = {"caption": ["abc"] * 64}
    gens = [torch.Generator().manual_seed(i) for i in range(64)]
    cond = training_conditions(text, batch, gens)
    dropped = cond["text_mask"].sum(1) == 1
    assert 16 < int(dropped.sum()) < 48
    assert set(text.describe({"text_ids": cond["text_ids"]})) == {'""', '"abc"'}


def tiny_text_net(text: TextPrompts) -> ConditionedNetwork:
    return with_encoder(tiny_unet(1, context_dim=16), text)


def test_guidance_with_prompts_one_per_sample_and_a_negative_prompt():
    text = TextPrompts(max_length=24, dim=16, layers=1, heads=2)
    net = tiny_text_net(text).eval()
    randomise(net.net, cross_too=True)
    adapter = LogMelAdapter(sample_rate=8000, n_fft=64, hop_length=32, n_mels=8, duration=0.06, frame_multiple=2)
    model = DiffusionModel(vp_cosine(), "v")

    def run(**request):
        options = GenerateOptions(num_samples=2, steps=3, seed=[5, 5], guidance_scale=3.0)
        with torch.no_grad():
            return generate(adapter, text, model.denoiser(net), options, schedule=model.schedule, request=request)

    same = run(prompt="a fast organ melody")
    torch.testing.assert_close(same[0], same[1])  # one seed, one prompt: one sample
    per_sample = run(prompt=["a fast organ melody", "a slow sine melody"])
    assert (per_sample[0] - per_sample[1]).abs().amax() > 1e-4
    torch.testing.assert_close(per_sample[0], same[0])
    negative = run(prompt="a fast organ melody", negative_prompt="slow")
    assert (negative[0] - same[0]).abs().amax() > 1e-4
    assert same.captions[0] == '"a fast organ melody"\nseed 5'
    with pytest.raises(ValueError, match="negative_prompt: works through guidance"):
        options = GenerateOptions(num_samples=1, steps=2, guidance_scale=1.0)
        request = {"prompt": "a", "negative_prompt": "b"}
        generate(adapter, text, model.denoiser(net), options, schedule=model.schedule, request=request)


class CaptionedTones:
    """A tiny captioned audio data set: a low or a high tone per clip, its caption saying which."""

    num_classes, class_names = None, None

    def __len__(self):
        return 32

    def __getitem__(self, key):
        index = key[0] if isinstance(key, tuple) else key
        high = index % 2
        t = torch.arange(480) / 8000
        audio = 0.5 * torch.sin(2 * np.pi * (1200 if high else 300) * t)[None]  # (1, 480)
        return {"audio": audio, "caption": "a high tone" if high else "a low tone"}


def make_text_trainer(run_dir, objective=None, lr_scale=1.0, optimizer=None, **settings):
    torch.manual_seed(0)
    text = TextPrompts(
        max_length=16, dim=16, layers=1, heads=2, prompts=["a low tone", "a high tone"], lr_scale=lr_scale
    )
    adapter = LogMelAdapter(sample_rate=8000, n_fft=64, hop_length=32, n_mels=8, duration=0.06, frame_multiple=2)
    defaults = dict(
        max_steps=6,
        batch_size=8,
        checkpoint_every=3,
        sample_every=100,
        lr_warmup_steps=2,
        device="cpu",
        progress=False,
        seed=0,
    )
    return Trainer(
        adapter=adapter,
        conditioner=text,
        net=tiny_text_net(text),
        dataset=CaptionedTones(),
        objective=objective or DiffusionLoss(DiffusionModel(vp_cosine(), "v")),
        optimizer=optimizer or (lambda params: torch.optim.AdamW(params, lr=1e-3)),
        run_dir=run_dir,
        config_yaml="{}\n",
        generate={"steps": 2, "num_samples": 2},
        **{**defaults, **settings},
    )


class Interrupt(Exception):
    pass


class DiesAt:
    def __init__(self, inner, n):
        self.inner, self.n, self.calls, self.model = inner, n, 0, inner.model

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.n:
            raise Interrupt
        return self.inner(*args, **kwargs)


@pytest.mark.parametrize("lr_scale", [1.0, 0.1])
def test_a_resumed_run_with_a_jointly_trained_text_encoder_ends_with_the_same_weights(tmp_path, lr_scale):
    straight = make_text_trainer(tmp_path / "straight", max_steps=7, lr_scale=lr_scale).fit()
    loss = DiffusionLoss(DiffusionModel(vp_cosine(), "v"))
    with pytest.raises(Interrupt):
        make_text_trainer(tmp_path / "killed", DiesAt(loss, 5), max_steps=7, lr_scale=lr_scale).fit()
    resumed = make_text_trainer(tmp_path / "killed", max_steps=7, resume="auto", lr_scale=lr_scale).fit()
    names = list(straight.state_dict())
    assert any(n.startswith("encoder.") for n in names) and any(n.startswith("net.") for n in names)
    encoder_moved = False
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=name)
    fresh = tiny_text_net(TextPrompts(max_length=16, dim=16, layers=1, heads=2)).state_dict()
    encoder_moved = any(
        not torch.equal(fresh[n], v) for n, v in straight.state_dict().items() if n.startswith("encoder.")
    )
    assert encoder_moved  # the encoder trains with the network
    ema_a = load_file(newest_checkpoint(tmp_path / "straight") / "ema.safetensors")
    ema_b = load_file(newest_checkpoint(tmp_path / "killed") / "ema.safetensors")
    for k in ema_a:
        torch.testing.assert_close(ema_a[k], ema_b[k], rtol=1e-6, atol=1e-7)


def test_the_encoders_lr_scale_gives_it_its_own_learning_rate(tmp_path):
    """``conditioner.lr_scale``: the built-in encoder's parameters train at that share of ``optim.lr``, the network's
    at ``optim.lr``; 0 keeps the encoder at its start; without it there is one group, as before."""
    built = []

    def adamw(params):
        built.append(torch.optim.AdamW(params, lr=1e-3))
        return built[-1]

    net = make_text_trainer(tmp_path / "scaled", lr_scale=0.1, optimizer=adamw, max_steps=2).fit()
    encoder_ids = {id(p) for p in net.encoder.parameters()}
    groups = built[-1].param_groups
    assert sorted(g["initial_lr"] for g in groups) == pytest.approx([1e-4, 1e-3])
    for group in groups:
        in_encoder = {id(p) in encoder_ids for p in group["params"]}
        assert in_encoder == {group["initial_lr"] < 1e-3}  # each group is all encoder or all network
    assert sum(len(g["params"]) for g in groups) == len(list(net.parameters()))
    start = tiny_text_net(TextPrompts(max_length=16, dim=16, layers=1, heads=2)).state_dict()
    still = make_text_trainer(tmp_path / "frozen", lr_scale=0.0, max_steps=2).fit().state_dict()
    assert all(torch.equal(v, start[n]) for n, v in still.items() if n.startswith("encoder."))
    assert any(not torch.equal(v, start[n]) for n, v in still.items() if n.startswith("net."))
    make_text_trainer(tmp_path / "plain", optimizer=adamw, max_steps=1).fit()
    assert len(built[-1].param_groups) == 1
    with pytest.raises(ValueError, match="conditioner.lr_scale.*-1"):
        TextPrompts(lr_scale=-1)


# ---- a frozen Hugging Face encoder from a local folder, built here (no hub access) ------------------------------
WORDS = ["<pad>", "</s>", "<unk>", "a", "red", "blue", "circle", "square", "fast", "slow", "melody"]


def save_tokenizer(folder) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", model_max_length=16
    )
    fast.save_pretrained(folder)


def save_t5(folder) -> None:
    from transformers import T5Config, T5EncoderModel

    config = T5Config(vocab_size=len(WORDS), d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2)
    T5EncoderModel(config).save_pretrained(folder)
    save_tokenizer(folder)


def save_clip(folder) -> None:
    from transformers import CLIPConfig, CLIPModel

    text = dict(
        vocab_size=len(WORDS),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=16,
        eos_token_id=1,
        pad_token_id=0,
        bos_token_id=1,
    )
    vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=8)
    CLIPModel(
        CLIPConfig(text_config=text, vision_config={**vision, "patch_size": 4}, projection_dim=8)
    ).save_pretrained(folder)
    save_tokenizer(folder)


@pytest.mark.parametrize("save, frozen_class", [(save_t5, "T5EncoderModel"), (save_clip, "CLIPTextModel")])
def test_a_frozen_local_encoder_conditions_the_network_and_stays_out_of_the_checkpoint(tmp_path, save, frozen_class):
    save(tmp_path)
    text = TextPrompts(path=str(tmp_path), max_length=64)
    assert text.max_length == 16  # the tokenizer's own limit
    assert text.describe(text.request(2, prompt=["a red circle", "blue square fast"])) == [
        '"a red circle"',
        '"blue square fast"',
    ]
    net = tiny_text_net(text)
    assert type(net.encoder.frozen).__name__ == frozen_class
    assert {k.split(".")[1] for k in net.state_dict() if k.startswith("encoder.")} == {"proj", "pooled_proj"}
    assert all(p.requires_grad for p in net.parameters())  # only trainable tensors are the network's
    cond = text.request(4, prompt=["a red circle", "a red circle", "slow melody", "a red circle"])
    out = net(torch.randn(4, 8, 16), torch.rand(4), **cond)
    assert out.shape == (4, 8, 16)
    assert len(net.encoder.cache) == 2  # embeddings of distinct captions, computed once
    net(torch.randn(4, 8, 16), torch.rand(4), **cond)
    assert len(net.encoder.cache) == 2


def test_a_frozen_encoder_with_a_bag_pools_the_tokenizers_tokens_and_checkpoints_the_bag(tmp_path):
    """``conditioner.pooled=bag`` with ``conditioner.path``: the pooled vector is a trainable bag over the tokenizer's
    ids, in place of the frozen pooler output; pads count for nothing, the bag is the encoder's only other
    checkpointed tensor beside the token projection, and it gets gradients."""
    save_t5(tmp_path)
    text = TextPrompts(path=str(tmp_path), max_length=64, pooled="bag")
    net = tiny_text_net(text)
    encoder = net.encoder
    assert encoder.bag.num_embeddings == encoder.frozen.get_input_embeddings().num_embeddings
    assert {k.split(".")[1] for k in net.state_dict() if k.startswith("encoder.")} == {"proj", "bag"}
    ids = text.tokenize(["a red circle", "a red circle moving left"], torch.device("cpu"))
    pooled = encoder(ids["text_ids"], ids["text_mask"])["pooled"]  # (2, 16)
    for row in range(2):
        real = ids["text_ids"][row][ids["text_mask"][row]]
        expected = encoder.bag.weight[real].sum(0) / len(real) ** 0.5
        torch.testing.assert_close(pooled[row], expected)
    pooled.sum().backward()
    assert encoder.bag.weight.grad.abs().sum() > 0


def test_a_folder_that_is_not_a_model_is_refused_in_one_line(tmp_path):
    with pytest.raises(ValueError, match="is not a folder; expected a local Hugging Face model folder"):
        TextPrompts(path=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="has no config.json"):
        TextPrompts(path=str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(ValueError, match=r"pickled \*.bin weights only \(convert them to safetensors\)"):
        TextPrompts(path=str(tmp_path))


def test_prompts_on_the_command_line_are_text_as_written():
    from mmdiff.cli import parse_key_values

    parsed = parse_key_values(["prompt=loud: yes", "negative_prompt=[a red circle, a blue square]", "n=2"])
    assert parsed == {"prompt": "loud: yes", "negative_prompt": ["a red circle", "a blue square"], "n": 2}


def test_a_long_prompt_is_cut_with_a_warning_that_shows_what_was_kept(caplog):
    text = TextPrompts(max_length=4, dim=16, layers=1, heads=2)
    with caplog.at_level("WARNING", logger="mmdiff.conditioners"):
        text.request(1, prompt="a fast organ melody")
    assert "prompt cut to 4 tokens (conditioner.max_length): 'a fast organ'" in caplog.text


class RealClips:
    """A pipeline stand-in that 'generates' the real clips the prompts were made from (a perfect model)."""

    def __init__(self, dataset, key, adapter=None):
        self.dataset, self.key, self.prompts, self.adapter = dataset, key, None, adapter

    def generate(self, n, prompt, **options):
        self.prompts = prompt
        return [self.dataset[i][self.key] for i in range(len(self.dataset) - n, len(self.dataset))]


def test_prompt_adherence_scores_a_perfect_model_as_the_real_clips_and_above_chance():
    from mmdiff.modalities.video.evaluate import VideoPromptAdherence
    from mmdiff.modalities.video.synth import MovingShapes

    data = MovingShapes(size=40, num_frames=6, resolution=16, radius_range=(0.15, 0.25), colours=["red", "blue"])
    pipe = RealClips(data, "video")
    report = VideoPromptAdherence(n=12, fit_n=24)(pipe, data)
    assert set(report) == {"generated", "real clips", "chance"}
    assert report["generated"] == report["real clips"]
    assert pipe.prompts[0] == VideoPromptAdherence().prompt(data.attributes(28))
    assert report["generated"]["colour"] > report["chance"]["colour"] and report["generated"]["shape"] > 0.5
    with pytest.raises(ValueError, match="leave prompt= out"):
        VideoPromptAdherence(n=12, fit_n=24)(pipe, data, prompt="a red circle")
    with pytest.raises(ValueError, match=r"n=30 plus fit_n=24 need 54 items; the data has 40"):
        VideoPromptAdherence(n=30, fit_n=24)(pipe, data)
    with pytest.raises(ValueError, match="needs data that knows each item's attributes"):
        VideoPromptAdherence(n=2, fit_n=2)(pipe, CaptionedTones())


def test_music_prompt_adherence_reads_instrument_register_and_tempo_of_real_clips():
    from mmdiff.modalities.audio.evaluate import MusicPromptAdherence
    from mmdiff.modalities.audio.synth import REGISTERS, TEMPOS, MusicSynth

    data = MusicSynth(size=60, registers=REGISTERS, tempos=TEMPOS)
    evaluator = MusicPromptAdherence(n=12, fit_n=36)
    assert evaluator.prompt(data.attributes(0)) == "a slow sine melody in a low register"
    report = evaluator(RealClips(data, "audio", LogMelAdapter()), data)
    assert list(report) == ["generated", "real clips", "real via mel + vocoder", "chance"]
    assert report["chance"] == {"instrument": 0.25, "tempo": 1 / 3, "register": 1 / 3}
    assert report["real clips"]["instrument"] >= 0.9 and report["real clips"]["register"] >= 0.9

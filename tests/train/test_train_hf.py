"""`longpos train --hf-model`: convert a (tiny, offline) Hugging Face model and continue
pretraining it on text in its own tokenizer; save, resume and reload."""

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from longpos.cli import main  # noqa: E402
from longpos.data.corpus import english_corpus  # noqa: E402


def tiny_llama_folder(folder):
    """A random tiny Llama and a byte-level BPE tokenizer trained offline on the corpus."""
    bpe = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token=None))
    bpe.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<eos>"],
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
    )  # fmt: skip
    bpe.train_from_iterator([english_corpus()[:20000]], trainer)
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<eos>")
    cfg = transformers.LlamaConfig(
        vocab_size=bpe.get_vocab_size(), hidden_size=32, intermediate_size=64,
        num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=256,
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)


def test_hf_model_converts_trains_resumes_and_reloads(tmp_path):
    from longpos import hf

    tiny_llama_folder(tmp_path / "base")
    fast = ["--train.data.kind", "text", "--train.seq_len", "32", "--train.batch_size", "2",
            "--train.no-progress", "--train.log_every", "1"]  # fmt: skip
    args = ["train", "--hf-model", str(tmp_path / "base"), "--model.plan", "repo",
            "--out", str(tmp_path / "run"), "--train.steps", "4", *fast]  # fmt: skip
    main(args)
    first = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    model = hf.load_hf_model(str(tmp_path / "run" / "model"))
    assert hf.layer_plan(model) == ["rope", "repo", "repo"]
    assert any(True for _ in hf.position_parameters(model))
    assert (tmp_path / "run" / "model" / "tokenizer.json").exists()
    assert len(first) == 5  # 4 steps + the final evaluation


def test_hf_stopped_and_resumed_run_matches_uninterrupted_run(tmp_path):
    from longpos import hf
    from longpos.train import TrainConfig
    from longpos.train.data import TextSource
    from longpos.train.loop import Trainer

    tiny_llama_folder(tmp_path / "base")
    source = TextSource(hf.local_tokenizer(tmp_path / "base"), seed=0)
    cfg = TrainConfig(steps=6, batch_size=2, seq_len=32, log_every=1, progress=False,
                      data=dict(kind="text"), optim=dict(lr=1e-3, warmup_steps=2))  # fmt: skip

    def run(out, stop_after=None, seed=0):
        torch.manual_seed(seed)  # a different init must not matter when resuming
        model = hf.load_hf_model(str(tmp_path / "base"), plan="repo")
        trainer = Trainer(model, cfg, out, source=source, source_folder=str(tmp_path / "base"))
        return trainer.fit(stop_after=stop_after)

    run(tmp_path / "straight")
    run(tmp_path / "resumed", stop_after=3)
    assert run(tmp_path / "resumed", seed=1)["resumed"]
    a = (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()
    b = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    losses = [[json.loads(x).get("loss") for x in lines] for lines in (a, b)]
    assert losses[0] == losses[1] and len(losses[0]) == 7


def test_hf_model_needs_text_data(tmp_path, capsys):
    tiny_llama_folder(tmp_path / "base")
    with pytest.raises(SystemExit):
        main(["train", "--hf-model", str(tmp_path / "base"), "--train.steps", "1",
              "--out", str(tmp_path / "run")])  # fmt: skip
    assert "--train.data.kind text" in capsys.readouterr().err

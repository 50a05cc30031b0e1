"""Model soups on tiny random-init BERT sentence-transformers folders and tiny Llama LoRA adapters: the uniform soup
is the hand-computed mean, greedy keeps and drops by a dev metric, mismatches fail with one named error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from embedlab import soup
from embedlab.errors import ConfigError
from embedlab.models import Encoder
from tests.tiny import TEXTS, tiny_bert, tiny_encoder

BACKBONE = "model.safetensors"
DENSE = "2_Dense/model.safetensors"


@pytest.fixture(scope="module")
def folders(tok, tmp_path_factory) -> list[Path]:
    """Three tiny BERT + projection encoders (seeds 0, 1, 2) exported as sentence-transformers folders."""
    root = tmp_path_factory.mktemp("ingredients")
    return [tiny_encoder(tok, seed=s).save(root / f"s{s}") for s in range(3)]


def tensors(folder: Path) -> dict[str, torch.Tensor]:
    return {f"{name}:{k}": v for name in soup.weight_files(folder) for k, v in load_file(folder / name).items()}


def test_uniform_soup_is_the_mean_and_opens_like_its_ingredients(folders: list[Path], tmp_path: Path) -> None:
    out = soup.average(folders, tmp_path / "soup")
    parts = [tensors(f) for f in folders]
    got = tensors(out)
    assert set(got) == set(parts[0]) and any(k.startswith(DENSE) for k in got)  # projection head averaged too
    for key, value in got.items():
        expected = (parts[0][key] + parts[1][key] + parts[2][key]) / 3
        torch.testing.assert_close(value, expected, rtol=0, atol=1e-7)
        assert value.dtype == parts[0][key].dtype
    assert not torch.equal(
        got[f"{BACKBONE}:embeddings.word_embeddings.weight"], parts[0][f"{BACKBONE}:embeddings.word_embeddings.weight"]
    )
    for name in ("modules.json", "config.json", "tokenizer.json", "1_Pooling/config.json"):
        assert (out / name).read_bytes() == (folders[0] / name).read_bytes()
    emb = Encoder.from_pretrained(str(out)).encode(TEXTS[:3])
    assert emb.shape == (3, 16)


def test_non_float_tensors_come_from_the_first(tmp_path: Path) -> None:
    for i, (w, ids) in enumerate(((1.0, [0, 1]), (3.0, [5, 6]))):
        (tmp_path / f"m{i}").mkdir()
        save_file(
            {"w": torch.full((2,), w, dtype=torch.bfloat16), "ids": torch.tensor(ids)},
            str(tmp_path / f"m{i}" / BACKBONE),
        )
    out = tensors(soup.average([tmp_path / "m0", tmp_path / "m1"], tmp_path / "soup"))
    assert out[f"{BACKBONE}:w"].dtype == torch.bfloat16 and out[f"{BACKBONE}:w"].tolist() == [2.0, 2.0]
    assert out[f"{BACKBONE}:ids"].tolist() == [0, 1]


def test_mismatches_fail_with_one_error_naming_folder_and_key(tok, folders: list[Path], tmp_path: Path) -> None:
    deeper = tmp_path / "deeper"
    Encoder(tiny_bert(tok, layers=3), tok, projection=torch.nn.Linear(32, 16), max_length=64).save(deeper)
    with pytest.raises(ConfigError, match=r"deeper: config.json key 'num_hidden_layers' is 3, but 2"):
        soup.average([folders[0], deeper], tmp_path / "soup")

    pruned = tmp_path / "pruned"
    shutil.copytree(folders[1], pruned)
    state = load_file(pruned / BACKBONE)
    key = sorted(state)[0]
    del state[key]
    save_file(state, str(pruned / BACKBONE))
    with pytest.raises(ConfigError, match=rf"pruned: tensor '{key}' of {BACKBONE} is missing"):
        soup.average([folders[0], pruned], tmp_path / "soup")

    (pruned / BACKBONE).unlink()
    with pytest.raises(ConfigError, match=rf"pruned: weight file {BACKBONE} differs"):
        soup.average([folders[0], pruned], tmp_path / "soup")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"empty holds no \.safetensors"):
        soup.average([tmp_path / "empty", folders[0]], tmp_path / "soup")
    assert not (tmp_path / "soup").exists()  # nothing half-written


def test_greedy_keeps_what_helps_and_drops_what_hurts(folders: list[Path], tmp_path: Path) -> None:
    """Dev metric: closeness of the word embeddings to the mean of ingredients 0 and 1. Alone, 0 and 1 tie and
    beat 2; the soup {0, 1} hits the target exactly, and adding 2 moves it away."""
    key = "embeddings.word_embeddings.weight"
    target = (load_file(folders[0] / BACKBONE)[key] + load_file(folders[1] / BACKBONE)[key]) / 2
    calls: list[Path] = []

    def metric(folder: Path) -> float:
        calls.append(folder)
        return -float((load_file(folder / BACKBONE)[key] - target).norm())

    order = [folders[2], folders[1], folders[0]]  # given worst first: greedy must sort by the dev score
    record = soup.greedy(order, metric, tmp_path / "soup")
    assert [r["kept"] for r in record.ingredients] == [False, True, True]
    assert record.kept == [str(folders[1]), str(folders[0])]
    assert record.ingredients[2]["soup_dev"] == pytest.approx(0.0, abs=1e-4)  # {1, 0}: exactly the target
    assert record.ingredients[0]["soup_dev"] < record.ingredients[2]["soup_dev"]
    assert record.dev == pytest.approx(0.0, abs=1e-4)
    assert len(calls) == 5  # three ingredients, then two candidate soups
    torch.testing.assert_close(load_file(tmp_path / "soup" / BACKBONE)[key], target, rtol=0, atol=1e-7)
    assert [p.name for p in tmp_path.iterdir()] == ["soup"]  # the scratch candidates are gone


def test_uniform_records_dev_scores_when_given_a_metric(folders: list[Path], tmp_path: Path) -> None:
    record = soup.uniform(folders[:2], tmp_path / "soup", metric=lambda f: float(len(str(f))))
    assert record.kept == [str(f) for f in folders[:2]] and record.dev == float(len(str(tmp_path / "soup")))


TINY_LLAMA = {
    "vocab_size": 64,
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
}


def lora_adapter(folder: Path, seed: int, rank: int = 4) -> Path:
    """A tiny random Llama with a LoRA adapter (random B, so the update is not zero), saved on its own."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)  # one base model for every adapter
    base = LlamaForCausalLM(LlamaConfig(**TINY_LLAMA))
    torch.manual_seed(seed)
    lora = LoraConfig(r=rank, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, lora).save_pretrained(folder)
    return folder


def test_lora_adapters_are_souped_as_adapters(tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import LlamaConfig, LlamaForCausalLM

    ingredients = [lora_adapter(tmp_path / f"a{s}", s) for s in (1, 2)]
    assert (ingredients[0] / "adapter_model.safetensors").exists()
    out = soup.average(ingredients, tmp_path / "soup")
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 4
    a, b, got = (load_file(f / "adapter_model.safetensors") for f in (*ingredients, out))
    assert set(got) == set(a) and all("lora_" in k for k in got)
    for k in got:
        torch.testing.assert_close(got[k], (a[k] + b[k]) / 2, rtol=0, atol=1e-7)
    # the soup loads back as an adapter onto the base model, with the averaged matrices in place
    model = PeftModel.from_pretrained(LlamaForCausalLM(LlamaConfig(**TINY_LLAMA)), out)
    loaded = {n.replace(".default", ""): p.detach() for n, p in model.named_parameters() if "lora_" in n}
    assert set(loaded) == set(got)
    for k, v in loaded.items():
        torch.testing.assert_close(v, got[k], rtol=0, atol=0)

    with pytest.raises(ConfigError, match=r"a8: adapter_config.json key 'r' is 8, but 4"):
        soup.average([ingredients[0], lora_adapter(tmp_path / "a8", 3, rank=8)], tmp_path / "soup2")


def test_greedy_keeps_an_ingredient_that_ties(folders: list[Path], tmp_path: Path) -> None:
    """'Does not decrease' (Wortsman et al.): an ingredient that leaves the dev score equal joins the soup."""
    record = soup.greedy(folders, lambda folder: 0.5, tmp_path / "soup")
    assert record.kept == [str(f) for f in folders] and record.dev == 0.5


def soup_cli(out: Path, *overrides: str) -> soup.SoupRecord:
    from embedlab.training.pipeline import compose
    from embedlab.training.soup import run

    return run(compose("soup", list(overrides)), out)


def test_cli_uniform_writes_the_soup_and_its_record(folders: list[Path], tmp_path: Path) -> None:
    soup_cli(tmp_path, f"models=[{folders[0]},{folders[1]}]")
    assert json.loads((tmp_path / "metrics.json").read_text()) == {}
    record = json.loads((tmp_path / "soup.json").read_text())
    assert record["method"] == "uniform" and record["dev"] is None
    assert [i["path"] for i in record["ingredients"]] == [str(folders[0]), str(folders[1])]
    assert json.loads((tmp_path / "manifest.json").read_text())["kept"] == [str(f) for f in folders[:2]]
    torch.testing.assert_close(tensors(tmp_path / "model"), tensors(soup.average(folders[:2], tmp_path / "ref")))


@pytest.mark.slow
def test_cli_greedy_selects_on_a_real_dev_split(folders: list[Path], real_data: Path, tmp_path: Path) -> None:
    """Greedy on real SciFact train claims (a few, small corpus), the soup then evaluated on SciFact test."""
    models = ",".join(map(str, folders))
    dev = ["dev.split=train", "dev.limit=8", "dev.max_docs=60", f"data.root={real_data}", "eval.cache=false"]
    record = soup_cli(tmp_path, "method=greedy", f"models=[{models}]", *dev, "eval.tasks=[stsb]")
    saved = json.loads((tmp_path / "soup.json").read_text())
    assert saved["dev_metric"] == "scifact/train ndcg_at_10" and saved["dev"] == record.dev
    devs = [i["dev"] for i in saved["ingredients"]]
    assert all(0 <= d <= 1 for d in devs) and record.dev >= max(devs)  # greedy never ends below its best ingredient
    assert sum(i["kept"] for i in saved["ingredients"]) == len(record.kept) >= 1
    assert 0 < abs(json.loads((tmp_path / "metrics.json").read_text())["stsb"]["cosine_spearman"]) <= 1


def test_cli_refuses_to_select_on_the_reported_split(folders: list[Path], tmp_path: Path) -> None:
    models = f"models=[{folders[0]},{folders[1]}]"
    with pytest.raises(ConfigError, match=r"dev selection on scifact/test is the split eval.tasks reports"):
        soup_cli(tmp_path, "method=greedy", models, "eval.tasks=[scifact]")
    with pytest.raises(ConfigError, match="at least two ingredient folders"):
        soup_cli(tmp_path, f"models=[{folders[0]}]")
    with pytest.raises(ConfigError, match="method must be uniform or greedy"):
        soup_cli(tmp_path, "method=best", models)
    assert not (tmp_path / "model").exists()


def test_corrupt_files_are_named(folders: list[Path], tmp_path: Path) -> None:
    from embedlab.errors import DataFormatError

    broken = tmp_path / "broken"
    shutil.copytree(folders[1], broken)
    (broken / DENSE).write_bytes(b"\x00" * 10)
    with pytest.raises(DataFormatError, match=rf"broken/{DENSE}: not a readable safetensors file"):
        soup.check_compatible([folders[0], broken])
    (broken / "config.json").write_text("{oops")
    with pytest.raises(DataFormatError, match=r"broken/config.json, line 1: invalid JSON"):
        soup.check_compatible([folders[0], broken])

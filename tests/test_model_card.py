"""Model cards of exported models (embedlab.models.card), and the prompts of an exported folder: sentence-transformers
and mteb read the same query/document/task prompts embedlab encodes with."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from embedlab.models import Encoder
from embedlab.models.card import CARD_FILE, methods_of, model_card, write_card
from tests.tiny import tiny_encoder

RESULTS = {  # results.json of a LEAF run: system -> task -> metrics
    "teacher": {"scifact": {"ndcg_at_10": 0.641, "map_at_100": 0.6}, "stsb": {"cosine_spearman": 0.8342}},
    "student (before)": {"scifact": {"ndcg_at_10": 0.5782}, "stsb": {"cosine_spearman": 0.8059}},
    "asymmetric (before)": {"scifact": {"ndcg_at_10": 0.5378}},
    "student": {"scifact": {"ndcg_at_10": 0.5668}, "stsb": {"cosine_spearman": 0.8023}},
    "asymmetric": {"scifact": {"ndcg_at_10": 0.5433}},
}


def composed(*overrides: str) -> dict:
    """The resolved training config of `embedlab-train <overrides>`, as the run records it."""
    from embedlab.config.build import compose

    return OmegaConf.to_container(compose("train", list(overrides)), resolve=True)


def test_leaf_card_has_training_evaluation_pairing_and_citation() -> None:
    config = composed("experiment=leaf_demo")
    student = {"name": "sentence-transformers/all-MiniLM-L6-v2", "dim": 768, "pooling": "mean", "max_length": 256}
    card = model_card(
        config,
        RESULTS,
        model={**student, "normalize": True, "projection": True, "query_prompt": "", "document_prompt": ""},
        summary={"steps": 319, "train_seconds": 291.0, "heldout_cosine": 0.7913},
        data_sizes={"scifact_train": 809, "scifact_sentences": 20000},
        teacher="sentence-transformers/all-mpnet-base-v2",  # what the job resolved teacher=mpnet to
    )
    assert card.startswith("---\nlibrary_name: sentence-transformers\n")
    assert "base_model: sentence-transformers/all-MiniLM-L6-v2" in card
    assert "- **Output Dimensionality:** 768 dimensions" in card
    assert "- **Teacher:** sentence-transformers/all-mpnet-base-v2" in card
    assert "| `leaf` | 1.0 | — | — |" in card  # weight; no temperature; defaults (normalize: false) not listed
    assert "| `scifact_sentences` | 20,000 |" in card and "| `scifact_train` | 809 |" in card
    assert "- `optim.lr`: 0.0001" in card and "- `optim.projection_lr`: 0.0001" in card
    assert "- `projection.init`: ridge" in card and "- `run.steps`: 319" in card
    # the run's evaluation table, main metric per task, every system
    assert "| system | scifact (ndcg_at_10) | stsb (cosine_spearman) |" in card
    assert "| student | 0.5668 | 0.8023 |" in card and "| asymmetric | 0.5433 | — |" in card
    pairing = card.split("## Asymmetric use (LEAF)")[1].split("## Evaluation")[0]
    assert "the teacher **sentence-transformers/all-mpnet-base-v2**" in pairing and "| asymmetric | 0.5433 |" in pairing
    assert 'SentenceTransformer("sentence-transformers/all-mpnet-base-v2").encode_document(' in card
    assert "arXiv:2509.12539" in card and "Robin Vujanic and Thomas Rueckstiess" in card  # LEAF
    assert "2506.20923" not in card and "2506.07438" not in card  # not KaLM-V2, not LG-ANNA


def test_citations_follow_the_recipe() -> None:
    assert methods_of(composed("experiment=leaf_demo")) == ["LEAF"]
    assert methods_of(composed("experiment=kalm_v2")) == []  # the plain InfoNCE arm
    assert methods_of(composed("experiment=kalm_v2", "loss=focal_infonce")) == ["KaLM-Embedding-V2"]
    assert methods_of(composed("experiment=kalm_v2", "loss.infonce.hn_mixing.enabled=true")) == ["KaLM-Embedding-V2"]
    lg = composed("experiment=lg_anna")
    assert methods_of(lg) == ["LG-ANNA-Embedding"]
    card = model_card(lg, {"student": {"scifact": {"ndcg_at_10": 0.1}}})
    assert "| `infonce` | 1.0 | temperature=0.05 |" in card
    assert "| `kl_distill` | 1.0 | student_temperature=0.05, teacher_temperature=1.0 |" in card
    assert "- `mining.margin`: adaptive" in card and "LoRA adapters" in card
    assert "arXiv:2506.07438" in card and "Jooyoung Choi" in card and "## Asymmetric use" not in card
    focal = model_card(composed("experiment=kalm_v2", "loss=focal_infonce"), {})
    assert "gamma=1.0" in focal and "arXiv:2506.20923" in focal and "No evaluation was run." in focal


def test_export_carries_the_card_and_sentence_transformers_reads_embedlabs_prompts(tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    enc = Encoder.from_pretrained(
        "all-MiniLM-L6-v2",
        query_prompt="query: ",
        document_prompt="passage: ",
        instructions={"scifact": "Given a scientific claim, find the evidence"},
    )
    card = model_card(composed(), {"student": {"scifact": {"ndcg_at_10": 0.6}}}, model=enc.describe())
    folder = enc.save(tmp_path / "model", card=card)
    assert (folder / CARD_FILE).read_text() == card
    assert "| `scifact` | " in card and '"query: "' in card  # the card lists the prompts
    st = SentenceTransformer(str(folder), device="cpu")
    instruction = enc.query_prompt_for("scifact")
    assert instruction.startswith("Instruct: Given a scientific claim")
    assert st.prompts == {
        "scifact": instruction,
        "SciFact-query": instruction,
        "query": "query: ",
        "document": "passage: ",
    }
    texts = ["Aspirin lowers the risk of heart attack.", "Whales sing long songs."]
    np.testing.assert_allclose(st.encode_query(texts), enc.encode_queries(texts), atol=1e-5)
    np.testing.assert_allclose(st.encode_document(texts), enc.encode_documents(texts), atol=1e-5)
    np.testing.assert_allclose(
        st.encode_query(texts, prompt_name="SciFact-query"), enc.encode_queries(texts, task="scifact"), atol=1e-5
    )
    # mteb's own prompt lookup (task name + prompt type) picks the instruction for queries only
    mteb = pytest.importorskip("mteb", reason="mteb is not installed")
    from mteb.models.abs_encoder import get_prompt_name
    from mteb.types import PromptType

    meta = mteb.get_task("SciFact").metadata
    assert get_prompt_name(st.prompts, meta, PromptType.query) == "SciFact-query"
    assert get_prompt_name(st.prompts, meta, PromptType.document) == "document"
    back = Encoder.from_pretrained(str(folder))  # the mteb alias is not read back as a task of its own
    assert back.task_prompts == {"scifact": instruction} and back.document_prompt == "passage: "


def test_adapter_export_carries_the_card(tok, tmp_path: Path) -> None:
    from tests.tiny_decoder import tiny_decoder_folder

    folder = tiny_decoder_folder(tmp_path / "base", "mistral")
    lora = {"r": 2, "alpha": 4, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
    enc = Encoder.from_pretrained(str(folder), bidirectional=True, pooling="mean", lora=lora)
    card = model_card(composed("experiment=lg_anna"), {})
    saved = enc.save_adapter(tmp_path / "adapter", card=card)
    assert (saved / CARD_FILE).read_text() == card  # replaces peft's own README
    assert Encoder.from_pretrained(str(saved)).dim == enc.dim


def test_write_card_replaces_atomically(tok, tmp_path: Path) -> None:
    folder = tiny_encoder(tok).save(tmp_path / "m")
    assert not (folder / CARD_FILE).exists()
    write_card(folder, "first")
    write_card(folder, "second")
    assert (folder / CARD_FILE).read_text() == "second"
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []

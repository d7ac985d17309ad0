"""A tagged encoder (ViT-B-32/openai) offline: a quick error that says how to run without network (issue 21,
item 3), the Hugging Face cache used without the network, and train-head's --model/--pretrained."""

import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tgdfer.cli import app
from tgdfer.encoders import EncoderConfig, load_encoder, resolve_weights
from tgdfer.errors import TgdferError

from smallhead import SMALL_HEAD_SET

runner = CliRunner()
PIPELINES = Path(__file__).resolve().parents[1] / "pipelines"
REPO = "timm/vit_base_patch32_clip_224.openai"  # open_clip's hf_hub entry for ViT-B-32/openai


@pytest.fixture
def network(monkeypatch):
    """No network: every connection fails as a missing DNS entry does; hub downloads are recorded, not run."""
    calls = {"connect": [], "hub": []}

    def connect(address, *args, **kwargs):
        calls["connect"].append(address)
        raise socket.gaierror(-2, "Name or service not known")

    def hub(*args, **kwargs):
        calls["hub"].append(kwargs.get("filename"))
        raise OSError("the test forbids hub downloads")

    import open_clip.pretrained

    monkeypatch.setattr(socket, "create_connection", connect)
    monkeypatch.setattr(open_clip.pretrained, "hf_hub_download", hub)
    for name in ("HF_HUB_OFFLINE", "HF_ENDPOINT", "https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY",
                 "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    return calls


def test_an_unreachable_hub_fails_at_once_and_names_the_offline_ways(network, tmp_path):
    cfg = EncoderConfig(model="ViT-B-32", pretrained="openai", cache_dir=str(tmp_path))  # empty cache
    with pytest.raises(TgdferError) as e:
        load_encoder(cfg)
    text = str(e.value)
    assert text.startswith("could not download weights for ViT-B-32/openai: cannot reach huggingface.co "
                           "(Name or service not known)")
    assert "--pretrained /path/to/ViT-B-32.pt" in text
    assert "--model tgdfer-proxy-vit --pretrained cache/proxy/tgdfer-proxy-vit.safetensors" in text
    assert network["connect"] == [("huggingface.co", 443)]  # one attempt
    assert network["hub"] == []  # no download tried, so none of huggingface_hub's retries


def test_hf_hub_offline_and_a_proxy_are_taken_into_account(network, tmp_path, monkeypatch):
    cfg = EncoderConfig(model="ViT-B-32", pretrained="openai", cache_dir=str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TgdferError, match="HF_HUB_OFFLINE is set and they are not in the Hugging Face cache"):
        resolve_weights(cfg)
    assert network["connect"] == [] and network["hub"] == []
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    with pytest.raises(TgdferError, match=r"cannot reach the HTTPS proxy proxy.example \(Name or service"):
        resolve_weights(cfg)
    assert network["connect"] == [("proxy.example", 3128)]  # through the proxy, as the download would go


def test_weights_in_the_hugging_face_cache_load_without_the_network(network, tmp_path):
    snapshot = tmp_path / f"models--{REPO.replace('/', '--')}" / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    (snapshot / "open_clip_model.safetensors").write_bytes(b"weights")
    (tmp_path / f"models--{REPO.replace('/', '--')}" / "refs").mkdir()
    (tmp_path / f"models--{REPO.replace('/', '--')}" / "refs" / "main").write_text("0123abc")
    src = resolve_weights(EncoderConfig(model="ViT-B-32", pretrained="openai", cache_dir=str(tmp_path)))
    assert src.kind == "tag" and src.path == str(snapshot / "open_clip_model.safetensors")
    assert network["connect"] == [] and network["hub"] == []


def test_extract_offline_with_the_custom_pipeline_says_how_to_run_offline(network, synth_dir, tmp_path):
    result = runner.invoke(app, ["extract", "-c", str(PIPELINES / "custom.toml"),
                                 "--set", f"data.args.csv_file='{synth_dir / 'clips.csv'}'", "--faces", "none",
                                 "--store", str(tmp_path / "s.zarr"), "--device", "cpu"])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "cannot reach huggingface.co" in text and "--model tgdfer-proxy-vit" in text
    assert network["hub"] == [] and "Traceback" not in result.output


def test_train_head_takes_model_and_pretrained_like_extract(reference_store, encoder_cfg, tmp_path):
    """The reference store was extracted from a weights file: train-head's text tower needs it again."""
    base = ["train-head", "--set", f"train.store='{reference_store}'", "--fold", "1", "--epochs", "1",
            "--device", "cpu", *SMALL_HEAD_SET]
    result = runner.invoke(app, [*base, "--out", str(tmp_path / "a")])  # [encoder] pretrained = "openai"
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "weights in a local file" in text and "--pretrained FILE" in text
    result = runner.invoke(app, [*base, "--out", str(tmp_path / "b"), "--model", "ViT-B-32",
                                 "--pretrained", encoder_cfg.pretrained])
    assert result.exit_code == 2 and "--model ViT-B-32:" in result.output and encoder_cfg.model in result.output
    result = runner.invoke(app, [*base, "--out", str(tmp_path / "c"), "--model", encoder_cfg.model,
                                 "--pretrained", encoder_cfg.pretrained])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "c" / "last.safetensors").is_file()

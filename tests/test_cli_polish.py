"""CLI polish (issue 13 item 2): --version, -h, examples, --print-config, "none", did-you-mean,
the store path given once, fold folders, evaluate's own folder and decimals, quiet proxy weights."""

import logging
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from tgdfer import __version__
from tgdfer.cli import app
from tgdfer.config import load_toml
from tgdfer.errors import ConfigError
from tgdfer.evaluation import DECIMALS, default_out
from tgdfer.pipeline import load_pipeline
from tgdfer.run import fold_folder, plan_runs, replica_runs

from smallhead import SMALL_HEAD_SET, small_head

runner = CliRunner()
COMMANDS = [c.name for c in app.registered_commands]


def test_version_and_short_help():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"tgdfer {__version__}"
    result = runner.invoke(app, ["-h"])
    assert result.exit_code == 0 and "train-head" in result.output and "--version" in result.output
    result = runner.invoke(app, ["evaluate", "-h"])
    assert result.exit_code == 0 and "--out" in result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_has_an_example_of_itself(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.strip() == "Example:")
    examples = [ln.strip() for ln in lines[start + 1:] if ln.strip().startswith("tgdfer ")]
    assert examples and all(ln.startswith(f"tgdfer {command}") for ln in examples)
    assert all(len(ln) <= 100 for ln in lines[start + 1:start + 1 + len(examples)])  # not rewrapped into a paragraph


def test_one_meaning_per_option_name():
    """--device takes cuda:N on every command that has it; --figures/--seed/--out exist where documented."""
    for command in ("extract", "train-head", "evaluate", "predict"):
        assert "cuda:N" in runner.invoke(app, [command, "--help"]).output
    assert "--figures" in runner.invoke(app, ["predict", "--help"]).output
    assert "--seed " in runner.invoke(app, ["train-head", "--help"]).output
    assert "--data" in runner.invoke(app, ["demo", "--help"]).output
    doc = Path(__file__).parents[1].joinpath("docs", "cli.md").read_text()
    for name in ("--out", "--figures", "--seed", "--seeds", "--device", "--print-config", "--set"):
        assert f"| `{name}" in doc


@pytest.mark.parametrize("command", ["synth data/x", "extract", "train-head", "proxy", "demo"])
def test_print_config_prints_the_effective_config_that_reads_back(command, tmp_path):
    args = [*command.split(), "--config", "pipelines/synthetic.toml", "--set", "train.epochs=3",
            "--set", "head.stride=none", "--print-config"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    path = tmp_path / "printed.toml"
    path.write_text(result.stdout)
    printed = load_pipeline(path)
    wanted = load_pipeline("pipelines/synthetic.toml", ["train.epochs=3", "head.stride=none"])
    assert printed.to_dict() == wanted.to_dict()
    assert printed.train.epochs == 3 and printed.head.stride is None
    assert not Path("data/x").exists()  # nothing was generated


def test_sweep_print_config_is_the_points_common_start(tmp_path):
    result = runner.invoke(app, ["sweep", "pipelines/sweeps/cache_views.toml", "--set", "train.lr=0.5",
                                 "--print-config"])
    assert result.exit_code == 0, result.output
    path = tmp_path / "p.toml"
    path.write_text(result.stdout)
    pipe = load_pipeline(path)
    assert pipe.extract.views == 17 and pipe.train.lr == 0.5  # the file's set, then --set
    assert pipe.extract.store == pipe.train.store == "cache/synth_proxy_v17.zarr"


def test_print_config_includes_the_command_options():
    result = runner.invoke(app, ["train-head", "-c", "pipelines/synthetic.toml", "--epochs", "7", "--seed", "4",
                                 "--device", "cuda:1", "--print-config"])
    assert result.exit_code == 0, result.output
    train = load_toml_text(result.stdout)["train"]
    assert (train["epochs"], train["seed"], train["device"]) == (7, 4, "cuda:1")


def load_toml_text(text: str) -> dict:
    import tomllib

    return tomllib.loads(text)


def test_none_in_toml_sets_optional_fields_to_none(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('[train]\nfold = "none"\n[head]\nstride = "NONE"\n[extract]\ndescriptors = "none"\n')
    pipe = load_pipeline(path, ["synth.class_shares=none"])
    assert pipe.train.fold is None and pipe.head.stride is None and pipe.extract.descriptors is None
    assert pipe.synth.class_shares is None
    assert load_pipeline(None, ["encoder.pretrained=none"]).encoder.pretrained == "none"  # not optional: a string
    with pytest.raises(ConfigError, match="train.epochs"):
        load_pipeline(None, ["train.epochs=none"])  # not optional: None is refused


@pytest.mark.parametrize("override, hint", [("train.epoch=3", 'did you mean "epochs"'),
                                            ("trian.epochs=3", 'did you mean "train"'),
                                            ("head.windows=2", 'did you mean "window"')])
def test_unknown_names_get_a_did_you_mean(override, hint):
    with pytest.raises(ConfigError, match=hint):
        load_pipeline(None, [override])
    result = runner.invoke(app, ["synth", "x", "--set", override])
    assert result.exit_code == 2 and hint in result.output


def test_train_store_defaults_to_the_extract_store(tmp_path):
    pipe = load_pipeline(None, ["extract.store='cache/a.zarr'"])
    assert pipe.train.store == "cache/a.zarr"
    pipe = load_pipeline(None, ["extract.store='cache/a.zarr'", "train.store='cache/b.zarr'"])
    assert pipe.train.store == "cache/b.zarr"  # an explicit value is kept
    for f in Path("pipelines").glob("*.toml"):
        raw = load_toml(f)
        assert "store" not in raw.get("train", {}), f"{f}: [train] store duplicates [extract] store"
        assert load_pipeline(f).train.store == load_pipeline(f).extract.store


def test_fold_folders_never_double():
    assert fold_folder("runs/synth", 1) == Path("runs/synth/fold1")
    assert fold_folder("runs/synth/fold1", 1) == Path("runs/synth/fold1")
    assert fold_folder("runs/synth/fold1", 2) == Path("runs/synth/fold2")
    assert fold_folder("runs/ferv", None) == Path("runs/ferv")
    assert [r.out for r in replica_runs("runs/x/fold1", [1, 2], [0])] == ["runs/x/fold1", "runs/x/fold2"]
    assert [r.out for r in replica_runs("runs/x", [None], [0, 1])] == ["runs/x/seed0", "runs/x/seed1"]
    pipe = load_pipeline("pipelines/synthetic.toml")
    assert pipe.train.out == "runs/synth" and plan_runs(pipe.train)[0].out == "runs/synth/fold1"
    assert plan_runs(pipe.train, out="elsewhere")[0].out == "elsewhere"  # an explicit --out is the run folder


def test_train_head_config_out_plus_fold_lands_once(tmp_path, reference_store, encoder_cfg):
    """[train] out = .../fold1 (old configs) plus --fold 1: the run is .../fold1, not .../fold1/fold1."""
    out = tmp_path / "runs" / "fold1"
    result = runner.invoke(app, ["train-head", "--set", f"train.store='{reference_store}'",
                                 "--set", f"train.out='{out}'", "--set", f"encoder.model='{encoder_cfg.model}'",
                                 "--set", f"encoder.pretrained='{encoder_cfg.pretrained}'",
                                 "--fold", "1", "--epochs", "1", "--device", "cpu", "--set", "train.batch_size=8",
                                 *SMALL_HEAD_SET])
    assert result.exit_code == 0, result.output
    assert (out / "final.json").is_file() and not (out / "fold1").exists()


def test_evaluate_default_folder_is_its_own():
    assert default_out([Path("runs/synth/fold1")]) == Path("runs/synth/fold1/eval")
    many = [Path(f"runs/dfew/fold{k}") for k in range(1, 6)]
    assert default_out(many) == Path("runs/dfew/eval_fold1+fold2+fold3+2more")
    assert default_out([Path("runs/a/fold1"), Path("runs/b/fold2")]) == Path("runs/eval_fold1+fold2")


def test_evaluate_writes_next_to_the_run_with_the_decimals_it_prints(tmp_path, reference_store, encoder_cfg):
    from tgdfer.training import TrainConfig, train

    run = tmp_path / "runs" / "fold1"
    train(small_head(learnable=False), TrainConfig(store=str(reference_store), fold=1, out=str(run), epochs=1,
                                                   batch_size=8, device="cpu"), encoder=encoder_cfg)
    result = runner.invoke(app, ["evaluate", str(run), "--device", "cpu", "--no-figures"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert (run / "eval" / "results.csv").is_file()
    assert not (tmp_path / "runs" / "results.csv").exists()  # never the shared parent
    table = pd.read_csv(run / "eval" / "results.csv", index_col=0)
    text = (run / "eval" / "results.csv").read_text()
    war = table["WAR"].iloc[0]
    shown = f"{war:.{DECIMALS['results']}f}"
    assert shown in text and shown in result.output  # the same number of decimals in the file and on screen
    loc = (run / "eval" / "localisation.csv").read_text().splitlines()[1].split(",")
    assert all(len(v.split(".")[1]) == DECIMALS["localisation"] for v in loc[2:] if "." in v)


def test_proxy_weights_load_without_warnings(tmp_path, caplog):
    """tgdfer's own proxy CLIP file: no QuickGELU guess warning, no "initialized randomly"."""
    from safetensors.torch import save_file

    from tgdfer.encoders import EncoderConfig, load_encoder

    enc = load_encoder(EncoderConfig(model="tgdfer-proxy-vit", pretrained="none"))
    path = tmp_path / "proxy.safetensors"
    save_file({k: v.contiguous() for k, v in enc.model.state_dict().items()}, str(path))
    caplog.clear()
    with caplog.at_level(logging.INFO):
        again = load_encoder(EncoderConfig(model="tgdfer-proxy-vit", pretrained=str(path)))
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert again.fingerprint["quick_gelu"] is False and "proxy CLIP" in again.quick_gelu_reason
    x = torch.rand(2, 3, again.image_size, again.image_size)
    assert torch.equal(again.model.encode_image(x), enc.model.encode_image(x))  # the file was loaded


def test_proxy_progress_covers_all_stages(tmp_path):
    from tgdfer.proxy import ProxyConfig, train_proxy

    events = []
    cfg = ProxyConfig(clips=14, size=32, steps=3, warmup=1, batch=14, text_steps=2, workers=1)
    train_proxy(tmp_path / "p.safetensors", cfg, workdir=tmp_path, progress=events.append)
    stages = list(dict.fromkeys(e.stage for e in events))
    assert stages == ["proxy data", "proxy image", "proxy text"]
    last = {e.stage: e for e in events}
    assert [(last[s].done, last[s].total) for s in stages] == [(14, 14), (3, 3), (2, 2)]
    assert "loss" in last["proxy image"].metrics and "loss" in last["proxy text"].metrics


@pytest.mark.parametrize("command", ["train-head", "evaluate", "predict"])
def test_a_bad_device_is_one_line_naming_it(command, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    from tgdfer.extraction import resolve_device as extract_device
    from tgdfer.devicedata import resolve_device

    assert resolve_device("cpu") == torch.device("cpu") == extract_device("cpu")
    for name, words in (("gpu", "is not a device"), ("cuda:1", "CUDA is not available")):
        with pytest.raises(ConfigError, match=words):
            resolve_device(name)
        with pytest.raises(ConfigError, match=words):
            extract_device(name)
    args = {"train-head": ["train-head", "--device", "gpu"],
            "evaluate": ["evaluate", str(tmp_path), "--device", "gpu"],
            "predict": ["predict", str(tmp_path), "x.mp4", "--device", "gpu"]}[command]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "'gpu' is not a device" in result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_usage_lines_and_metavars_read_plainly(command):
    """issue 21 item 8: no `{out}`, `{runs}...` or `--set <list[str]>` in a command's help."""
    result = runner.invoke(app, [command, "--help"], terminal_width=200)
    usage = result.output.splitlines()[0]
    assert usage.startswith("Usage:") and "{" not in usage and "}" not in usage, usage
    assert not any(ln.lstrip().startswith(("-s, --set <", "--point <")) for ln in result.output.splitlines())



def test_a_demo_made_with_another_proxy_names_what_to_remove(monkeypatch):
    """After a change to the proxy CLIP's code, `make` trains the proxy again and the demo's store no longer
    matches it (its weights' sha256 differs): the demo says which command removes its products."""
    import tgdfer.cli
    from tgdfer.errors import StoreMismatchError

    def mismatch(*args, **kwargs):
        raise StoreMismatchError("cache/synth_proxy.zarr: a different feature store already exists here:\n  - "
                                 "fingerprint.encoder.weights_sha256: stored 'aa', requested 'bb'\nDelete it to start "
                                 "over, or pass the settings it was made with to resume it.\n(or pass --overwrite to "
                                 "rebuild it with the new settings)")

    monkeypatch.setattr(tgdfer.cli, "_ensure_proxy", lambda pipe: None)
    monkeypatch.setattr(tgdfer.cli, "_synth_matches", lambda out, cfg: True)
    monkeypatch.setattr(tgdfer.cli, "_extract", mismatch)
    result = runner.invoke(app, ["demo"], terminal_width=300)
    assert result.exit_code == 2, result.output
    out = " ".join(result.output.split())
    assert "weights_sha256: stored 'aa', requested 'bb'" in out and "--overwrite" not in out
    assert ("make clean-demo` (data/synth, cache/synth_proxy.zarr, runs/synth, runs/sweeps/synthetic), then run "
            "`make demo` again") in out
    makefile = (Path(__file__).parents[1] / "Makefile").read_text()
    clean = makefile.split("clean-demo:\n\t")[1].splitlines()[0]
    assert all(p in clean for p in ("data/synth", "cache/synth*", "runs/synth", "runs/sweeps/synthetic"))

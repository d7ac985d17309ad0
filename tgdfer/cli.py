"""The `tgdfer` command line. Each command parses options and calls one library function.

The library raises `TgdferError` subclasses for user mistakes; `_run` turns them into a red
one-line message and exit code 2, so no user error ends in a bare traceback.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from pathlib import Path
from typing import Annotated, Callable, Optional

import pandas as pd
import typer
from rich import box
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.table import Table

from .errors import TgdferError
from .labels import CLASSES

app = typer.Typer(
    name="tgdfer",
    help="TG-DFER toolkit: synthetic data, CLIP feature extraction, fast head training.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)

EXIT_USER_ERROR = 2


def _run(fn: Callable) -> Callable:
    """Wrap a command: user errors become a message and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        try:
            return fn(*args, **kwargs)
        except TgdferError as e:
            console.print(f"[bold red]error:[/] {e}", highlight=False, markup=True)
            raise typer.Exit(EXIT_USER_ERROR) from None

    return wrapper


@app.callback()
def _threads_option(
    threads: Annotated[int, typer.Option("--threads", min=0, help="Torch CPU threads for every command; 0 = "
                                         "auto: the CPUs this process may use (affinity mask, cgroup quota), "
                                         "or OMP_NUM_THREADS when set.")] = 0,
):
    """Choose torch's thread count once, before any command does parallel work (tgdfer.threads)."""
    from .threads import apply_threads, auto_threads

    choice = apply_threads(auto_threads(threads))
    logging.getLogger("tgdfer.threads").info("torch threads: %d (%s)", choice.threads, choice.reason)


ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="Pipeline TOML file (pipelines/*.toml).")]
SetOpt = Annotated[
    Optional[list[str]],
    typer.Option("--set", "-s", help="Override a config field, e.g. --set extract.views=2 (repeatable)."),
]


def _overrides(sets: Optional[list[str]], **flags) -> list[str]:
    """CLI flags -> dotted overrides (`encoder.model="ViT-B-32"`), applied after --set ones."""
    out = list(sets or [])
    for key, value in flags.items():
        if value is not None:
            out.append(f"{key.replace('__', '.')}={json.dumps(value)}")
    return out


def _table(df, title: str | None = None) -> Table:
    """A pandas frame as a rich table (index included when it is named)."""
    t = Table(title=title, box=box.SIMPLE_HEAVY)
    with_index = df.index.name is not None or not isinstance(df.index, pd.RangeIndex)
    if with_index:
        t.add_column(str(df.index.name or ""), style="bold", no_wrap=True, min_width=max(len(str(i)) for i in df.index))
    for c in df.columns:
        t.add_column(str(c), justify="right", no_wrap=True, min_width=len(str(c)))
    for idx, row in df.iterrows():
        t.add_row(*([str(idx)] if with_index else []), *[_cell(v) for v in row])
    return t


def _cell(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


# -- synth ----------------------------------------------------------------------------------------


@app.command("synth")
@_run
def synth_cli(
    out: Annotated[Path, typer.Argument(help="Empty (or new) output folder.")],
    clips: Annotated[Optional[int], typer.Option(help="Number of clips.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Master seed (same seed, same files).")] = None,
    format: Annotated[Optional[str], typer.Option("--format", help="video | frames | both")] = None,
    size: Annotated[Optional[int], typer.Option(help="Frame side in pixels (even).")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Processes (0 = all cores).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty OUT.")] = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
):
    """Generate SynthDFER: procedural face clips for the 7 DFEW classes, in DFEW/list/CSV layouts."""
    from .pipeline import load_pipeline

    pipe = load_pipeline(config, _overrides(set_, synth__clips=clips, synth__seed=seed, synth__format=format,
                                            synth__size=size, synth__workers=workers))
    _synth(out, pipe.synth, overwrite)


def _synth(out: Path, cfg, overwrite: bool) -> None:
    from .synth import generate, summarize

    with _progress() as progress:
        task = progress.add_task("synth", total=cfg.clips)
        generate(out, cfg, progress=lambda n: progress.advance(task, n), overwrite=overwrite)
    summary = summarize(out).rename(columns=lambda c: c.replace("fold_", "f").replace("_frames", "")
                                    .replace("episode_share", "episode").replace("short", "<16"))
    console.print(_table(summary, title=f"SynthDFER: {cfg.clips} clips in {out} (test clips per fold, frames, "
                                        "share of frames in the episode)"))


def _progress(*extra_columns) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), *extra_columns,
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False)


# -- extract --------------------------------------------------------------------------------------


@app.command("extract")
@_run
def extract_cli(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    store: Annotated[Optional[str], typer.Option(help="Store path (.zarr folder, or .h5 with --backend hdf5).")] = None,
    backend: Annotated[Optional[str], typer.Option(help="zarr | hdf5")] = None,
    model: Annotated[Optional[str], typer.Option(help="open_clip model name, e.g. ViT-B-32.")] = None,
    pretrained: Annotated[Optional[str], typer.Option(help="open_clip tag, a weights file, or 'none'.")] = None,
    precision: Annotated[Optional[str], typer.Option(help="fp32 | bf16 | fp16 (autocast).")] = None,
    normalize: Annotated[Optional[str], typer.Option(help="clip (CLIP mean/std) | none ([0, 1]).")] = None,
    views: Annotated[Optional[int], typer.Option(help="Views per clip (view 0 = test-time).")] = None,
    workers: Annotated[Optional[int], typer.Option(help="DataLoader worker processes.")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto | cpu | cuda | cuda:N")] = None,
    shard_id: Annotated[Optional[int], typer.Option(help="This writer's shard (default: RANK / SLURM_PROCID).")] = None,
    num_shards: Annotated[Optional[int], typer.Option(help="Writers in all (default: WORLD_SIZE / SLURM_NTASKS).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Delete an existing store first and rebuild it.")] = False,
    verify_only: Annotated[bool, typer.Option("--verify", help="Only report the store's coverage and failures.")] = False,
):
    """Run the frozen open_clip encoders over a dataset and cache features in a store (resumable)."""
    from .pipeline import load_pipeline

    pipe = load_pipeline(config, _overrides(
        set_, extract__store=store, extract__backend=backend, encoder__model=model, encoder__pretrained=pretrained,
        encoder__precision=precision, extract__normalize=normalize, extract__views=views,
        extract__workers=workers, extract__device=device))
    if verify_only:
        ok = _verify(Path(pipe.extract.store), pipe.extract.backend)
        raise typer.Exit(0 if ok else 1)
    result = _extract(pipe, shard_id, num_shards, overwrite)
    raise typer.Exit(0 if result.ok else 1)


def _extract(pipe, shard_id, num_shards, overwrite):
    from .extract import extract

    clips = pipe.data.load()
    for src, line, clip_id, reason in clips.skipped.itertuples(index=False):
        console.print(f"[yellow]skipped[/] {src}:{line} {clip_id}: {reason}", highlight=False)
    images = TextColumn("{task.fields[rate]}")
    with _progress(images) as progress:
        task = progress.add_task("extract", total=None, rate="")
        t0 = time.perf_counter()

        def on_start(todo: int, done: int) -> None:
            progress.update(task, total=todo, description=f"extract ({done} already done)" if done else "extract")

        def on_progress(n: int, frames: int) -> None:
            dt = max(time.perf_counter() - t0, 1e-9)
            progress.update(task, completed=n, rate=f"{n / dt:.1f} clips/s {frames / dt:.0f} frames/s")

        result = extract(pipe.extract, pipe.augment, pipe.encoder, clips.table, data_kind=pipe.data.kind,
                         shard_id=shard_id, num_shards=num_shards, overwrite=overwrite,
                         on_start=on_start, on_progress=on_progress)
    _print_extract_summary(result)
    return result


def _print_extract_summary(r) -> None:
    t = Table(title=f"extract -> {r.store} (shard {r.shard_id + 1}/{r.num_shards})", box=box.SIMPLE_HEAVY)
    for col in ("extracted", "failed", "skipped (done before)", "frames", "seconds", "frames/s"):
        t.add_column(col, justify="right")
    fps = r.frames / r.seconds if r.seconds > 0 else 0.0
    t.add_row(str(r.extracted), str(r.failed), str(r.skipped), str(r.frames), f"{r.seconds:.1f}", f"{fps:.1f}")
    console.print(t)
    for clip_id, reason in r.failures[:20]:
        console.print(f"[red]failed[/] {clip_id}: {reason}", highlight=False)
    if len(r.failures) > 20:
        console.print(f"... and {len(r.failures) - 20} more (see `tgdfer info {r.store}`)")
    cov = r.coverage
    console.print(f"store: {cov['done']}/{cov['clips']} done, {cov['failed']} failed, {cov['pending']} pending")


def _verify(store: Path, backend: str) -> bool:
    from .extract import verify
    from .store import hdf5_staging_path

    path = hdf5_staging_path(store) if backend == "hdf5" and not store.exists() else store
    coverage, failures = verify(path)
    console.print(_table(pd.DataFrame([coverage]), title=f"coverage of {path}"))
    if len(failures):
        console.print(_table(failures[["clip_id", "reason", "writer"]], title="failures"))
    return coverage["failed"] == 0 and coverage["pending"] == 0


# -- train-head / evaluate -----------------------------------------------------------------------


@app.command("train-head")
@_run
def train_head_cli(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    store: Annotated[Optional[str], typer.Option(help="Feature store (default: [train] store).")] = None,
    fold: Annotated[Optional[int], typer.Option(help="Test fold of a k-fold dataset (DFEW: 1..5).")] = None,
    folds: Annotated[Optional[str], typer.Option(
        help="Several test folds trained together in one batched run, e.g. 1-5 or 1,3,5 (runs in <out>/fold<k>).")] = None,
    seeds: Annotated[Optional[str], typer.Option(
        help="Several seeds trained together, e.g. 0,1,2 (runs in <out>/fold<k>_seed<s>).")] = None,
    out: Annotated[Optional[str], typer.Option(help="Run folder (default: [train] out, plus /fold<k> with --fold).")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Epochs (paper: 50).")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto | cpu | cuda | cuda:N")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last checkpoint.")] = False,
    end_to_end: Annotated[bool, typer.Option(
        "--end-to-end", help="Fine-tune the image encoder too (lr [train] encoder_lr, 1e-5), from decoded frames.")] = False,
):
    """Train the TG-DFER head on cached features (seconds to minutes); writes a run folder per fold and seed.

    With --end-to-end the image encoder learns too: frames are decoded and augmented on the fly
    with the store's sampling and augmentation, one fold and seed per run (the store still gives
    the clip table, the prompts and the settings).
    """
    from .errors import ConfigError
    from .pipeline import load_pipeline
    from .train import parse_int_list, replica_runs

    if fold is not None and folds is not None:
        raise ConfigError("--fold", "give --fold k or --folds LIST, not both")
    pipe = load_pipeline(config, _overrides(set_, train__store=store, train__fold=fold, train__out=out,
                                            train__epochs=epochs, train__device=device,
                                            train__end_to_end=True if end_to_end else None))
    if folds is not None or seeds is not None:
        fold_list = parse_int_list(folds, "--folds") if folds is not None else [pipe.train.fold]
        seed_list = parse_int_list(seeds, "--seeds") if seeds is not None else [pipe.train.seed]
        runs = replica_runs(pipe.train.out, [f for f in fold_list if f is not None], seed_list)  # under [train] out
        _train_heads(pipe, runs, resume)
        return
    if out is None and pipe.train.fold is not None:  # one run folder per fold under [train] out
        pipe.train.out = str(Path(pipe.train.out) / f"fold{pipe.train.fold}")
    _train_head(pipe, resume)


def _train_heads(pipe, replicas, resume: bool):
    """Every fold x seed replica in one batched run; per epoch the replicas' mean (and range of test WAR)."""
    from .train import train_replicas

    cfg = pipe.train
    table = Table(title=f"train-head: {cfg.store}, {len(replicas)} replicas trained together (mean over replicas)",
                  box=box.SIMPLE_HEAVY)
    for col in ("epoch", "lr", "loss", "train acc", "test WAR", "WAR range", "test UAR", "clips/s"):
        table.add_column(col, justify="right")
    with _progress() as progress:
        task = progress.add_task("train-head", total=cfg.epochs)

        def on_epoch(epoch, records) -> None:
            df = pd.DataFrame([vars(r) for r in records])
            table.add_row(str(epoch), f"{df.lr.iloc[0]:.0e}", f"{df.loss.mean():.3f}", f"{df.train_acc.mean():.3f}",
                          f"{df.test_war.mean():.3f}", f"{df.test_war.min():.2f}-{df.test_war.max():.2f}",
                          f"{df.test_uar.mean():.3f}", f"{df.clips_per_s.sum():.0f}")
            progress.update(task, completed=epoch, description=f"train-head x{len(records)} mean loss "
                                                               f"{df.loss.mean():.3f} test WAR {df.test_war.mean():.3f}")

        results = train_replicas(pipe.head, cfg, replicas, resume=resume, config_record={"pipeline": pipe.to_dict()},
                                 on_epoch=on_epoch, encoder=pipe.encoder)
    console.print(table)
    rows = [{"run": str(r.run), "fold": rep.fold, "seed": rep.seed, "epoch": r.selected_epoch,
             "UAR": round(100 * r.test.uar, 2), "WAR": round(100 * r.test.war, 2)} for rep, r in zip(replicas, results)]
    df = pd.DataFrame(rows)
    mean = {"run": "mean", "fold": "", "seed": "", "epoch": "", "UAR": round(df.UAR.mean(), 2),
            "WAR": round(df.WAR.mean(), 2)}
    console.print(_table(pd.concat([df, pd.DataFrame([mean])], ignore_index=True).set_index("run"),
                         title=f"test results (%), {results[0].protocol}"))
    console.print(f"re-score or tabulate with: tgdfer evaluate {' '.join(str(r.run) for r in results[:5])}"
                  f"{' ...' if len(results) > 5 else ''}")
    return results


def _train_head(pipe, resume: bool):
    from .train import train

    cfg = pipe.train
    table = Table(title=f"train-head: {cfg.store} fold {cfg.fold} -> {cfg.out}", box=box.SIMPLE_HEAVY)
    for col in ("epoch", "lr", "loss", "train acc", "test WAR", "test UAR", "val WAR", "clips/s"):
        table.add_column(col, justify="right")
    with _progress() as progress:
        task = progress.add_task("train-head", total=cfg.epochs)

        def on_epoch(r) -> None:
            table.add_row(str(r.epoch), f"{r.lr:.0e}", f"{r.loss:.3f}", f"{r.train_acc:.3f}", f"{r.test_war:.3f}",
                          f"{r.test_uar:.3f}", _cell(r.val_war), f"{r.clips_per_s:.0f}")
            progress.update(task, completed=r.epoch,
                            description=f"train-head loss {r.loss:.3f} test WAR {r.test_war:.3f}")

        result = train(pipe.head, cfg, resume=resume, config_record={"pipeline": pipe.to_dict()},
                       on_epoch=on_epoch, encoder=pipe.encoder)
    console.print(table)
    console.print(f"[bold]{result.protocol}[/] (epoch {result.selected_epoch}): test WAR {result.test.war:.4f}, "
                  f"UAR {result.test.uar:.4f} -> {result.run}/final.json")
    return result


@app.command("evaluate")
@_run
def evaluate_cli(
    runs: Annotated[list[Path], typer.Argument(help="Run folders (one per fold for a k-fold table).")],
    out: Annotated[Optional[Path], typer.Option(help="Where tables and figures go (default: first run's parent).")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    frames: Annotated[Optional[str], typer.Option(
        help="Table 6: re-score from only the frames of highest | lowest influence (or highest,lowest).")] = None,
    k: Annotated[str, typer.Option("--k", help="Table 6: numbers of frames, e.g. 1,2,3.")] = "1,2,3",
    figures: Annotated[bool, typer.Option(help="Write confusion matrices and frame strips (PNG + PDF).")] = True,
    influence: Annotated[str, typer.Option(
        help="Influence (Eq. 12) for Table 6 and the strips: relative (the frame's class score minus its mean over "
             "the classes) | similarity (the raw class score).")] = "relative",
):
    """Re-score runs from their checkpoints; print and save the result table (paper Table 1 / 2 layout).

    Also: Table 6 with --frames, localisation scores when the dataset has frame labels (SynthDFER),
    and the figures of paper Fig. 3 and Fig. 4 under OUT/figures.
    """
    from .evaluate import TABLE6_TITLE, check_influence, evaluate, parse_frames, parse_ks

    ev = evaluate(runs, out=out, device=device, frames=parse_frames(frames), ks=parse_ks(k), figures=figures,
                  influence=check_influence(influence))
    short = ev.results.rename(columns=lambda c: c[:3] if c in CLASSES else c)  # fits 80 columns; files keep full names
    console.print(_table(short, title=f"TG-DFER results (%), model selection: {ev.protocol}"))
    if ev.table6 is not None:
        console.print(_table(ev.table6, title=f"{TABLE6_TITLE}, {ev.influence} influence"))
    if ev.localisation is not None:
        short = ev.localisation.rename(columns=lambda c: c.replace("relative", "rel").replace(
            "similarity", "sim").replace("random", "rnd").replace("AUROC", "AUC").replace("hit@1", "hit"))  # 80 cols
        console.print(_table(short, title="Localisation of the expression episode (AUROC, hit@1) by the influence "
                                          "for the true class: relative (default), similarity, random"))
    pngs = [f for f in ev.files if f.suffix == ".png"]
    console.print(f"saved {', '.join(str(f) for f in ev.files if f.suffix != '.png')}")
    if pngs:
        console.print(f"figures: {len(pngs)} PNG (+ PDF) in {pngs[0].parent}")
    return ev.results


# -- sweep / report -------------------------------------------------------------------------------


@app.command("sweep")
@_run
def sweep_cli(
    file: Annotated[Path, typer.Argument(help="Sweep file (pipelines/sweeps/*.toml).")],
    set_: SetOpt = None,
    out: Annotated[Optional[str], typer.Option(
        help="Sweep folder (default: the file's out, else runs/sweeps/<stem>).")] = None,
    folds: Annotated[Optional[str], typer.Option(help="Test folds, e.g. 1-5 or 1,3 (default: the file's).")] = None,
    seeds: Annotated[Optional[str], typer.Option(help="Seeds, e.g. 0,1,2 (default: the file's).")] = None,
    workers: Annotated[int, typer.Option(
        help="Points run at once, each in its own process (sharing the device; each holds the store).")] = 1,
    shard_id: Annotated[Optional[int], typer.Option(
        help="This machine's share of the points (default: RANK / SLURM_PROCID).")] = None,
    num_shards: Annotated[Optional[int], typer.Option(
        help="Machines in all (default: WORLD_SIZE / SLURM_NTASKS).")] = None,
    dry_run: Annotated[bool, typer.Option(help="Check every point and list them; train nothing.")] = False,
):
    """Run a grid or list of config points (the paper's ablations), each on every fold; resumable."""
    from .sweep import load_sweep, plan_sweep, run_sweep
    from .train import parse_int_list

    fold_list = parse_int_list(folds, "--folds") if folds is not None else None
    seed_list = parse_int_list(seeds, "--seeds") if seeds is not None else None
    if dry_run:
        sweep = load_sweep(file, out=out, folds=fold_list, seeds=seed_list, overrides=list(set_ or []))
        plans = plan_sweep(sweep)
        df = pd.DataFrame([{"point": p.point.name, **p.point.values, "runs": len(p.replicas),
                            "state": "done (skipped)" if p.done else "to run"} for p in plans]).set_index("point")
        console.print(_table(df, title=f"{sweep.title}: {len(plans)} points x folds {sweep.folds} x seeds "
                                       f"{sweep.seeds} -> {sweep.out}"))
        return None
    with _progress(TextColumn("{task.fields[info]}")) as progress:
        task = progress.add_task("sweep", total=None, info="checking points")

        def on_point(name, status, outcome) -> None:
            if status == "queued":
                progress.update(task, total=(progress.tasks[0].total or 0) + 1)
                return
            if status == "start":
                progress.update(task, description=f"sweep: {name}", info="")
                return
            progress.update(task, advance=1, info="")
            if status == "failed":
                console.print(f"[red]failed[/] {name}: {outcome.error}", highlight=False)
            elif status == "done":
                console.print(f"[green]done[/] {name} ({outcome.seconds:.0f} s)", highlight=False)
            else:
                console.print(f"[dim]skipped[/] {name} (finished before)", highlight=False)

        def on_epoch(name, epoch, records) -> None:
            if records:
                loss = sum(r.loss for r in records) / len(records)
                war = sum(r.test_war for r in records) / len(records)
                progress.update(task, info=f"epoch {epoch} x{len(records)} loss {loss:.3f} test WAR {war:.3f}")

        df = run_sweep(file, out=out, folds=fold_list, seeds=seed_list, overrides=list(set_ or []),
                       workers=workers, shard_id=shard_id, num_shards=num_shards, on_point=on_point,
                       on_epoch=on_epoch)
    _print_sweep(df, Path(out) if out else None, file)
    if df["status"].str.contains("failed").any():
        raise typer.Exit(1)  # the others finished; re-running retries only what failed
    return df


def _print_sweep(df, out: Optional[Path], file: Optional[Path] = None) -> None:
    from .sweep import load_sweep, paper_table

    if out is None:
        out = Path(load_sweep(file).out)
    console.print(_table(paper_table(df), title=f"{out}: mean over runs (%)"))
    failed = df[(df["fold"] == "mean") & df["status"].str.contains("failed")]
    for point, error in zip(failed["point"], failed["error"]):
        console.print(f"[red]{point}[/]: {error}", highlight=False)
    console.print(f"saved {out}/results.csv, results.md, results.png (every run: results.csv)")


@app.command("report")
@_run
def report_cli(
    sweep_dir: Annotated[Path, typer.Argument(help="A sweep folder (written by `tgdfer sweep`).")],
):
    """Rebuild a sweep's result table (CSV, Markdown) and plot from its finished runs (all shards)."""
    from .sweep import report

    df, _ = report(sweep_dir)
    _print_sweep(df, sweep_dir)
    return df


# -- predict ------------------------------------------------------------------------------------


@app.command("predict")
@_run
def predict_cli(
    model: Annotated[Path, typer.Argument(help="A run folder (or one of its .pt checkpoints).")],
    inputs: Annotated[list[Path], typer.Argument(
        help="Video files, frame folders, or .txt files listing them (one path per line).", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the predictions as JSON (schema: tgdfer.predict).")] = False,
    figure: Annotated[Optional[Path], typer.Option(
        "--figure", help="Folder for each clip's frame strip with its influence colour bar (PNG + PDF).")] = None,
    weights: Annotated[Optional[str], typer.Option(
        help="The image encoder's weights file, when the model's features came from a local file.")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    influence: Annotated[str, typer.Option(
        help="relative (the frame's class score minus its mean over the classes) | similarity (the raw class "
             "score).")] = "relative",
):
    """Emotion probabilities and per-frame influence (Eq. 12) of clips, from a trained model.

    Exit code 1 when some input could not be predicted (the others are), 2 when the model cannot be loaded.
    """
    from .evaluate import check_influence
    from .predict import PredictFailure, predict

    result = predict(model, inputs, device=device, weights=weights, figure_dir=figure,
                     influence=check_influence(influence))
    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=2))
    else:
        _print_predictions(result)
    for f in result.predictions:
        if isinstance(f, PredictFailure):
            console.print(f"[bold red]failed:[/] {f.error}", highlight=False)
    if result.figures:
        console.print(f"figures: {', '.join(str(f) for f in result.figures)} (+ PDF)")
    if result.failed:
        raise typer.Exit(1)


def _print_predictions(result) -> None:
    out = Console()  # predictions are the command's output: stdout
    for pred in result.predictions:
        if not hasattr(pred, "probs"):  # a PredictFailure, reported on stderr
            continue
        k = pred.predicted
        out.print(f"[bold]{pred.input}[/]: {CLASSES[k]} ({pred.probs[k]:.3f}), {pred.n_frames} frames", highlight=False)
        probs = Table(box=box.SIMPLE, show_header=True)
        for c in CLASSES:
            probs.add_column(c, justify="right")
        probs.add_row(*[f"{p:.3f}" for p in pred.probs])
        out.print(probs)
        frames = Table(title=f"influence (Eq. 12, {result.influence}) for {CLASSES[k]}", box=box.SIMPLE)
        for col in ("position", "frame", "influence", ""):
            frames.add_column(col, justify="right" if col else "left")
        for t, (i, v) in enumerate(zip(pred.frame_index, pred.influence)):
            frames.add_row(str(t), str(int(i)), f"{v:.3f}", "#" * int(round(20 * v)))
        out.print(frames)


# -- info -----------------------------------------------------------------------------------------


@app.command("info")
@_run
def info_cli(
    store: Annotated[Path, typer.Argument(help="A feature store (.zarr folder or .h5 file).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the description as JSON.")] = False,
):
    """Show what a feature store holds: fingerprint, clips per class and fold, failures, size."""
    from .info import describe

    d = describe(store)
    if as_json:
        typer.echo(json.dumps(d.to_json(), indent=2))
        return
    console.print(f"[bold]{store}[/] ({d.backend}, {d.size_bytes / 2**20:.1f} MiB on disk): "
                  f"{d.clips} clips x {d.views} views x {d.frames} frames x {d.dim} dims")
    console.print_json(json.dumps(d.fingerprint))
    console.print(_table(d.counts, title="clips per class (done / all)"))
    console.print(f"text prompt sets: {', '.join(d.text_sets) or 'none'}")
    console.print(f"coverage: {d.coverage}")
    if len(d.failures):
        console.print(_table(d.failures[["clip_id", "reason"]], title="failures"))


# -- proxy ----------------------------------------------------------------------------------------


@app.command("proxy")
@_run
def proxy_cli(
    out: Annotated[Optional[Path], typer.Argument(help="Weights file to write (default: [encoder] pretrained).")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    overwrite: Annotated[bool, typer.Option(help="Train again even if OUT exists.")] = False,
):
    """Train a small proxy CLIP on its own SynthDFER set: informative features without downloads.

    Pretrained CLIP cannot be downloaded everywhere; random weights give features with no
    expression information. The proxy learns the 7 classes from single frames of its own SynthDFER
    set (its own seed and people, never the evaluated clips), then its text tower learns to put
    each prompt on its class; it is used like any local weights file:
    [encoder] model = "tgdfer-proxy-vit", pretrained = OUT.
    """
    from .pipeline import load_pipeline

    pipe = load_pipeline(config, list(set_ or []))
    target = out or Path(pipe.encoder.pretrained)
    if target.exists() and not overwrite:
        raise TgdferError(f"{target} exists; pass --overwrite to train the proxy again")
    _train_proxy(target, pipe.proxy)


def _train_proxy(out: Path, cfg) -> Path:
    from .proxy import train_proxy

    t0 = time.perf_counter()
    with _progress() as progress:
        task = progress.add_task(f"proxy CLIP ({cfg.model}, {cfg.clips} clips, seed {cfg.seed})", total=cfg.steps)
        path = train_proxy(out, cfg, workdir=out.parent, progress=lambda n: progress.advance(task, n))
    console.print(f"proxy CLIP weights -> {path} ({time.perf_counter() - t0:.0f} s)")
    return path


def _ensure_proxy(pipe) -> None:
    """Train the pipeline's proxy CLIP once when [encoder] names it as a weights file that is not there yet."""
    enc = pipe.encoder
    weights = Path(enc.pretrained)
    if enc.model != pipe.proxy.model or weights.suffix not in (".pt", ".pth", ".bin") or weights.exists():
        return
    console.print(f"[bold]{weights}[/] is missing: training the proxy CLIP once ([proxy] in {pipe.source})")
    _train_proxy(weights, pipe.proxy)


def _synth_matches(out: Path, cfg) -> bool:
    """True when `out` holds a complete SynthDFER made with the same settings (worker count aside)."""
    from .config import to_dict

    meta = out / "meta.json"
    if not (meta.is_file() and (out / "frame_labels.csv").is_file()):
        return False
    stored = json.loads(meta.read_text()).get("config", {})
    wanted = to_dict(cfg)
    return {k: v for k, v in stored.items() if k != "workers"} == {k: v for k, v in wanted.items() if k != "workers"}


# -- demo -----------------------------------------------------------------------------------------


@app.command("demo")
@_run
def demo_cli(
    config: ConfigOpt = Path("pipelines/synthetic.toml"),
    set_: SetOpt = None,
    out: Annotated[Path, typer.Option(help="Where the synthetic dataset is written.")] = Path("data/synth"),
    sweep: Annotated[Optional[Path], typer.Option(help="Sweep run at the end on the same store (\"\" skips it).")]
        = Path("pipelines/sweeps/synthetic.toml"),
):
    """The main job on built-in synthetic data: (proxy CLIP) -> SynthDFER -> extract -> train-head -> evaluate -> sweep."""
    from .pipeline import load_pipeline

    pipe = load_pipeline(config, list(set_ or []))
    _ensure_proxy(pipe)
    if _synth_matches(out, pipe.synth):
        console.print(f"[green]reusing[/] SynthDFER in {out} (same settings)")
    else:
        _synth(out, pipe.synth, overwrite=True)
    result = _extract(pipe, None, None, overwrite=False)
    info_cli(Path(result.store), as_json=False)
    if pipe.train.store != result.store:
        pipe.train.store = result.store  # train on what was just extracted
    run = Path(pipe.train.out)
    trained = _train_head(pipe, resume=(run / "last.pt").exists())
    evaluate_cli([trained.run], out=run, device=pipe.train.device)
    if sweep is not None and str(sweep) not in ("", "."):
        sweep_cli(sweep, set_=set_, out=None, folds=None, seeds=None, workers=1, shard_id=None, num_shards=None,
                  dry_run=False)
    if not result.ok:
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

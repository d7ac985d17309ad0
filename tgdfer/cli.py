"""The `tgdfer` command line. Each command parses options and calls one library function.

The library raises `TgdferError` subclasses for user mistakes; `_run` turns them into a red
one-line message and exit code 2, so no user error ends in a bare traceback.

No `from __future__ import annotations` here: typer reads every command's annotations each time
it builds the click command (each CLI start, each CliRunner call); as strings they are compiled
and evaluated again every time (80 ms a build), as objects they are read (13 ms).
"""

import contextlib
import errno
import functools
import json
import logging
import os
import time
from pathlib import Path
from typing import Annotated, Callable, Optional

import pandas as pd
import typer
from typer.core import TyperArgument, TyperCommand
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.table import Table

from . import __version__
from .errors import StoreMismatchError, TgdferError, os_error
from .labels import short_names
from .predictoptions import PredictOptions

app = typer.Typer(
    name="tgdfer",
    help="TG-DFER toolkit: synthetic data, CLIP feature extraction, fast head training.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help text is plain text: `[train] store` must not be read as markup
    context_settings={"help_option_names": ["-h", "--help"]},
)
console = Console(stderr=True)  # progress, warnings, errors
stdout = Console()  # a command's results (tables, summaries, files written): `tgdfer info S > s.txt`, `| grep`


class _Command(TyperCommand):
    """Usage lines in the usual notation, OUT, [CONFIG], RUN... (typer writes {out}, {runs}...)."""

    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for p in self.get_params(ctx):
            if not isinstance(p, TyperArgument):
                pieces += p.get_usage_pieces(ctx)
                continue
            name = (p.metavar or p.name).upper()
            pieces.append((name if p.required else f"[{name}]") + ("..." if p.nargs != 1 else ""))
        return pieces


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"tgdfer {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print tgdfer's version and exit.")] = False,
    threads: Annotated[int, typer.Option("--threads", min=0, help="Torch CPU threads for every command; 0 = "
                                         "auto: the CPUs this process may use (affinity mask, cgroup quota), "
                                         "or OMP_NUM_THREADS when set.")] = 0,
    limit: Annotated[Optional[list[str]], typer.Option(
        "--limit", metavar="NAME=VALUE", help="Raise (or lower) a cap on input sizes for this command, e.g. "
        "--limit frame_pixels=8192x8192 --limit clip_bytes=8GiB (repeatable; names and defaults: docs/limits.md).")]
        = None,
) -> None:
    """TG-DFER toolkit: synthetic data, CLIP feature extraction, fast head training."""
    if limit:
        from . import limits

        try:
            caps = limits.parse(limit)
        except TgdferError as e:
            _error(e)
        ctx.with_resource(limits.override(caps))  # in force until the command ends (worker processes too)
    if ctx.invoked_subcommand in NO_TORCH:
        return  # setting torch's threads would import torch (about 0.8 GB) for a command that never uses it
    from .threads import apply_threads, auto_threads  # once, before any command does parallel work

    choice = apply_threads(auto_threads(threads))
    logging.getLogger("tgdfer.threads").info("torch threads: %d (%s)", choice.threads, choice.reason)


EXIT_USER_ERROR = 2
NO_TORCH = frozenset({"check"})  # commands that import neither torch nor the model code


def _run(fn: Callable) -> Callable:
    """Wrap a command: user errors become a message and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        try:
            return fn(*args, **kwargs)
        except TgdferError as e:
            _error(e)
        except OSError as e:  # the operating system's refusals that no library call turned into a TgdferError
            _error(os_error(e.filename or "tgdfer", e, "complete the command"))

    return wrapper


def _error(e: Exception) -> None:
    """One red line (the message's brackets, e.g. `[encoder]`, shown as text), then exit code 2.

    An error worded for Python callers (resume=True) carries its command-line wording (--resume) as `cli`.
    """
    console.print(f"[bold red]error:[/] {escape(getattr(e, 'cli', None) or str(e))}", highlight=False)
    raise typer.Exit(EXIT_USER_ERROR) from None


ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="Pipeline TOML file (pipelines/*.toml).")]
SetOpt = Annotated[
    Optional[list[str]],
    typer.Option("--set", "-s", metavar="FIELD=VALUE", help="Override a config field, e.g. --set extract.views=2 (repeatable)."),
]


ProfileOpt = Annotated[Optional[str], typer.Option(
    "--profile", help="paper (the paper's literal readings) | recommended (tgdfer's choices) | a TOML overlay; "
    "default: the config's own `profile = ...` (docs/paper-mapping.md, Deviations).")]
PrintConfigOpt = Annotated[bool, typer.Option(
    "--print-config", help="Print the effective config (the TOML file, --set and the options) as TOML and exit.")]
ModelOpt = Annotated[Optional[str], typer.Option(help="open_clip model name, e.g. ViT-B-32 (the demo's: tgdfer-proxy-vit).")]
PretrainedOpt = Annotated[Optional[str], typer.Option(
    help="open_clip tag, a weights file, or 'none' (offline: a local file, or the demo's proxy "
         "cache/proxy/tgdfer-proxy-vit.safetensors).")]
DeviceOpt = Annotated[Optional[str], typer.Option(help="auto | cpu | cuda | cuda:N (default: the config's, auto).")]


TrustOpt = Annotated[bool, typer.Option(
    "--trust-weights", help="Unpickle an encoder weights file in full (or run a TorchScript archive's code) even if "
    "it holds more than tensors. This can run code from the file: only for files whose source you trust. Same as "
    "TGDFER_TRUST_WEIGHTS=1; no config file can set it (see docs/sharing.md).")]
AllowImportOpt = Annotated[bool, typer.Option(
    "--allow-import", help="Import the --faces detector given as pkg.module:factory (runs that Python code). "
    "Without it tgdfer only builds registered detectors; a name read from a file is never imported.")]


def _allow_import(faces: Optional[str], allow: bool) -> None:
    """--faces pkg.module:factory --allow-import: import the factory the user named (detectors.import_detector)."""
    from .errors import ConfigError
    from .detectors import import_detector

    if allow and not (faces and ":" in faces):
        raise ConfigError("--allow-import", "imports the detector that --faces names as pkg.module:factory; "
                                            "give one there")
    if allow:
        import_detector(faces)


def _pipeline(config: Optional[Path], overrides: list[str], print_config: bool = False,
              profile: Optional[str] = None):
    """The pipeline from --config, --profile and the overrides; with --print-config, print it as TOML and exit 0."""
    from .pipeline import load_pipeline

    pipe = load_pipeline(config, overrides, profile=profile)
    if print_config:
        typer.echo(pipe.to_toml())
        raise typer.Exit(0)
    return pipe


@contextlib.contextmanager
def _reporter():
    """A progress callback (tgdfer.progress): rich bars on a terminal, else one plain line per epoch / block."""
    from .progress import LineLogger, RichCallback

    if not console.is_terminal:  # Slurm, nohup, CI: lines that appear in the log as the job runs
        yield LineLogger(stream=console.file)
        return
    with _progress() as progress:
        yield RichCallback(progress)


@contextlib.contextmanager
def _on_ctrl_c(message: str):
    """Ctrl-C: `message` (what is kept, how to continue) and exit code 130; typer would exit 130 without a word."""
    try:
        yield
    except KeyboardInterrupt:
        # zarr's write tasks cut short are reported at exit as "Task was destroyed but it is pending!": the block
        # they belonged to is not marked done (extract does it again), so that is noise here
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        console.print(message, highlight=False)
        raise typer.Exit(130) from None


def _overrides(sets: Optional[list[str]], **flags) -> list[str]:
    """CLI flags -> dotted overrides (`encoder.model="ViT-B-32"`), applied after --set ones."""
    out = list(sets or [])
    for key, value in flags.items():
        if value is not None:
            out.append(f"{key.replace('__', '.')}={json.dumps(value)}")
    return out


def _table(df, title: str | None = None, decimals: Optional[int] = None):
    """A pandas frame as a table that fits the console without cutting a number (tgdfer.tables); floats
    with `decimals` when given (as the saved Markdown table shows them), else 3 significant digits."""
    from .tables import FittedTable

    return FittedTable(df, title, decimals)


def _cell(v, decimals: Optional[int] = None) -> str:
    from .tables import cell_text

    return cell_text(v, decimals)


# -- synth ----------------------------------------------------------------------------------------


@app.command("synth", cls=_Command)
@_run
def synth_cli(
    out: Annotated[Path, typer.Argument(metavar="OUT", help="Empty (or new) output folder.")],
    clips: Annotated[Optional[int], typer.Option(help="Number of clips (default: [synth] clips).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Master seed: same seed, same files (default: [synth] seed).")]
        = None,
    format: Annotated[Optional[str], typer.Option("--format", help="video | frames | both (default: [synth] format).")] = None,
    size: Annotated[Optional[int], typer.Option(help="Frame side in pixels, even (default: [synth] size).")] = None,
    canvas: Annotated[Optional[int], typer.Option(
        help="Raw-video frames of this side: the face off-centre and moving, true boxes in boxes.csv (0 = off).")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Processes, 0 = all cores (default: [synth] workers).")]
        = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty OUT.")] = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    print_config: PrintConfigOpt = False,
):
    """Generate SynthDFER: procedural face clips for the 7 DFEW classes, in DFEW/list/CSV layouts.

    \b
    Example:
      tgdfer synth data/synth --clips 400 --size 112
      tgdfer synth data/raw --clips 50 --size 64 --canvas 160   # raw video, faces off-centre
      tgdfer synth data/synth -c pipelines/synthetic.toml --print-config
    """
    pipe = _pipeline(config, _overrides(set_, synth__clips=clips, synth__seed=seed, synth__format=format,
                                        synth__size=size, synth__canvas=canvas, synth__workers=workers), print_config)
    _synth(out, pipe.synth, overwrite, pipe.classes.class_set())


def _synth(out: Path, cfg, overwrite: bool, classes=None) -> None:
    from .progress import Stage, every_tenth
    from .synth import check_class_set, generate, summarize

    check_class_set(classes)  # SynthDFER draws the 7 emotions only
    with _reporter() as report:
        stage, drawn = Stage(report, "synth", cfg.clips, "clips"), [0]

        def on_clips(n: int) -> None:
            drawn[0] += n
            stage.update(drawn[0], log=every_tenth(drawn[0], cfg.clips))

        generate(out, cfg, progress=on_clips, overwrite=overwrite)
    summary = summarize(out).rename(columns=lambda c: c.replace("fold_", "f").replace("_frames", "")
                                    .replace("episode_share", "episode").replace("short", "<16"))
    stdout.print(_table(summary, title=f"SynthDFER: {cfg.clips} clips in {out} (test clips per fold, frames, "
                                        "share of frames in the episode)"))


def _progress(*extra_columns) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), *extra_columns,
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False)


# -- extract --------------------------------------------------------------------------------------


@app.command("extract", cls=_Command)
@_run
def extract_cli(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    store: Annotated[Optional[str], typer.Option(help="Store path (.zarr folder, or .h5 with --backend hdf5).")] = None,
    backend: Annotated[Optional[str], typer.Option(help="zarr | hdf5")] = None,
    model: ModelOpt = None,
    pretrained: PretrainedOpt = None,
    precision: Annotated[Optional[str], typer.Option(help="fp32 | bf16 | fp16 (autocast).")] = None,
    normalize: Annotated[Optional[str], typer.Option(help="clip (CLIP mean/std) | none ([0, 1]).")] = None,
    views: Annotated[Optional[int], typer.Option(help="Views per clip (view 0 = test-time).")] = None,
    workers: Annotated[Optional[int], typer.Option(help="DataLoader worker processes.")] = None,
    device: DeviceOpt = None,
    seed: Annotated[Optional[int], typer.Option(help="Sampling and augmentation seed (default: [extract] seed).")]
        = None,
    faces: Annotated[Optional[str], typer.Option(
        help="Face detector cropping each frame to the clip's face track: none (pre-cropped data) | centerface | "
             "pkg.module:factory with --allow-import ([faces] table).")] = None,
    allow_import: AllowImportOpt = False,
    shard_id: Annotated[Optional[int], typer.Option(help="This writer's shard (default: RANK / SLURM_PROCID).")] = None,
    num_shards: Annotated[Optional[int], typer.Option(help="Writers in all (default: WORLD_SIZE / SLURM_NTASKS).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Delete an existing store first and rebuild it.")] = False,
    verify_only: Annotated[bool, typer.Option("--verify", help="Only report the store's coverage and failures.")] = False,
    trust_weights: TrustOpt = False,
    profile: ProfileOpt = None,
    print_config: PrintConfigOpt = False,
):
    """Run the frozen open_clip encoders over a dataset and cache features in a store (resumable).

    Options left out take their value from the config (--print-config shows them all).

    \b
    Example:
      tgdfer extract -c pipelines/synthetic.toml
      tgdfer extract -c pipelines/dfew.toml --device cuda:1 --set extract.batch_clips=16
      tgdfer extract -c pipelines/custom.toml --faces centerface
      tgdfer extract -c pipelines/dfew.toml --verify
    """
    pipe = _pipeline(config, _overrides(
        set_, extract__store=store, extract__backend=backend, encoder__model=model, encoder__pretrained=pretrained,
        encoder__precision=precision, extract__normalize=normalize, extract__views=views,
        extract__workers=workers, extract__device=device, extract__seed=seed, faces__detector=faces),
        print_config, profile)
    pipe.encoder.trust_weights = trust_weights  # only ever from the command line, never from the config
    _allow_import(faces, allow_import)
    if verify_only:
        ok = _verify(Path(pipe.extract.store), pipe.extract.backend)
        raise typer.Exit(0 if ok else 1)
    result = _extract(pipe, shard_id, num_shards, overwrite)
    raise typer.Exit(0 if result.ok else 1)


def _extract(pipe, shard_id, num_shards, overwrite):
    from .extraction import extract

    clips = pipe.data.load(class_names=pipe.classes.class_set().names)
    _print_skipped(clips, f"recorded as failures in the store (`tgdfer info {pipe.extract.store}`)")
    with _reporter() as report:
        def on_start(todo: int, done: int) -> None:
            if done:
                console.print(f"extract: {done} clips done before (kept), {todo} to do", highlight=False)

        with _on_ctrl_c(f"extract: interrupted; the clips written before are kept in {pipe.extract.store}: run the "
                        f"same command again to continue (`tgdfer info {pipe.extract.store}` shows what is left)"):
            result = extract(pipe.extract, pipe.augment, pipe.encoder, clips.with_skipped(), data_kind=pipe.data.kind,
                             shard_id=shard_id, num_shards=num_shards, overwrite=overwrite,
                             on_start=on_start, progress=report, classes=pipe.classes.class_set(),
                             unreadable=clips.skip_reasons(), faces=pipe.faces)
    _print_extract_summary(result)
    return result


SHOW_FIRST = 5  # clips listed by name when many are skipped or fail; the rest are counted


def _print_skipped(clips, where: str) -> None:
    """The first few clips the reader skipped (its warning already gave the one-line summary)."""
    first = clips.skipped.head(SHOW_FIRST)
    for src, line, clip_id, reason in first[["source", "line", "clip_id", "reason"]].itertuples(index=False):
        console.print(f"  [yellow]skipped[/] {escape(f'{src}:{line} {clip_id}: {reason}')}", highlight=False)
    if len(clips.skipped):
        more = len(clips.skipped) - len(first)
        console.print(f"  {'... and ' + str(more) + ' more; all ' if more else ''}{where}", highlight=False)


def _print_extract_summary(r) -> None:
    t = Table(title=f"extract -> {r.store} (shard {r.shard_id + 1}/{r.num_shards})", box=box.SIMPLE_HEAVY)
    for col in ("extracted", "failed", "skipped (done before)", "frames", "seconds", "frames/s"):
        t.add_column(col, justify="right")
    fps = r.frames / r.seconds if r.seconds > 0 else 0.0
    t.add_row(str(r.extracted), str(r.failed), str(r.skipped), str(r.frames), f"{r.seconds:.1f}", f"{fps:.1f}")
    stdout.print(t)
    from .readers import SKIPPED_AT_READ

    decoded = [(c, why) for c, why in r.failures if not why.startswith(SKIPPED_AT_READ)]  # skips: listed above
    for clip_id, reason in decoded[:SHOW_FIRST]:
        stdout.print(f"[red]failed[/] {escape(str(clip_id))}: {escape(str(reason))}", highlight=False)
    if len(decoded) > SHOW_FIRST:
        stdout.print(f"... and {len(decoded) - SHOW_FIRST} more (see `tgdfer info {r.store}`)")
    cov = r.coverage
    at_read = len(r.failures) - len(decoded)
    stdout.print(f"store: {cov['done']}/{cov['clips']} done, {cov['failed']} failed"
                  f"{f' ({at_read} skipped when reading the annotations)' if at_read else ''}, {cov['pending']} pending"
                  f"{f', {r.fallback_clips} fell back to the centre square' if r.fallback_clips else ''}")
    _print_fallbacks(r.fallbacks, " in this run")


def _print_fallbacks(clip_ids: list[str], when: str) -> None:
    """The clips cropped to the centre square because no face was found (faces.on_missing = "center")."""
    if not clip_ids:
        return
    n = len(clip_ids)
    names = escape(", ".join(clip_ids[:SHOW_FIRST])) + (f" and {n - SHOW_FIRST} more" if n > SHOW_FIRST else "")
    stdout.print(f"[yellow]fallback[/]: {n} clip{'s' * (n != 1)}{when} fell back to the centre square (no face found, "
                  f"faces.on_missing = \"center\"): {names}", highlight=False)


def _face_sources_line(counts: dict[str, int]) -> str:
    """"120 sampled frames: 96 detected (80%), 18 interpolated (15%), 6 carried over (5%), 0 centre fallback (0%)"."""
    total = sum(counts.values())
    if not total:
        return "no frame written yet"
    words = {"detected": "detected", "interpolated": "interpolated", "carried": "carried over",
             "center": "centre fallback"}
    return f"{total} sampled frames: " + ", ".join(f"{counts[k]} {w} ({counts[k] / total:.0%})" for k, w in words.items())


def _verify(store: Path, backend: str) -> bool:
    from .info import verify
    from .store import hdf5_staging_path

    path = hdf5_staging_path(store) if backend == "hdf5" and not store.exists() else store
    coverage, failures, damage = verify(path)
    stdout.print(_table(pd.DataFrame([coverage]), title=f"coverage of {path}"))
    if len(failures):
        stdout.print(_table(failures[["clip_id", "reason", "writer"]], title="failures"))
    _print_damage(path, damage)
    return coverage["failed"] == 0 and coverage["pending"] == 0 and not len(damage)


def _print_damage(path: Path, damage: pd.DataFrame) -> None:
    """The damaged clips and text sets `verify` found, and how to repair them; or that every done clip is intact."""
    if not len(damage):
        stdout.print(f"integrity: every done clip and text set of {path} matches its checksum", highlight=False)
        return
    stdout.print(_table(damage.astype(object).fillna(""), title=f"damaged clips of {path}"))
    stdout.print(f"[red]damaged:[/] {len(damage)} clips or text sets; re-run `tgdfer extract` with the store's "
                  "pipeline to extract them again (an HDF5 store: the extraction re-exports it)", highlight=False)


# -- check ----------------------------------------------------------------------------------------


@app.command("check", cls=_Command)
@_run
def check_cli(
    data_config: Annotated[Optional[Path], typer.Argument(
        metavar="CONFIG", help="Pipeline TOML file; its data section (reader and arguments) names the annotations "
        "(or give it with -c/--config, as the other commands take it).", show_default=False)] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    workers: Annotated[int, typer.Option(help="Checking processes (0 = in this process).")] = max(1, (os.cpu_count() or 1)),
    csv: Annotated[Optional[Path], typer.Option("--csv", help="Results CSV, one row per clip "
                                                "(default: cache/check_<config name>.csv).")] = None,
    verify_decode: Annotated[int, typer.Option(help="Videos (a seeded sample) whose random access is checked: "
                                               "4 frames read with [extract] frame_backend, compared by pixels "
                                               "with a sequential decode (0 = none).")] = 8,
    decode: Annotated[bool, typer.Option("--decode", help="Decode every frame of every clip (slow; finds a frame "
                                         "damaged in the middle). Default: list and stat frames, read headers.")]
        = False,
):
    """Read every annotation row and look at every clip; exit 1 if any clip is bad.

    Reports per clip what is missing, empty, unreadable, shorter than declared (a frame folder
    holding fewer images than annotated included), or labelled against its path, before a long
    extraction finds it. By default frames are listed, stat'ed and their headers read (first and
    last image; a video's packets counted); --decode decodes every frame.

    \b
    Example:
      tgdfer check pipelines/custom.toml
      tgdfer check -c pipelines/custom.toml                 # the same, as the other commands take it
      tgdfer check pipelines/dfew.toml --workers 8 --csv dfew_check.csv --decode
      tgdfer check pipelines/ferv39k.toml --verify-decode 100   # random access on 100 videos
    """
    from .check import check_clips, status_counts
    from .dataconfig import load_data_config  # [classes] and [data] only: no torch, no model code imported
    from .readers import NO_SPLIT

    from .errors import ConfigError

    if data_config is not None and config is not None and data_config != config:
        raise ConfigError("--config", f"two pipeline files given ({data_config} and {config}): give one")
    data_config = data_config or config
    if data_config is None:
        raise ConfigError("--config", "give the pipeline file: tgdfer check pipelines/custom.toml (or -c FILE)")
    classes, data, frame_backend = load_data_config(data_config, list(set_ or []) + ['data.args.missing="skip"'])
    clips = data.load(class_names=classes.class_set().names)
    with _progress() as progress:
        task = progress.add_task("check", total=None)
        results = check_clips(clips, workers=workers, on_start=lambda n: progress.update(task, total=n),
                              on_progress=lambda n: progress.update(task, completed=n), decode=decode,
                              verify_decode=verify_decode, frame_backend=frame_backend)
    counts = status_counts(results)
    out = csv or Path("cache") / f"check_{data_config.stem}.csv"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        results.to_csv(out, index=False)
        written = f"; every clip in {out}"
    except OSError as e:
        written = f"; cannot write {out} ({e.strerror})"
    bad = results[results["status"] != "ok"]
    if len(bad):
        where = [f"{Path(src).name}:{int(line)}" if isinstance(src, str) and pd.notna(line) else ""
                 for src, line in zip(bad["source"], bad["line"])]  # the annotation row to fix
        stdout.print(_table(bad.assign(where=where)[["clip_id", "where", "status", "reason"]].head(20)
                            .set_index("clip_id"), title=f"problems (first {min(20, len(bad))} of {len(bad)})"))
    claimed = results["claimed"].notna().sum()
    if claimed:
        stdout.print(f"{claimed} videos have a header claiming more frames than they hold (read as held)")
    stdout.print(", ".join(f"{n} {s}" for s, n in counts.items() if n or s == "ok") + written, highlight=False)
    if clips.unsplit:  # every clip may be fine, yet train-head could not test on any
        stdout.print(f"[yellow]not trainable as it is:[/] {escape(NO_SPLIT)}", highlight=False)
    raise typer.Exit(1 if len(bad) else 0)


# -- train-head / evaluate -----------------------------------------------------------------------


@app.command("train-head", cls=_Command)
@_run
def train_head_cli(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    store: Annotated[Optional[str], typer.Option(help="Feature store (default: [train] store, else [extract] store).")]
        = None,
    fold: Annotated[Optional[int], typer.Option(help="Test fold of a k-fold dataset (DFEW: 1..5).")] = None,
    folds: Annotated[Optional[str], typer.Option(
        help="Several test folds trained together in one batched run, e.g. 1-5 or 1,3,5 (runs in <out>/fold<k>).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of the run (default: [train] seed).")] = None,
    seeds: Annotated[Optional[str], typer.Option(
        help="Several seeds trained together, e.g. 0,1,2 (runs in <out>/fold<k>_seed<s>).")] = None,
    out: Annotated[Optional[str], typer.Option(
        help="Run folder (default: [train] out/fold<k> with a fold; with --folds/--seeds their parent).")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Epochs (default: [train] epochs; 50 in the shipped pipelines, DFER-CLIP's "
                                                             "count: the paper gives none).")] = None,
    device: DeviceOpt = None,
    model: ModelOpt = None,
    pretrained: PretrainedOpt = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last checkpoint.")] = False,
    end_to_end: Annotated[bool, typer.Option(
        "--end-to-end", help="Fine-tune the image encoder too (lr [train] encoder_lr, 1e-5), from decoded frames.")] = False,
    trust_weights: TrustOpt = False,
    profile: ProfileOpt = None,
    print_config: PrintConfigOpt = False,
):
    """Train the TG-DFER head on cached features (seconds to minutes); writes a run folder per fold and seed.

    With --end-to-end the image encoder learns too: frames are decoded and augmented on the fly
    with the store's sampling and augmentation, one fold and seed per run (the store still gives
    the clip table, the prompts and the settings). Fold k's run goes to <out>/fold<k>, never to
    .../fold<k>/fold<k>.

    \b
    Example:
      tgdfer train-head -c pipelines/synthetic.toml --fold 1       # -> runs/synth/fold1
      tgdfer train-head -c pipelines/dfew.toml --folds 1-5 --seeds 0,1,2 --device cuda:0
      tgdfer train-head -c pipelines/synthetic.toml --fold 1 --resume --epochs 30
      tgdfer train-head -c pipelines/custom.toml --pretrained /models/ViT-B-32.pt
    """
    from .errors import ConfigError
    from .fixedsettings import check_overrides
    from .run import plan_runs
    from .training import parse_int_list

    if fold is not None and folds is not None:
        raise ConfigError("--fold", "give --fold k or --folds LIST, not both")
    overrides = _overrides(set_, train__store=store, train__fold=fold, train__seed=seed, train__epochs=epochs,
                           train__device=device, train__end_to_end=True if end_to_end else None,
                           encoder__model=model, encoder__pretrained=pretrained)
    pipe = _pipeline(config, overrides, print_config, profile)
    pipe.encoder.trust_weights = trust_weights  # only ever from the command line, never from the config
    check_overrides(pipe.to_dict(), overrides, pipe.train.store)  # --set extract.views=4 cannot change a store
    if model is not None:  # the text tower is the store's encoder; --model is checked against it
        from .model import check_store_model

        check_store_model(pipe.train.store, model)
    runs = plan_runs(pipe.train, parse_int_list(folds, "--folds") if folds is not None else None,
                     parse_int_list(seeds, "--seeds") if seeds is not None else None, out)
    where = os.path.commonpath([str(r.out) for r in runs])  # the run, or the parent of its fold and seed runs
    with _on_ctrl_c(f"train-head: interrupted; every run keeps its last finished epoch in {where}: run the same "
                    "command with --resume to continue"):
        if folds is not None or seeds is not None:
            _train_heads(pipe, runs, resume)
            return
        pipe.train.out = runs[0].out
        _train_head(pipe, resume)


def _train_heads(pipe, replicas, resume: bool):
    """Every fold x seed replica in one batched run; per epoch the replicas' mean (and range of test WAR)."""
    from .training import train_replicas

    cfg = pipe.train
    epochs = []  # one row of text per epoch, printed as a table at the end

    def on_epoch(epoch, records) -> None:
        df = pd.DataFrame([vars(r) for r in records])
        epochs.append({"epoch": str(epoch), "lr": f"{df.lr.iloc[0]:.0e}", "loss": f"{df.loss.mean():.3f}",
                       "train acc": f"{df.train_acc.mean():.3f}", "test WAR": f"{df.test_war.mean():.3f}",
                       "WAR range": f"{df.test_war.min():.2f}-{df.test_war.max():.2f}",
                       "test UAR": f"{df.test_uar.mean():.3f}", "clips/s": f"{df.clips_per_s.sum():.0f}"})

    with _reporter() as report:
        results = train_replicas(pipe.head, cfg, replicas, resume=resume, config_record={"pipeline": pipe.to_dict()},
                                 on_epoch=on_epoch, encoder=pipe.encoder, classes=pipe.classes.class_set(),
                                 progress=report)
    if console.is_terminal and epochs:  # redirected, the reporter has written one line per epoch already: not twice
        stdout.print(_table(pd.DataFrame(epochs).set_index("epoch"), title=f"train-head: {cfg.store}, {len(replicas)} "
                             "replicas trained together (mean over replicas)"))
    rows = [{"run": str(r.run), "fold": rep.fold, "seed": rep.seed, "epoch": r.selected_epoch,
             "UAR": round(100 * r.test.uar, 2), "WAR": round(100 * r.test.war, 2)} for rep, r in zip(replicas, results)]
    df = pd.DataFrame(rows)
    mean = {"run": "mean", "fold": "", "seed": "", "epoch": "", "UAR": round(df.UAR.mean(), 2),
            "WAR": round(df.WAR.mean(), 2)}
    stdout.print(_table(pd.concat([df, pd.DataFrame([mean])], ignore_index=True).set_index("run"),
                         title=f"test results (%), {results[0].protocol}", decimals=2))
    stdout.print(f"re-score or tabulate with: tgdfer evaluate {' '.join(str(r.run) for r in results[:5])}"
                  f"{' ...' if len(results) > 5 else ''}")
    return results


def _train_head(pipe, resume: bool):
    from .training import train

    cfg = pipe.train
    records: list = []
    with _reporter() as report:
        result = train(pipe.head, cfg, resume=resume, config_record={"pipeline": pipe.to_dict()},
                       on_epoch=records.append, encoder=pipe.encoder, classes=pipe.classes.class_set(), progress=report)
    if console.is_terminal and records:  # redirected, the reporter has written one line per epoch already: not twice
        val = any(r.val_war == r.val_war for r in records)  # a validation split only with selection = "val"
        table = pd.DataFrame([{"epoch": str(r.epoch), "lr": f"{r.lr:.0e}", "loss": f"{r.loss:.3f}",
                               "train acc": f"{r.train_acc:.3f}", "test WAR": f"{r.test_war:.3f}",
                               "test UAR": f"{r.test_uar:.3f}", **({"val WAR": _cell(r.val_war)} if val else {}),
                               "clips/s": f"{r.clips_per_s:.0f}"} for r in records])
        stdout.print(_table(table.set_index("epoch"), title=f"train-head: {cfg.store} fold {cfg.fold} -> {cfg.out}"))
    stdout.print(f"[bold]{result.protocol}[/] (epoch {result.selected_epoch}): test WAR {result.test.war:.4f}, "
                  f"UAR {result.test.uar:.4f} -> {result.run}/final.json")
    return result


@app.command("evaluate", cls=_Command)
@_run
def evaluate_cli(
    runs: Annotated[list[Path], typer.Argument(metavar="RUN", help="Run folders (one per fold for a k-fold table).")],
    out: Annotated[Optional[Path], typer.Option(
        help="Folder for the tables and figures (default: <run>/eval for one run, "
             "<common parent>/eval_<run names> for several).")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    frames: Annotated[Optional[str], typer.Option(
        help="Table 6: re-score from only the frames of highest | lowest influence (or highest,lowest).")] = None,
    k: Annotated[str, typer.Option("--k", help="Table 6: numbers of frames, e.g. 1,2,3.")] = "1,2,3",
    figures: Annotated[bool, typer.Option(help="Write confusion matrices and frame strips (PNG + PDF).")] = True,
    influence: Annotated[Optional[str], typer.Option(
        help="Influence (Eq. 12) for Table 6 and the strips: relative (the frame's class score minus its mean over "
             "the classes) | similarity (the raw class score). Default: the run's [head] influence.")] = None,
    trust_weights: TrustOpt = False,
):
    """Re-score runs from their checkpoints; print and save the result table (paper Table 1 / 2 layout).

    Also: Table 6 with --frames, localisation scores when the dataset has frame labels (SynthDFER),
    and the figures of paper Fig. 3 and Fig. 4 under OUT/figures. The numbers on screen have the
    decimals of the saved CSV and Markdown files.

    \b
    Example:
      tgdfer evaluate runs/synth/fold1                       # -> runs/synth/fold1/eval
      tgdfer evaluate runs/dfew/fold1 runs/dfew/fold2 runs/dfew/fold3 runs/dfew/fold4 runs/dfew/fold5
      tgdfer evaluate runs/synth/fold1 --frames highest,lowest --k 1,2,3 --out results/table6
    """
    from .evaluation import DECIMALS, TABLE6_TITLE, check_influence, evaluate, parse_frames, parse_ks
    from .devicedata import resolve_device

    resolve_device(device)  # a misspelt --device fails before any run is read
    ev = evaluate(runs, out=out, device=device, frames=parse_frames(frames), ks=parse_ks(k), figures=figures,
                  influence=influence and check_influence(influence), trust_weights=trust_weights)
    short = ev.results.rename(columns=short_names(ev.classes))  # fits 80 columns; files keep full names
    stdout.print(_table(short, title=f"TG-DFER results (%), model selection: {ev.protocol}",
                         decimals=DECIMALS["results"]))
    if ev.table6 is not None:
        stdout.print(_table(ev.table6, title=f"{TABLE6_TITLE}, {ev.influence} influence", decimals=DECIMALS["table6"]))
    if ev.localisation is not None:
        short = ev.localisation.rename(columns=lambda c: c.replace("relative", "rel").replace(
            "similarity", "sim").replace("random", "rnd").replace("AUROC", "AUC").replace("hit@1", "hit"))  # 80 cols
        stdout.print(_table(short, decimals=DECIMALS["localisation"], title="Localisation of the expression episode (AUROC, hit@1) by the influence "
                                          "for the true class: relative (default), similarity, random"))
    pngs = [f for f in ev.files if f.suffix == ".png"]
    stdout.print(f"saved {escape(', '.join(str(f) for f in ev.files if f.suffix != '.png'))}", highlight=False)
    if pngs:
        stdout.print(f"figures: {len(pngs)} PNG (+ PDF) in {escape(str(pngs[0].parent))}", highlight=False)
    return ev.results


# -- sweep / report -------------------------------------------------------------------------------


@app.command("sweep", cls=_Command)
@_run
def sweep_cli(
    file: Annotated[Path, typer.Argument(metavar="SWEEP_FILE", help="Sweep file (pipelines/sweeps/*.toml).")],
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
    print_config: Annotated[bool, typer.Option(
        "--print-config", help="Print the config every point starts from (base file, the file's set, --set) as TOML "
                               "and exit; the points then change their swept fields.")] = False,
    points: Annotated[Optional[list[str]], typer.Option(
        "--point", metavar="NAME", help="Run only this point, by name (repeatable; default: all); the others stay as they are.")] = None,
    profile: ProfileOpt = None,
):
    """Run a grid or list of config points (the paper's ablations), each on every fold; resumable.

    \b
    Example:
      tgdfer sweep pipelines/sweeps/table4_window.toml --dry-run
      tgdfer sweep pipelines/sweeps/synthetic.toml --folds 1 --seeds 0,1
      tgdfer sweep pipelines/sweeps/cache_views.toml --point V8 --point fresh
      tgdfer sweep pipelines/sweeps/table5_prompts.toml --profile recommended --out runs/sweeps/t5_rec
    """
    from .sweep import load_sweep, plan_sweep, run_sweep, select_points
    from .training import parse_int_list

    fold_list = parse_int_list(folds, "--folds") if folds is not None else None
    seed_list = parse_int_list(seeds, "--seeds") if seeds is not None else None
    point_list = list(points) if points else None
    if print_config:
        sweep = load_sweep(file, out=out, folds=fold_list, seeds=seed_list, overrides=list(set_ or []), profile=profile)
        _pipeline(Path(sweep.base), sweep.fixed, print_config=True, profile=profile)
    if dry_run:
        sweep = load_sweep(file, out=out, folds=fold_list, seeds=seed_list, overrides=list(set_ or []), profile=profile)
        plans = plan_sweep(select_points(sweep, point_list))
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
                console.print(f"[red]failed[/] {escape(name)}: {escape(str(outcome.error))}", highlight=False)
            elif status == "done":
                console.print(f"[green]done[/] {escape(name)} ({outcome.seconds:.0f} s)", highlight=False)
            else:
                console.print(f"[dim]skipped[/] {escape(name)} (finished before)", highlight=False)

        def on_epoch(name, epoch, records) -> None:
            if records:
                loss = sum(r.loss for r in records) / len(records)
                war = sum(r.test_war for r in records) / len(records)
                info = f"epoch {epoch} x{len(records)} loss {loss:.3f} test WAR {war:.3f}"
                progress.update(task, info=info)
                if not console.is_terminal:  # a batch log: one line per epoch as it happens
                    console.file.write(f"sweep {name} {info}\n")
                    console.file.flush()

        df = run_sweep(file, out=out, folds=fold_list, seeds=seed_list, overrides=list(set_ or []),
                       workers=workers, shard_id=shard_id, num_shards=num_shards, on_point=on_point,
                       on_epoch=on_epoch, points=point_list, profile=profile)
    _print_sweep(df, Path(out) if out else None, file)
    if df["status"].str.contains("failed").any():
        raise typer.Exit(1)  # the others finished; re-running retries only what failed
    return df


def _print_sweep(df, out: Optional[Path], file: Optional[Path] = None) -> None:
    from .sweep import comparison_note, load_sweep, paper_table, sweep_title

    if out is None:
        out = Path(load_sweep(file).out)
    _print_report(paper_table(df), f"{sweep_title(out)}: mean over runs (%), {out}", comparison_note(df), df)
    stdout.print(f"saved {escape(str(out))}/results.csv, results.md, results.png (every run: results.csv)", highlight=False)


@app.command("report", cls=_Command)
@_run
def report_cli(
    sources: Annotated[list[Path], typer.Argument(metavar="FOLDER", help=(
        "A sweep folder (written by `tgdfer sweep`); several sweep folders, each one study fold (a train/test "
        "dataset of its own; its fold k read from the folder's name, fold<k>); or a per-run CSV (point, fold, "
        "seed, UAR, WAR[, AUROC, AUROC sim] columns). With --html: one sweep, run or evaluation folder."))],
    html: Annotated[bool, typer.Option("--html", help=(
        "Write one self-contained HTML page (no server or network needed): sortable tables with intervals, "
        "confusion matrices, frame strips with influence and face boxes, the config and the store fingerprint."))] = False,
    out: Annotated[Optional[Path], typer.Option(help=(
        "Where to write: with --html the HTML file (default: FOLDER/report.html); else the folder for results.csv, "
        "results.md and results.png (default: the sweep folder; several folders or a CSV: written only with --out)."))]
        = None,
    reference: Annotated[Optional[str], typer.Option(
        "--reference", metavar="POINT", help="Compare every point with this one on every metric (Holm over "
        "all those comparisons), instead of each with the best by WAR (Holm over every pair).")] = None,
    label: Annotated[Optional[list[str]], typer.Option(
        "--label", metavar="GLOB=TEXT", help="Several folders: the points of those whose name matches GLOB are "
        "rows of their own, 'POINT TEXT' (e.g. '*_aa=A/A': an A/A rerun of V8 becomes 'V8 A/A'; repeatable).")]
        = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N (re-scoring a run or an evaluation).")] = "auto",
    trust_weights: TrustOpt = False,
):
    """Rebuild a sweep's result table (CSV, Markdown) and plot from its finished runs (all shards), or a
    study's from several sweep folders (one fold each) or its per-run CSV; with --html, the HTML
    report of a sweep, a run or an evaluation.

    \b
    Example:
      tgdfer report runs/sweeps/table4_window
      tgdfer report runs/sweeps/study/fold{1,2,3,4,5}{,_aa} --label '*_aa=A/A' --out runs/sweeps/study
      tgdfer report docs/cache_study_runs.csv --reference fresh
      tgdfer report runs/synth/fold1 --html            # -> runs/synth/fold1/report.html
      tgdfer report runs/synth/fold1/eval --html --out results/fold1.html
    """
    from .errors import ConfigError
    from .studyreport import report_study

    if html:
        from .htmlreport import folder_kind, write_report

        if len(sources) > 1 or reference or label:
            raise ConfigError("--html", "writes the page of one folder: give one FOLDER, without --reference or --label")
        page = write_report(sources[0], out, device=device, trust_weights=trust_weights)
        stdout.print(f"saved {escape(str(page))}", highlight=False)
        if folder_kind(sources[0]) != "sweep":
            return None
        out = None  # the sweep's own tables, in the sweep folder
    elif out is not None and out.suffix.lower() in (".html", ".htm"):
        raise ConfigError("--out", f"{out} looks like an HTML file: give --html for the page (without it, --out "
                                   "is the folder for results.csv, results.md and results.png)")
    rep = report_study(sources, out, reference=reference, labels=label or ())
    _print_report(rep.table, rep.title, rep.note, rep.results)
    if rep.paths:
        stdout.print(f"saved {escape(', '.join(str(p) for p in rep.paths))}", highlight=False)
    else:
        stdout.print("wrote nothing (several folders or a CSV): give --out FOLDER for results.csv, .md, .png",
                      highlight=False)
    return rep.results


def _print_report(table, title: str, note: str, df) -> None:
    """A report's table (the run count said once in the title when every point has as many), note and failures."""
    if table["runs"].nunique() == 1:  # the same for every point: said once, in the title (80 columns)
        title, table = f"{title}; runs of every point: {table['runs'].iloc[0]}", table.drop(columns="runs")
    from .sweep import shown_table

    shown, decimals = shown_table(table)  # each metric with its own decimals (UAR 2, AUROC 3)
    stdout.print(_table(shown, title=title, decimals=decimals))
    if note:
        stdout.print(note, highlight=False)
    failed = df[(df["fold"] == "mean") & df["status"].str.contains("failed")]
    for point, error in zip(failed["point"], failed["error"]):
        stdout.print(f"[red]{escape(str(point))}[/]: {escape(str(error))}", highlight=False)


# -- predict ------------------------------------------------------------------------------------


@app.command("predict", cls=_Command)
@_run
def predict_cli(
    model: Annotated[Path, typer.Argument(metavar="MODEL", help="A run folder (or one of its .safetensors checkpoints).")],
    inputs: Annotated[list[str], typer.Argument(metavar="INPUT", 
        help="Video files, frame folders, folders of videos, glob patterns ('clips/*.mp4'), or .txt/.csv files "
             "listing clips (one path per line; a CSV's 'path' column).", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the predictions as JSON (schema: tgdfer.predict).")] = False,
    csv: Annotated[Optional[Path], typer.Option(
        "--csv", help="Also write the predictions to this CSV file: one row per input, a probability column per "
                      "class, the per-frame influence.")] = None,
    figures: Annotated[Optional[Path], typer.Option(
        "--figures", help="Folder for each clip's frame strip with its influence colour bar (PNG + PDF).")] = None,
    figure: Annotated[Optional[Path], typer.Option("--figure", hidden=True, help="Old name of --figures.")] = None,
    weights: Annotated[Optional[str], typer.Option(help=PredictOptions.help("weights"))] = PredictOptions.weights,
    device: Annotated[str, typer.Option(help=PredictOptions.help("device"))] = PredictOptions.device,
    influence: Annotated[Optional[str], typer.Option(help=PredictOptions.help("influence"))] = PredictOptions.influence,
    trust_weights: TrustOpt = PredictOptions.trust_weights,
    faces: Annotated[Optional[str], typer.Option(help=PredictOptions.help("faces"))] = PredictOptions.faces,
    allow_import: AllowImportOpt = False,
    on_missing: Annotated[Optional[str], typer.Option(help=PredictOptions.help("on_missing"))] = PredictOptions.on_missing,
    batch: Annotated[int, typer.Option(help=PredictOptions.help("batch"))] = PredictOptions.batch,
):
    """Emotion probabilities and per-frame influence (Eq. 12) of clips, from a trained model.

    Exit code 1 when some input could not be predicted (the others are), 2 when the model cannot be loaded.

    \b
    Example:
      tgdfer predict runs/synth/fold1 data/synth/videos/00001.mp4 data/synth/frames/00002
      tgdfer predict runs/synth/fold1 'data/synth/videos/*.mp4' --csv predictions.csv
      tgdfer predict runs/synth/fold1 my_videos/ --json > predictions.json
      tgdfer predict runs/synth/fold1 clip.mp4 --figures figs/
    """
    from .predict import PredictFailure, predict
    from .devicedata import resolve_device

    given = locals()
    options = PredictOptions(**{name: given[name] for name in PredictOptions.command_fields()})  # one definition
    resolve_device(device)  # a misspelt --device fails before the model is read
    _allow_import(faces, allow_import)
    if csv is not None and csv.is_dir():  # before the clips are read: a typo costs nothing
        raise os_error(csv, IsADirectoryError(errno.EISDIR, "is a folder"), "write the CSV file")
    result = predict(model, inputs, figure_dir=figures or figure, options=options)
    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=2))
    else:
        _print_predictions(result)
    for f in result.predictions:
        if isinstance(f, PredictFailure):
            console.print(f"[bold red]failed:[/] {escape(f.error)}", highlight=False)
    if result.figures:
        console.print(f"figures: {escape(', '.join(str(f) for f in result.figures))} (+ PDF)", highlight=False)
    if csv is not None:  # after the predictions are printed: a folder that refuses the file loses none of them
        try:
            csv.parent.mkdir(parents=True, exist_ok=True)
            result.to_frame().to_csv(csv, index=False)
        except OSError as e:
            _error(os_error(csv, e, "write the CSV file"))
        console.print(f"predictions -> {escape(str(csv))}", highlight=False)
    if result.figure_error:
        _error(result.figure_error)
    if result.failed:
        raise typer.Exit(1)


def _print_predictions(result) -> None:
    out = Console()  # predictions are the command's output: stdout
    for pred in result.predictions:
        if not hasattr(pred, "probs"):  # a PredictFailure, reported on stderr
            continue
        k = pred.predicted
        faces = ""
        if pred.fallback:
            faces = ", [yellow]no face found: centre square (fallback, on_missing = center)[/]"
        elif pred.boxes is not None:
            n = {s: pred.face_sources.count(s) for s in ("detected", "interpolated", "carried")}
            faces = (f", face crops by {result.faces['detector']} ({n['detected']} detected, {n['interpolated']} "
                     f"interpolated, {n['carried']} carried over)")
        out.print(f"[bold]{escape(str(pred.input))}[/]: {escape(pred.classes[k])} ({pred.probs[k]:.3f}), "
                  f"{pred.n_frames} frames{faces}",
                  highlight=False)
        probs = Table(box=box.SIMPLE, show_header=True)
        for c in pred.classes:
            probs.add_column(c, justify="right")
        probs.add_row(*[f"{p:.3f}" for p in pred.probs])
        out.print(probs)
        frames = Table(title=f"influence (Eq. 12, {result.influence}) for {pred.classes[k]}", box=box.SIMPLE)
        for col in ("position", "frame", "influence", ""):
            frames.add_column(col, justify="right" if col else "left")
        for t, (i, v) in enumerate(zip(pred.frame_index, pred.influence)):
            frames.add_row(str(t), str(int(i)), f"{v:.3f}", "#" * int(round(20 * v)))
        out.print(frames)
        distinct, positions = len(set(pred.frame_index.tolist())), len(pred.frame_index)
        if distinct < positions:  # a short clip repeats frames: their influences differ by position alone
            out.print(f"  {distinct} distinct frames in {positions} positions: the copies of one frame differ in "
                      "influence by their position alone (scaled to 0..1 over the clip): compare distinct frames",
                      highlight=False)


# -- convert-checkpoint ---------------------------------------------------------------------------


@app.command("convert-checkpoint", cls=_Command)
@_run
def convert_checkpoint_cli(
    paths: Annotated[list[Path], typer.Argument(metavar="PATH", help="Old .pt checkpoints, or run folders holding them.")],
    trust: Annotated[bool, typer.Option(
        "--trust-weights", help="Unpickle a file in full when it holds more than tensors and plain values. This can "
        "run code from the file: only for files whose source you trust (the name the other commands use).")] = False,
    trust_old: Annotated[bool, typer.Option("--trust", hidden=True, help="Old name of --trust-weights.")] = False,
):
    """Convert checkpoints of tgdfer 0.1 (torch pickles) to the safetensors format, once.

    Each `last.pt` / `best.pt` becomes `last.safetensors` / `best.safetensors` beside it (the old
    file is kept). Files are read with torch.load(weights_only=True), which refuses anything but
    tensors and plain values; --trust-weights lifts that for files you vouch for.

    \b
    Example:
      tgdfer convert-checkpoint runs/dfew/fold1 runs/dfew/fold2
    """
    from .checkpoint import convert_legacy

    files = []
    for p in paths:
        found = sorted(p.glob("*.pt")) if p.is_dir() else [p]
        if not found:
            raise TgdferError(f"{p}: no .pt checkpoints in this folder")
        files += found
    for f in files:
        stdout.print(f"{f} -> {convert_legacy(f, trust=trust or trust_old)}", highlight=False)


# -- info -----------------------------------------------------------------------------------------


@app.command("info", cls=_Command)
@_run
def info_cli(
    store: Annotated[Path, typer.Argument(metavar="STORE", help="A feature store (.zarr folder or .h5 file).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the description as JSON (the fingerprint included).")]
        = False,
    verify: Annotated[bool, typer.Option("--verify", help="Also check every done clip and text set against its checksum "
                                         "(reads all features); exit 1 if any is damaged.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also print the store's fingerprint (the settings "
                                          "its features were made with, about 50 lines of JSON), after the summary.")]
        = False,
):
    """Show what a feature store holds: clips per class and fold, failures, size; --verbose adds the fingerprint.

    \b
    Example:
      tgdfer info cache/synth_proxy.zarr
      tgdfer info cache/dfew_vitb32.zarr --json
      tgdfer info cache/dfew_vitb32.zarr --verify
    """
    from .info import describe
    from .store import NO_CHECKSUMS

    d = describe(store, verify=verify)
    if as_json:
        typer.echo(json.dumps(d.to_json(), indent=2))
        raise typer.Exit(1 if d.damage else 0)
    stdout.print(f"[bold]{escape(str(store))}[/] ({d.backend}, {d.size_bytes / 2**20:.1f} MiB on disk): "
                  f"{d.clips} clips x {d.views} views x {d.frames} frames x {d.dim} dims")
    stdout.print(f"classes: {d.classes.describe()}", highlight=False)
    stdout.print(_table(d.counts, title="clips per class (done / all)"))
    stdout.print(f"text prompt sets: {', '.join(d.text_sets) or 'none'}")
    stdout.print(f"coverage: {d.coverage}")
    if d.face_sources is not None:
        stdout.print(f"face boxes: {_face_sources_line(d.face_sources)}", highlight=False)
        _print_fallbacks(d.fallbacks["clip_id"].tolist(), "")
    if not d.checksums:
        stdout.print(f"[yellow]checksums: none[/] ({NO_CHECKSUMS})", highlight=False)
    unchecked = [p for p in d.not_checksummed or [] if p != "features"]
    if unchecked:
        stdout.print(f"[yellow]not checksummed:[/] {', '.join(unchecked)} (written by an older tgdfer or without "
                     "a recorded annotation digest; their integrity cannot be verified)", highlight=False)
    if len(d.failures):
        stdout.print(f"failed: {len(d.failures)} clips, {d.skipped_at_read} of them skipped when reading the "
                      "annotations (missing or empty)")
        stdout.print(_table(d.failures[["clip_id", "reason"]].head(20), title="failures (first 20; --json for all)"
                             if len(d.failures) > 20 else "failures"))
    if verbose:  # the details after the summary, not before it (issue 21 item 7)
        stdout.print("fingerprint:")
        stdout.print_json(json.dumps(d.fingerprint))
    else:
        stdout.print("fingerprint: --verbose (or --json) prints it", highlight=False)
    if verify:
        _print_damage(store, pd.DataFrame(d.damage, columns=["row", "clip_id", "problem"]))
        raise typer.Exit(1 if d.damage else 0)


# -- proxy ----------------------------------------------------------------------------------------


@app.command("proxy", cls=_Command)
@_run
def proxy_cli(
    out: Annotated[Optional[Path], typer.Argument(metavar="OUT", help="Weights file to write (default: [encoder] pretrained).")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    overwrite: Annotated[bool, typer.Option(help="Train again even if OUT exists.")] = False,
    if_stale: Annotated[bool, typer.Option(
        "--if-stale", help="Train only when OUT is missing or was trained with other settings or code "
        "(what `make test` and `make demo` run).")] = False,
    print_config: PrintConfigOpt = False,
):
    """Train a small proxy CLIP on its own SynthDFER set: informative features without downloads.

    Pretrained CLIP cannot be downloaded everywhere; random weights give features with no
    expression information. The proxy learns the 7 classes from single frames of its own SynthDFER
    set (its own seed and people, never the evaluated clips), then its text tower learns to put
    each prompt on its class; it is used like any local weights file:
    [encoder] model = "tgdfer-proxy-vit", pretrained = OUT.

    \b
    Example:
      tgdfer proxy -c pipelines/synthetic.toml          # -> [encoder] pretrained
      tgdfer proxy cache/proxy/small.safetensors --set proxy.steps=200 --set proxy.clips=500
    """
    pipe = _pipeline(config, list(set_ or []), print_config)
    target = out or Path(pipe.encoder.pretrained)
    if if_stale:
        from .proxy import trained_with

        if target.is_file() and trained_with(target, pipe.proxy):
            console.print(f"{target} is up to date (trained with these settings and this code)", highlight=False)
            return
        overwrite = True
    if target.exists() and not overwrite:
        raise TgdferError(f"{target} exists; pass --overwrite to train the proxy again")
    _train_proxy(target, pipe.proxy)


def _train_proxy(out: Path, cfg) -> Path:
    from .proxy import train_proxy

    t0 = time.perf_counter()
    console.print(f"proxy CLIP: {cfg.model}, {cfg.clips} clips, seed {cfg.seed}: data, {cfg.steps} image steps, "
                  f"{cfg.text_steps} text steps", highlight=False)
    with _reporter() as report:
        path = train_proxy(out, cfg, workdir=out.parent, progress=report)
    console.print(f"proxy CLIP weights -> {path} ({time.perf_counter() - t0:.0f} s)")
    return path


def _ensure_proxy(pipe) -> None:
    """Train the pipeline's proxy CLIP once when [encoder] names it as a weights file that is not there yet."""
    from .api import proxy_missing

    if not proxy_missing(pipe):
        return
    weights = Path(pipe.encoder.pretrained)
    console.print(f"[bold]{escape(str(weights))}[/] is missing: training the proxy CLIP once ({escape('[proxy]')} in "
                  f"{escape(str(pipe.source))})",
                  highlight=False)
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


@app.command("demo", cls=_Command)
@_run
def demo_cli(
    ctx: typer.Context,
    config: ConfigOpt = Path("pipelines/synthetic.toml"),
    set_: SetOpt = None,
    data: Annotated[Path, typer.Option("--data", help="Where the synthetic dataset is written.")] = Path("data/synth"),
    out: Annotated[Optional[Path], typer.Option("--out", hidden=True, help="Old name of --data.")] = None,
    sweep: Annotated[Optional[Path], typer.Option(help="Sweep run at the end on the same store (\"\" skips it).")]
        = Path("pipelines/sweeps/synthetic.toml"),
    print_config: PrintConfigOpt = False,
    profile: ProfileOpt = None,
):
    """The main job on built-in synthetic data: (proxy CLIP) -> SynthDFER -> extract -> train-head -> evaluate -> sweep.

    The run goes to [train] out/fold<k> (runs/synth/fold1 with pipelines/synthetic.toml).

    \b
    Example:
      tgdfer demo                                      # = make demo
      tgdfer demo --set train.epochs=5 --sweep ""      # shorter, no sweep
    """
    from .run import fold_folder

    pipe = _pipeline(config, list(set_ or []), print_config, profile)
    out = out or data  # the dataset folder (--out is its old name)
    _demo_threads(ctx)
    _ensure_proxy(pipe)
    if _synth_matches(out, pipe.synth):
        console.print(f"[green]reusing[/] SynthDFER in {escape(str(out))} (same settings)")
    else:
        _synth(out, pipe.synth, overwrite=True, classes=pipe.classes.class_set())
    try:
        result = _extract(pipe, None, None, overwrite=False)
    except StoreMismatchError as e:  # the demo's own products, made before the proxy or the settings changed
        first = str(e).split("\nDelete it to start over")[0]
        raise TgdferError(f"{first}\nThe demo's store, runs and sweep were made with other settings or another "
                          f"proxy CLIP (`make` trains the proxy again when its code changes). Remove them with "
                          f"`make clean-demo` ({', '.join(_demo_products(pipe, out, sweep))}), then run "
                          "`make demo` again.") from None
    info_cli(Path(result.store), as_json=False, verify=False, verbose=False)
    if pipe.train.store != result.store:
        pipe.train.store = result.store  # train on what was just extracted
    run = fold_folder(pipe.train.out, pipe.train.fold)
    pipe.train.out = str(run)
    from .run import LAST  # torch: imported by the commands that use it

    trained = _train_head(pipe, resume=(run / LAST).exists())
    evaluate_cli([trained.run], out=run, device=pipe.train.device)
    if sweep is not None and str(sweep) not in ("", "."):
        sweep_cli(sweep, set_=set_, out=None, folds=None, seeds=None, workers=1, shard_id=None, num_shards=None,
                  dry_run=False, print_config=False, points=None, profile=profile)
    if not result.ok:
        raise typer.Exit(1)


def _demo_products(pipe, data: Path, sweep: Optional[Path]) -> list[str]:
    """What the demo writes: its dataset, store, run parent and sweep folder (what `make clean-demo` removes)."""
    from .sweep import load_sweep

    out = [str(data), pipe.extract.store, pipe.train.out]
    if sweep is not None and str(sweep) not in ("", ".") and Path(sweep).is_file():
        try:
            out.append(str(load_sweep(sweep).out))
        except TgdferError:
            pass
    return out


def _demo_threads(ctx: typer.Context) -> None:
    """The demo, which nobody tunes, also follows the load average (threads.py rule 4): one thread when other
    processes already hold every usable core, unless --threads or OMP_NUM_THREADS chose."""
    from .threads import apply_threads, auto_threads

    choice = auto_threads(ctx.find_root().params.get("threads") or 0, shared=True)
    if choice.reason.startswith("load average"):
        apply_threads(choice)
        console.print(f"torch threads: {choice.threads} ({choice.reason})", highlight=False)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

"""The options of `tgdfer predict` and `tgdfer.Predictor`, defined once (no torch: the CLI reads it at start).

    PredictOptions(device="cpu", faces="none", on_missing="center", batch=16)

`tgdfer predict` takes one flag per field (`--on-missing` for on_missing) with the field's default
and help text; `Predictor(run, **options)` and `tgdfer.predict.predict(run, inputs, **options)`
take the same names. tests/test_inputs.py compares the command's options with these fields, so
the two cannot drift. `threads` is the global `tgdfer --threads` on the command line.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Optional

from .errors import ConfigError

ON_MISSING = ("fail", "center")  # facetrack.FacesConfig.on_missing
INFLUENCE_MODES = ("relative", "similarity")  # head.INFLUENCES (head imports torch; a test keeps them equal)


def option_error(name: str, message: str) -> ConfigError:
    """A ConfigError naming the Python argument (`on_missing`); the CLI prints the flag (`--on-missing`)."""
    error = ConfigError(name, message)
    error.cli = f"--{name.replace('_', '-')}: {message}"
    return error


@dataclass(frozen=True)
class PredictOptions:
    """How a trained model is applied to clips; every field is optional (None: the model's own setting)."""

    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda | cuda:N"})
    weights: Optional[str] = field(default=None, metadata={
        "help": "The image encoder's weights file, when the model's features came from a local file."})
    influence: Optional[str] = field(default=None, metadata={
        "help": "relative (the frame's class score minus its mean over the classes) | similarity (the raw class "
                "score). Default: the model's [head] influence."})
    faces: Optional[str] = field(default=None, metadata={
        "help": "Face detector for raw video (centerface | pkg.module:factory, imported with --allow-import on the "
                "command line, by detectors.import_detector in Python | none); default: the model's own (its "
                "store's face stage)."})
    on_missing: Optional[str] = field(default=None, metadata={
        "help": "A clip in which no face is found: fail (an error for that input) | center (predict on the centre "
                "square; marked \"fallback\": \"center\"). Default: the model's faces.on_missing."})
    trust_weights: bool = field(default=False, metadata={
        "help": "Unpickle the encoder weights file in full even if it holds more than tensors (can run code from "
                "the file: only for files whose source you trust; docs/sharing.md)."})
    batch: int = field(default=8, metadata={"help": "Clips encoded together in one forward pass of the encoder."})
    threads: Optional[int] = field(default=None, metadata={
        "help": "Torch CPU threads (process-wide); 0 = auto (the CPUs this process may use); None: leave torch's "
                "setting. On the command line: the global `tgdfer --threads N`.", "cli": "global"})

    def __post_init__(self) -> None:
        if self.on_missing is not None and self.on_missing not in ON_MISSING:
            raise option_error("on_missing", f"{self.on_missing!r} is not one of {', '.join(map(repr, ON_MISSING))}")
        if self.influence is not None and self.influence not in INFLUENCE_MODES:
            raise option_error("influence", f"{self.influence!r} is not one of {', '.join(INFLUENCE_MODES)}")
        if isinstance(self.batch, bool) or not isinstance(self.batch, int) or self.batch < 1:
            raise option_error("batch", f"{self.batch!r}: must be a whole number >= 1")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 0):
            raise option_error("threads", f"{self.threads!r}: must be a whole number >= 0 (0 = auto)")
        if not isinstance(self.device, str) or not self.device:
            raise option_error("device", f"{self.device!r}: name a device (auto | cpu | cuda | cuda:N)")

    @classmethod
    def help(cls, name: str) -> str:
        """The help text of field `name` (the CLI's --name help)."""
        return next(f.metadata["help"] for f in fields(cls) if f.name == name)

    @classmethod
    def command_fields(cls) -> list[str]:
        """The fields `tgdfer predict` takes as its own options (threads is the global --threads)."""
        return [f.name for f in fields(cls) if f.metadata.get("cli") != "global"]

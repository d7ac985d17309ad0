"""The 7 basic emotions in DFEW's label order. Internally labels are 0-based indices into CLASSES.

DFEW's fold CSVs use 1..7 in this order; the plain "path n_frames label" lists use 0..6.
"""

from __future__ import annotations

CLASSES: tuple[str, ...] = ("Happiness", "Sadness", "Neutral", "Anger", "Surprise", "Disgust", "Fear")
NUM_CLASSES = len(CLASSES)

# Approximate class shares of DFEW's single-labelled clips, SynthDFER's default imbalance.
# Disgust (1.22%) and Fear (8.14%) are the figures the paper quotes (Sec. 4.3); the other five
# are rounded approximations of DFEW's distribution. Normalised where used.
DFEW_CLASS_SHARES: tuple[float, ...] = (0.23, 0.17, 0.22, 0.18, 0.10, 0.0122, 0.0814)

# Common spellings in other datasets' annotations (FERV39k uses these folder/label names).
_ALIASES = {
    "happy": "Happiness", "happiness": "Happiness",
    "sad": "Sadness", "sadness": "Sadness",
    "neutral": "Neutral",
    "angry": "Anger", "anger": "Anger",
    "surprise": "Surprise", "surprised": "Surprise",
    "disgust": "Disgust", "disgusted": "Disgust",
    "fear": "Fear", "fearful": "Fear",
}


def class_index(name: str) -> int:
    """0-based index of a class name or alias (case-insensitive); ValueError if unknown."""
    canonical = _ALIASES.get(name.strip().lower())
    if canonical is None:
        raise ValueError(f"unknown emotion {name!r}; expected one of {', '.join(CLASSES)}")
    return CLASSES.index(canonical)

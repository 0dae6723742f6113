"""A small maintenance manual in an invented jargon: the kind of terminology fine-tuning is for.

Each page is about one fault of one part. Its title names both in the plant's jargon ("zorvane
gallop"); its text describes them only in plain words ("the coolant circulation pump overheats
after long idle periods"). No base model can know the jargon, so a title query finds its page
only after training on other pages that use the same words — held-out pages are different
combinations of the same parts and faults.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

PARTS = {
    "zorvane": "the coolant circulation pump",
    "quellite": "the pressure relief valve",
    "brastor": "the main drive shaft bearing",
    "tindel": "the fuel injector nozzle",
    "morrow coil": "the ignition transformer",
    "pelk": "the air intake filter housing",
    "skarn": "the hydraulic accumulator",
    "vintle": "the exhaust gas sensor",
    "dorrit": "the gearbox oil cooler",
    "halvane": "the starter motor solenoid",
}
FAULTS = {
    "gallop": ("overheats after long idle periods", "let it cool, then flush and refill the coolant loop"),
    "drift-lock": ("sticks open and leaks fluid", "replace the seat gasket and re-torque the housing"),
    "grist": ("grinds and throws metal particles", "drain the lubricant and inspect for pitting"),
    "fade": ("loses output slowly over weeks", "recalibrate the controller and replace worn contacts"),
    "chatter": ("vibrates loudly at high speed", "rebalance the rotor and tighten the mounting bolts"),
    "blind": ("reports no signal at all", "check the wiring harness for a broken connector"),
    "bloom": ("grows white corrosion crystals", "clean with a weak acid and apply a protective coat"),
    "stall": ("stops suddenly under heavy load", "reduce the load and inspect the overload relay"),
}


def pages(seed: int = 0) -> dict[str, str]:
    """Markdown pages by file name: one per part and fault, in the invented jargon."""
    rng = random.Random(seed)
    out = {}
    for part, plain_part in PARTS.items():
        for fault, (symptom, remedy) in FAULTS.items():
            name = f"{part.replace(' ', '-')}-{fault}.md"
            opener = rng.choice(["Operators report that", "Field crews have seen that", "Logs often show that"])
            out[name] = (
                f"# {part.title()} {fault}\n\n"
                f"{opener} {plain_part} {symptom}. This is a known fault of {plain_part}.\n\n"
                f"## Remedy for {part} {fault}\n\n"
                f"To fix it, {remedy}. Record the repair in the maintenance log of {plain_part}.\n"
            )
    return out


def write_pages(directory: Path, seed: int = 0) -> Path:
    """Write the manual into a directory source; return the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in pages(seed).items():
        (directory / name).write_text(text, encoding="utf-8")
    return directory


def write_queries(path: Path, names: list[str]) -> Path:
    """A user query file asking, in plain words, for the given pages (doc ids are file names)."""
    with path.open("w", encoding="utf-8") as f:
        for name in names:
            part_key, fault = name.removesuffix(".md").rsplit("-", 1)
            part = PARTS[part_key.replace("-", " ")]
            f.write(json.dumps({"query": f"{part} {FAULTS[fault][0]}", "relevant": [name]}) + "\n")
    return path

"""What `gateway demo party-line` can be told to do: its options' choices and the scenario.

Apart from `gateway/cli/demo.py` so that building the CLI's parser (for `--help`) imports
neither httpx nor the settings: the demo itself is imported only when it runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

LeadAnswers = Literal["human", "machine", "no-answer", "busy"]
FirstRep = Literal["no-answer", "busy", "declines", "answers"]
LEAD_ANSWERS: tuple[LeadAnswers, ...] = ("human", "machine", "no-answer", "busy")
FIRST_REP: tuple[FirstRep, ...] = ("no-answer", "busy", "declines", "answers")
REP_NAMES = ("Rita", "Sam", "Ola", "Dev", "Mei")
MAX_REPS = len(REP_NAMES)


@dataclass(frozen=True)
class Scenario:
    """What the scripted phones do and how long the demo may take."""

    lead_answers: LeadAnswers = "human"
    reps: int = 2
    first_rep: FirstRep = "no-answer"
    rep_timeout: int = 10
    talk: float = 5.0
    timeout: float = 180.0

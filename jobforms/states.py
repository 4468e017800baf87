"""The life of a job: its states, the moves between them, and the record of every move.

The states are those of the reference service (JINR cloud service, 2018), which users saw in the
"Status" column of its job list:

* ``pending``: accepted and waiting for resources (VMs requested within the user's quota, or
  the job queued on a batch system);
* ``booting``: VMs are starting; the service tries to reach them over the network;
* ``bootstrapping``: the machines are up and being prepared (there: the HTCondor worker daemon
  reporting to its master, the shared storage mounted; here: the environment bootstrap);
* ``executing``: the program runs;
* ``terminating``: the program has ended; results are copied to their destination and the VMs
  are released;
* ``done``, ``failed``, ``cancelled``: final.

The moves (:data:`LEGAL_MOVES`) are the reference service's happy path
``pending -> booting -> bootstrapping -> executing -> terminating -> done``, and besides:

* ``pending -> executing``: a batch backend has no VMs of its own to boot or prepare;
* ``pending -> bootstrapping``: a machine that already runs (a user's SSH host) is prepared
  without booting;
* any state that is not final ``-> failed`` (a VM that never boots, a quota refusal, a program
  exiting non-zero, a lost upload) or ``-> cancelled`` (the user's Cancel button, which the
  reference service offered in its job list, while nothing is left to release);
* a cancel or a failure while VMs are held (booting, bootstrapping, executing) may go
  ``-> terminating`` first, so that releasing them is seen, then ``-> cancelled`` or ``-> failed``;
  ``terminating -> failed`` also when results cannot be copied.

Nothing leaves a final state, and no state moves to itself: a job that is resubmitted is a new
job. One rule reads the history, not just the current state: only a job that was executing can
end ``done`` (a release after a cancel during booting ends cancelled or failed). :class:`JobHistory` is the only way to change a job's state here; it refuses an illegal move
with :class:`IllegalTransition` and records every legal one as a :class:`Transition` with its time
and reason, which the service stores (and from which :meth:`JobHistory.restore` rebuilds a job,
checking the chain again).
"""
from __future__ import annotations

import enum
from datetime import datetime, timezone
from typing import Iterable, Optional

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class JobState(str, enum.Enum):
    """Where a job is in its life; see the module docstring."""

    PENDING = "pending"
    BOOTING = "booting"
    BOOTSTRAPPING = "bootstrapping"
    EXECUTING = "executing"
    TERMINATING = "terminating"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED})
_ENDINGS = {JobState.FAILED, JobState.CANCELLED}

LEGAL_MOVES: dict[JobState, frozenset[JobState]] = {
    JobState.PENDING: frozenset({JobState.BOOTING, JobState.BOOTSTRAPPING, JobState.EXECUTING, *_ENDINGS}),
    JobState.BOOTING: frozenset({JobState.BOOTSTRAPPING, JobState.TERMINATING, *_ENDINGS}),
    JobState.BOOTSTRAPPING: frozenset({JobState.EXECUTING, JobState.TERMINATING, *_ENDINGS}),
    JobState.EXECUTING: frozenset({JobState.TERMINATING, *_ENDINGS}),
    JobState.TERMINATING: frozenset({JobState.DONE, *_ENDINGS}),
    JobState.DONE: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}


def can_move(source: JobState, target: JobState) -> bool:
    """Whether a job in ``source`` may go to ``target``."""
    return JobState(target) in LEGAL_MOVES[JobState(source)]


class IllegalTransition(ValueError):
    """A move the job's life does not allow; the message says which and why in plain words."""

    def __init__(self, source: Optional[JobState], target: JobState, message: str = ""):
        self.source, self.target = source, target
        super().__init__(message or self._explain(source, target))

    @staticmethod
    def _explain(source: Optional[JobState], target: JobState) -> str:
        if source is None:
            return f"A new job starts as pending, not {target.value}."
        if source.is_final:
            return f"The job is already {source.value}; it cannot become {target.value}."
        allowed = ", ".join(sorted(s.value for s in LEGAL_MOVES[source]))
        return f"A job that is {source.value} cannot become {target.value} (it can become: {allowed})."


class Transition(BaseModel):
    """One recorded move: from which state (None for the job's creation), to which, when, why."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: Optional[JobState] = Field(description="State before the move; None when the job was created.")
    target: JobState = Field(description="State after the move.")
    at: AwareDatetime = Field(description="When it happened (with a time zone).")
    reason: str = Field(min_length=1, max_length=2000, description="Why, in a sentence the user can read.")


def _now() -> datetime:
    return datetime.now(timezone.utc)


class JobHistory:
    """A job's state and every move that led to it; illegal moves are impossible through it."""

    def __init__(self, created: Transition):
        """A job from the record of its creation (a move from nothing to pending)."""
        if created.source is not None or created.target is not JobState.PENDING:
            raise IllegalTransition(None, created.target)
        self._transitions = [created]

    @classmethod
    def start(cls, reason: str = "Submitted.", at: Optional[datetime] = None) -> "JobHistory":
        """A new job, pending."""
        return cls(Transition(source=None, target=JobState.PENDING, at=at or _now(), reason=reason))

    @classmethod
    def restore(cls, transitions: Iterable[Transition | dict]) -> "JobHistory":
        """A job from its stored transitions, each checked again (:class:`IllegalTransition` if
        the chain is broken: the store was edited or written by something else)."""
        history = None
        for record in transitions:
            t = record if isinstance(record, Transition) else Transition.model_validate(record)
            if history is None:
                history = cls(t)
            else:
                if t.source is not history.state:
                    raise ValueError(f"The stored history is broken: a move from {t.source} follows "
                                     f"the state {history.state.value}.")
                history.move(t.target, t.reason, at=t.at)
        if history is None:
            raise ValueError("A job's history has at least its creation.")
        return history

    @property
    def state(self) -> JobState:
        return self._transitions[-1].target

    @property
    def transitions(self) -> tuple[Transition, ...]:
        return tuple(self._transitions)

    @property
    def is_final(self) -> bool:
        return self.state.is_final

    def move(self, target: JobState, reason: str, at: Optional[datetime] = None) -> Transition:
        """Go to ``target`` for ``reason``; the new :class:`Transition`, or :class:`IllegalTransition`."""
        target = JobState(target)
        if not can_move(self.state, target):
            raise IllegalTransition(self.state, target)
        if target is JobState.DONE and not any(t.target is JobState.EXECUTING for t in self._transitions):
            raise IllegalTransition(self.state, target, "A job that never executed cannot be done; "
                                                        "it ends cancelled or failed.")
        transition = Transition(source=self.state, target=target, at=at or _now(), reason=reason)
        self._transitions.append(transition)
        return transition

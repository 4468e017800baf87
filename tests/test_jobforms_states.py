"""A job's life: only legal moves, each recorded with its time and reason."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobforms.states import FINAL_STATES, LEGAL_MOVES, IllegalTransition, JobHistory, JobState, Transition, can_move

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
CLOUD_PATH = [JobState.BOOTING, JobState.BOOTSTRAPPING, JobState.EXECUTING, JobState.TERMINATING, JobState.DONE]


def test_a_cloud_job_goes_through_the_reference_services_states_and_each_move_is_recorded():
    history = JobHistory.start("Submitted by alice.", at=T0)
    for i, state in enumerate(CLOUD_PATH, start=1):
        history.move(state, f"step {i}", at=T0 + timedelta(minutes=i))
    assert history.state is JobState.DONE and history.is_final
    records = history.transitions
    assert [(t.source, t.target) for t in records] == list(zip([None, JobState.PENDING, *CLOUD_PATH[:-1]],
                                                               [JobState.PENDING, *CLOUD_PATH]))
    assert records[3].at == T0 + timedelta(minutes=3) and records[3].reason == "step 3"


def test_a_batch_job_goes_from_pending_straight_to_executing():
    history = JobHistory.start()
    history.move(JobState.EXECUTING, "Running as Slurm job 4711.")
    history.move(JobState.TERMINATING, "Copying results.")
    history.move(JobState.DONE, "Results in ~/jobs/ljj-12.")
    assert history.state is JobState.DONE


def test_a_cancel_while_vms_are_held_shows_their_release_before_cancelled():
    history = JobHistory.start()
    history.move(JobState.BOOTING, "VM 12 requested.")
    history.move(JobState.TERMINATING, "Cancelled by the user; releasing VM 12.")
    history.move(JobState.CANCELLED, "VM 12 released.")
    assert history.state is JobState.CANCELLED


def test_a_finished_job_cannot_be_revived_and_the_message_says_so():
    history = JobHistory.start()
    history.move(JobState.FAILED, "Quota exceeded: 4 cores asked, 2 left.")
    with pytest.raises(IllegalTransition, match="already failed; it cannot become executing"):
        history.move(JobState.EXECUTING, "retry")
    assert history.state is JobState.FAILED and len(history.transitions) == 2


def test_skipping_a_step_is_refused_with_the_allowed_moves():
    history = JobHistory.start()
    history.move(JobState.BOOTING, "VM requested.")
    with pytest.raises(IllegalTransition, match=r"booting cannot become executing \(it can become: "
                                                r"bootstrapping, cancelled, failed, terminating\)"):
        history.move(JobState.EXECUTING, "too early")


def test_only_a_job_that_executed_can_be_done():
    history = JobHistory.start()
    history.move(JobState.BOOTING, "VM requested.")
    history.move(JobState.TERMINATING, "Cancelled; releasing the VM.")
    with pytest.raises(IllegalTransition, match="never executed cannot be done"):
        history.move(JobState.DONE, "released")
    history.move(JobState.CANCELLED, "VM released.")


def test_transitions_need_a_reason_and_a_time_zone():
    with pytest.raises(ValueError):
        JobHistory.start(reason="")
    with pytest.raises(ValueError):
        JobHistory.start(at=datetime(2024, 5, 1, 12, 0))  # naive: which clock?


def test_a_stored_history_is_restored_and_checked_again():
    history = JobHistory.start(at=T0)
    history.move(JobState.EXECUTING, "batch", at=T0)
    stored = [t.model_dump(mode="json") for t in history.transitions]
    assert JobHistory.restore(stored).transitions == history.transitions
    edited = stored + [{"source": "executing", "target": "pending", "at": T0.isoformat(), "reason": "hack"}]
    with pytest.raises(IllegalTransition):
        JobHistory.restore(edited)
    with pytest.raises(ValueError, match="broken"):
        JobHistory.restore([stored[0], {**stored[1], "source": "booting"}])
    with pytest.raises(IllegalTransition, match="starts as pending"):
        JobHistory.restore(stored[1:])


def test_the_transition_table_matches_the_documented_rules():
    for state in JobState:
        moves = LEGAL_MOVES[state]
        assert state not in moves
        if state in FINAL_STATES:
            assert moves == frozenset()
        else:
            assert {JobState.FAILED, JobState.CANCELLED} <= moves
    assert can_move(JobState.PENDING, JobState.EXECUTING)
    assert can_move(JobState.TERMINATING, JobState.FAILED)
    assert not can_move(JobState.EXECUTING, JobState.DONE)  # results are copied (terminating) first


# --------------------------------------------------------------------------- fuzzing
def legal_paths():
    """Every legal life from pending, as a hypothesis strategy (walks of the table)."""
    @st.composite
    def walk(draw):
        path, state = [], JobState.PENDING
        while not state.is_final and draw(st.booleans()):
            moves = LEGAL_MOVES[state] - ({JobState.DONE} if JobState.EXECUTING not in path else set())
            state = draw(st.sampled_from(sorted(moves, key=lambda s: s.value)))
            path.append(state)
        return path
    return walk()


@settings(max_examples=300, deadline=None)
@given(legal_paths())
def test_every_legal_path_is_accepted(path):
    history = JobHistory.start()
    for state in path:
        history.move(state, "fuzz")
    assert [t.target for t in history.transitions] == [JobState.PENDING, *path]
    assert JobHistory.restore(history.transitions).state is history.state


@settings(max_examples=300, deadline=None)
@given(legal_paths(), st.sampled_from(list(JobState)))
def test_every_illegal_move_is_refused_and_changes_nothing(path, target):
    history = JobHistory.start()
    for state in path:
        history.move(state, "fuzz")
    before = history.transitions
    legal = LEGAL_MOVES[history.state] - ({JobState.DONE} if JobState.EXECUTING not in path else set())
    if target in legal:
        history.move(target, "fuzz")
        assert history.state is target
    else:
        with pytest.raises(IllegalTransition):
            history.move(target, "fuzz")
        assert history.transitions == before


def test_a_transition_is_plain_json():
    t = Transition(source=JobState.PENDING, target=JobState.BOOTING, at=T0, reason="VM requested.")
    assert Transition.model_validate_json(t.model_dump_json()) == t
    assert t.model_dump(mode="json")["target"] == "booting"

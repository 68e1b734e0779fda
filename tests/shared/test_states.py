from shared.states import TERMINAL, JobStatus, can_transition


def test_terminal_states_allow_no_transition():
    for state in TERMINAL:
        assert not any(can_transition(state, target) for target in JobStatus)


def test_lifecycle_paths():
    assert can_transition(JobStatus.QUEUED, JobStatus.RUNNING)
    assert can_transition(JobStatus.RUNNING, JobStatus.SUCCEEDED)
    assert can_transition(JobStatus.RUNNING, JobStatus.QUEUED)  # sweeper requeue
    assert not can_transition(JobStatus.QUEUED, JobStatus.SUCCEEDED)

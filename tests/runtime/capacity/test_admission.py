"""Admission control: WORKSPACE_MAX_CONCURRENT slots, reserved atomically."""

from __future__ import annotations

import threading

import pytest

from runtime.capacity.admission import Admission
from runtime.errors import CapacityExceeded


def test_slots_are_reserved_up_to_the_limit_and_the_next_is_refused_with_a_retryable_error() -> None:
    admission = Admission(2)
    admission.reserve("ws_a")
    admission.reserve("ws_b")
    with pytest.raises(CapacityExceeded) as refused:
        admission.reserve("ws_c")
    assert refused.value.message == (
        "2 workspaces are active, the limit (WORKSPACE_MAX_CONCURRENT) is 2: "
        "destroy unused workspaces or raise the limit"
    )
    assert refused.value.retryable and refused.value.code == "capacity"
    assert admission.count() == 2
    assert admission.limit == 2


def test_reserving_a_workspace_that_holds_a_slot_is_idempotent_even_when_full() -> None:
    admission = Admission(1)
    admission.reserve("ws_a")
    admission.reserve("ws_a")  # a full admission does not refuse the holder
    assert admission.count() == 1
    with pytest.raises(CapacityExceeded):
        admission.reserve("ws_b")


def test_workspaces_already_active_at_start_hold_slots() -> None:
    admission = Admission(3, ["ws_a", "ws_b", "ws_a"])
    assert admission.count() == 2
    admission.reserve("ws_b")  # already holds one
    admission.reserve("ws_c")
    with pytest.raises(CapacityExceeded, match="3 workspaces are active"):
        admission.reserve("ws_d")


def test_release_frees_the_slot_and_releasing_a_non_holder_changes_nothing() -> None:
    admission = Admission(1)
    admission.reserve("ws_a")
    admission.release("ws_other")
    assert admission.count() == 1
    admission.release("ws_a")
    assert admission.count() == 0
    admission.release("ws_a")  # twice is harmless
    assert admission.count() == 0
    admission.reserve("ws_b")
    assert admission.count() == 1


def test_swap_hands_the_old_slot_to_the_new_workspace_without_changing_the_count() -> None:
    admission = Admission(2)
    admission.reserve("ws_member")
    admission.reserve("ws_other")
    admission.swap("ws_member", "ws_new")
    assert admission.count() == 2
    admission.reserve("ws_new")  # holds a slot now: idempotent at full capacity
    with pytest.raises(CapacityExceeded):
        admission.reserve("ws_member")  # gave its slot away
    admission.release("ws_new")
    admission.reserve("ws_member")
    assert admission.count() == 2


def test_concurrent_reservations_of_distinct_workspaces_never_exceed_the_limit() -> None:
    admission = Admission(5)
    threads_n = 40
    start = threading.Barrier(threads_n)
    admitted: list[str] = []
    refused: list[str] = []
    lock = threading.Lock()

    def reserve(workspace_id: str) -> None:
        start.wait()
        try:
            admission.reserve(workspace_id)
        except CapacityExceeded:
            with lock:
                refused.append(workspace_id)
        else:
            with lock:
                admitted.append(workspace_id)

    threads = [threading.Thread(target=reserve, args=(f"ws_{n}",)) for n in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(admitted) == 5 and len(refused) == threads_n - 5
    assert admission.count() == 5


def test_concurrent_reservations_of_one_workspace_take_one_slot() -> None:
    admission = Admission(2)
    start = threading.Barrier(16)

    def reserve() -> None:
        start.wait()
        admission.reserve("ws_same")

    threads = [threading.Thread(target=reserve) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert admission.count() == 1


def test_holders_churning_concurrently_never_outnumber_the_limit() -> None:
    limit, workers, rounds = 3, 12, 300
    admission = Admission(limit)
    lock = threading.Lock()
    holding = 0
    most = 0
    errors: list[BaseException] = []

    def churn(n: int) -> None:
        nonlocal holding, most
        try:
            for i in range(rounds):
                workspace_id = f"ws_{n}_{i}"
                try:
                    admission.reserve(workspace_id)
                except CapacityExceeded:
                    continue
                with lock:  # counted only while the slot is certainly held
                    holding += 1
                    most = max(most, holding)
                with lock:
                    holding -= 1
                admission.release(workspace_id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=churn, args=(n,)) for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert 1 <= most <= limit
    assert admission.count() == 0


def test_a_swap_for_a_workspace_that_holds_no_slot_any_more_reserves_one_within_the_limit() -> None:
    # The pool member being evicted may have ended (and released its slot) meanwhile.
    admission = Admission(1)
    admission.reserve("ws_a")
    with pytest.raises(CapacityExceeded):
        admission.swap("ws_gone", "ws_b")
    assert admission.count() == 1
    admission.release("ws_a")
    admission.swap("ws_gone", "ws_b")
    assert admission.count() == 1

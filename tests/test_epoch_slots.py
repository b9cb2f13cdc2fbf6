"""train()'s callback order as data (iklab.learning.epoch_slots): every value a callback reads is
written by one before it, and train() fills exactly the slots it declares."""

import ast
from pathlib import Path

import pytest

from iklab.learning import epoch_slots
from iklab.learning import metric_names as M
from iklab.learning.epoch_slots import SLOTS, Slot, arrange, order_problems


def test_every_slot_reads_only_what_an_earlier_slot_wrote():
    assert order_problems() == []
    assert len(SLOTS) == len({slot.name for slot in SLOTS})


def test_the_check_catches_a_reader_moved_before_its_writer():
    names = [slot.name for slot in SLOTS]
    moved = list(SLOTS)
    moved.insert(names.index("diagnostics"), moved.pop(names.index("task_probe")))
    assert order_problems(tuple(moved)) == [
        f"task_probe reads {epoch_slots.PROBE_PREDICTION!r} before any slot writes it"
    ]
    late = (*SLOTS[:-1], Slot("extra", ("no_such_value",), (), "test"))
    assert order_problems(late) == ["extra reads 'no_such_value' before any slot writes it"]
    # a family of keys ("dead_fraction/") covers its members
    assert (
        order_problems((Slot("a", (), (M.DEAD_FRACTION,), ""), Slot("b", (M.DEAD_FRACTION + "dense_0",), (), ""))) == []
    )


def test_arrange_orders_by_slot_and_skips_absent_ones():
    assert arrange({"extra": ["x", "y"], "diagnostics": "d", "backup": None, "time_budget": "t"}) == [
        "t",
        "d",
        "x",
        "y",
    ]
    with pytest.raises(KeyError, match="no_such_slot"):
        arrange({"no_such_slot": 1})


def test_train_fills_exactly_the_declared_slots():
    """The names train() (and fit_callbacks) pass to arrange() are the slots, no more, no fewer."""
    source = (Path(epoch_slots.__file__).parent / "training.py").read_text()
    keys = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Dict):
            found = {k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
            if found & set(epoch_slots.NAMES):
                keys |= found
    assert keys == set(epoch_slots.NAMES)

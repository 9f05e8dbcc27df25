"""The collector is paused for a block only, and on again after it whatever happens."""
import gc

import pytest

from omni.lib.collector import collector_paused


def test_the_collector_is_off_in_the_block_and_on_again_after_it():
    # given the collector running
    assert gc.isenabled()

    # when a block runs with it paused, and another inside it
    with collector_paused():
        inside = gc.isenabled()
        with collector_paused():
            nested = gc.isenabled()
        after_nested = gc.isenabled()

    # then it was off throughout, the inner block left it off, and it runs again after
    assert (inside, nested, after_nested) == (False, False, False)
    assert gc.isenabled()


def test_the_collector_is_on_again_after_a_block_that_failed():
    with pytest.raises(ValueError), collector_paused():
        raise ValueError("a batch failed")

    assert gc.isenabled()

"""Long reads of a stream through the tiled store, split when the server is slow.

A small reverse proxy (``tests/slow_proxy.py``) in front of the session's real tiled server
answers large requests only after a delay; a store with a short ``timeout`` must then read
the stream in pieces (a table by columns, an array node by rows) and give exactly what one
request gives, or fail naming the server, what it read and ``store.timeout``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from broker_v1.errors import StoreUnavailable


def _uid(server: Any, scan_id: int) -> str:
    (run,) = [r for r in server.runs if r["scan_id"] == scan_id]
    return str(run["uid"])


# tiled's Context leaves an HTTP client unclosed when a request fails mid-way.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_table_read_that_times_out_is_split_by_columns(
        tiled_server: Any, slow_proxy: Any, open_tiled_broker: Any, no_retries: None) -> None:
    """Through a server that answers table reads of more than four columns after 3 s, a
    store with timeout=1 reads the list_scan's table in pieces of two data columns (each
    with seq_num and time) and gives the table one request gives."""
    uid = _uid(tiled_server, 3)
    ref = open_tiled_broker(tiled_server.uri)
    expected = ref.get_table(ref[uid])
    proxy = slow_proxy(99, 3.0, max_columns=4)
    db = open_tiled_broker(proxy.uri, timeout=1)
    table = db.get_table(db[uid])
    assert table.equals(expected)
    assert len(table.columns) == 5  # det1, det2, motor, motor_setpoint, time
    n = 2 + 2 * 4  # seq_num, time, and each field with its timestamps
    assert proxy.table_sizes == [n, 6, 4, 4, 6, 4, 4]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # as above
def test_a_column_that_times_out_names_the_setting(
        tiled_server: Any, slow_proxy: Any, open_tiled_broker: Any, no_retries: None) -> None:
    """When even one column is slower than store.timeout, the error names the server, the
    column, the stream and the setting."""
    uid = _uid(tiled_server, 3)
    proxy = slow_proxy(99, 2.0, max_columns=0)
    db = open_tiled_broker(proxy.uri, timeout=0.5)
    with pytest.raises(StoreUnavailable, match=r"did not answer in time while trying to read "
                       r"column 'det1' of the table of stream 'primary' of run "
                       rf"{uid}.*store\.timeout") as info:
        db.get_table(db[uid])
    assert proxy.uri in str(info.value)
    assert proxy.table_sizes == [10, 6, 4, 3]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # as above
def test_an_array_field_that_times_out_is_read_in_rows(
        tiled_server: Any, slow_proxy: Any, open_tiled_broker: Any, no_retries: None) -> None:
    """In-event arrays stored as their own array nodes are read in halves of rows when the
    whole node does not come within store.timeout."""
    uid = _uid(tiled_server, 6)
    ref = open_tiled_broker(tiled_server.uri)
    expected = ref.get_table(ref[uid])
    proxy = slow_proxy(1, 3.0)
    db = open_tiled_broker(proxy.uri, timeout=1)
    table = db.get_table(db[uid])
    assert list(table.columns) == list(expected.columns)
    for column in expected.columns:
        np.testing.assert_array_equal(np.stack(table[column].to_numpy()),
                                      np.stack(expected[column].to_numpy()))
    assert proxy.sizes and proxy.sizes[:3] == [3, 1, 2]


def test_pieces_are_put_back_row_by_row() -> None:
    """Pieces answered in another row order are aligned on (seq_num, time); pieces that do
    not hold the same rows are an error saying to raise store.timeout."""
    from broker_v1.stores.tiled._paging import _join

    first = {"seq_num": [1, 2, 3], "time": [1.0, 2.0, 3.0], "a": [10, 20, 30]}
    second = {"seq_num": [3, 1, 2], "time": [3.0, 1.0, 2.0], "b": ["z", "x", "y"]}
    assert _join(first, second, ["seq_num", "time"], "t") == {**first, "b": ["x", "y", "z"]}
    with pytest.raises(StoreUnavailable, match="do not hold the same rows.*store.timeout"):
        _join(first, {**second, "seq_num": [4, 1, 2]}, ["seq_num", "time"], "t")

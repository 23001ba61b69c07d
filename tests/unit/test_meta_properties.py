"""meta.properties: a log dir belongs to one cluster and one broker."""

from __future__ import annotations

from pathlib import Path

import pytest

from moldau.broker import meta_properties


def test_written_where_missing_in_kafkas_format(tmp_path: Path) -> None:
    dirs = [str(tmp_path / "a"), str(tmp_path / "b")]
    meta_properties.check_and_write(dirs, "cid", 7)
    for directory in dirs:
        assert meta_properties.read(directory) == {
            "version": "0",
            "broker.id": "7",
            "cluster.id": "cid",
        }
    assert meta_properties.stored_broker_id(dirs) == 7
    meta_properties.check_and_write(dirs, "cid", 7)  # the same broker starts again


def test_another_cluster_is_refused_in_one_line(tmp_path: Path) -> None:
    meta_properties.check_and_write([str(tmp_path)], "cid", 1)
    with pytest.raises(meta_properties.MetaPropertiesError) as caught:
        meta_properties.check_and_write([str(tmp_path)], "other", 1)
    assert "joining the wrong cluster" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_another_broker_id_is_refused(tmp_path: Path) -> None:
    meta_properties.check_and_write([str(tmp_path)], "cid", 1)
    with pytest.raises(meta_properties.MetaPropertiesError, match="belong to another broker"):
        meta_properties.check_and_write([str(tmp_path)], "cid", 2)


def test_no_file_no_stored_id(tmp_path: Path) -> None:
    assert meta_properties.read(str(tmp_path)) is None
    assert meta_properties.stored_broker_id([str(tmp_path)]) is None

"""Handlers written for the tests (the shapes real handler packages have)."""

from __future__ import annotations

import os

import numpy as np


class NpySeqHandler:
    """NPY_SEQ: one ``<root>/<resource_path>_<index>.npy`` file per frame."""

    specs = {"NPY_SEQ"}
    opened: list[str] = []

    def __init__(self, filename, **resource_kwargs):
        self._template = str(filename) + "_{}.npy"
        if not os.path.exists(self._template.format(0)):
            raise OSError(f"no such file: {self._template.format(0)}")
        NpySeqHandler.opened.append(filename)

    def __call__(self, index):
        return np.load(self._template.format(index))

    def get_file_list(self, datum_kwargs):
        return [self._template.format(d["index"]) for d in datum_kwargs]


class NewtonHandler:
    """newton: computes Newton's rings from the gap; there is no file."""

    specs = {"newton"}

    def __init__(self, filename, radius, wave_number):
        self._radius = radius
        self._k = wave_number

    def __call__(self, gap):
        y, x = np.mgrid[-64:64, -64:64] / 64 * self._radius
        return 1 + np.cos(self._k * (gap + (x**2 + y**2) / (2 * self._radius)))


class Hdf5FrameHandler:
    """An area-detector-style HDF5 handler: frames of ``/entry/data/data`` by point number."""

    specs = {"AD_HDF5_TEST"}
    calls = 0

    def __init__(self, filename, frame_per_point=1):
        import h5py

        self._file = h5py.File(filename, "r")
        self._fpp = frame_per_point

    def __call__(self, point_number):
        Hdf5FrameHandler.calls += 1
        data = self._file["entry/data/data"]
        return data[point_number * self._fpp:(point_number + 1) * self._fpp].squeeze()

    def close(self):
        self._file.close()


class ExplodingHandler:
    """A handler whose reads fail, to test error wrapping."""

    def __init__(self, filename, **kwargs):
        pass

    def __call__(self, **kwargs):
        raise RuntimeError("detector firmware says no")

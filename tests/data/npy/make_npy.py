#!/usr/bin/env python3
"""Writes the .npy reference files used by tests/test_npy.c with NumPy itself (np.save /
np.lib.format.write_array), so the reader is checked against files nobody here wrote.
Element k (C order) of every valid array is (k * 7 + 1) % m, m = 251 for u8, else 30011, cast to
the dtype (floats are exact). Run with a NumPy (1.24 was used): /usr/bin/python3 make_npy.py"""
import numpy as np


def vals(n, dt):
    m = 251 if np.dtype(dt).itemsize == 1 else 30011
    return ((np.arange(n, dtype=np.int64) * 7 + 1) % m).astype(dt)


def save(name, arr, version=None):
    with open(name, "wb") as f:
        np.lib.format.write_array(f, arr, version=version)


save("u16_1d.npy", vals(5, "<u2"))
save("u32_2d.npy", vals(6, "<u4").reshape(2, 3))
save("i32_2d.npy", vals(8, "<i4").reshape(4, 2))
save("i64_3d.npy", vals(24, "<i8").reshape(2, 3, 4))
save("f32_4d.npy", vals(24, "<f4").reshape(1, 2, 3, 4))
save("f16_1d.npy", vals(7, "<f2"))
save("u8_1d.npy", vals(300, "|u1"))
save("v2_i32.npy", vals(10, "<i4"), version=(2, 0))
save("v3_u16.npy", vals(9, "<u2"), version=(3, 0))
save("scalar_f32.npy", np.array(42.5, dtype="<f4"))
save("empty_i64.npy", np.zeros((0, 3), dtype="<i8"))
# Valid NumPy files this project refuses, each with a clear error.
save("bigendian_i4.npy", vals(4, ">i4"))
save("fortran_i32.npy", np.asfortranarray(vals(6, "<i4").reshape(2, 3)))
save("f64_1d.npy", vals(3, "<f8"))
save("bool_1d.npy", np.array([True, False]))
save("five_dims.npy", np.zeros((1, 1, 1, 1, 2), dtype="<f4"))

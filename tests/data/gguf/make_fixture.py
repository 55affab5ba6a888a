#!/usr/bin/env python3
"""Writes fixture.gguf with llama.cpp's gguf-py (PyPI package `gguf`), the independent writer that
tests/io/gguf_test.cpp reads: one key/value of every GGUF value type, arrays of several element
types, a custom alignment of 64, and tensors of four ggml types whose bytes follow fixed patterns.
The expected values below are repeated in the C++ test; change both together.

Usage: python3 tests/data/gguf/make_fixture.py [OUT]   (default: next to this script)
"""
import pathlib
import sys

import numpy as np
import gguf
from gguf import GGUFValueType as T

out = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else pathlib.Path(__file__).with_name("fixture.gguf")
w = gguf.GGUFWriter(str(out), "llama")  # writes general.architecture = "llama" first
w.add_custom_alignment(64)
w.add_key_value("test.u8", 200, T.UINT8)
w.add_key_value("test.i8", -100, T.INT8)
w.add_key_value("test.u16", 60000, T.UINT16)
w.add_key_value("test.i16", -30000, T.INT16)
w.add_key_value("test.u32", 4000000000, T.UINT32)
w.add_key_value("test.i32", -2000000000, T.INT32)
w.add_key_value("test.f32", 0.1, T.FLOAT32)
w.add_key_value("test.bool", True, T.BOOL)
w.add_key_value("test.str", "h\u00e9llo \u2581world", T.STRING)
w.add_key_value("test.u64", 18000000000000000000, T.UINT64)
w.add_key_value("test.i64", -9000000000000000000, T.INT64)
w.add_key_value("test.f64", 2.5e-300, T.FLOAT64)
w.add_key_value("test.arr_i32", [1, -2, 3], T.ARRAY, sub_type=T.INT32)
w.add_key_value("test.arr_f32", [0.5, -1.25], T.ARRAY, sub_type=T.FLOAT32)
w.add_key_value("test.arr_str", ["a", "", "\u2581b"], T.ARRAY, sub_type=T.STRING)
w.add_key_value("test.arr_u8", [0, 255], T.ARRAY, sub_type=T.UINT8)
w.add_key_value("test.arr_bool", [True, False, True], T.ARRAY, sub_type=T.BOOL)

# F32 [3, 5] (ggml ne = [5, 3]): value i * 0.5 - 3 at flat index i.
w.add_tensor("t.f32", (np.arange(15, dtype=np.float32) * 0.5 - 3).reshape(3, 5))
# F16 [2, 3]: i / 4.
w.add_tensor("t.f16", (np.arange(6, dtype=np.float32) / 4).astype(np.float16).reshape(2, 3))
# Q8_0 [2, 64] (2 blocks a row, 34 bytes each) and Q4_0 [1, 32]: raw bytes (i * 7 + 3) % 256
# (the fp16 scales are whatever those bytes say; the reader must not care).
q8 = ((np.arange(2 * 2 * 34) * 7 + 3) % 256).astype(np.uint8).reshape(2, 68)
w.add_tensor("blk.0.q8", q8, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
q4 = ((np.arange(18) * 7 + 3) % 256).astype(np.uint8).reshape(1, 18)
w.add_tensor("blk.0.q4", q4, raw_dtype=gguf.GGMLQuantizationType.Q4_0)
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
print(out)

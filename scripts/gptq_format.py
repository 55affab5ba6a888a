#!/usr/bin/env python3
"""An independent checker of GPTQ checkpoint folders, written from SPEC §1-2 alone.

It shares no code with the C++ library (numpy only, no torch), so that a bug in one is not
repeated in the other. Its parts: a safetensors reader and writer, unpacking and packing of
qweight/qzeros for 2, 3, 4 and 8 bits, the v1 ("gptq": z - 1, as GPTQModel converts whole
words) and v2 ("gptq_v2": z stored) zero-point conventions, and dequantization W[n, k] = scales[g_idx[k], n] * (q - z[g_idx[k], n]).

Subcommands:
  verify OUT_DIR --reference DEQUANT.safetensors [--atol 0]
      Dequantizes every module named in the reference file (tensors "<module>": float [N, K])
      from the folder's tensors and compares; also checks the config keys, the dtypes and shapes
      of every quantized linear, g_idx, the v1 symmetric qzeros constants, the shard index, the
      tied lm_head and the declaration of unquantized block linears. Exit status 1 on any
      problem, with a report.
  pack --out DIR --bits B --group-size G [--desc-act] [--asym] [--format gptq|gptq_v2]
       --from MODEL_DIR [--max-shard-bytes N] [--reference PATH] [--force]
      Makes a GPTQ checkpoint of MODEL_DIR's block linears by round-to-nearest (SPEC §3's
      quantizer without error feedback), with act-order-style g_idx under --desc-act (a random
      permutation of the columns, seed 0), plus "reference.safetensors": the fp32 dequantized
      weight of each quantized module, computed before packing.
  selftest
      pack -> verify round trips on a synthetic folder for every bit width and both formats,
      the SPEC's constant words, and checks that verify catches broken folders.
"""

import argparse
import json
import os
import re
import shutil
import sys
import tempfile

try:
    import numpy as np
except ImportError:  # the ctest entry treats 77 as "skipped"
    print("gptq_format.py: numpy is not installed (apt-get install python3-numpy)", file=sys.stderr)
    sys.exit(77)

# ---------------------------------------------------------------------------------------------
# safetensors

_NP_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16,  # raw bits
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
    "BOOL": np.bool_,
}
_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
          "U8": 1, "BOOL": 1}
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16")


class FormatError(Exception):
    pass


class SafeFile:
    """One safetensors file, mapped read-only. tensors: name -> (dtype, shape, begin, end)."""

    def __init__(self, path):
        self.path = path
        size = os.path.getsize(path)
        if size < 8:
            raise FormatError(f"{path}: file too short ({size} bytes)")
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if n > 100 * 2**20 or 8 + n > size:
                raise FormatError(f"{path}: header length {n} does not fit the file ({size} bytes)")
            header = json.loads(f.read(n).decode("utf-8"))
        if not isinstance(header, dict):
            raise FormatError(f"{path}: header is not a JSON object")
        self.metadata = header.pop("__metadata__", None) or {}
        self.data_start = 8 + n
        self.tensors = {}
        spans = []
        for name, t in header.items():
            dt, shape, offs = t.get("dtype"), t.get("shape"), t.get("data_offsets")
            if dt not in _SIZES:
                raise FormatError(f"{path}: {name}: unknown dtype {dt!r}")
            if not isinstance(shape, list) or any(not isinstance(d, int) or d < 0 for d in shape):
                raise FormatError(f"{path}: {name}: bad shape {shape!r}")
            if not isinstance(offs, list) or len(offs) != 2:
                raise FormatError(f"{path}: {name}: bad data_offsets {offs!r}")
            nbytes = _SIZES[dt] * int(np.prod(shape, dtype=np.int64))
            if offs[1] - offs[0] != nbytes:
                raise FormatError(f"{path}: {name}: {dt} {shape} needs {nbytes} bytes, "
                                  f"data_offsets span {offs[1] - offs[0]}")
            self.tensors[name] = (dt, tuple(shape), offs[0], offs[1])
            spans.append((offs[0], offs[1], name))
        spans.sort()
        pos = 0
        for b, e, name in spans:
            if b != pos:
                raise FormatError(f"{path}: {name}: data starts at {b}, expected {pos} (gap or overlap)")
            pos = e
        if self.data_start + pos != size:
            raise FormatError(f"{path}: data ends at {self.data_start + pos}, file has {size} bytes")
        self._map = np.memmap(path, dtype=np.uint8, mode="r") if size > 0 else None

    def array(self, name):
        dt, shape, b, e = self.tensors[name]
        raw = self._map[self.data_start + b:self.data_start + e]
        return np.frombuffer(raw.tobytes(), dtype=np.dtype(_NP_DTYPES[dt]).newbyteorder("<")).reshape(shape)

    def raw(self, name):
        dt, shape, b, e = self.tensors[name]
        return self._map[self.data_start + b:self.data_start + e].tobytes()


def to_f32(dtype, a):
    if dtype == "BF16":
        return (a.astype(np.uint32) << 16).view(np.float32)
    if dtype in ("F16", "F32", "F64"):
        return a.astype(np.float32)
    raise FormatError(f"expected a float dtype, found {dtype}")


def f32_to_bf16_bits(x):
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def write_safetensors(path, tensors, metadata=None):
    """tensors: name -> (dtype string, numpy array holding that dtype's bits)."""
    meta = {"format": "pt"}
    meta.update(metadata or {})
    header = {"__metadata__": meta}
    blobs = []
    pos = 0
    for name in sorted(tensors):
        dt, a = tensors[name]
        blob = np.ascontiguousarray(a).astype(np.dtype(_NP_DTYPES[dt]).newbyteorder("<"), copy=False).tobytes()
        expect = _SIZES[dt] * int(np.prod(a.shape, dtype=np.int64))
        assert len(blob) == expect, (name, len(blob), expect)
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [pos, pos + len(blob)]}
        pos += len(blob)
        blobs.append(blob)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


class Folder:
    """A model folder's tensors: model.safetensors, or the shards of the index."""

    def __init__(self, path):
        self.path = path
        self.files = []
        self.where = {}
        self.index = None
        single = os.path.join(path, "model.safetensors")
        if os.path.exists(single):
            self.files.append(SafeFile(single))
        else:
            ipath = os.path.join(path, "model.safetensors.index.json")
            if not os.path.exists(ipath):
                raise FormatError(f"{path}: neither model.safetensors nor model.safetensors.index.json")
            with open(ipath) as f:
                self.index = json.load(f)
            for shard in sorted(set(self.index["weight_map"].values())):
                self.files.append(SafeFile(os.path.join(path, shard)))
        for sf in self.files:
            for name in sf.tensors:
                if name in self.where:
                    raise FormatError(f"{path}: tensor {name} is in two files")
                self.where[name] = sf

    def names(self):
        return sorted(self.where)

    def dtype(self, name):
        return self.where[name].tensors[name][0]

    def shape(self, name):
        return self.where[name].tensors[name][1]

    def array(self, name):
        return self.where[name].array(name)

    def f32(self, name):
        return to_f32(self.dtype(name), self.array(name))


# ---------------------------------------------------------------------------------------------
# packing (SPEC §1)
#
# Every bit width is handled as one rule: 32 consecutive values form a little-endian stream of
# 32*b bits (b words), value j at stream bits [b*j, b*j + b). For b in {2, 4, 8} this is the
# familiar "value j of a word at bits [b*j, b*j+b)" layout; for b = 3 it is the 96-bit stream.

def pack_axis0(vals, bits):
    """vals [R, C] unsigned codes (R a multiple of 32) -> int32 words [R*bits/32, C]."""
    vals = np.asarray(vals, dtype=np.int64)
    r, c = vals.shape
    assert r % 32 == 0, r
    if vals.size and (vals.min() < 0 or vals.max() >= (1 << bits)):
        raise ValueError(f"values outside [0, {(1 << bits) - 1}] cannot be packed in {bits} bits")
    v = vals.astype(np.uint64).reshape(r // 32, 32, c)
    words = np.zeros((r // 32, bits, c), dtype=np.uint64)
    for j in range(32):
        word, shift = divmod(bits * j, 32)
        words[:, word, :] |= (v[:, j, :] << np.uint64(shift)) & np.uint64(0xFFFFFFFF)
        if shift + bits > 32:  # the value straddles two words
            words[:, word + 1, :] |= v[:, j, :] >> np.uint64(32 - shift)
    return words.reshape(r // 32 * bits, c).astype(np.uint32).view(np.int32)


def unpack_axis0(words, bits):
    """int32 words [R*bits/32, C] -> codes [R, C] (int64)."""
    w = np.asarray(words).view(np.uint32).astype(np.uint64)
    rw, c = w.shape
    assert rw % bits == 0, (rw, bits)
    w = w.reshape(rw // bits, bits, c)
    out = np.zeros((rw // bits, 32, c), dtype=np.uint64)
    mask = np.uint64((1 << bits) - 1)
    for j in range(32):
        word, shift = divmod(bits * j, 32)
        v = w[:, word, :] >> np.uint64(shift)
        if shift + bits > 32:
            v = v | (w[:, word + 1, :] << np.uint64(32 - shift))
        out[:, j, :] = v & mask
    return out.reshape(rw // bits * 32, c).astype(np.int64)


def pack_qweight(codes_nk, bits):
    """codes [N, K] -> qweight [ceil(K*b/32), N]: packed along the input dim. K need not be a
    multiple of 32 (2/4/8 bits): GPTQModel's pack_original then keeps ceil(K*b/32) rows, the
    fields of the last word past K left 0."""
    codes = np.asarray(codes_nk).T
    k, n = codes.shape
    pad = (-k) % 32
    words = pack_axis0(np.concatenate([codes, np.zeros((pad, n), dtype=codes.dtype)], axis=0), bits)
    return np.ascontiguousarray(words[:-(-k * bits // 32)])


def unpack_qweight(qweight, bits, k=None):
    """qweight [ceil(K*b/32), N] -> codes [K, N] (K = rows*32/b when not given); the fields past
    K of a part-filled last word are ignored, as GPTQModel's dequantize_weight cuts them off."""
    words = np.asarray(qweight)
    k = words.shape[0] * 32 // bits if k is None else k
    whole = -(-k // 32) * bits
    if words.shape[0] < whole:
        words = np.concatenate([words, np.zeros((whole - words.shape[0], words.shape[1]), dtype=words.dtype)], axis=0)
    return unpack_axis0(words, bits)[:k]


def pack_qzeros(stored_gn, bits):
    """stored zero fields [G, N] -> qzeros [G, N*b/32]: packed along the output dim."""
    return np.ascontiguousarray(pack_axis0(np.asarray(stored_gn).T, bits).T)


def unpack_qzeros(qzeros, bits):
    """qzeros [G, N*b/32] -> stored fields [G, N]."""
    return unpack_axis0(np.ascontiguousarray(np.asarray(qzeros).T), bits).T


# v1 ("gptq") zero points, as GPTQModel converts them to and from v2 on load and save: for 2, 4
# and 8 bits the int32 words differ from the v2 words by the replicated one pattern, added or
# subtracted as whole 32-bit integers (modulo 2^32, so borrows and carries cross fields: a zero
# point of 0 is stored as a wrapped 2^b - 1 that borrowed 1 from the next field); for 3 bits,
# whose fields straddle words, each field differs by 1 modulo 8.
V1_WORD_PATTERN = {2: 0x55555555, 4: 0x11111111, 8: 0x01010101}


def _shift_v1_words(qzeros, bits, delta):
    if bits == 3:
        fields = unpack_qzeros(qzeros, bits)
        return pack_qzeros((fields + delta) % 8, bits)
    w = np.asarray(qzeros).view(np.uint32).astype(np.int64)
    return ((w + delta * V1_WORD_PATTERN[bits]) % (1 << 32)).astype(np.uint32).view(np.int32)


def qzeros_to_file(z, fmt, bits):
    """True zero points [G, N] -> the qzeros words [G, ceil(N*b/32)] a file of format `fmt`
    stores. N need not be a multiple of 32 (2/4/8 bits): GPTQModel then keeps ceil(N*b/32) words
    per row, the last one padded with zero points of 0 (before the v1 shift)."""
    z = np.asarray(z, dtype=np.int64)
    g, n = z.shape
    pad = (-n) % 32
    words = pack_qzeros(np.concatenate([z, np.zeros((g, pad), dtype=np.int64)], axis=1), bits)
    words = _shift_v1_words(words, bits, -1) if fmt == "gptq" else words
    return np.ascontiguousarray(words[:, :-(-n * bits // 32)])


def zeros_from_qzeros(qzeros, fmt, bits, n=None):
    """qzeros words [G, ceil(N*b/32)] of a file of format `fmt` -> true zero points [G, N]."""
    words = np.asarray(qzeros)
    n = words.shape[1] * 32 // bits if n is None else n
    whole = -(-n // 32) * bits
    if words.shape[1] < whole:  # pad to whole packs; carries only run upward, into the padding
        words = np.concatenate([words, np.zeros((words.shape[0], whole - words.shape[1]), dtype=words.dtype)], axis=1)
    words = _shift_v1_words(words, bits, +1) if fmt == "gptq" else words
    return unpack_qzeros(words, bits)[:, :n]


def dequantize(qweight, qzeros, scales_f32, g_idx, bits, fmt):
    """-> W [N, K] float32, W[n, k] = scales[g_idx[k], n] * (q - z[g_idx[k], n])."""
    q = unpack_qweight(qweight, bits, len(g_idx))          # [K, N]
    z = zeros_from_qzeros(qzeros, fmt, bits, q.shape[1])  # [G, N]
    g = np.asarray(g_idx, dtype=np.int64)
    w = scales_f32[g, :] * (q - z[g, :]).astype(np.float32)  # [K, N]; exact in fp32
    return np.ascontiguousarray(w.T)


# The v1 qzeros words of a symmetric file (z = 2^(b-1) stored as z - 1), SPEC §1.
V1_SYM_WORDS = {2: [0x55555555], 3: [0xDB6DB6DB, 0xB6DB6DB6, 0x6DB6DB6D], 4: [0x77777777],
                8: [0x7F7F7F7F]}

# ---------------------------------------------------------------------------------------------
# round-to-nearest (SPEC §3's quantizer, no error feedback)


def rtn_group(wg, bits, sym):
    """wg [N, L] -> (codes [N, L], fp16 scales [N], zeros [N]) for one group of columns."""
    maxq = 2**bits - 1
    xmin = np.minimum(wg.min(axis=1), 0.0)
    xmax = np.maximum(wg.max(axis=1), 0.0)
    if sym:
        xmax = np.maximum(np.abs(xmin), xmax)
        xmin = np.where(xmin < 0, -xmax, xmin)
    dead = (xmin == 0) & (xmax == 0)
    xmin = np.where(dead, -1.0, xmin)
    xmax = np.where(dead, 1.0, xmax)
    scale16 = ((xmax - xmin) / maxq).astype(np.float16)
    scale16 = np.where(scale16 == 0, np.float16(2.0**-24), scale16)  # keep divisions finite
    s = scale16.astype(np.float32)
    if sym:
        zero = np.full(wg.shape[0], 2**(bits - 1), dtype=np.int64)
    else:
        zero = np.clip(np.rint(-xmin / s), 0, maxq).astype(np.int64)
    q = np.clip(np.rint(wg / s[:, None]) + zero[:, None], 0, maxq).astype(np.int64)
    return q, scale16, zero


def quantize_linear(w, bits, group_size, sym, perm):
    """w [N, K] float32; perm: processing order of the columns (identity without act-order).

    Returns codes [N, K], scales fp16 [G, N] (rows in processing order), zeros [G, N], g_idx [K].
    """
    n, k = w.shape
    g = k if group_size == -1 else group_size
    groups = (k + g - 1) // g
    pos = np.empty(k, dtype=np.int64)
    pos[perm] = np.arange(k)
    g_idx = (pos // g).astype(np.int32)
    codes = np.zeros((n, k), dtype=np.int64)
    scales = np.zeros((groups, n), dtype=np.float16)
    zeros = np.zeros((groups, n), dtype=np.int64)
    for gi in range(groups):
        cols = perm[gi * g:(gi + 1) * g]
        q, s, z = rtn_group(w[:, cols], bits, sym)
        codes[:, cols] = q
        scales[gi] = s
        zeros[gi] = z
    return codes, scales, zeros, g_idx


def reference_dequant(codes, scales, zeros, g_idx):
    """The dequantized weight from the unpacked values (what a file must reproduce)."""
    g = np.asarray(g_idx, dtype=np.int64)
    s = scales.astype(np.float32)[g, :].T      # [N, K]
    z = zeros[g, :].T                          # [N, K]
    return (s * (codes - z).astype(np.float32)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# folders

TOKENIZER_FILES = ["generation_config.json", "tokenizer.json", "tokenizer_config.json",
                   "special_tokens_map.json", "tokenizer.model", "vocab.json", "merges.txt",
                   "added_tokens.json", "chat_template.json", "chat_template.jinja"]
BLOCK_LINEAR = re.compile(r"^(model\.layers\.(\d+)\.(.+))\.weight$")


def write_folder_tensors(out, tensors, max_shard_bytes=None):
    """Writes model.safetensors, or shards + index when max_shard_bytes splits them."""
    names = sorted(tensors)
    sizes = {n: tensors[n][1].size * _SIZES[tensors[n][0]] for n in names}
    shards, cur, cur_bytes = [], [], 0
    for n in names:
        if max_shard_bytes and cur and cur_bytes + sizes[n] > max_shard_bytes:
            shards.append(cur)
            cur, cur_bytes = [], 0
        cur.append(n)
        cur_bytes += sizes[n]
    shards.append(cur)
    if len(shards) == 1:
        write_safetensors(os.path.join(out, "model.safetensors"), tensors)
        return
    weight_map = {}
    for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        write_safetensors(os.path.join(out, fname), {n: tensors[n] for n in shard})
        for n in shard:
            weight_map[n] = fname
    index = {"metadata": {"total_size": sum(sizes.values())},
             "weight_map": dict(sorted(weight_map.items()))}
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2)


def cmd_pack(args):
    src = Folder(args.source)
    with open(os.path.join(args.source, "config.json")) as f:
        config = json.load(f)
    if os.path.exists(args.out):
        if not args.force:
            print(f"pack: {args.out} exists (use --force)", file=sys.stderr)
            return 2
        shutil.rmtree(args.out)
    os.makedirs(args.out)
    bits, gs, sym, fmt = args.bits, args.group_size, not args.asym, args.format
    rules = json.loads(args.dynamic) if getattr(args, "dynamic", None) else {}
    base_qc = {"bits": bits, "group_size": gs, "desc_act": bool(args.desc_act), "sym": sym, "dynamic": rules}
    rng = np.random.default_rng(0)
    tied = bool(config.get("tie_word_embeddings", False))

    out_tensors, reference = {}, {}
    quantized, unquantized = [], []
    for name in src.names():
        m = BLOCK_LINEAR.match(name)
        if not m or len(src.shape(name)) != 2:
            continue
        module = m.group(1)
        n, k = src.shape(name)
        sch = module_scheme(module, base_qc)
        # GPTQModel's packer takes N and K not multiples of 32 at 2, 4 and 8 bits (ceil(N*b/32)
        # qzeros words, ceil(K*b/32) qweight rows); at 3 bits it fails on them.
        not3 = (sch or {}).get("bits") != 3
        odd_n = n % 32 and getattr(args, "odd_n", False) and not3
        odd_k = k % 32 and getattr(args, "odd_k", False) and not3
        if (n % 32 and not odd_n) or (k % 32 and not odd_k) or sch is None:
            unquantized.append(module)
            continue
        w = src.f32(name)
        perm = rng.permutation(k) if sch["desc_act"] else np.arange(k)
        mb = sch["bits"]
        codes, scales, zeros, g_idx = quantize_linear(w, mb, sch["group_size"], sch["sym"], perm)
        out_tensors[module + ".qweight"] = ("I32", pack_qweight(codes, mb))
        out_tensors[module + ".qzeros"] = ("I32", qzeros_to_file(zeros, fmt, mb))
        out_tensors[module + ".scales"] = ("F16", scales)
        out_tensors[module + ".g_idx"] = ("I32", g_idx)
        if module + ".bias" in src.where:
            out_tensors[module + ".bias"] = ("F16", src.f32(module + ".bias").astype(np.float16))
        reference[module] = ("F32", reference_dequant(codes, scales, zeros, g_idx))
        quantized.append(module)
    qset = set(quantized)
    for name in src.names():
        module = name.rsplit(".", 1)[0]
        if module in qset and name.rsplit(".", 1)[1] in ("weight", "bias"):
            continue
        if tied and name == "lm_head.weight":
            continue
        out_tensors[name] = (src.dtype(name), src.array(name))
    write_folder_tensors(args.out, out_tensors, args.max_shard_bytes)

    qc = {"quant_method": "gptq", "bits": bits, "group_size": gs, "desc_act": bool(args.desc_act),
          "sym": sym, "damp_percent": 0.01, "true_sequential": True, "static_groups": False,
          "checkpoint_format": fmt, "format": fmt, "lm_head": False,
          "model_file_base_name": "model",
          "meta": {"quantizer": ["gptq_format.py:rtn"], "damp_auto_increment": False, "mse": False}}
    if unquantized:
        layers = {int(BLOCK_LINEAR.match(m + ".weight").group(2)) for m in quantized + unquantized}
        by_suffix = {}
        for m in unquantized:
            mm = BLOCK_LINEAR.match(m + ".weight")
            by_suffix.setdefault(mm.group(3), set()).add(int(mm.group(2)))
        everywhere = {s for s, ls in by_suffix.items() if ls == layers}
        suffixes = []
        for m in quantized:
            s = BLOCK_LINEAR.match(m + ".weight").group(3)
            if s not in suffixes:
                suffixes.append(s)
        if everywhere:
            qc["modules_in_block_to_quantize"] = [suffixes]
        dynamic = {"-:" + re.escape(m) + "$": {} for m in unquantized
                   if BLOCK_LINEAR.match(m + ".weight").group(3) not in everywhere
                   and module_scheme(m, base_qc) is not None}
        if dynamic:
            qc["dynamic"] = dynamic
    if rules:
        qc["dynamic"] = dict(qc.get("dynamic", {}), **rules)
    config["quantization_config"] = qc
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(args.out, "quantize_config.json"), "w") as f:
        json.dump(qc, f, indent=2)
    for t in TOKENIZER_FILES:
        p = os.path.join(args.source, t)
        if os.path.isfile(p):
            shutil.copyfile(p, os.path.join(args.out, t))
    ref_path = args.reference or os.path.join(args.out, "reference.safetensors")
    write_safetensors(ref_path, reference)
    print(f"pack: {len(quantized)} linear(s) quantized, {len(unquantized)} left as they were; "
          f"reference in {ref_path}")
    return 0


# ---------------------------------------------------------------------------------------------
# verify

QC_KEYS = {"quant_method": str, "bits": int, "group_size": int, "desc_act": bool, "sym": bool,
           "damp_percent": (int, float), "true_sequential": bool, "static_groups": bool,
           "checkpoint_format": str, "format": str, "lm_head": bool,
           "model_file_base_name": str, "meta": dict}


def check_qconfig(qc, where, problems):
    for key, typ in QC_KEYS.items():
        if key not in qc:
            problems.append(f"{where}: key \"{key}\" missing")
        elif not isinstance(qc[key], typ) or (typ is int and isinstance(qc[key], bool)):
            problems.append(f"{where}: key \"{key}\": expected {typ}, found {qc[key]!r}")
    if qc.get("quant_method") != "gptq":
        problems.append(f"{where}: quant_method: expected \"gptq\", found {qc.get('quant_method')!r}")
    if qc.get("bits") not in (2, 3, 4, 8):
        problems.append(f"{where}: bits: expected 2, 3, 4 or 8, found {qc.get('bits')!r}")
    gs = qc.get("group_size")
    if isinstance(gs, int) and gs != -1 and gs <= 0:
        problems.append(f"{where}: group_size: expected -1 or positive, found {gs}")
    if qc.get("checkpoint_format") not in ("gptq", "gptq_v2"):
        problems.append(f"{where}: checkpoint_format: expected gptq or gptq_v2, found "
                        f"{qc.get('checkpoint_format')!r}")
    if "format" in qc and qc.get("format") != qc.get("checkpoint_format"):
        problems.append(f"{where}: format {qc.get('format')!r} differs from checkpoint_format "
                        f"{qc.get('checkpoint_format')!r}")
    if qc.get("lm_head") is not False:
        problems.append(f"{where}: lm_head: expected false, found {qc.get('lm_head')!r}")
    if qc.get("model_file_base_name") != "model":
        problems.append(f"{where}: model_file_base_name: expected \"model\", found "
                        f"{qc.get('model_file_base_name')!r}")
    meta = qc.get("meta")
    if isinstance(meta, dict):
        qz = meta.get("quantizer")
        if not isinstance(qz, list) or not qz or not all(isinstance(s, str) for s in qz):
            problems.append(f"{where}: meta.quantizer: expected a list of strings, found {qz!r}")
        for key in ("damp_auto_increment", "mse"):
            if not isinstance(meta.get(key), bool):
                problems.append(f"{where}: meta.{key}: expected true/false, found {meta.get(key)!r}")


def module_scheme(module, qc):
    """GPTQModel's "dynamic" rules: the first key (in file order) whose regex re.match-es the
    module decides; "-:" means unquantized (None), "+:" or no prefix overrides the base bits,
    group_size, desc_act and sym. -> dict of those four, or None."""
    base = {k: qc[k] for k in ("bits", "group_size", "desc_act", "sym")}
    for key, over in (qc.get("dynamic") or {}).items():
        negative = key.startswith("-:")
        pattern = key[2:] if key.startswith(("-:", "+:")) else key
        if re.match(pattern, module):
            if negative:
                return None
            return {k: over.get(k, v) for k, v in base.items()}
    return base


def excluded(module, qc):
    """Whether the config declares `module` (a block linear) as left unquantized."""
    if module_scheme(module, qc) is None:
        return True
    mods = qc.get("modules_in_block_to_quantize")
    if mods:
        flat = [s for e in mods for s in (e if isinstance(e, list) else [e])]
        m = BLOCK_LINEAR.match(module + ".weight")
        if m and m.group(3) not in flat:
            return True
    return False


def check_linear(folder, module, qc, problems):
    """Checks one quantized linear's tensors; returns (qweight, qzeros, scales, g_idx) or None."""
    qc = dict(qc, **(module_scheme(module, qc) or {}))
    bits, fmt = qc["bits"], qc["checkpoint_format"]
    names = {leaf: module + "." + leaf for leaf in ("qweight", "qzeros", "scales", "g_idx", "bias")}
    for leaf in ("qweight", "qzeros", "scales", "g_idx"):
        if names[leaf] not in folder.where:
            problems.append(f"{module}: tensor {names[leaf]} missing")
            return None
    if module + ".weight" in folder.where:
        problems.append(f"{module}: both .weight and .qweight present")
    qws, gis = folder.shape(names["qweight"]), folder.shape(names["g_idx"])
    if len(qws) != 2 or len(gis) != 1:
        problems.append(f"{module}: qweight shape {list(qws)} / g_idx shape {list(gis)} are not "
                        f"[ceil(K*{bits}/32), N] / [K]")
        return None
    # K from g_idx (always written): qweight's ceil(K*b/32) rows do not give K when it is not a
    # multiple of 32.
    k, n = gis[0], qws[1]
    gsz = k if qc["group_size"] == -1 else qc["group_size"]
    groups = -(-k // gsz)
    expect = {"qweight": ("I32", (-(-k * bits // 32), n)), "qzeros": ("I32", (groups, -(-n * bits // 32))),
              "scales": ("F16", (groups, n)), "g_idx": ("I32", (k,))}
    ok = True
    for leaf, (dt, shape) in expect.items():
        got = (folder.dtype(names[leaf]), folder.shape(names[leaf]))
        if got != (dt, shape):
            problems.append(f"{names[leaf]}: expected {dt} {list(shape)}, found {got[0]} {list(got[1])}")
            ok = False
    if names["bias"] in folder.where:
        got = (folder.dtype(names["bias"]), folder.shape(names["bias"]))
        if got != ("F16", (n,)):
            problems.append(f"{names['bias']}: expected F16 [{n}], found {got[0]} {list(got[1])}")
    if bits == 3 and (k % 32 or n % 32):
        problems.append(f"{module}: at 3 bits K = {k} and N = {n} must be multiples of 32")
        ok = False
    if not ok:
        return None
    qweight, qzeros = folder.array(names["qweight"]), folder.array(names["qzeros"])
    scales, g_idx = folder.f32(names["scales"]), folder.array(names["g_idx"]).astype(np.int64)
    if g_idx.size and (g_idx.min() < 0 or g_idx.max() >= groups):
        problems.append(f"{names['g_idx']}: values must lie in [0, {groups}), found "
                        f"[{g_idx.min()}, {g_idx.max()}]")
        return None
    act_order = qc["desc_act"] and not qc["static_groups"]
    if not act_order and not np.array_equal(g_idx, np.arange(k) // gsz):
        problems.append(f"{names['g_idx']}: without act-order (or with static groups) expected "
                        f"g_idx[k] = k // {gsz}")
    if act_order:
        counts = np.bincount(g_idx, minlength=groups)
        want = np.full(groups, gsz)
        want[-1] = k - gsz * (groups - 1)
        if not np.array_equal(counts, want):
            problems.append(f"{names['g_idx']}: act-order groups must hold {gsz} columns each "
                            f"(processing order), found sizes {counts.tolist()}")
    if qc["sym"]:
        z = zeros_from_qzeros(qzeros, fmt, bits, n)
        if not (z == 2**(bits - 1)).all():
            problems.append(f"{names['qzeros']}: symmetric file: expected every zero point "
                            f"{2**(bits - 1)}, found values in [{z.min()}, {z.max()}]")
        if fmt == "gptq":
            words = V1_SYM_WORDS[bits]
            want = np.tile(np.array(words, dtype=np.uint32), qzeros.shape[1] // len(words))
            if n % 32 == 0 and not (qzeros.view(np.uint32) == want[None, :]).all():
                problems.append(f"{names['qzeros']}: symmetric v1 file: expected the words "
                                f"{[hex(w) for w in words]} (SPEC §1)")
    return qweight, qzeros, scales, g_idx


def cmd_verify(args):
    problems, notes = [], []
    out = args.out_dir
    try:
        folder = Folder(out)
    except (FormatError, OSError, ValueError, KeyError) as e:
        print(f"verify: FAILED: cannot read the folder: {e}")
        return 1
    with open(os.path.join(out, "config.json")) as f:
        config = json.load(f)
    qc = config.get("quantization_config")
    if not isinstance(qc, dict):
        print("verify: FAILED: config.json has no quantization_config object")
        return 1
    check_qconfig(qc, "config.json quantization_config", problems)
    if problems:  # without a sound config the tensors cannot be interpreted
        print("\n".join([f"verify: FAILED ({len(problems)} problem(s))"] + ["  " + p for p in problems]))
        return 1
    qpath = os.path.join(out, "quantize_config.json")
    if not os.path.exists(qpath):
        problems.append("quantize_config.json missing")
    else:
        with open(qpath) as f:
            qfile = json.load(f)
        if qfile != qc:
            diff = sorted(k for k in set(qfile) | set(qc) if qfile.get(k) != qc.get(k))
            problems.append(f"quantize_config.json differs from quantization_config in {diff}")

    # The files themselves.
    for sf in folder.files:
        if sf.metadata.get("format") != "pt":
            problems.append(f"{sf.path}: __metadata__.format: expected \"pt\", found "
                            f"{sf.metadata.get('format')!r}")
    if folder.index is not None:
        total = sum(sf.tensors[n][3] - sf.tensors[n][2] for sf in folder.files for n in sf.tensors)
        if folder.index.get("metadata", {}).get("total_size") != total:
            problems.append(f"index total_size {folder.index.get('metadata', {}).get('total_size')} "
                            f"!= sum of tensor bytes {total}")
        for name, fname in folder.index["weight_map"].items():
            if name not in folder.where or os.path.basename(folder.where[name].path) != fname:
                problems.append(f"index maps {name} to {fname}, which does not hold it")
        n_files = len(folder.files)
        for i, sf in enumerate(sorted(folder.files, key=lambda s: s.path)):
            want = f"model-{i + 1:05d}-of-{n_files:05d}.safetensors"
            if os.path.basename(sf.path) != want:
                problems.append(f"shard {os.path.basename(sf.path)}: expected the name {want}")
    if config.get("tie_word_embeddings") and "lm_head.weight" in folder.where:
        problems.append("lm_head.weight stored although tie_word_embeddings is true (duplicated tied head)")

    # Every quantized linear, and the declaration of the block linears left as they were.
    modules = sorted(n[:-len(".qweight")] for n in folder.names() if n.endswith(".qweight"))
    checked = {}
    for m in modules:
        r = check_linear(folder, m, qc, problems)
        if r is not None:
            checked[m] = r
        if excluded(m, qc):
            problems.append(f"{m}: quantized, but the config declares it unquantized")
    for name in folder.names():
        m = BLOCK_LINEAR.match(name)
        if m and len(folder.shape(name)) == 2 and not excluded(m.group(1), qc):
            problems.append(f"{m.group(1)}: block linear left unquantized but not named in "
                            "modules_in_block_to_quantize or a dynamic \"-:\" rule (loaders fail)")

    # Dequantize against the reference.
    ref = SafeFile(args.reference)
    worst = 0.0
    for module in sorted(ref.tensors):
        want = to_f32(ref.tensors[module][0], ref.array(module))
        if module not in checked:
            if module + ".qweight" not in folder.where:
                problems.append(f"{module}: in the reference but not quantized in the folder")
            continue
        qweight, qzeros, scales, g_idx = checked[module]
        got = dequantize(qweight, qzeros, scales, g_idx, (module_scheme(module, qc) or qc)["bits"],
                         qc["checkpoint_format"])
        if got.shape != want.shape:
            problems.append(f"{module}: dequantized shape {list(got.shape)}, reference {list(want.shape)}")
            continue
        err = np.abs(got.astype(np.float64) - want.astype(np.float64))
        worst = max(worst, float(err.max()) if err.size else 0.0)
        if not (err <= args.atol).all():
            bad = np.argwhere(err > args.atol)
            nn, kk = bad[0]
            problems.append(f"{module}: {len(bad)} of {err.size} values differ by more than "
                            f"{args.atol} (max {err.max():g}); first at [n={nn}, k={kk}]: "
                            f"got {got[nn, kk]!r}, reference {want[nn, kk]!r}")
    for m in modules:
        if m not in ref.tensors:
            notes.append(f"{m}: not in the reference (shapes checked only)")

    for n in notes:
        print("note: " + n)
    if problems:
        print(f"verify: FAILED ({len(problems)} problem(s))")
        for p in problems:
            print("  " + p)
        return 1
    print(f"verify: OK ({len(ref.tensors)} module(s) against the reference, "
          f"{len(modules)} quantized, max |diff| = {worst:g})")
    return 0


# ---------------------------------------------------------------------------------------------
# selftest


def make_source(path, seed=0, inter=128, tied=False, dtype="BF16"):
    """A tiny Llama folder with random weights (bf16 linears, fp32 norms, a q_proj bias)."""
    os.makedirs(path)
    rng = np.random.default_rng(seed)
    hidden, vocab, layers = 64, 48, 2
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
              "intermediate_size": inter, "num_hidden_layers": layers, "num_attention_heads": 4,
              "num_key_value_heads": 2, "vocab_size": vocab, "max_position_embeddings": 64,
              "rms_norm_eps": 1e-5, "tie_word_embeddings": tied, "torch_dtype": "bfloat16"}
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f)
    with open(os.path.join(path, "tokenizer.json"), "w") as f:
        f.write('{"model": {"type": "BPE"}}')

    def w(shape, scale=0.05):
        a = (rng.standard_normal(shape) * scale).astype(np.float32)
        if dtype == "BF16":
            return ("BF16", f32_to_bf16_bits(a))
        return (dtype, a.astype(_NP_DTYPES[dtype]))

    t = {"model.embed_tokens.weight": w((vocab, hidden)),
         "model.norm.weight": ("F32", np.ones(hidden, dtype=np.float32))}
    if not tied:
        t["lm_head.weight"] = w((vocab, hidden))
    kv = hidden // 2
    for l in range(layers):
        p = f"model.layers.{l}."
        t[p + "input_layernorm.weight"] = ("F32", np.ones(hidden, dtype=np.float32))
        t[p + "post_attention_layernorm.weight"] = ("F32", np.ones(hidden, dtype=np.float32))
        t[p + "self_attn.q_proj.weight"] = w((hidden, hidden))
        t[p + "self_attn.q_proj.bias"] = w((hidden,))
        t[p + "self_attn.k_proj.weight"] = w((kv, hidden))
        t[p + "self_attn.v_proj.weight"] = w((kv, hidden))
        o = w((hidden, hidden))
        if l == 1:  # an all-zero row group and an all-positive row: the quantizer's edge cases
            a = to_f32(o[0], o[1]).copy()
            a[3, :] = 0
            a[5, :] = np.abs(a[5, :])
            o = ("BF16", f32_to_bf16_bits(a)) if dtype == "BF16" else (dtype, a.astype(_NP_DTYPES[dtype]))
        t[p + "self_attn.o_proj.weight"] = o
        t[p + "mlp.gate_proj.weight"] = w((inter, hidden))
        t[p + "mlp.up_proj.weight"] = w((inter, hidden))
        t[p + "mlp.down_proj.weight"] = w((hidden, inter))
    write_safetensors(os.path.join(path, "model.safetensors"), t)
    return t


def run_quiet(fn, args):
    import contextlib
    import io
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = fn(args)
    return rc, buf.getvalue()


def cmd_selftest(_args):
    passed, failed = 0, 0

    def check(cond, what, detail=""):
        nonlocal passed, failed
        if cond:
            passed += 1
        else:
            failed += 1
            print(f"FAIL: {what}\n{detail}")

    # Packing against hand-computed words and the SPEC's constants.
    check(int(pack_axis0(np.arange(32).reshape(32, 1) % 16, 4)[0, 0]) == 0x76543210,
          "4-bit: value j at bits [4j, 4j+4)")
    v = np.zeros((32, 1), dtype=np.int64)
    v[10, 0] = 0b101  # stream bits 30..32: straddles words 0 and 1
    w3 = pack_axis0(v, 3).view(np.uint32)[:, 0]
    check(list(w3) == [0x40000000, 0x1, 0x0], "3-bit: a value straddling two words",
          [hex(x) for x in w3])
    for bits, words in V1_SYM_WORDS.items():
        qz = qzeros_to_file(np.full((2, 96), 2**(bits - 1)), "gptq", bits).view(np.uint32)
        want = np.tile(np.array(words, dtype=np.uint32), qz.shape[1] // len(words))
        check((qz == want[None, :]).all(), f"{bits}-bit v1 symmetric qzeros words (SPEC §1)",
              [hex(x) for x in qz[0, :4]])
    rng = np.random.default_rng(1)
    for bits in (2, 3, 4, 8):
        codes = rng.integers(0, 2**bits, size=(64, 96))
        check(np.array_equal(unpack_qweight(pack_qweight(codes, bits), bits).T, codes),
              f"{bits}-bit qweight pack/unpack")
        z = rng.integers(0, 2**bits, size=(3, 64))
        check(np.array_equal(unpack_qzeros(pack_qzeros(z, bits), bits), z),
              f"{bits}-bit qzeros pack/unpack")
        check(pack_qweight(codes, bits).shape == (96 * bits // 32, 64), f"{bits}-bit qweight shape")
        if bits != 3:  # K = 44: the last word part-filled, its fields past K zero
            odd = pack_qweight(codes[:, :44], bits)
            check(odd.shape == (-(-44 * bits // 32), 64)
                  and np.array_equal(unpack_qweight(odd, bits, 44).T, codes[:, :44])
                  and not (unpack_qweight(odd, bits)[44:] != 0).any(), f"{bits}-bit qweight of K = 44")
    # v1 asymmetric words, by hand: 4-bit zero points 0, 3, 0, ... 0 (field 0 and 2..7 zero) are
    # the v2 word 0x00000030; minus 0x11111111 modulo 2^32 that is 0xEEEEEF1F: field 0 a wrapped
    # 15 that borrowed from field 1 (3 - 1 - 1 = 1), field 2 another wrapped 15 whose borrow runs
    # through fields 3..7 (14 each) and out of the word.
    zv = np.zeros((1, 32), dtype=np.int64)
    zv[0, 1] = 3
    qz = qzeros_to_file(zv, "gptq", 4).view(np.uint32)
    check(int(qz[0, 0]) == 0xEEEEEF1F, "4-bit v1 word of zero points 0, 3, 0, ...", hex(int(qz[0, 0])))
    for bits in (2, 3, 4, 8):
        z = rng.integers(0, 2**bits, size=(3, 64))
        check(np.array_equal(zeros_from_qzeros(qzeros_to_file(z, "gptq", bits), "gptq", bits), z),
              f"{bits}-bit v1 asymmetric zero points round trip (zeros of 0 included)")

    # pack -> verify round trips.
    with tempfile.TemporaryDirectory(prefix="gptq-format-selftest-") as tmp:
        src = os.path.join(tmp, "src")
        make_source(src)
        cases = []
        for bits in (2, 3, 4, 8):
            for fmt in ("gptq", "gptq_v2"):
                cases.append(dict(bits=bits, group_size=32, desc_act=False, asym=False, format=fmt))
            cases.append(dict(bits=bits, group_size=32, desc_act=True, asym=True, format="gptq_v2"))
            cases.append(dict(bits=bits, group_size=32, desc_act=False, asym=True, format="gptq"))
        cases.append(dict(bits=4, group_size=-1, desc_act=True, asym=False, format="gptq"))
        # N not a multiple of 32 (the MLP's 172 of stories-like shapes), v1 asymmetric.
        cases.append(dict(bits=4, group_size=32, desc_act=False, asym=True, format="gptq", odd_n=True))
        # Mixed precision: GPTQModel-style rules, first match wins.
        cases.append(dict(bits=4, group_size=32, desc_act=False, asym=True, format="gptq",
                          dynamic=json.dumps({"-:.*layers\\.0\\.self_attn\\.q_proj$": {},
                                              "+:.*self_attn\\.[qo]_proj": {"bits": 8, "group_size": 64},
                                              ".*mlp\\.": {"bits": 2, "sym": True}})))
        cases.append(dict(bits=3, group_size=48, desc_act=False, asym=False, format="gptq",
                          max_shard_bytes=20000))
        for i, c in enumerate(cases):
            out = os.path.join(tmp, f"out{i}")
            ns = argparse.Namespace(source=src, out=out, force=False, reference=None,
                                    max_shard_bytes=c.pop("max_shard_bytes", None), **c)
            rc, text = run_quiet(cmd_pack, ns)
            check(rc == 0, f"pack {c}", text)
            rc, text = run_quiet(cmd_verify, argparse.Namespace(
                out_dir=out, reference=os.path.join(out, "reference.safetensors"), atol=0.0))
            check(rc == 0, f"verify {c}", text)
        check(os.path.exists(os.path.join(tmp, f"out{len(cases) - 1}", "model.safetensors.index.json")),
              "sharded pack writes an index")
        # The quantizer itself: 8-bit RTN stays close to the weights, 2-bit much less so.
        srcf = Folder(src)
        for i, c in enumerate(cases):
            ref = SafeFile(os.path.join(tmp, f"out{i}", "reference.safetensors"))
            m = "model.layers.0.mlp.up_proj"
            w = srcf.f32(m + ".weight")
            rel = float(np.sqrt(np.mean((ref.array(m) - w) ** 2) / np.mean(w**2)))
            sch = module_scheme(m, {"bits": c["bits"], "group_size": c["group_size"], "desc_act": c["desc_act"],
                                    "sym": not c["asym"], "dynamic": json.loads(c.get("dynamic") or "{}")})
            limit = {2: 0.6, 3: 0.3, 4: 0.15, 8: 0.01}[sch["bits"]]
            check(rel < limit, f"RTN error at {c['bits']} bits: relative RMS {rel:.4f} < {limit}")

        # Linears whose N or K is not a multiple of 32 stay as they were, declared.
        src80 = os.path.join(tmp, "src80")
        make_source(src80, seed=2, inter=80, tied=True)
        out = os.path.join(tmp, "out80")
        rc, text = run_quiet(cmd_pack, argparse.Namespace(
            source=src80, out=out, force=False, reference=None, max_shard_bytes=None, bits=4,
            group_size=32, desc_act=False, asym=False, format="gptq"))
        check(rc == 0, "pack with unquantizable linears", text)
        ref = os.path.join(out, "reference.safetensors")
        rc, text = run_quiet(cmd_verify, argparse.Namespace(out_dir=out, reference=ref, atol=0.0))
        check(rc == 0, "verify with unquantized linears", text)
        with open(os.path.join(out, "config.json")) as f:
            qc = json.load(f)["quantization_config"]
        check(qc.get("modules_in_block_to_quantize") == [["self_attn.k_proj", "self_attn.o_proj",
                                                          "self_attn.q_proj", "self_attn.v_proj"]],
              "modules_in_block_to_quantize lists the quantized suffixes", qc)
        check("lm_head.weight" not in Folder(out).where, "tied lm_head not written")
        # The same shapes quantized as GPTQModel packs them (gate/up N = 80: ceil(N*b/32) qzeros
        # words; down K = 80: ceil(K*b/32) qweight rows, a last group of 16 columns), at each
        # bit width its packer takes them.
        for b, fmt, act in ((2, "gptq", False), (4, "gptq", False), (8, "gptq_v2", False), (4, "gptq", True)):
            out = os.path.join(tmp, f"out80-{b}{fmt}{act}")
            rc, text = run_quiet(cmd_pack, argparse.Namespace(
                source=src80, out=out, force=False, reference=None, max_shard_bytes=None, bits=b,
                group_size=32, desc_act=act, asym=not act, format=fmt, odd_n=True, odd_k=True))
            check(rc == 0 and "0 left as they were" in text, f"pack {b}-bit odd N and K", text)
            rc, text = run_quiet(cmd_verify, argparse.Namespace(
                out_dir=out, reference=os.path.join(out, "reference.safetensors"), atol=0.0))
            check(rc == 0, f"verify {b}-bit odd N and K", text)
            f = Folder(out)
            check(f.shape("model.layers.0.mlp.down_proj.qweight") == (-(-80 * b // 32), 64)
                  and f.shape("model.layers.0.mlp.down_proj.scales") == (3, 64),
                  f"{b}-bit K = 80: qweight [ceil(K*b/32), N], scales [ceil(K/g), N]")

        # verify catches broken folders.
        def broken(name, mutate, expect):
            bad = os.path.join(tmp, "bad-" + name)
            shutil.copytree(os.path.join(tmp, "out0"), bad)
            mutate(bad)
            rc, text = run_quiet(cmd_verify, argparse.Namespace(
                out_dir=bad, reference=os.path.join(bad, "reference.safetensors"), atol=0.0))
            check(rc == 1 and expect in text, f"verify catches: {name}", text)

        def edit_tensors(fn):
            def mutate(d):
                f = Folder(d)
                t = {n: (f.dtype(n), f.array(n).copy()) for n in f.names()}
                fn(t)
                del f
                write_safetensors(os.path.join(d, "model.safetensors"), t)
            return mutate

        def edit_config(fn, files=("config.json",)):
            def mutate(d):
                for fname in files:
                    p = os.path.join(d, fname)
                    with open(p) as f:
                        cfg = json.load(f)
                    fn(cfg.get("quantization_config", cfg) if fname == "config.json" else cfg)
                    with open(p, "w") as f:
                        json.dump(cfg, f)
            return mutate

        def flip_code(t):
            t["model.layers.1.mlp.up_proj.qweight"][1][3, 5] ^= 0x10

        def flip_zero(t):
            t["model.layers.0.self_attn.q_proj.qzeros"][1][0, 0] ^= 0x1

        def unquantize(t):
            m = "model.layers.0.mlp.down_proj"
            for leaf in ("qweight", "qzeros", "scales", "g_idx"):
                del t[m + "." + leaf]
            t[m + ".weight"] = ("F32", np.zeros((64, 128), dtype=np.float32))

        def bad_gidx(t):
            t["model.layers.0.mlp.gate_proj.g_idx"][1][0] = 99

        def f32_scales(t):
            n = "model.layers.0.mlp.gate_proj.scales"
            t[n] = ("F32", t[n][1].astype(np.float32))

        broken("a code", edit_tensors(flip_code), "model.layers.1.mlp.up_proj: 1 of")
        broken("a zero point", edit_tensors(flip_zero), "symmetric v1 file")
        broken("an undeclared unquantized linear", edit_tensors(unquantize), "not named in")
        broken("g_idx out of range", edit_tensors(bad_gidx), "g_idx")
        broken("fp32 scales", edit_tensors(f32_scales), "expected F16")
        broken("a missing key", edit_config(lambda q: q.pop("sym")), "\"sym\" missing")
        broken("quantize_config.json out of step",
               edit_config(lambda q: q.update(damp_percent=0.5), ("quantize_config.json",)),
               "quantize_config.json differs")
        broken("a v2 file labelled v1",
               edit_config(lambda q: q.update(checkpoint_format="gptq_v2", format="gptq_v2"),
                           ("config.json", "quantize_config.json")), "expected every zero point")

    print(f"selftest: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


# ---------------------------------------------------------------------------------------------


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("verify", help="check a GPTQ folder against fp32 dequantized weights")
    v.add_argument("out_dir")
    v.add_argument("--reference", required=True, help="safetensors: <module> -> float [N, K]")
    v.add_argument("--atol", type=float, default=0.0)
    p = sub.add_parser("pack", help="make a GPTQ folder by round-to-nearest")
    p.add_argument("--out", required=True)
    p.add_argument("--from", dest="source", required=True)
    p.add_argument("--bits", type=int, choices=(2, 3, 4, 8), default=4)
    p.add_argument("--group-size", type=int, default=128)
    p.add_argument("--desc-act", action="store_true")
    p.add_argument("--asym", action="store_true")
    p.add_argument("--format", choices=("gptq", "gptq_v2"), default="gptq")
    p.add_argument("--odd-n", action="store_true",
                   help="also quantize linears whose N is not a multiple of 32 (GPTQModel's ceil(N*b/32) qzeros)")
    p.add_argument("--odd-k", action="store_true",
                   help="also quantize linears whose K is not a multiple of 32 (GPTQModel's ceil(K*b/32) qweight "
                        "rows, a partial last group)")
    p.add_argument("--dynamic", default=None,
                   help='JSON object of GPTQModel "dynamic" rules, e.g. {"+:.*o_proj": {"bits": 8}}')
    p.add_argument("--max-shard-bytes", type=int, default=None)
    p.add_argument("--reference", default=None, help="default: OUT/reference.safetensors")
    p.add_argument("--force", action="store_true")
    sub.add_parser("selftest", help="round trips and negative checks on a synthetic folder")
    args = ap.parse_args(argv)
    if args.cmd == "pack" and args.group_size != -1 and args.group_size <= 0:
        ap.error("--group-size: expected -1 or a positive size")
    return {"verify": cmd_verify, "pack": cmd_pack, "selftest": cmd_selftest}[args.cmd](args)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (FormatError, ValueError) as e:
        print(f"gptq_format.py: {e}", file=sys.stderr)
        sys.exit(2)

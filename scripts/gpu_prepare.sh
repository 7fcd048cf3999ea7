#!/usr/bin/env bash
# Run HERE (a Debian 12 machine with apt and pip access), before a device call: fills the
# git-ignored folder .gpu/ with what the GPU machine (no network) may lack, so that
# scripts/gpu_check.sh can build and benchmark there. The device call carries it:
#   run(command="bash scripts/gpu_check.sh", carry=[".gpu"])
#
# .gpu/root.tar.xz           Debian 12 packages unpacked with dpkg -x (never into /) and packed:
#                            the -dev packages the CMake build needs (Catch2, nlohmann-json,
#                            CLI11, OpenBLAS-OpenMP, Open MPI) and the run-time libraries they
#                            load. gpu_check.sh unpacks it on the device (xz: OpenBLAS alone is
#                            36 MB unpacked, the whole archive about 8 MB)
# .gpu/cudnn_frontend/include  cuDNN frontend C++ headers (header-only), from the
#                            nvidia-cudnn-frontend wheel
# .gpu/bench/torch_llama_baseline.py   ../shared/bench's PyTorch baseline (shared/ beside the
#                            checkout does not travel)
# .gpu/MANIFEST              package versions and sizes
#
# Docs, man pages, locales, Fortran modules and static libraries (except Catch2's, which the
# tests link) are dropped; the whole carried tree must stay well under the device tool's
# 64 MiB (repository included). Idempotent: rebuilds .gpu/ from scratch each time.
#   scripts/gpu_prepare.sh
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
dest=$repo/.gpu
cudnn_frontend_version=${CUDNN_FRONTEND_VERSION:-1.32.0}

exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
grep -qxF '/.gpu/' "$exclude" 2>/dev/null || echo '/.gpu/' >>"$exclude"

# Build-time packages and the shared libraries they pull in at run time (apt-cache depends;
# libc, libstdc++, libgcc, zlib and libgomp come with the compiler and are not carried).
# Open MPI's transports (libfabric, UCX, PSM, verbs) are plugins loaded only by MPI_Init and
# mpirun; a single-GPU run needs none, so they stay behind (mpirun falls back to shared
# memory and TCP, with warnings).
pkgs=(
  catch2 nlohmann-json3-dev libcli11-dev
  libopenblas-openmp-dev libopenblas0-openmp libgfortran5 libquadmath0
  libopenmpi-dev libopenmpi3 openmpi-bin openmpi-common
  libhwloc15 libevent-core-2.1-7 libevent-pthreads-2.1-7 libudev1 libpmix2 libmunge2
)

if ! apt-cache show catch2 >/dev/null 2>&1; then
  echo "gpu_prepare: apt-get update"
  apt-get update -qq
fi
rm -rf "$dest"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/debs" "$stage/root" "$dest/bench" "$dest/cudnn_frontend"
echo "gpu_prepare: apt-get download ${#pkgs[@]} packages"
# apt's sandbox user cannot write here; the "unsandboxed" notice is harmless.
(
  cd "$stage/debs"
  apt-get download -qq "${pkgs[@]}" 2>&1 | { grep -v -i 'unsandboxed' || true; }
)
n_debs=$(find "$stage/debs" -name '*.deb' | wc -l)
if ((n_debs != ${#pkgs[@]})); then
  echo "gpu_prepare: expected ${#pkgs[@]} .deb files, got $n_debs" >&2
  exit 1
fi
{
  echo "# .gpu/ made by scripts/gpu_prepare.sh on $(date -u +%Y-%m-%dT%H:%MZ) ($(grep -m1 PRETTY_NAME /etc/os-release | cut -d'"' -f2))"
  echo "# debs (dpkg -x, packed into .gpu/root.tar.xz):"
} >"$dest/MANIFEST"
for deb in "$stage"/debs/*.deb; do
  dpkg -x "$deb" "$stage/root"
  # shellcheck disable=SC2016  # dpkg-deb's own ${field} syntax
  dpkg-deb -W --showformat='${Package} ${Version}\n' "$deb" >>"$dest/MANIFEST"
done

# Prune what neither CMake nor the run needs.
r=$stage/root
rm -rf "$r/usr/share/doc" "$r/usr/share/man" "$r/usr/share/lintian" "$r/usr/share/locale" \
  "$r/usr/share/doc-base" "$r/usr/share/bug" "$r/usr/share/javascript" "$r/usr/share/pkgconfig" \
  "$r/usr/lib/x86_64-linux-gnu/fortran" "$r/etc/init.d" "$r/lib/systemd" "$r/lib/udev" "$r/usr/lib/udev" \
  "$r/usr/sbin" "$r/sbin"
find "$r" -name '*.a' ! -name 'libCatch2*.a' -delete
# OpenBLAS's reference-BLAS/LAPACK alternatives (7 MB): autosp links libopenblas itself.
rm -f "$r"/usr/lib/x86_64-linux-gnu/openblas-openmp/lib{blas,lapack}.so*
find "$r" \( -name '*.la' -o -name '*.mod' -o -name '*.f90' \) -delete
# Open MPI's Fortran bindings (the C++ build links libmpi only) and the plugins whose
# transport libraries were not carried (they would only print load warnings).
find "$r" -name 'libmpi_mpifh*' -delete -o -name 'libmpi_usempi*' -delete
find "$r/usr/lib/x86_64-linux-gnu/openmpi/lib/openmpi3" \
  \( -name '*_ofi*' -o -name '*_ucx*' -o -name '*_psm*' -o -name '*_openib*' -o -name '*verbs*' -o -name '*_ucc*' \) \
  -delete 2>/dev/null || true
find "$r" -xtype l -delete  # links left dangling by the pruning
# Alternatives (update-alternatives runs at install time, not in dpkg -x): the unversioned
# names CMake's FindMPI and the trainer's users look for.
for t in mpicc mpicxx mpic++ mpirun mpiexec; do
  if [[ -e $r/usr/bin/$t.openmpi ]]; then ln -sf "$t.openmpi" "$r/usr/bin/$t"; fi
done

echo "gpu_prepare: packing .gpu/root.tar.xz"
tar -C "$r" -cf - . | xz -6 -T0 >"$dest/root.tar.xz"

# cuDNN frontend headers (header-only C++ API; the wheel ships them under include/).
whl=$dest/whl
mkdir -p "$whl"
echo "gpu_prepare: pip download nvidia-cudnn-frontend==$cudnn_frontend_version"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d "$whl" "nvidia-cudnn-frontend==$cudnn_frontend_version"
wheel=$(find "$whl" -name 'nvidia_cudnn_frontend-*.whl' | head -1)
[[ -n $wheel ]] || { echo "gpu_prepare: no nvidia-cudnn-frontend wheel downloaded" >&2; exit 1; }
python3 - "$wheel" "$dest/cudnn_frontend/include" <<'PY'
import os, sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
n = 0
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        # include/... at the wheel root, or under the .data/data/ or .data/headers/ scheme
        parts = name.split("/")
        if "include" not in parts or name.endswith("/"):
            continue
        rel = "/".join(parts[parts.index("include") + 1:])
        if not rel or "cudnn" not in name.lower():
            continue
        path = os.path.join(out, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with z.open(name) as src, open(path, "wb") as dst:
            dst.write(src.read())
        n += 1
if not os.path.exists(os.path.join(out, "cudnn_frontend.h")):
    sys.exit(f"gpu_prepare: {wheel} has no include/cudnn_frontend.h")
print(f"gpu_prepare: {n} cuDNN frontend headers")
PY
echo "nvidia-cudnn-frontend $cudnn_frontend_version (headers in .gpu/cudnn_frontend/include)" >>"$dest/MANIFEST"
rm -rf "$whl"

# The PyTorch baseline from shared/ (beside the checkout, so it does not travel by itself).
baseline=${TORCH_BASELINE:-$repo/../shared/bench/torch_llama_baseline.py}
if [[ -f $baseline ]]; then
  cp "$baseline" "$dest/bench/"
  echo "torch_llama_baseline.py sha256 $(sha256sum "$baseline" | cut -c1-16)" >>"$dest/MANIFEST"
else
  echo "gpu_prepare: warning: $baseline not found; bench_gpu.sh will skip the PyTorch baseline" >&2
fi

# Sizes: .gpu/ and everything the device tool sends (tracked + untracked-not-ignored + .gpu).
gpu_kib=$(du -sk "$dest" | cut -f1)
# (a tracked file deleted in the working tree is listed but missing: du skips it)
tree_kib=$({ git ls-files -z --cached --others --exclude-standard | du -ck --files0-from=- 2>/dev/null || true; } |
  tail -1 | cut -f1)
echo "size: .gpu ${gpu_kib} KiB" >>"$dest/MANIFEST"
du -sh "$dest"/* | sed 's/^/gpu_prepare: /'
echo "gpu_prepare: .gpu is $((gpu_kib / 1024)) MiB; with the repository ($((tree_kib / 1024)) MiB) the device call carries" \
  "$(((gpu_kib + tree_kib) / 1024)) MiB (limit 64 MiB)"
if ((gpu_kib + tree_kib > 50 * 1024)); then
  echo "gpu_prepare: over the 50 MiB target" >&2
  exit 1
fi

#!/usr/bin/env bash
# Build every CPU image of docker/Dockerfile with podman and print each image's size.
#
#   bash scripts/images.sh                 # local Debian bases (debootstrap), then every CPU target
#   bash scripts/images.sh visual fusion   # only these targets
#   bash scripts/images.sh --public        # the Dockerfile's pinned public bases, unchanged
#   bash scripts/images.sh --prune         # afterwards, drop the build cache (dangling layers)
#
# Local route (this project's machines, where no public base image can be pulled): two bases
# are made with debootstrap from Debian's archive and imported into podman,
#   localhost/dfmesh-base/python:3.11-bookworm   Debian 12's Python 3.11 (stands in for PYTHON_IMAGE)
#   localhost/dfmesh-base/node:<v>-bookworm      Debian 12 + this machine's Node.js (for NODE_IMAGE)
# and the Dockerfile is built with its own build arguments pointing at them. TORCH_INDEX is
# PyPI there (the PyTorch CPU index cannot be reached), so the local ingest image carries the
# CUDA build of torch and is several GB larger than the public route's (docs/DEPLOY.md).
# Public route (anywhere a registry is reachable): no build argument is changed.
#
# Images are tagged ${DFMESH_IMAGE_PREFIX:-dfmesh}/<target>:${DFMESH_IMAGE_TAG:-0.1.0}, the
# names the k8s overlays use. Podman runs with docker/podman/containers.conf (runc, no
# default ulimits), which this machine kind needs; set CONTAINERS_CONF to use another.
# The local ingest image is 6.6 GiB and its first build needs about 20 GB free at its peak:
# without the image the script refuses to start with less than DFMESH_MIN_FREE_GB (25) free.
set -euo pipefail
cd "$(dirname "$0")/.."

# Every CPU image: the Dockerfile's targets on the CPU runtime stage (gateway, fusion, ingest
# and the branch targets generated from dfmesh/branches.py by scripts/gen_branch_files.py).
mapfile -t CPU_TARGETS < <(sed -n 's/^FROM runtime AS \([a-z0-9-]*\)$/\1/p' docker/Dockerfile)
PREFIX=${DFMESH_IMAGE_PREFIX:-dfmesh}
TAG=${DFMESH_IMAGE_TAG:-0.1.0}
SUITE=bookworm
MIRROR=${DFMESH_DEBIAN_MIRROR:-http://deb.debian.org/debian}
PY_BASE=localhost/dfmesh-base/python:3.11-$SUITE
CA_BUNDLE=${DFMESH_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
TORCH_INDEX_LOCAL=${DFMESH_TORCH_INDEX:-https://pypi.org/simple}
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/docker/podman/containers.conf}

public=0
prune=0
targets=()
for arg in "$@"; do
  case "$arg" in
    --public) public=1 ;;
    --prune) prune=1 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    -*) echo "error: unknown option $arg (see --help)" >&2; exit 2 ;;
    *)
      if [[ ! " ${CPU_TARGETS[*]} " =~ [[:space:]]${arg}[[:space:]] ]]; then
        echo "error: unknown target '$arg'; CPU targets: ${CPU_TARGETS[*]}" >&2; exit 2
      fi
      targets+=("$arg") ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=("${CPU_TARGETS[@]}")

need_apt=()
command -v podman >/dev/null || need_apt+=(podman)
command -v runc >/dev/null || need_apt+=(runc)
if [ "$public" = 0 ]; then
  command -v debootstrap >/dev/null || need_apt+=(debootstrap)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "error: missing ${need_apt[*]}; install them (apt-get install ${need_apt[*]}) or run as root" >&2
    exit 1
  fi
  echo "installing system packages: ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" busybox-static >/dev/null
fi

# Enough disk for the builds: a first local build of ingest peaks at about 20 GB.
need_gb=5
if [ "$public" = 0 ] && [[ " ${targets[*]} " == *" ingest "* ]] \
    && ! podman image exists "$PREFIX/ingest:$TAG"; then
  need_gb=${DFMESH_MIN_FREE_GB:-25}
fi
store=/var/lib/containers
[ -d "$store" ] || store=/var/lib
free_gb=$(( $(df --output=avail -k "$store" | tail -1) / 1048576 ))
if [ "$free_gb" -lt "$need_gb" ]; then
  echo "error: $free_gb GB free under $store; these builds need about $need_gb GB" \
       "(set DFMESH_MIN_FREE_GB to override, or free space: podman image prune)" >&2
  exit 1
fi

# debootstrap a minimal Debian root with the given packages into $1.
bootstrap() {
  local root=$1 include=$2
  echo "debootstrap $SUITE ($include) from $MIRROR"
  debootstrap --variant=minbase --include="$include" "$SUITE" "$root" "$MIRROR" >"$root.log" 2>&1 \
    || { tail -20 "$root.log" >&2; echo "error: debootstrap failed (log: $root.log)" >&2; exit 1; }
  rm -f "$root.log"
  cat >"$root/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb http://deb.debian.org/debian-security $SUITE-security main
EOF
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
}

# Import root dir $1 as image $2 with extra ENV lines ($3...).
import_root() {
  local root=$1 image=$2; shift 2
  local changes=(--change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
                 --change "ENV LANG=C.UTF-8" --change 'CMD ["/bin/bash"]')
  for env in "$@"; do changes+=(--change "ENV $env"); done
  tar -C "$root" --numeric-owner -c . | podman import --quiet "${changes[@]}" - "$image" >/dev/null
  echo "base image $image: $(( $(podman image inspect --format '{{.Size}}' "$image") / 1048576 )) MiB"
}

# The Python base: Debian 12's python3 (3.11) with venv, `python` on PATH like python:3.11-slim.
make_python_base() {
  if podman image exists "$PY_BASE"; then echo "base image $PY_BASE: present"; return; fi
  local root; root=$(mktemp -d /var/tmp/dfmesh-python-base.XXXXXX)
  bootstrap "$root" python3,python3-venv,python-is-python3,ca-certificates
  # pip inside the build verifies TLS against the system bundle (mounted from the host).
  import_root "$root" "$PY_BASE" "PIP_CERT=/etc/ssl/certs/ca-certificates.crt"
  rm -rf "$root"
}

# The Node.js base: Debian 12 plus this machine's Node.js (the web UI needs Node >= 20.19,
# Debian 12 ships 18), copied from its Debian package with npm as installed.
make_node_base() {
  local version; version=$(node --version 2>/dev/null | sed 's/^v//') || true
  if [ -z "$version" ] || ! dpkg -s nodejs >/dev/null 2>&1; then
    echo "error: Node.js from a Debian package (nodejs, 20.19+) is needed for the web UI base" >&2
    exit 1
  fi
  NODE_BASE=localhost/dfmesh-base/node:$version-$SUITE
  if podman image exists "$NODE_BASE"; then echo "base image $NODE_BASE: present"; return; fi
  local root; root=$(mktemp -d /var/tmp/dfmesh-node-base.XXXXXX)
  bootstrap "$root" ca-certificates,libstdc++6
  # The package's files, then the global modules as they are now (npm may have been upgraded
  # in place by `npm install -g npm`, which dpkg does not know about).
  { dpkg -L nodejs | grep -v '^/usr/lib/node_modules/' \
      | while read -r f; do if [ -f "$f" ] || [ -L "$f" ]; then echo "$f"; fi; done
    find /usr/lib/node_modules \( -type f -o -type l \)
    for link in /usr/bin/npm /usr/bin/npx /usr/bin/corepack; do [ -L "$link" ] && echo "$link"; done
  } | sort -u | sed 's|^/||' | tar -C / --no-recursion -cf - -T - | tar -C "$root" -xf -
  chroot "$root" /usr/bin/node /usr/bin/npm --version >/dev/null
  import_root "$root" "$NODE_BASE" "NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt"
  rm -rf "$root"
}

build_args=()
pull=(--pull=missing)
if [ "$public" = 0 ]; then
  make_python_base
  make_node_base
  build_args=(--build-arg "PYTHON_IMAGE=$PY_BASE" --build-arg "NODE_IMAGE=$NODE_BASE"
              --build-arg "TORCH_INDEX=$TORCH_INDEX_LOCAL")
  pull=(--pull=never)
fi
# pip and npm inside the build reach their registries through the host's network and trust
# its CA bundle (which may hold a site's TLS-inspecting proxy CA).
mounts=()
[ -f "$CA_BUNDLE" ] && mounts=(-v "$CA_BUNDLE:/etc/ssl/certs/ca-certificates.crt:ro")

declare -A seconds
for target in "${targets[@]}"; do
  image="$PREFIX/$target:$TAG"
  echo "== build $image"
  start=$(date +%s)
  podman build --network host "${mounts[@]}" "${pull[@]}" "${build_args[@]}" \
    -f docker/Dockerfile --target "$target" -t "$image" . >"/tmp/dfmesh-build-$target.log" 2>&1 \
    || { tail -40 "/tmp/dfmesh-build-$target.log" >&2
         echo "error: building $target failed (log: /tmp/dfmesh-build-$target.log)" >&2; exit 1; }
  seconds[$target]=$(( $(date +%s) - start ))
  echo "   built in ${seconds[$target]} s"
done

echo
printf '%-28s %9s %8s\n' image size_MiB build_s
for target in "${targets[@]}"; do
  image="$PREFIX/$target:$TAG"
  size=$(podman image inspect --format '{{.Size}}' "$image")
  printf '%-28s %9s %8s\n' "$image" "$(( size / 1048576 ))" "${seconds[$target]}"
done
if [ "$prune" = 1 ]; then
  echo
  echo "pruning the build cache (dangling images)"
  podman image prune --force >/dev/null
fi

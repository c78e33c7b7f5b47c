#!/usr/bin/env bash
# Installs dist/*-manylinux_*.whl into a fresh venv inside a minimal root (chroot) that holds only the
# Python interpreter, its stdlib and the libraries the stdlib's own modules link (libc, libssl, libz,
# ...), plus libstdc++/libgcc_s (in every Debian/Ubuntu base image, and on manylinux's allow list) —
# no libvips, no glib, no libjpeg, no X11, no Go — then runs tests/test_client.py against that install.
# It fails if the wheel relies on any library of the host. Needs root (chroot, mount).
#
#   scripts/check_wheel.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PYTHON=${PYTHON:-python3}
W=$ROOT/build/wheel
R=$W/root
log() { printf '\n== %s\n' "$*" >&2; }

WHEEL=$(find dist -maxdepth 1 -name '*-manylinux_*_x86_64.whl' 2>/dev/null | sort | tail -n 1)
[ -n "$WHEEL" ] || { echo "check_wheel.sh: no dist/*-manylinux_*.whl; run scripts/build_wheel.sh first" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "check_wheel.sh: needs root (chroot)" >&2; exit 1; }

PREFIX=$("$PYTHON" -c 'import sys; print(sys.base_prefix)')
PYVER=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
EXE=$("$PYTHON" -c 'import os, sys; print(os.path.realpath(sys._base_executable))')
STDLIB=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')

log "wheelhouse: the wheel's dependencies + pytest (PyPI, cached in build/wheel/wheelhouse)"
mkdir -p "$W/wheelhouse"
"$PYTHON" -m pip download -q --disable-pip-version-check --only-binary=:all: -d "$W/wheelhouse" \
    "cffi>=1.15" "numpy>=1.24" "pillow>=10" "pytest>=7"

log "minimal root $R: python $PYVER from $PREFIX"
umount "$R/proc" 2>/dev/null || true
rm -rf "$R"
mkdir -p "$R/tmp" "$R/proc" "$R/dev" "$R/etc" "$R/work" "$R/$(dirname "$EXE")" "$R/$STDLIB"
chmod 1777 "$R/tmp"
cp "$EXE" "$R/$EXE"
ln -s "$EXE" "$R/$(dirname "$EXE")/python3"
tar -C "$STDLIB" -cf - --exclude=./site-packages --exclude=./test --exclude=__pycache__ --exclude=./idlelib \
    --exclude=./tkinter --exclude=./turtledemo --exclude='./lib-dynload/_tkinter*' . | tar -C "$R/$STDLIB" -xf -
mkdir -p "$R/$STDLIB/site-packages"
# the shared libraries of the interpreter and of its stdlib extension modules (and theirs), from ldd
copy_deps() {
    ldd "$@" 2>/dev/null | awk '/=> \//{print $3} /^\s*\/lib/{print $1}' | sort -u | while read -r lib; do
        [ -e "$R$lib" ] && continue
        mkdir -p "$R$(dirname "$lib")"
        cp -L "$lib" "$R$lib"
    done
}
copy_deps "$EXE" "$R/$STDLIB"/lib-dynload/*.so
# all of glibc's libraries, and the C++ runtime every Debian/Ubuntu base image has (libvips is C++)
for lib in libc.so.6 libm.so.6 libpthread.so.0 libdl.so.2 librt.so.1 libresolv.so.2 libutil.so.1 \
           libstdc++.so.6 libgcc_s.so.1; do
    path=$(ldconfig -p | awk -v l="$lib" '$1 == l && /x86-64/ && !found {print $NF; found = 1}')  # no early exit: pipefail
    [ -n "$path" ] || { echo "check_wheel.sh: $lib not found on this host" >&2; exit 1; }
    mkdir -p "$R$(dirname "$path")"; cp -L "$path" "$R$path"
    copy_deps "$path"
done
[ -e "$R/lib64/ld-linux-x86-64.so.2" ] || { mkdir -p "$R/lib64"; cp -L /lib64/ld-linux-x86-64.so.2 "$R/lib64/"; }
printf '%s\n' /lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu > "$R/etc/ld.so.conf"
ldconfig -r "$R" 2>/dev/null || true
forbidden=$(find "$R" \( -name 'libvips*' -o -name 'libglib*' -o -name 'libgobject*' -o -name 'libjpeg*' \
    -o -name 'libX11*' -o -name 'libdeflate*' -o -name 'go' \) | head -5)
[ -z "$forbidden" ] || { echo "check_wheel.sh: the minimal root holds $forbidden" >&2; exit 1; }
echo "root: $(du -sh "$R" | cut -f1), $(find "$R" -name '*.so*' | wc -l) shared objects" >&2
cp -r "$W/wheelhouse" "$WHEEL" "$R/work/"
cp -r tests "$R/work/tests"  # tests only: conftest's sys.path entry for ../python then points nowhere
find "$R/work/tests" -name __pycache__ -prune -exec rm -rf {} +
# the README's usage example, as written, on the committed real photos
"$PYTHON" - "$R/work/readme_example.py" <<'PY'
import re, sys
text = open("README.md").read().split("## Using it", 1)[1]
code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
assert '"/data/photos"' in code, "README usage example: root_path changed; update scripts/check_wheel.sh"
code = code.replace('"/data/photos"', '"/work/tests/data/photos"')
open(sys.argv[1], "w").write(code)
PY
for d in /dev/null /dev/zero /dev/urandom /dev/random; do touch "$R$d"; done

log "chroot: fresh venv, pip install $(basename "$WHEEL"), pytest tests/test_client.py"
cat > "$R/work/run.py" <<PY
import os, subprocess, sys
os.environ.clear()  # nothing of the host's environment (PIP_*, LD_LIBRARY_PATH, PYTHONPATH...)
os.environ.update(HOME="/tmp", PATH="/venv/bin:$(dirname "$EXE")", LANG="C.UTF-8", PYTHONDONTWRITEBYTECODE="1")
def run(*cmd):
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd="/work")
run("$EXE", "-m", "venv", "/venv")
run("/venv/bin/python", "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-index",
    "--find-links", "/work/wheelhouse", "/work/$(basename "$WHEEL")", "pytest")
run("/venv/bin/python", "-c", "import datago; print(datago.__file__, datago.__version__, datago.version()); "
    "assert datago.__file__.startswith('/venv/'), datago.__file__")
run("/venv/bin/datago", "--version")
print("+ README usage example on tests/data/photos", flush=True)
out = subprocess.run(["/venv/bin/python", "/work/readme_example.py"], check=True, capture_output=True, text=True).stdout
print(out, end="")
n = sum(f.endswith((".jpg", ".png")) for f in os.listdir("/work/tests/data/photos"))
assert len(out.splitlines()) == n + 1, f"README example: expected {n} samples + stats, got {out!r}"
run("/venv/bin/python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_client.py", *sys.argv[1:])
PY
unshare --mount --fork sh -c "
    for d in null zero urandom random; do mount --bind /dev/\$d \"$R/dev/\$d\"; done
    mount -t proc proc '$R/proc'
    exec chroot '$R' '$EXE' /work/run.py \"\$@\"
" check_wheel "$@"

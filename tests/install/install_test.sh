#!/usr/bin/env bash
# `cmake --install` into a temporary prefix, then the C example built against the *installed* package twice (with
# pkg-config, and with CMake's find_package), run on a model folder, and compared byte for byte with the installed
# CLI's image; the library exports the C API's symbols only. Usage: install_test.sh BUILD_DIR SOURCE_DIR MODEL_DIR
set -euo pipefail
build=$(realpath "$1") src=$(realpath "$2") model=$(realpath "$3")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
trap 'echo "install test: line $LINENO failed: $BASH_COMMAND" >&2' ERR
prefix="$work/prefix"

cmake --install "$build" --prefix "$prefix" >/dev/null
lib=$(find "$prefix" -name 'libsana_sprint.so' | head -1)
pcdir=$(dirname "$(find "$prefix" -name sana-sprint.pc | head -1)")
test -f "$prefix/include/sana_sprint.h"

# Only sana_* functions leave the library (the C++ inside stays hidden).
others=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep -v '^sana_' | grep -v '^$' || true)
if [ -n "$others" ]; then echo "libsana_sprint.so exports more than the C API:"; echo "$others" | head; exit 1; fi
# The SONAME carries the major version.
objdump -p "$lib" | grep 'SONAME *libsana_sprint.so.0$' >/dev/null

# pkg-config, as a C99 program would be built by hand.
flags=$(PKG_CONFIG_PATH="$pcdir" pkg-config --cflags --libs sana-sprint)
cc -std=c99 -Wall -Wextra -pedantic -Werror "$src/examples/c/generate.c" $flags -o "$work/generate-pc"
# The program loads the installed library, not the build tree's.
ldd "$work/generate-pc" | grep "$prefix/.*libsana_sprint.so" >/dev/null
"$work/generate-pc" "$model" "a red circle" "$work/pc.ppm" 5

# CMake's find_package(SanaSprint).
cmake -S "$src/examples/c" -B "$work/example" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/example" >/dev/null
"$work/example/generate" "$model" "a red circle" "$work/cmake.ppm" 5
cmp "$work/pc.ppm" "$work/cmake.ppm"

# The installed CLI draws the same bytes.
"$prefix/bin/sana-sprint" generate -m "$model" -p "a red circle" -s 5 -o "$work/cli.png" 2>/dev/null
/usr/bin/python3 - "$work/cli.png" "$work/pc.ppm" <<'PY'
import sys
from PIL import Image
a, b = (Image.open(p).convert("RGB") for p in sys.argv[1:3])
assert a.size == b.size, (a.size, b.size)
assert a.tobytes() == b.tobytes(), "the example's image differs from the CLI's"
print("same bytes:", a.size)
PY

# The Python package, pip-installed into a virtual environment (Debian's python3, its Pillow and numpy, no index)
# from a copy of python/ that carries the installed library and its shim beside the package: found without
# SANA_SPRINT_LIBRARY, from outside the source tree.
cp -r "$src/python" "$work/python"
cp "$(readlink -f "$lib")" "$(find "$prefix" -name libsana_spm.so | head -1)" "$work/python/sana_sprint/"
/usr/bin/python3 -m venv --system-site-packages "$work/venv"
"$work/venv/bin/pip" install --quiet --no-index --no-build-isolation "$work/python"
cd "$work"
env -u SANA_SPRINT_LIBRARY -u PYTHONPATH "$work/venv/bin/python" - "$model" "$work/cli.png" <<'PY'
import sys
from PIL import Image
import sana_sprint
from sana_sprint import SanaSprintPipeline
assert "/venv/" in sana_sprint.__file__, sana_sprint.__file__
pipe = SanaSprintPipeline.from_pretrained(sys.argv[1])
ours = pipe("a red circle", seed=5).images[0]
cli = Image.open(sys.argv[2]).convert("RGB")
assert ours.tobytes() == cli.tobytes(), "the pip-installed package's image differs from the CLI's"
print("pip-installed package: same bytes,", sana_sprint.version())
PY
echo "install test passed"

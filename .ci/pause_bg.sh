#!/usr/bin/env bash
# Pause (STOP) or resume (CONT) background study kernels while a foreground benchmark or test
# suite runs: on 2 cores, two OpenMP processes slow D's small convolutions ~100x.
#   bash .ci/pause_bg.sh STOP|CONT
sig=${1:?STOP or CONT}
for p in $(pgrep -f ipykernel_launcher); do
  if [ "$(cat /proc/$p/environ 2>/dev/null | tr '\0' '\n' | grep -c '^HANDLIB_FOREGROUND=1$')" = 0 ]; then
    kill -"$sig" "$p" && echo "$sig $p"
  fi
done

#!/usr/bin/env bash
# Seed wrapper for Ferrobase, called by the shared bench.sh (SEED_SCRIPT): the shared seed.py
# (sequential single creates, one keep-alive connection), with the identity sign-up body
# Ferrobase's API expects ({email, password}, no passwordConfirm).
exec python3 "${SHARED_BENCH:-/work/shared/bench}/pocketbase/seed.py" "$@" --no-password-confirm

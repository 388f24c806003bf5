#!/bin/sh
# The C++ compiler of the size-optimised build (scripts/build-small.sh sets
# CXX to this script): the system's c++ (or $FEED_SMALL_CXX), with every
# -O3 turned into -Os. usearch's build script adds -O3 after the flags
# Cargo's profile and CXXFLAGS give, so neither can lower it. usearch
# compiled at -Os is ~200 KB smaller; the lite index calls it only for
# graph bases (more than 262,144 vectors, or `graph_from`).
for a in "$@"; do
    shift
    if [ "$a" = "-O3" ]; then
        set -- "$@" -Os
    else
        set -- "$@" "$a"
    fi
done
exec "${FEED_SMALL_CXX:-c++}" "$@"

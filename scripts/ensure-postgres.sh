#!/bin/sh
# Make sure PostgreSQL's server programs (initdb, pg_ctl) are on this machine, for the tests that
# load into a throwaway server on 127.0.0.1 (tests/destinations). Idempotent: when they are there
# already it says where and changes nothing. Otherwise it installs Debian's `postgresql` package
# with apt-get (needs root). The tests never use the package's own "main" cluster: they start
# their own server, as an unprivileged user, in a temporary directory on a free port.
#
#   sh scripts/ensure-postgres.sh            exit 0: the programs are there (their folder printed)
#                                            exit 1: missing and could not be installed (one line why)
set -eu

find_bindir() {
  # the newest Debian server under /usr/lib/postgresql/<major>/bin, else whatever PATH holds
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -n -r); do
    if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && [ -x "$dir/postgres" ]; then
      echo "$dir"
      return 0
    fi
  done
  initdb=$(command -v initdb 2>/dev/null || true)
  if [ -n "$initdb" ] && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$initdb"
    return 0
  fi
  return 1
}

if dir=$(find_bindir); then
  echo "ensure-postgres: PostgreSQL server programs in $dir"
  exit 0
fi

if [ "$(id -u)" != "0" ]; then
  echo "ensure-postgres: initdb/pg_ctl not found and not root: install Debian's postgresql package (sudo apt-get install postgresql) or put initdb and pg_ctl on PATH" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-postgres: initdb/pg_ctl not found and there is no apt-get here: install PostgreSQL's server (initdb, pg_ctl) with this system's package manager" >&2
  exit 1
fi

echo "ensure-postgres: installing Debian's postgresql package"
export DEBIAN_FRONTEND=noninteractive
if ! timeout 600 apt-get update -qq >/dev/null; then
  echo "ensure-postgres: apt-get update failed (is a Debian mirror reachable?)" >&2
  exit 1
fi
if ! timeout 900 apt-get install -y -qq --no-install-recommends postgresql >/dev/null; then
  echo "ensure-postgres: apt-get install postgresql failed" >&2
  exit 1
fi

if dir=$(find_bindir); then
  echo "ensure-postgres: PostgreSQL server programs in $dir"
  exit 0
fi
echo "ensure-postgres: the postgresql package is installed but initdb/pg_ctl are still not found" >&2
exit 1

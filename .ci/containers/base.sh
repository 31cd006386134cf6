#!/usr/bin/env bash
# A stand-in for the public Python base image the Dockerfile names (docker.io/library/python:3.11-
# slim-bookworm), built here because container registries can't be reached from CI: Debian
# bookworm from the mirror apt already uses (debootstrap --variant=minbase), with Debian's Python
# 3.11, imported into podman under the name the Dockerfile's FROM line uses. The machine's own CA
# certificates go in too, so that pip reaches PyPI through this network during the build.
set -euo pipefail
name="${1:?usage: base.sh IMAGE-NAME}"
mirror="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
root="$(mktemp -d /var/tmp/nanoclone-base.XXXXXX)"
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
  bookworm "$root" "${mirror:-http://deb.debian.org/debian}" >/dev/null
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
  chroot "$root" update-ca-certificates >/dev/null
fi
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
# Debian's pip bundles its own CA list; point it at the system's, which holds the machine's CAs.
tar -C "$root" -c . | podman import --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
  --change 'CMD ["python3"]' - "$name" >/dev/null
echo "base image $name: $(podman image inspect --format '{{.Size}}' "$name" | numfmt --to=iec)"

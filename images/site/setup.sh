#!/bin/sh
# The site settings every image stage starts with, so images build (and their users install
# packages) behind a corporate network: a private package mirror and a TLS-inspecting proxy.
# `mlhub images build` passes them as build args (named apart from pip's own PIP_INDEX_URL, which
# pip would read even when empty) from one setting, ImagePipeline.mirrors
# (images/README.md, "Private mirrors and CA certificates"):
#   MLHUB_DEBIAN_MIRROR  replaces http://deb.debian.org in apt's sources, e.g. https://nexus.corp/repository/deb
#   MLHUB_PIP_INDEX_URL  pip's index, kept in /etc/pip.conf (PIP_INDEX_URL in a container overrides it)
#   MLHUB_CRAN_MIRROR    R's `repos` option, kept in Rprofile.site by `setup.sh r` (CRAN_MIRROR in a
#                  container overrides it)
# CA certificates the pipeline put in /opt/mlhub-site/ca/*.crt become trusted by apt, pip and R.
# Usage: `sh /opt/mlhub-site/setup.sh` first in a stage (leaves apt's lists for the next
# apt-get install; remove them in the same RUN), `sh /opt/mlhub-site/setup.sh r` after R is installed.
set -eu
SITE=$(dirname "$0")

if [ "${1:-}" = r ]; then
  # Rprofile.site is read by every R process: the mirror baked in at build time, unless the
  # container's environment names another.
  cat >>/etc/R/Rprofile.site <<RPROFILE
local({
  repo <- Sys.getenv("CRAN_MIRROR", "${MLHUB_CRAN_MIRROR:-https://cloud.r-project.org}")
  options(repos = c(CRAN = repo))
})
RPROFILE
  exit 0
fi

if [ -n "${MLHUB_DEBIAN_MIRROR:-}" ]; then
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*; do
    if [ -f "$f" ]; then sed -i "s|http://deb.debian.org|${MLHUB_DEBIAN_MIRROR%/}|g" "$f"; fi
  done
fi
# Keep no downloaded .deb files and no package caches in a layer (the official slim image's
# apt settings do the same; a debootstrap root has none).
cat >/etc/apt/apt.conf.d/90mlhub-slim <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends ca-certificates >/dev/null
if ls "$SITE"/ca/*.crt >/dev/null 2>&1; then
  cp "$SITE"/ca/*.crt /usr/local/share/ca-certificates/
  update-ca-certificates >/dev/null
fi
{
  echo "[global]"
  # pip's own certificate bundle does not know a site CA: use the system's, which does.
  echo "cert = /etc/ssl/certs/ca-certificates.crt"
  if [ -n "${MLHUB_PIP_INDEX_URL:-}" ]; then echo "index-url = ${MLHUB_PIP_INDEX_URL}"; fi
} >/etc/pip.conf
